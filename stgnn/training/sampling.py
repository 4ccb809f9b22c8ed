"""Sampled-subgraph training steps (``train.sampling = "partition"``).

A graph too large for a full-graph training step is cut into parts (the *core* nodes of each
part); each part is extended by its ``halo_hops``-hop neighbourhood (the *halo*, following edges
in both directions) so that its core nodes see their neighbours' readings in the graph
convolutions, and the subgraph induced by core + halo is what one training step runs on.

The parts: METIS (what PyG's ``ClusterData`` calls) needs the compiled ``torch-sparse`` or
``pyg-lib``, which a plain ``pip install torch_geometric`` does not bring.  The parts follow the
order of :func:`stgnn.nn.partition.neighbourhood_partition` (also the spatial patches of
``stpatch``): nodes in reverse Cuthill-McKee order within each connected component, components
one after the other; that order is cut into ``partitions`` runs of equal size (sizes differ by at
most one).  Parts are balanced and local, though with more cut edges than METIS would leave
(bands of a breadth-first order); small components (an isolated sensor) join the run they fall
in instead of becoming parts of their own (a one-node part would give a degenerate graph).  The halo
is exact only for the first ``halo_hops`` hops of message passing: a model whose receptive field
is wider (every deep model here) sees a truncated neighbourhood at a part's border, which is the
approximation of sampled training.

Each training batch of windows is split into one step per part: the windows restricted to the
part's core and halo nodes, run on the subgraph's own edges, with the loss on the core nodes
only. Parts are visited in a shuffled order drawn from the epoch's generator, so a resumed run
replays an epoch exactly. An epoch therefore still sees every (window, node) target once, in
``parts`` times as many optimizer steps, each on a graph ``parts`` times smaller (plus its
halo). Evaluation always runs on the full graph.

A model with per-node parameters (Graph WaveNet's node embeddings, STGCN's per-node layer norm)
indexes them with the subgraph's node ids (``node_index``, see
:meth:`stgnn.models.Forecaster.node_kwargs`); a model whose parameters depend on the node count
and that takes no ``node_index`` is refused by :func:`check_sampling`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stgnn.data.batch import Batch
from stgnn.models import Forecaster, ModelSpec, build_model
from stgnn.models.base import takes_node_index
from stgnn.nn.partition import neighbourhood_partition

__all__ = ["PartitionSampler", "Subgraph", "check_sampling", "partition_subgraphs"]


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


def partition_subgraphs(
    edge_index: Tensor,
    edge_weight: Tensor | None,
    num_nodes: int,
    partitions: int,
    halo_hops: int,
) -> list[Subgraph]:
    """The parts of a graph (see the module docstring), each with its ``halo_hops``-hop halo.

    Args:
        edge_index: ``[2, E]``.
        edge_weight: ``[E]`` or ``None`` (ones).
        num_nodes: ``N``.
        partitions: Number of parts, ``1 <= partitions <= N``.
        halo_hops: Hops of neighbours added around each part (0: the part alone, as Cluster-GCN).

    Returns:
        One :class:`Subgraph` per part; the cores partition ``0 .. N - 1``.

    Raises:
        ValueError: ``partitions`` or ``halo_hops`` out of range.

    Example:
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> [(s.num_core, s.nodes.numel()) for s in partition_subgraphs(ring, None, 6, 2, halo_hops=1)]
        [(3, 5), (3, 5)]
    """
    if not 1 <= partitions <= num_nodes:
        raise ValueError(f"train.partitions must be between 1 and the number of nodes ({num_nodes}), got {partitions}")
    if halo_hops < 0:
        raise ValueError(f"train.halo_hops must be >= 0, got {halo_hops}")
    from torch_geometric.utils import k_hop_subgraph, subgraph, to_undirected  # lazy: see stgnn.nn.__init__

    weight = edge_weight if edge_weight is not None else torch.ones(edge_index.size(1))
    position = neighbourhood_partition(edge_index, num_nodes, 1)  # each node's place in the order
    assignment = position * partitions // num_nodes
    both_ways = to_undirected(edge_index, num_nodes=num_nodes)
    out = []
    for p in range(partitions):
        core_ids = (assignment == p).nonzero().view(-1)
        nodes = k_hop_subgraph(core_ids, halo_hops, both_ways, num_nodes=num_nodes)[0] if halo_hops else core_ids
        nodes = nodes.sort().values
        sub_index, sub_weight = subgraph(nodes, edge_index, weight, relabel_nodes=True, num_nodes=num_nodes)
        assert sub_weight is not None
        out.append(Subgraph(nodes, assignment[nodes] == p, sub_index, sub_weight))
    return out


def check_sampling(name: str, model: Forecaster, spec: ModelSpec, params: Mapping[str, Any]) -> None:
    """Refuse a model that cannot train on sampled subgraphs.

    Its parameters are compared with those of the same model built (on the ``meta`` device, no
    memory) for one node more: parameters whose shape changes are per node; such a model must
    take ``node_index`` in ``forward`` to index them.

    Raises:
        ValueError: Per-node parameters and no ``node_index`` (the parameters are named).
    """
    if takes_node_index(type(model)):
        return
    with torch.device("meta"):
        other = build_model(name, dataclasses.replace(spec, num_nodes=spec.num_nodes + 1), **params)
    mine, theirs = dict(model.named_parameters()), dict(other.named_parameters())
    per_node = [k for k, p in mine.items() if k in theirs and theirs[k].shape != p.shape]
    if per_node:
        raise ValueError(
            f"train.sampling = 'partition': {name} has per-node parameters ({', '.join(per_node[:4])}) but its "
            "forward takes no node_index to pick the sampled nodes' ones; train it with sampling = 'full'"
        )


class PartitionSampler:
    """Splits batches of windows into per-part subgraph batches (see the module docstring).

    Args:
        edge_index: ``[2, E]`` full graph.
        edge_weight: ``[E]`` or ``None``.
        num_nodes: ``N``.
        partitions: Number of parts (see :func:`partition_subgraphs`).
        halo_hops: Halo around each part, in hops.
        device: Where the subgraphs' edges are kept (once, not copied per step).
    """

    def __init__(
        self,
        edge_index: Tensor,
        edge_weight: Tensor | None,
        num_nodes: int,
        partitions: int,
        halo_hops: int,
        device: torch.device,
    ) -> None:
        cpu_weight = None if edge_weight is None else edge_weight.cpu()
        self.subgraphs: list[Subgraph] = partition_subgraphs(edge_index.cpu(), cpu_weight, num_nodes, partitions,
                                                             halo_hops)
        self._graphs = [(s.edge_index.to(device), s.edge_weight.to(device)) for s in self.subgraphs]

    def __len__(self) -> int:
        return len(self.subgraphs)

    @property
    def largest(self) -> int:
        """Nodes (core + halo) of the largest subgraph."""
        return max(int(s.nodes.numel()) for s in self.subgraphs)

    def split(self, batch: Batch, generator: torch.Generator) -> Iterator[tuple[Batch, Tensor, Tensor]]:
        """``(sub-batch, edge_index, edge_weight)`` for every part, in an order drawn from ``generator``."""
        for p in torch.randperm(len(self.subgraphs), generator=generator).tolist():
            sub = self.subgraphs[p]
            yield (batch.select_nodes(sub.nodes, sub.core), *self._graphs[p])
