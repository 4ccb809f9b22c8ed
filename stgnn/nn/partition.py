"""Deterministic graph partition into small neighbourhoods (the spatial patches of ``stpatch``).

METIS would give better-balanced cuts, but in PyG it needs the compiled ``torch-sparse`` or
``pyg-lib`` extensions, which this package does not require.  The partition here uses only
scipy: nodes are ordered by reverse Cuthill-McKee (:func:`scipy.sparse.csgraph.reverse_cuthill_mckee`,
a breadth-first level order started from a peripheral node, ties broken by degree and index)
within each connected component of the undirected graph, and cut into consecutive blocks of
``cluster_size`` nodes.  Consecutive nodes of that order lie in the same or adjacent BFS levels,
so a block is a band of a neighbourhood; blocks never span two components.  Cost ``O(N + E)``
(plus a sort); the result depends only on the graph (and its node numbering).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components, reverse_cuthill_mckee
from torch import Tensor

from stgnn.nn.graph_ops import graph_to_coo

__all__ = ["cluster_graph", "neighbourhood_partition"]


def neighbourhood_partition(edge_index: Tensor, num_nodes: int, cluster_size: int,
                            edge_weight: Tensor | None = None) -> Tensor:
    """Cluster id of every node (``[N]`` int64, ids ``0 .. P - 1`` in order of first appearance
    along the component-wise reverse Cuthill-McKee order; see the module docstring).

    Args:
        edge_index: ``[2, E]`` (or any graph input of :func:`~stgnn.nn.graph_ops.graph_to_coo`);
            directions are ignored.
        num_nodes: ``N``.
        cluster_size: Nodes per cluster (the last cluster of a component may be smaller).
        edge_weight: Only decides which entries of a matrix input are edges.

    Example:
        >>> path = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
        >>> neighbourhood_partition(path, 6, 2).tolist()
        [2, 2, 1, 1, 0, 0]
    """
    if cluster_size < 1:
        raise ValueError(f"cluster_size must be >= 1, got {cluster_size}")
    src, dst, _, n = graph_to_coo(edge_index, edge_weight, num_nodes)  # checks the node count
    s, d = src.cpu().numpy(), dst.cpu().numpy()
    adj = sp.coo_matrix((np.ones(s.size, dtype=np.int8), (s, d)), shape=(n, n)).tocsr()
    sym = (adj + adj.T).tocsr()
    sym.data[:] = 1
    _, component = connected_components(sym, directed=False)
    order = np.asarray(reverse_cuthill_mckee(sym, symmetric_mode=True))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    # the RCM order restricted to each component (a stable sort by component of that order)
    by_component = order[np.argsort(component[order], kind="stable")]
    comp_sorted = component[by_component]
    starts = np.r_[0, np.flatnonzero(np.diff(comp_sorted)) + 1]
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))  # position within its component
    block = np.cumsum(np.r_[1, (np.diff(comp_sorted) != 0) | (rank[1:] % cluster_size == 0)]) - 1
    cluster = np.empty(n, dtype=np.int64)
    cluster[by_component] = block
    return torch.from_numpy(cluster).to(edge_index.device if edge_index.dim() == 2 else src.device)


def cluster_graph(edge_index: Tensor, cluster: Tensor, num_clusters: int,
                  edge_weight: Tensor | None = None, max_neighbours: int | None = None) -> Tensor:
    """Edges ``[2, E_c]`` between clusters joined by at least one edge (unique, no self-loops,
    sorted by target then source).

    Args:
        edge_index: The node graph (any input of :func:`~stgnn.nn.graph_ops.graph_to_coo`).
        cluster: ``[N]`` cluster of every node.
        num_clusters: ``P``.
        edge_weight: Only decides which entries of a matrix input are edges.
        max_neighbours: Keep, for every target cluster, only the ``k`` source clusters joined to
            it by the most node edges (ties: lower cluster id), so ``E_c <= k P``.  ``None``
            (default) keeps all.  On road networks a cluster has few neighbours and the cap rarely
            binds; on graphs without locality (random edges) it bounds the cost.

    Example:
        >>> cluster_graph(torch.tensor([[0, 1, 2], [1, 2, 3]]), torch.tensor([0, 0, 1, 1]), 2).tolist()
        [[0], [1]]
    """
    src, dst, _, _ = graph_to_coo(edge_index, edge_weight, cluster.numel())
    cs, cd = cluster[src], cluster[dst]
    keep = cs != cd
    key, count = torch.unique(cd[keep] * num_clusters + cs[keep], return_counts=True)  # sorted by (target, source)
    if max_neighbours is not None and max_neighbours < 1:
        raise ValueError(f"max_neighbours must be >= 1, got {max_neighbours}")
    if max_neighbours is not None and key.numel():
        target = key // num_clusters
        # order by target, then most edges first, then source id (key is already sorted by target, source)
        order = torch.argsort(target * (int(count.max()) + 1) + (int(count.max()) - count), stable=True)
        key, target = key[order], target[order]
        start = torch.searchsorted(target, target, right=False)
        rank = torch.arange(key.numel(), device=key.device) - start
        key = torch.sort(key[rank < max_neighbours]).values
    return torch.stack([key % num_clusters, key // num_clusters])
