"""Graph partitions with k-hop halos: the subgraphs of sampled (mini-batch) training on large graphs.

A graph too large for a full-graph training step is cut into ``parts`` groups of nodes (the
*core* nodes of each part); each part is extended by its ``halo_hops``-hop neighbourhood (the
*halo*, following edges in both directions) so that its core nodes see their neighbours' readings
in the graph convolutions, and the subgraph induced by core + halo is what one training step runs
on.  The loss counts only the core nodes, so over one pass of all parts every node's targets count
exactly once.

The partition: METIS (what PyG's ``ClusterData`` calls) needs ``torch_sparse`` or ``pyg-lib``
compiled with it, which a plain ``pip install torch_geometric`` does not bring.  Here the nodes
are put in reverse Cuthill-McKee order (:func:`scipy.sparse.csgraph.reverse_cuthill_mckee`, on the
symmetrised graph), a breadth-first order that keeps neighbours close together, and that order is
cut into ``parts`` runs of equal size (sizes differ by at most one).  Parts are therefore
balanced and mostly connected, though with more cut edges than METIS would leave; the halo covers
the cut edges up to ``halo_hops`` hops.  The halo is exact only for the first ``halo_hops`` hops of
message passing: a model whose receptive field is wider (every deep model here) sees a truncated
neighbourhood at the part's border, which is the approximation of sampled training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee
from torch import Tensor
from torch_geometric.utils import k_hop_subgraph, subgraph, to_undirected

__all__ = ["Subgraph", "partition_nodes", "partition_subgraphs"]


@dataclass(frozen=True)
class Subgraph:
    """One part with its halo.

    Attributes:
        nodes: ``[n]`` sorted int64 ids of the part's core and halo nodes in the full graph.
        core: ``[n]`` bool, True for the part's own nodes (the ones whose targets count).
        edge_index: ``[2, e]`` edges among ``nodes``, relabelled to ``0 .. n - 1``.
        edge_weight: ``[e]`` their weights.
    """

    nodes: Tensor
    core: Tensor
    edge_index: Tensor
    edge_weight: Tensor

    @property
    def num_core(self) -> int:
        """Number of core nodes."""
        return int(self.core.sum())


def partition_nodes(edge_index: Tensor, num_nodes: int, parts: int) -> Tensor:
    """Assign every node to one of ``parts`` balanced, locality-preserving parts.

    Args:
        edge_index: ``[2, E]`` edges (direction ignored).
        num_nodes: ``N``.
        parts: Number of parts, ``1 <= parts <= N``.

    Returns:
        ``[N]`` int64 part id of each node.

    Raises:
        ValueError: ``parts`` out of range.

    Example:
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> partition_nodes(ring, 6, 2).bincount().tolist()
        [3, 3]
    """
    if not 1 <= parts <= num_nodes:
        raise ValueError(f"partitions must be between 1 and the number of nodes ({num_nodes}), got {parts}")
    ei = edge_index.cpu().numpy()
    adj = sp.coo_matrix((np.ones(ei.shape[1], dtype=np.int8), (ei[0], ei[1])), shape=(num_nodes, num_nodes)).tocsr()
    order = reverse_cuthill_mckee((adj + adj.T).tocsr(), symmetric_mode=True)
    assignment = np.empty(num_nodes, dtype=np.int64)
    assignment[order] = np.arange(num_nodes) * parts // num_nodes
    return torch.from_numpy(assignment)


def partition_subgraphs(
    edge_index: Tensor,
    edge_weight: Tensor | None,
    num_nodes: int,
    parts: int,
    halo_hops: int,
) -> list[Subgraph]:
    """The ``parts`` subgraphs (core + ``halo_hops``-hop halo) of a graph.

    Args:
        edge_index: ``[2, E]``.
        edge_weight: ``[E]`` or ``None`` (ones).
        num_nodes: ``N``.
        parts: Number of parts (see :func:`partition_nodes`).
        halo_hops: Hops of neighbours added around each part (0: the part alone, Cluster-GCN).

    Returns:
        One :class:`Subgraph` per part; the cores partition ``0 .. N - 1``.

    Example:
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> subs = partition_subgraphs(ring, None, 6, 2, halo_hops=1)
        >>> [(s.num_core, s.nodes.numel()) for s in subs]
        [(3, 5), (3, 5)]
    """
    if halo_hops < 0:
        raise ValueError(f"halo_hops must be >= 0, got {halo_hops}")
    weight = edge_weight if edge_weight is not None else torch.ones(edge_index.size(1))
    assignment = partition_nodes(edge_index, num_nodes, parts)
    both_ways = to_undirected(edge_index, num_nodes=num_nodes)
    out = []
    for p in range(parts):
        core_ids = (assignment == p).nonzero().view(-1)
        if halo_hops > 0:
            nodes = k_hop_subgraph(core_ids, halo_hops, both_ways, num_nodes=num_nodes)[0]
        else:
            nodes = core_ids
        nodes = nodes.sort().values
        sub_index, sub_weight = subgraph(nodes, edge_index, weight, relabel_nodes=True, num_nodes=num_nodes)
        assert sub_weight is not None
        out.append(Subgraph(nodes, assignment[nodes] == p, sub_index, sub_weight))
    return out
