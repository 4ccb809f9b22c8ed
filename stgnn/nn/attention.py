"""Attention layers: self-attention along one axis, and attention restricted to graph neighbourhoods.

* :class:`AxisSelfAttention` -- multi-head self-attention along one axis of a channel-last tensor
  (time of ``[B, T, N, C]`` for temporal attention per sensor, or the node axis for full spatial
  attention), built on ``torch.nn.MultiheadAttention``.
* :class:`GraphAttention` -- multi-head scaled dot-product attention in which node ``i`` attends
  only to its in-neighbours (edge ``j -> i``) and itself: a masked attention computed sparsely
  over the edge list (cost ``O(E)``, not ``O(N^2)``), with PyG's segment softmax
  (:func:`torch_geometric.utils.softmax`) and :func:`torch_geometric.utils.scatter`.  PyG's own
  ``GATConv`` / ``TransformerConv`` accept only ``[N, C]`` node features (no batch or time axes),
  so they would need the graph replicated per sample and step; this layer keeps the graph static
  and vectorises over the leading axes.  Its score is ``TransformerConv``'s (Shi et al., 2021):
  ``softmax_j(q_i . k_j / sqrt(d))``.
* :class:`TransformerLayer` -- the pre-norm transformer layer ``h = x + mix(LN(x))``,
  ``out = h + FFN(LN(h))`` whose token mixer is one of these attentions or a diffusion
  convolution (:class:`~stgnn.nn.DiffusionConv`, the "mixing step on the graph").

Attention maps (for explanations) come back averaged over every leading axis and the heads:
``[S, S]`` for :class:`AxisSelfAttention` (row = query position, column = key position) and
``(edge_index, weight [E])`` for :class:`GraphAttention` (the weight of edge ``j -> i`` is how
much ``i`` attends to ``j``; self-loops included).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from stgnn.nn.diffusion import DiffusionConv
from stgnn.nn.dropout import Dropout
from stgnn.nn.graph_ops import graph_to_coo

__all__ = ["AxisSelfAttention", "GraphAttention", "TransformerLayer", "attention_edges", "edge_attention_map"]


def attention_edges(edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int) -> Tensor:
    """The neighbourhoods :class:`GraphAttention` attends over: every edge of the graph (any input
    accepted by :func:`~stgnn.nn.graph_ops.graph_to_coo`) as ``[2, E']`` (row 0 = source), made
    unique, without its own self-loops, plus one self-loop per node.  Edge weights only decide
    which pairs are edges (a dense adjacency's zeros are not); their values are not used.

    Example:
        >>> attention_edges(torch.tensor([[0, 0, 1], [1, 1, 1]]), None, 2).tolist()
        [[0, 0, 1], [0, 1, 1]]
    """
    from torch_geometric.utils import add_self_loops, coalesce, remove_self_loops  # lazy: see stgnn.nn.__init__

    src, dst, _, _ = graph_to_coo(edge_index, edge_weight, num_nodes)  # checks the node count
    ei = torch.stack([src, dst])
    ei, _ = remove_self_loops(ei)
    ei, _ = add_self_loops(ei, num_nodes=num_nodes)
    return coalesce(ei, num_nodes=num_nodes)


class AxisSelfAttention(nn.Module):
    """Multi-head self-attention along one axis (``torch.nn.MultiheadAttention``).

    Every other axis is a batch axis: with ``seq_dim=-3`` on ``[B, T, N, C]`` each sensor's
    ``T`` steps attend to each other; with ``seq_dim=-2`` every node attends to every node at each
    step (``O(N^2)``).

    Args:
        channels: Channels ``C`` (divisible by ``heads``).
        heads: Attention heads. Default ``4``.
        dropout: Dropout on the attention weights. Default ``0.0``.
        bias: Projection biases. Default ``True``.
        seq_dim: The attended axis (not the last). Default ``-3``.

    Shapes:
        ``x [..., S, ..., C] -> [..., S, ..., C]``; the map is ``[S, S]``.

    Example:
        >>> att = AxisSelfAttention(8, heads=2)
        >>> out, amap = att(torch.randn(2, 12, 5, 8), return_attention=True)
        >>> out.shape, amap.shape
        (torch.Size([2, 12, 5, 8]), torch.Size([12, 12]))
    """

    def __init__(
        self, channels: int, heads: int = 4, dropout: float = 0.0, bias: bool = True, *, seq_dim: int = -3
    ) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.channels = channels
        self.heads = heads
        self.seq_dim = seq_dim
        self.attn = nn.MultiheadAttention(channels, heads, dropout=dropout, bias=bias, batch_first=True)

    def reset_parameters(self) -> None:
        """``torch.nn.MultiheadAttention``'s initialisation."""
        self.attn._reset_parameters()

    def forward(self, x: Tensor, *, return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend along ``seq_dim``; returns ``(out, map or None)``."""
        sd = self.seq_dim % x.dim()
        if sd == x.dim() - 1:
            raise ValueError("seq_dim must not be the channel (last) axis")
        xs = x.movedim(sd, -2)
        lead = xs.shape[:-2]
        flat = xs.reshape(-1, xs.size(-2), xs.size(-1))  # [M, S, C]
        out, weights = self.attn(
            flat, flat, flat, need_weights=return_attention, average_attn_weights=True
        )  # weights: [M, S, S] averaged over heads
        out = out.reshape(*lead, xs.size(-2), xs.size(-1)).movedim(-2, sd)
        amap = weights.mean(0).detach() if return_attention and weights is not None else None
        return out, amap


class GraphAttention(nn.Module):
    r"""Multi-head dot-product attention over graph neighbourhoods (sparse, ``O(E)``).

    .. math::
        \alpha_{ij} = \mathrm{softmax}_{j \in \mathcal N(i) \cup \{i\}}
        \Big(\frac{(W_q x_i)^\top (W_k x_j)}{\sqrt{d}}\Big),\qquad
        x_i' = W_o \Big\Vert_{h} \sum_j \alpha^h_{ij} W_v x_j,

    per head ``h`` (``d = out_channels / heads``), where ``N(i)`` are the sources of the edges
    into ``i``.  This is the masked attention of ``TransformerConv`` (Shi et al., "Masked Label
    Prediction", IJCAI 2021, https://arxiv.org/abs/2009.03509) without its root weight and edge
    features, computed on ``[..., N, C]`` with the graph passed once (see the module docstring for
    why not PyG's layer).  The graph's edge weights only select the neighbourhoods.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (divisible by ``heads``).
        heads: Attention heads. Default ``4``.
        dropout: Dropout on the attention weights. Default ``0.0``.
        bias: Projection biases. Default ``True``.
        node_dim: Node axis of the input. Default ``-2``.

    Shapes:
        ``x [..., N, in_channels]``, ``edge_index [2, E]`` (or an ``[N, N]`` adjacency) ->
        ``[..., N, out_channels]``; with ``return_attention=True`` also the attended edges
        ``[2, E']`` and their weights ``[E']`` averaged over leading axes and heads.

    Example:
        >>> att = GraphAttention(3, 8, heads=2)
        >>> ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> att(torch.randn(4, 12, 3, 3), ei).shape
        torch.Size([4, 12, 3, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 4,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        node_dim: int = -2,
    ) -> None:
        super().__init__()
        if out_channels % heads:
            raise ValueError(f"out_channels ({out_channels}) must be divisible by heads ({heads})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.node_dim = node_dim
        self.qkv = nn.Linear(in_channels, 3 * out_channels, bias=bias)
        self.out = nn.Linear(out_channels, out_channels, bias=bias)
        self.dropout = Dropout(dropout)

    def reset_parameters(self) -> None:
        """``torch.nn.Linear`` defaults."""
        self.qkv.reset_parameters()
        self.out.reset_parameters()

    def attend(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(out [..., N, out_channels], edges [2, E'], weights [..., E', heads])``."""
        from torch_geometric.utils import scatter, softmax  # lazy: see stgnn.nn.__init__

        xn = x.movedim(self.node_dim, -2)
        n = xn.size(-2)
        ei = attention_edges(edge_index, edge_weight, n)
        src, dst = ei[0], ei[1]
        d = self.out_channels // self.heads
        q, k, v = self.qkv(xn).unflatten(-1, (3, self.heads, d)).unbind(-3)  # each [..., N, heads, d]
        score = (q.index_select(-3, dst) * k.index_select(-3, src)).sum(-1) / math.sqrt(d)  # [..., E', heads]
        alpha = softmax(score, dst, num_nodes=n, dim=-2)
        msg = self.dropout(alpha).unsqueeze(-1) * v.index_select(-3, src)  # [..., E', heads, d]
        agg = scatter(msg, dst, dim=-3, dim_size=n, reduce="sum").flatten(-2)  # [..., N, out]
        return self.out(agg).movedim(-2, self.node_dim), ei, alpha

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None
    ) -> Tensor:
        """Attend over neighbourhoods (see the class docstring for shapes)."""
        return self.attend(x, edge_index, edge_weight)[0]

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, heads={self.heads}"


MixerKind = Literal["temporal", "spatial", "graph", "diffusion"]


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: ``h = x + mix(LN(x))``, ``out = h + FFN(LN(h))``.

    ``mixer`` picks how tokens exchange information: ``"temporal"`` (each node's steps attend to
    each other, :class:`AxisSelfAttention` along ``-3``), ``"spatial"`` (all nodes at each step,
    along ``-2``; ``O(N^2)``), ``"graph"`` (graph neighbourhoods at each step,
    :class:`GraphAttention`; ``O(E)``) or ``"diffusion"`` (a bidirectional diffusion convolution
    of ``K`` hops, :class:`~stgnn.nn.DiffusionConv`; no attention map).  The FFN is
    ``Linear(C, ffn) - GELU - Linear(ffn, C)``; dropout follows the mixer and the FFN (and applies
    to attention weights).

    Args:
        channels: Channels ``C``.
        heads: Attention heads. Default ``4``.
        ffn_channels: Hidden width of the FFN. Default ``4 * channels``.
        dropout: Dropout. Default ``0.0``.
        mixer: ``"temporal"`` (default), ``"spatial"``, ``"graph"`` or ``"diffusion"``.
        K: Diffusion hops (``mixer="diffusion"``). Default ``2``.
        cached: Reuse the diffusion operators while the graph is unchanged. Default ``False``.

    Shapes:
        ``x [B, T, N, C]`` (``edge_index`` needed for ``"graph"`` / ``"diffusion"``) ->
        ``[B, T, N, C]``; the map is ``[T, T]`` (temporal) or ``[N, N]`` (spatial, graph: row =
        query node, column = attended node; zero off the graph), ``None`` for diffusion.

    Example:
        >>> layer = TransformerLayer(8, heads=2, mixer="graph")
        >>> ei = torch.tensor([[0, 1], [1, 2]])
        >>> out, amap = layer(torch.randn(2, 12, 3, 8), ei, return_attention=True)
        >>> out.shape, amap.shape
        (torch.Size([2, 12, 3, 8]), torch.Size([3, 3]))
    """

    def __init__(
        self,
        channels: int,
        heads: int = 4,
        ffn_channels: int | None = None,
        dropout: float = 0.0,
        *,
        mixer: MixerKind = "temporal",
        K: int = 2,
        cached: bool = False,
    ) -> None:
        super().__init__()
        if mixer not in ("temporal", "spatial", "graph", "diffusion"):
            raise ValueError(f"mixer must be 'temporal', 'spatial', 'graph' or 'diffusion', got {mixer!r}")
        self.mixer = mixer
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.mix: AxisSelfAttention | GraphAttention | DiffusionConv
        if mixer == "graph":
            self.mix = GraphAttention(channels, channels, heads, dropout)
        elif mixer == "diffusion":
            self.mix = DiffusionConv(channels, channels, K, cached=cached)
        else:
            self.mix = AxisSelfAttention(channels, heads, dropout, seq_dim=-3 if mixer == "temporal" else -2)
        ffn = ffn_channels or 4 * channels
        self.ffn = nn.Sequential(nn.Linear(channels, ffn), nn.GELU(), nn.Linear(ffn, channels))
        self.dropout = Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | None = None,
        edge_weight: Tensor | None = None,
        *,
        return_attention: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Apply the layer; returns ``(out, map or None)`` (see the class docstring)."""
        h = self.norm1(x)
        amap: Tensor | None = None
        if isinstance(self.mix, AxisSelfAttention):
            a, amap = self.mix(h, return_attention=return_attention)
        else:
            if edge_index is None:
                raise ValueError(f"a TransformerLayer with mixer {self.mixer!r} needs edge_index")
            if isinstance(self.mix, DiffusionConv):
                a = self.mix(h, edge_index, edge_weight)
            else:
                a, ei, alpha = self.mix.attend(h, edge_index, edge_weight)
                if return_attention:
                    amap = edge_attention_map(ei, alpha, x.size(-2))
        h = x + self.dropout(a)
        return h + self.dropout(self.ffn(self.norm2(h))), amap


def edge_attention_map(edges: Tensor, alpha: Tensor, num_nodes: int) -> Tensor:
    """Dense ``[N, N]`` map of :meth:`GraphAttention.attend`'s weights ``[..., E, heads]`` averaged
    over the leading axes and heads: row = query (target) node, column = attended (source) node."""
    weights = alpha.detach().reshape(-1, *alpha.shape[-2:]).mean((0, 2))  # [E]
    amap = torch.zeros(num_nodes, num_nodes, dtype=weights.dtype, device=weights.device)
    amap[edges[1], edges[0]] = weights
    return amap
