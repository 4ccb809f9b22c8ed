"""Composite blocks: STGCN's ST-Conv block and Graph WaveNet's layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stgnn.nn.dropout import Dropout, dropout
from stgnn.nn.graph_conv import ChebGraphConv, GraphConv
from stgnn.nn.graph_ops import Operator, OperatorCache, OperatorKind, diffusion_series, get_operator, transpose_operator
from stgnn.nn.temporal import ChannelAlign, GatedTCN, GatedTemporalConv

__all__ = ["GraphWaveNetLayer", "NodeLayerNorm", "STConvBlock"]


class NodeLayerNorm(nn.Module):
    r"""Layer normalisation over the node and channel axes jointly (STGCN).

    Statistics are taken over all ``N x C`` values of each (sample, step), as
    ``nn.LayerNorm([N, C])`` in hazdzz/STGCN and ``tf.nn.moments(x, axes=[2, 3])`` in
    VeritasYin/STGCN_IJCAI-18.  With ``num_nodes`` the affine parameters are per node and channel
    ``[N, C]`` (both references; ties the model to one graph's node count and order); with
    ``num_nodes=None`` they are per channel ``[C]`` (node-permutation equivariant, any graph).

    Batched graphs: given the ``batch`` vector of a PyG ``Batch`` (node ``i`` belongs to graph
    ``batch[i]``), the statistics are taken per graph, over that graph's nodes and all channels,
    so each graph of a disjoint union is normalised as it is alone (as PyG's
    ``LayerNorm(mode="graph")``).  Without it all ``N`` nodes are one graph.

    Args:
        num_nodes: ``N`` for ``[N, C]`` affine parameters, ``None`` for ``[C]``.
        channels: ``C``.
        eps: Added to the variance. Default ``1e-12`` (hazdzz/STGCN).
        node_dim: Node axis of the input (channels last). Default ``-2``.

    Shapes:
        ``[..., N, ..., C] -> same``.

    Example:
        >>> ln = NodeLayerNorm(5, 8)
        >>> ln(torch.randn(2, 12, 5, 8)).shape
        torch.Size([2, 12, 5, 8])
        >>> NodeLayerNorm(None, 8)(torch.randn(2, 12, 5, 8), batch=torch.tensor([0, 0, 0, 1, 1])).shape
        torch.Size([2, 12, 5, 8])
    """

    def __init__(self, num_nodes: int | None, channels: int, eps: float = 1e-12, *, node_dim: int = -2) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.channels = channels
        self.eps = eps
        self.node_dim = node_dim
        shape = (channels,) if num_nodes is None else (num_nodes, channels)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(shape))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Ones and zeros."""
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, channels={self.channels}, eps={self.eps}, node_dim={self.node_dim}"

    def forward(self, x: Tensor, batch: Tensor | None = None, *, node_index: Tensor | None = None) -> Tensor:
        """Normalise over (node, channel) -- per graph when ``batch`` is given -- and apply the affine map.

        Args:
            x: ``[..., N, ..., C]`` with nodes at ``node_dim``.
            batch: Optional ``[N]`` graph index of each node (PyG ``Batch.batch``).
            node_index: Optional ``[N]`` ids (among the ``num_nodes`` built for) of the nodes of
                ``x`` when it holds a sampled subgraph: their per-node affine parameters are used,
                and the statistics are taken over those nodes.
        """
        nd = self.node_dim % x.dim()
        n = x.size(nd)
        if x.size(-1) != self.channels:
            raise ValueError(f"NodeLayerNorm was built for {self.channels} channels, got {x.size(-1)}")
        if node_index is not None and self.num_nodes is not None:
            if node_index.shape != (n,):
                raise ValueError(f"node_index must hold one id per node of x ([{n}]), got {tuple(node_index.shape)}")
            w_sub, b_sub = self.weight[node_index], self.bias[node_index]
            xs = x.movedim(nd, -2)
            if batch is None:
                return F.layer_norm(xs, (n, self.channels), w_sub, b_sub, self.eps).movedim(-2, nd)
            raise ValueError("node_index (a sampled subgraph) and batch (a disjoint union) cannot be combined")
        if self.num_nodes is not None and n != self.num_nodes:
            raise ValueError(
                f"NodeLayerNorm was built for {self.num_nodes} nodes (per-node affine parameters), "
                f"got {n} (use num_nodes=None for node-agnostic affine parameters)"
            )
        # fused F.layer_norm on a [..., N, C] view (its strided read is ~5x faster than
        # var_mean over the non-adjacent node and channel axes of the models' [N, B, T, C])
        xv = x.movedim(nd, -2)
        w: Tensor = self.weight
        b: Tensor = self.bias
        if self.num_nodes is None:
            w, b = w.expand(n, -1), b.expand(n, -1)
        if batch is None:
            return F.layer_norm(xv, (n, self.channels), w, b, self.eps).movedim(-2, nd)
        if batch.dim() != 1 or batch.numel() != n or batch.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"batch must be an integer vector with one graph index per node ([{n}]), "
                f"got {batch.dtype} of shape {tuple(batch.shape)}"
            )
        from torch_geometric.utils import scatter  # lazy: see stgnn.nn.__init__

        # per-graph moments over (nodes of the graph, channels): sums over channels, then a
        # scatter over the node axis into [..., G], read back per node (two-pass variance)
        counts = scatter(torch.ones_like(batch, dtype=x.dtype), batch, 0, reduce="sum").clamp_min(1) * self.channels
        mean = scatter(xv.sum(-1), batch, -1, counts.numel(), "sum") / counts
        centred = xv - mean.index_select(-1, batch).unsqueeze(-1)
        var = scatter(centred.square().sum(-1), batch, -1, counts.numel(), "sum") / counts
        inv_std = torch.rsqrt(var + self.eps).index_select(-1, batch).unsqueeze(-1)
        return torch.addcmul(b, centred * inv_std, w).movedim(-2, nd)


