"""Graph WaveNet (Wu, Pan, Long, Jiang & Zhang, IJCAI 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from stgnn.models.base import Forecaster, ModelSpec
from stgnn.nn.adaptive import AdaptiveAdjacency
from stgnn.nn.blocks import GraphWaveNetLayer
from stgnn.nn.graph_ops import OperatorKind

__all__ = ["GraphWaveNet"]


class GraphWaveNet(Forecaster):
    r"""Graph WaveNet.

    Wu et al., "Graph WaveNet for Deep Spatial-Temporal Graph Modeling", IJCAI 2019,
    https://arxiv.org/abs/1906.00121, following nnzhan/Graph-WaveNet ``gwnet`` with
    ``gcn_bool=True, addaptadj=True, aptinit=None, adjtype="doubletransition"``: a 1x1 start
    conv, ``blocks x layers_per_block`` :class:`~stgnn.nn.GraphWaveNetLayer` (kernel 2,
    dilations 1, 2, 1, 2, ...; diffusion order 2 over the forward / backward transition
    operators and the adaptive adjacency ``softmax(ReLU(E1 E2))`` with 10-dim embeddings),
    skip connections summed, then ReLU, 1x1 conv to ``end_channels``, ReLU, 1x1 conv to all
    ``H x F_out`` outputs at once (index ``h * F_out + f``; the reference's ``out_dim = 12``).

    The input is left-padded with zeros to the receptive field (13 steps), as the reference; a
    longer input is cropped to its last 13 steps, the only ones the last output position sees
    (the reference's training code handles only inputs up to the receptive field).

    Parameter count at 207 nodes, ``F_in = 2``, 12 outputs: 309,400 with
    ``reference_compat=True``.  The reference creates a 1x1 ``residual_convs[i]`` in every layer
    and never uses it when the graph conv is on (8 x 1,056 = 8,448 parameters that do not affect
    the output); ``reference_compat`` registers them so its checkpoints load key-for-key, the
    default omits them (300,952).

    The last layer's graph conv, residual and batch norm (7,264 of the parameters at the default
    sizes) never reach the output -- the reference computes and discards them -- so they are
    skipped here and get no gradient.

    Dropout masks come from :func:`stgnn.nn.dropout.dropout` (the same Bernoulli masks and
    scaling as ``F.dropout``, drawn 3-5x faster on CPU from another random stream).

    Not node-permutation equivariant: the adaptive adjacency's node embeddings are per node and
    tie the model to the node count and order of the training graph.

    Args:
        spec: Dataset-derived sizes.
        residual_channels: Default ``32``.
        dilation_channels: Default ``32``.
        skip_channels: Default ``256``.
        end_channels: Default ``512``.
        kernel_size: Temporal kernel. Default ``2``.
        blocks: Default ``4``.
        layers_per_block: Default ``2`` (dilations ``1, 2, ..., 2**(layers-1)`` per block).
        dropout: After each graph conv. Default ``0.3``.
        supports: Fixed operators. Default ``("random_walk", "reverse_random_walk")``.
        adaptive: Learn the adaptive adjacency. Default ``True``.
        embedding_dim: Adaptive embedding size. Default ``10``.
        adaptive_top_k: Sparse top-k adaptive adjacency for large graphs (*deviation*, see
            :class:`~stgnn.nn.AdaptiveAdjacency`). Default ``None`` (dense, as the paper).
        order: Diffusion order. Default ``2``.
        gcn: Use graph convolutions. Default ``True``.
        reference_compat: Register the reference's unused residual convs. Default ``False``.
        cached: Reuse the graph operators built at the first call while the graph passed in is
            unchanged (compared with a private copy, see :class:`~stgnn.nn.OperatorCache`).
            Default ``True``.

    Shapes:
        ``x [B, T, N, F_in]``, ``edge_index [2, E]``, ``edge_weight [E]`` ->
        ``[B, H, N, F_out]``.

    Example:
        >>> spec = ModelSpec(num_nodes=3, in_channels=2, out_channels=1, horizon=12)
        >>> model = GraphWaveNet(spec, residual_channels=8, dilation_channels=8,
        ...                      skip_channels=16, end_channels=16)
        >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
        >>> model(torch.randn(2, 12, 3, 2), edge_index).shape
        torch.Size([2, 12, 3, 1])
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        residual_channels: int = 32,
        dilation_channels: int = 32,
        skip_channels: int = 256,
        end_channels: int = 512,
        kernel_size: int = 2,
        blocks: int = 4,
        layers_per_block: int = 2,
        dropout: float = 0.3,
        supports: Sequence[OperatorKind] = ("random_walk", "reverse_random_walk"),
        adaptive: bool = True,
        embedding_dim: int = 10,
        adaptive_top_k: int | None = None,
        order: int = 2,
        gcn: bool = True,
        reference_compat: bool = False,
        cached: bool = True,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.start_conv = nn.Linear(spec.in_channels, residual_channels)
        self.adaptive: AdaptiveAdjacency | None = (
            AdaptiveAdjacency(spec.num_nodes, embedding_dim, top_k=adaptive_top_k) if adaptive and gcn else None
        )
        layers = []
        receptive_field = 1
        for _ in range(blocks):
            dilation = 1
            for _ in range(layers_per_block):
                layers.append(
                    GraphWaveNetLayer(
                        residual_channels,
                        dilation_channels,
                        skip_channels,
                        kernel_size,
                        dilation,
                        supports,
                        self.adaptive is not None,
                        order,
                        dropout,
                        gcn,
                        reference_compat=reference_compat,
                        cached=cached,
                        node_dim=0,
                        time_dim=-2,
                    )  # fmt: skip
                )
                receptive_field += (kernel_size - 1) * dilation
                dilation *= 2
        self.layers = nn.ModuleList(layers)
        self.receptive_field = receptive_field
        self.end_conv1 = nn.Linear(skip_channels, end_channels)
        self.end_conv2 = nn.Linear(end_channels, spec.horizon * spec.out_channels)

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, *, node_index: Tensor | None = None
    ) -> Tensor:
        """Forecast ``[B, H, N, F_out]`` from ``x [B, T, N, F_in]``.

        Args:
            x: Scaled inputs ``[B, T, N, F_in]``.
            edge_index: ``[2, E]``, indices into the ``N`` nodes of ``x``.
            edge_weight: ``[E]`` or ``None``.
            node_index: ``[N]`` ids (among the ``spec.num_nodes`` the model was built for) of the
                nodes of ``x`` when ``x`` holds a sampled subgraph: the adaptive adjacency is built
                from those nodes' embeddings.  ``None``: ``x`` holds every node in order.
        """
        if x.dim() != 4 or x.size(-1) != self.spec.in_channels:
            raise ValueError(f"expected x [B, T, N, {self.spec.in_channels}], got {tuple(x.shape)}")
        rf = self.receptive_field
        h = rearrange(x[:, -rf:], "b t n f -> n b t f")
        if h.size(2) < rf:
            h = F.pad(h, (0, 0, rf - h.size(2), 0))
        h = self.start_conv(h.contiguous())  # [N, B, rf, C_res]
        adp = self.adaptive(node_index) if self.adaptive is not None else None
        skip: Tensor | int = 0
        last = len(self.layers) - 1
        for i, layer in enumerate(cast(list[GraphWaveNetLayer], list(self.layers))):
            if i == last:  # its residual branch is never read (in the reference either)
                s = layer.skip_connection(h, skip_steps=1)
            else:
                h, s = layer(h, edge_index, edge_weight, adaptive_adj=adp, skip_steps=1)
            skip = s + skip
        assert isinstance(skip, Tensor)
        out = self.end_conv2(torch.relu(self.end_conv1(torch.relu(skip))))  # [N, B, 1, H*F]
        return rearrange(out, "n b 1 (h f) -> b h n f", f=self.spec.out_channels)
