"""Spacetime-patch attention forecaster: attention over (time segment x graph neighbourhood) patches."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from stgnn.models.base import Forecaster, ModelSpec
from stgnn.nn.attention import TransformerLayer
from stgnn.nn.partition import cluster_graph, neighbourhood_partition

__all__ = ["STPatch"]


class STPatch(Forecaster):
    r"""Spacetime-patch attention model.

    The ``[T, N]`` input is cut into patches of ``patch_len`` steps x one graph neighbourhood of
    about ``cluster_size`` sensors (:func:`~stgnn.nn.partition.neighbourhood_partition`: blocks
    of a reverse Cuthill-McKee order per connected component, computed from the graph passed to
    ``forward`` and kept while that graph is unchanged; METIS is not used because PyG needs
    compiled extensions for it).  With ``P_t = T / patch_len`` time segments and ``P_s`` clusters::

        e   = Linear(x over each node's segment)                # [B, P_t, N, C] node embeddings
        tok = Linear(mean of e over each cluster) + P_time      # [B, P_t, P_s, C] patch tokens
        layers x:
            tok = TransformerLayer("temporal")(tok)             # a patch attends to its own cluster's segments
            tok = TransformerLayer("graph")(tok, cluster graph) # ... and to neighbouring clusters' patches
        y   = MLP([e, tok of the node's cluster], flattened over P_t)   # [B, H, N, F_out] in one pass

    The cluster graph joins two clusters when any edge joins their sensors (at most
    ``max_patch_neighbours`` per cluster: those joined by the most edges,
    :func:`~stgnn.nn.partition.cluster_graph`); spatial attention is over each cluster's
    neighbours and itself (:class:`~stgnn.nn.GraphAttention`).

    Cost (``C`` channels, ``s = cluster_size``, ``L = patch_len``, ``E_c <= E`` cluster edges):
    time ``O(B N T C)`` for embedding and decoding, ``O(B (N / s) (T / L)^2 C)`` for temporal
    attention, ``O(B E_c (T / L) C)`` for spatial attention (``E_c <= k N / s`` with ``k =
    max_patch_neighbours``), plus ``O(N + E)`` once per graph for
    the partition (scipy, CPU); memory ``O(B N T C / L + B E_c T / L)``.  Everything is linear in
    ``N`` (no ``N x N`` term) and quadratic only in the number of time segments.  Measured
    training steps up to 10,000 nodes: ``experiments/results/BENCHMARKS.md`` (section "Model
    zoo scaling").

    No per-node parameters: the model runs on any graph.  It is node-permutation equivariant
    for a given partition (``clusters=`` in :meth:`forward`); the partition computed from the
    graph depends on the node numbering through tie-breaks, so a renumbered graph may be cut into
    other patches.

    Parameter count (207 nodes, 2 input features, 1 output, 12 steps in and out, defaults):
    205,964; independent of ``N``.

    Attention maps: with ``record_attention = True`` every forward stores ``attention_maps``
    ``temporal_i [P_t, P_t]`` (between time segments) and ``spatial_i [P_s, P_s]`` (between
    clusters, row = query cluster), averaged over the batch, the other axis and the heads;
    ``patch_clusters [N]`` holds the cluster of every node of the last forward (to map clusters
    back to sensors).

    Args:
        spec: Dataset-derived sizes (``input_len`` divisible by ``patch_len``).
        patch_len: Steps per patch ``L``. Default ``3``.
        cluster_size: Sensors per spatial patch ``s``. Default ``8``.
        max_patch_neighbours: Neighbour patches a patch attends to, at most (``None``: all).
            Default ``16``.
        channels: Width ``C``. Default ``64``.
        layers: (temporal, spatial) attention layer pairs. Default ``2``.
        heads: Attention heads. Default ``4``.
        ffn_channels: FFN width. Default ``128``.
        dropout: Dropout. Default ``0.1``.
        cached: Keep the partition while the graph passed in is unchanged. Default ``True``.

    Shapes:
        ``x [B, T, N, F_in]``, ``edge_index [2, E]``, ``edge_weight [E]`` -> ``[B, H, N, F_out]``.

    Example:
        >>> spec = ModelSpec(num_nodes=6, in_channels=2, out_channels=1, input_len=12, horizon=3)
        >>> model = STPatch(spec, cluster_size=2, channels=8, heads=2)
        >>> edge_index = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
        >>> model(torch.randn(2, 12, 6, 2), edge_index).shape
        torch.Size([2, 3, 6, 1])
    """

    record_attention: bool

    def __init__(
        self,
        spec: ModelSpec,
        *,
        patch_len: int = 3,
        cluster_size: int = 8,
        max_patch_neighbours: int | None = 16,
        channels: int = 64,
        layers: int = 2,
        heads: int = 4,
        ffn_channels: int = 128,
        dropout: float = 0.1,
        cached: bool = True,
    ) -> None:
        super().__init__()
        if patch_len < 1 or spec.input_len % patch_len:
            raise ValueError(f"patch_len={patch_len} must divide input_len={spec.input_len}")
        if cluster_size < 1:
            raise ValueError(f"cluster_size must be >= 1, got {cluster_size}")
        self.spec = spec
        self.patch_len = patch_len
        self.cluster_size = cluster_size
        if max_patch_neighbours is not None and max_patch_neighbours < 1:
            raise ValueError(f"max_patch_neighbours must be >= 1, got {max_patch_neighbours}")
        self.max_patch_neighbours = max_patch_neighbours
        self.cached = cached
        self.record_attention = False
        self.attention_maps: dict[str, Tensor] = {}
        self.patch_clusters: Tensor | None = None
        self._partition: tuple[Tensor, Tensor, Tensor, int] | None = None  # (graph copy, clusters, edges, N)
        pt = spec.input_len // patch_len
        self.num_segments = pt
        self.embed = nn.Linear(patch_len * spec.in_channels, channels)
        self.token = nn.Linear(channels, channels)
        self.position = nn.Parameter(torch.zeros(pt, 1, channels))
        nn.init.normal_(self.position, std=0.02)
        self.temporal = nn.ModuleList(
            TransformerLayer(channels, heads, ffn_channels, dropout, mixer="temporal") for _ in range(layers)
        )
        self.spatial = nn.ModuleList(
            TransformerLayer(channels, heads, ffn_channels, dropout, mixer="graph") for _ in range(layers)
        )
        self.decoder = nn.Sequential(
            nn.Linear(2 * pt * channels, ffn_channels), nn.ReLU(),
            nn.Linear(ffn_channels, spec.horizon * spec.out_channels),
        )

    def partition(self, edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(clusters [N], cluster edges [2, E_c])`` of the graph (kept while it is unchanged, with
        ``cached=True``; an ``edge_index`` is compared with the kept copy at every call)."""
        kept = self._partition
        plain = isinstance(edge_index, Tensor) and edge_index.dim() == 2 and edge_index.layout == torch.strided \
            and not edge_index.is_floating_point()
        if (self.cached and plain and kept is not None and kept[3] == num_nodes
                and kept[0].shape == edge_index.shape and kept[0].device == edge_index.device
                and torch.equal(kept[0], edge_index)):
            return kept[1], kept[2]
        clusters = neighbourhood_partition(edge_index, num_nodes, self.cluster_size, edge_weight)
        edges = cluster_graph(edge_index, clusters, int(clusters.max()) + 1, edge_weight, self.max_patch_neighbours)
        if self.cached and plain:
            self._partition = (edge_index.detach().clone(), clusters, edges, num_nodes)
        return clusters, edges

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, *, clusters: Tensor | None = None
    ) -> Tensor:
        """Forecast ``[B, H, N, F_out]`` from ``x [B, T, N, F_in]``.

        Args:
            x: Scaled inputs.
            edge_index: ``[2, E]`` (or an adjacency).
            edge_weight: ``[E]`` or ``None``.
            clusters: ``[N]`` cluster id of every node (ids ``0 .. P_s - 1``, each used) to use
                instead of the computed partition.
        """
        if x.dim() != 4 or x.size(-1) != self.spec.in_channels or x.size(1) != self.spec.input_len:
            raise ValueError(f"expected x [B, {self.spec.input_len}, N, {self.spec.in_channels}], "
                             f"got {tuple(x.shape)}")
        n = x.size(2)
        if clusters is None:
            clusters, cedges = self.partition(edge_index, n, edge_weight)
        else:
            if clusters.shape != (n,):
                raise ValueError(f"expected clusters [{n}], got {list(clusters.shape)}")
            cedges = cluster_graph(edge_index, clusters, int(clusters.max()) + 1, edge_weight,
                                   self.max_patch_neighbours)
        clusters = clusters.to(x.device)
        cedges = cedges.to(x.device)
        p_s = int(clusters.max()) + 1
        e = self.embed(rearrange(x, "b (p l) n f -> b p n (l f)", l=self.patch_len))  # [B, P_t, N, C]
        from torch_geometric.utils import scatter  # lazy: see stgnn.nn.__init__

        tok = self.token(scatter(e, clusters, dim=-2, dim_size=p_s, reduce="mean")) + self.position
        maps: dict[str, Tensor] | None = {} if self.record_attention else None
        for i, (temporal, spatial) in enumerate(zip(self.temporal, self.spatial, strict=True)):
            tok, tmap = temporal(tok, return_attention=maps is not None)
            tok, smap = spatial(tok, cedges, return_attention=maps is not None)
            if maps is not None and tmap is not None and smap is not None:
                maps[f"temporal_{i}"], maps[f"spatial_{i}"] = tmap, smap
        self.patch_clusters = clusters.detach()
        if maps is not None:
            self.attention_maps = maps
        z = torch.cat([e, tok.index_select(-2, clusters)], dim=-1)  # [B, P_t, N, 2C]
        out = self.decoder(rearrange(z, "b p n c -> b n (p c)"))
        return rearrange(out, "b n (h f) -> b h n f", f=self.spec.out_channels)