class STConvBlock(nn.Module):
    r"""STGCN's spatio-temporal convolutional block (temporal - spatial - temporal "sandwich").

    Yu, Yin & Zhu, IJCAI 2018, https://arxiv.org/abs/1709.04875 (Sec. 3.4, Fig. 2), as
    implemented by hazdzz/STGCN ``STConvBlock``: GLU temporal conv (``in -> hidden``), graph conv
    layer, ReLU, GLU temporal conv (``spatial -> out``), layer norm over ``[N, C]``, dropout.
    The graph conv layer is hazdzz's ``GraphConvLayer``: the input is aligned to
    ``spatial_channels`` (1x1 conv when shrinking, zero-pad when growing), convolved
    (``spatial -> spatial``) and added back: ``g = conv(align(x)) + align(x)``.  *Deviation from
    the paper* (shared with hazdzz): the paper's spatial layer maps ``hidden -> spatial`` directly
    without the align/residual; the reference's form is kept for parity.

    Args:
        in_channels: Input channels.
        hidden_channels: Output of the first temporal conv (STGCN: 64).
        spatial_channels: Graph conv channels (STGCN: 16).
        out_channels: Output of the second temporal conv (STGCN: 64).
        num_nodes: ``N`` for per-node layer-norm parameters (references), ``None`` for per-channel.
        kernel_size: Temporal kernel ``Kt``. Default ``3``.
        K: Chebyshev terms ``Ks``. Default ``3``.
        graph_conv: ``"cheb"`` (default) or ``"first_order"``.
        dropout: Dropout probability. Default ``0.0``.
        bias: Biases. Default ``True``.
        lambda_max: See :class:`~stgnn.nn.ChebGraphConv`. Default ``None`` (computed).
        reference_compat: Register hazdzz's unused 1x1 align convolutions. Default ``False``.
        cached: The graph conv reuses the operator built at the first call (as PyG's
            ``cached=True``; served only while the graph is unchanged, see
            :class:`~stgnn.nn.OperatorCache`). Default ``False``.
        node_dim: Node axis. Default ``-2``.
        time_dim: Time axis. Default ``-3`` (``[B, T, N, C]``).

    Shapes:
        ``x [B, T, N, in] -> [B, T - 2 (Kt - 1), N, out]``.

    Example:
        >>> block = STConvBlock(1, 64, 16, 64, num_nodes=4)
        >>> edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
        >>> block(torch.randn(2, 12, 4, 1), edge_index).shape
        torch.Size([2, 8, 4, 64])
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        spatial_channels: int,
        out_channels: int,
        num_nodes: int | None = None,
        kernel_size: int = 3,
        K: int = 3,
        graph_conv: Literal["cheb", "first_order"] = "cheb",
        dropout: float = 0.0,
        bias: bool = True,
        *,
        lambda_max: float | None = None,
        reference_compat: bool = False,
        cached: bool = False,
        node_dim: int = -2,
        time_dim: int = -3,
    ) -> None:
        super().__init__()
        self.node_dim = node_dim
        self.time_dim = time_dim
        self.temporal1 = GatedTemporalConv(
            in_channels, hidden_channels, kernel_size, bias,
            time_dim=time_dim, reference_compat=reference_compat,
        )  # fmt: skip
        self.align = ChannelAlign(hidden_channels, spatial_channels, always_create_conv=reference_compat)
        self.graph_conv: ChebGraphConv | GraphConv
        if graph_conv == "cheb":
            self.graph_conv = ChebGraphConv(
                spatial_channels, spatial_channels, K, bias, lambda_max=lambda_max, cached=cached, node_dim=node_dim
            )
        elif graph_conv == "first_order":
            self.graph_conv = GraphConv(spatial_channels, spatial_channels, bias, cached=cached, node_dim=node_dim)
        else:
            raise ValueError(f"graph_conv must be 'cheb' or 'first_order', got {graph_conv!r}")
        self.temporal2 = GatedTemporalConv(
            spatial_channels, out_channels, kernel_size, bias,
            time_dim=time_dim, reference_compat=reference_compat,
        )  # fmt: skip
        self.norm = NodeLayerNorm(num_nodes, out_channels, node_dim=node_dim)
        self.dropout = Dropout(dropout)

    def reset_parameters(self) -> None:
        """Re-initialise every sub-layer."""
        for m in (self.temporal1, self.align, self.graph_conv, self.temporal2, self.norm):
            m.reset_parameters()

    def extra_repr(self) -> str:
        return f"num_nodes={self.norm.num_nodes}, node_dim={self.node_dim}, time_dim={self.time_dim}"

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        batch: Tensor | None = None,
        *,
        node_index: Tensor | None = None,
    ) -> Tensor:
        """Apply the block (see the class docstring for shapes).

        Args:
            x: ``[B, T, N, C_in]`` (axes as ``time_dim`` / ``node_dim`` say).
            edge_index: ``[2, E]`` (or a dense ``[N, N]`` adjacency).
            edge_weight: ``[E]`` or ``None``.
            batch: ``[N]`` graph index of each node when the graph is a PyG ``Batch`` (a disjoint
                union): the graph conv (a computed Chebyshev ``lambda_max``) and the layer norm
                then work per graph, so each graph gets the result it gets alone.
            node_index: ``[N]`` ids of the nodes of ``x`` among ``num_nodes`` when ``x`` holds a
                sampled subgraph (the layer norm's per-node parameters); see :class:`NodeLayerNorm`.
        """
        h = self.temporal1(x)
        a = self.align(h)
        h = torch.relu(self.graph_conv(a, edge_index, edge_weight, batch) + a)
        h = self.temporal2(h)
        return self.dropout(self.norm(h, batch, node_index=node_index))


class GraphWaveNetLayer(nn.Module):
    r"""One Graph WaveNet layer: gated TCN, skip projection, diffusion graph conv, residual, BN.

    Wu et al., IJCAI 2019, https://arxiv.org/abs/1906.00121 (Fig. 3), as nnzhan/Graph-WaveNet
    ``gwnet.forward``'s loop body::

        h = tanh(filter(x)) * sigmoid(gate(x))          # dilated causal, kernel 2
        skip = skip_conv(h)                             # 1x1 to skip_channels
        h = dropout(mlp([h, A1 h, A1^2 h, A2 h, A2^2 h, Ap h, Ap^2 h]))   # order 2
        out = batch_norm(h + x[last T' steps])

    where ``A1 h = (D_O^-1 W)^T h`` and ``A2 h = (D_I^-1 W^T)^T h`` are the fixed transition
    operators (the reference's ``nconv(h, asym_adj(adj))`` / ``nconv(h, asym_adj(adj.T))``) and
    ``Ap h = A_adp^T h`` with the adaptive adjacency passed in (dense or sparse).  Without a
    graph conv (``gcn=False`` or no supports) a 1x1 residual conv replaces it, as the reference.

    ``skip_steps`` computes the skip projection for the last ``skip_steps`` steps only: Graph
    WaveNet's output reads the skip sum at the last step alone (its input is exactly one
    receptive field long), so the model passes ``1`` and saves the 1x1 conv elsewhere.

    Batched graphs (a PyG ``Batch``, a disjoint union): the gated TCN, the random-walk supports
    (normalised per node) and the batch norm in eval mode act per node, so each graph gets the
    result it gets alone.  In training mode the batch norm takes its statistics over the whole
    mini-batch, every graph of it, as ``torch.nn.BatchNorm1d`` and PyG's ``BatchNorm`` do; an
    adaptive adjacency is the caller's (block-diagonal for a batch).

    Reference weights (layer ``i``): ``filter_convs[i]`` / ``gate_convs[i]`` -> ``tcn`` (see
    :class:`~stgnn.nn.GatedTCN`); ``skip_convs[i].weight[..., 0, 0]`` -> ``skip_conv.weight``;
    ``gconv[i].mlp.mlp.weight[..., 0, 0]`` -> ``mlp.weight`` (input index ``k * C + c``, same
    concatenation order); ``residual_convs[i]`` -> ``residual_conv``; ``bn[i]`` -> ``bn``.

    Args:
        residual_channels: Residual width ``C_res``. Default ``32``.
        dilation_channels: Gated TCN width ``C_dil``. Default ``32``.
        skip_channels: Skip width. Default ``256``.
        kernel_size: Temporal kernel. Default ``2``.
        dilation: Dilation. Default ``1``.
        supports: Fixed operators built from the graph. Default
            ``("random_walk", "reverse_random_walk")`` (the reference's ``doubletransition``).
        adaptive: Whether an adaptive adjacency is passed to :meth:`forward`. Default ``True``.
        order: Diffusion order. Default ``2``.
        dropout: Dropout after the graph conv. Default ``0.3``.
        gcn: Use the graph conv (else the residual 1x1 conv). Default ``True``.
        bias: Biases. Default ``True``.
        reference_compat: Also register the residual 1x1 conv when the graph conv is used (the
            reference creates it and never uses it). Default ``False``.
        cached: Reuse the fixed supports built at the first call (as PyG's ``cached=True``;
            served only while the graph is unchanged, see :class:`~stgnn.nn.OperatorCache`). Default ``False``.
        node_dim: Node axis. Default ``-2``.
        time_dim: Time axis. Default ``-3`` (``[B, T, N, C]``).

    Shapes:
        ``x [B, T, N, C_res]`` -> ``(out [B, T', N, C_res], skip [B, S, N, skip_channels])``
        with ``T' = T - (kernel_size - 1) dilation`` and ``S = skip_steps or T'``.

    Example:
        >>> from stgnn.nn import AdaptiveAdjacency
        >>> layer = GraphWaveNetLayer(8, 8, 16, dilation=2)
        >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
        >>> out, skip = layer(torch.randn(2, 13, 3, 8), edge_index, adaptive_adj=AdaptiveAdjacency(3)())
        >>> out.shape, skip.shape
        (torch.Size([2, 11, 3, 8]), torch.Size([2, 11, 3, 16]))
    """

    def __init__(
        self,
        residual_channels: int = 32,
        dilation_channels: int = 32,
        skip_channels: int = 256,
        kernel_size: int = 2,
        dilation: int = 1,
        supports: Sequence[OperatorKind] = ("random_walk", "reverse_random_walk"),
        adaptive: bool = True,
        order: int = 2,
        dropout: float = 0.3,
        gcn: bool = True,
        bias: bool = True,
        *,
        reference_compat: bool = False,
        cached: bool = False,
        node_dim: int = -2,
        time_dim: int = -3,
    ) -> None:
        super().__init__()
        self.cached = cached
        self._cache = OperatorCache()
        self.supports = tuple(supports)
        self.adaptive = adaptive
        self.order = order
        self.dropout = dropout
        self.node_dim = node_dim
        self.time_dim = time_dim
        n_supports = len(self.supports) + int(adaptive)
        self.use_gcn = gcn and n_supports > 0
        self.tcn = GatedTCN(residual_channels, dilation_channels, kernel_size, dilation, bias, time_dim=time_dim)
        self.skip_conv = nn.Linear(dilation_channels, skip_channels, bias=bias)
        self.mlp: nn.Linear | None = None
        self.residual_conv: nn.Linear | None = None
        if self.use_gcn:
            self.mlp = nn.Linear((order * n_supports + 1) * dilation_channels, residual_channels, bias)
        if not self.use_gcn or reference_compat:
            self.residual_conv = nn.Linear(dilation_channels, residual_channels, bias=bias)
        self.bn = nn.BatchNorm1d(residual_channels)

    def extra_repr(self) -> str:
        return (
            f"supports={self.supports}, adaptive={self.adaptive}, order={self.order}, "
            f"dropout={self.dropout}, gcn={self.use_gcn}, node_dim={self.node_dim}, time_dim={self.time_dim}"
        )

    def reset_parameters(self) -> None:
        """Re-initialise (``Conv2d`` / ``BatchNorm2d`` defaults, as the reference)."""
        self.tcn.reset_parameters()
        for m in (self.skip_conv, self.mlp, self.residual_conv):
            if m is not None:
                m.reset_parameters()
        self.bn.reset_parameters()

    def skip_connection(self, x: Tensor, skip_steps: int | None = None) -> Tensor:
        """Only the skip output of :meth:`forward` (the gated TCN run on the needed steps only).

        Graph WaveNet's last layer contributes through its skip alone; its graph conv, residual
        and batch norm never reach the model output (in the reference too).
        """
        td = self.time_dim % x.dim()
        span = (self.tcn.kernel_size - 1) * self.tcn.dilation
        t_out = x.size(td) - span
        s = skip_steps or t_out
        if t_out < 1 or s > t_out:
            return self.skip_conv(self.tcn(x))  # let the TCN raise its error
        return self.skip_conv(self.tcn(x.narrow(td, t_out - s, s + span)))

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | None = None,
        edge_weight: Tensor | None = None,
        adaptive_adj: Tensor | None = None,
        skip_steps: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Apply the layer (see the class docstring for shapes)."""
        td = self.time_dim % x.dim()
        h = self.tcn(x)
        t_out = h.size(td)
        s = skip_steps or t_out
        skip = self.skip_conv(h.narrow(td, t_out - s, s))
        if self.use_gcn:
            assert self.mlp is not None
            nd = self.node_dim % x.dim()
            hn = h.movedim(nd, 0)
            ops: list[Operator | Tensor] = []
            if self.supports:
                if edge_index is None:
                    raise ValueError("edge_index is required for the fixed supports")
                cache = self._cache if self.cached else None
                ops = [
                    get_operator(k, edge_index, edge_weight, hn.size(0), dtype=h.dtype, cache=cache)
                    for k in self.supports
                ]
            if self.adaptive:
                if adaptive_adj is None:
                    raise ValueError("adaptive=True needs adaptive_adj")
                ops.append(transpose_operator(adaptive_adj))
            terms = diffusion_series(hn, ops, self.order, "power")
            h = self.mlp(torch.cat(terms, dim=-1)).movedim(0, nd)
            h = dropout(h, self.dropout, self.training)
        else:
            assert self.residual_conv is not None
            h = self.residual_conv(h)
        out = h + x.narrow(td, x.size(td) - t_out, t_out)
        c = out.size(-1)
        out = self.bn(out.reshape(-1, c)).view(out.shape)
        return out, skip
