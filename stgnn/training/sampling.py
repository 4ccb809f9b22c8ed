"""Sampled-subgraph training steps (``train.sampling = "partition"``).

Each training batch of windows is split into one step per graph part: the windows restricted to
the part's core and halo nodes (:func:`stgnn.data.partition.partition_subgraphs`), run on the
subgraph's own edges, with the loss on the core nodes only.  Parts are visited in a shuffled order
drawn from the epoch's generator, so a resumed run replays an epoch exactly.  An epoch therefore
still sees every (window, node) target once, in ``parts`` times as many optimizer steps, each on
a graph ``parts`` times smaller (plus its halo).  Evaluation always runs on the full graph.

A model with per-node parameters (Graph WaveNet's node embeddings, STGCN's per-node layer norm)
indexes them with the subgraph's node ids (``node_index``, see
:meth:`stgnn.models.Forecaster.node_kwargs`); a model whose parameters depend on the node count
and that takes no ``node_index`` is refused by :func:`check_sampling`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from stgnn.data.batch import Batch
from stgnn.data.partition import Subgraph, partition_subgraphs
from stgnn.models import Forecaster, ModelSpec, build_model
from stgnn.models.base import takes_node_index

__all__ = ["PartitionSampler", "check_sampling"]


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
        parts: Number of parts.
        halo_hops: Halo around each part, in hops.
        device: Where the subgraphs' edges are kept (once, not copied per step).
    """

    def __init__(
        self,
        edge_index: Tensor,
        edge_weight: Tensor | None,
        num_nodes: int,
        parts: int,
        halo_hops: int,
        device: torch.device,
    ) -> None:
        cpu_weight = None if edge_weight is None else edge_weight.cpu()
        self.subgraphs: list[Subgraph] = partition_subgraphs(edge_index.cpu(), cpu_weight, num_nodes, parts,
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
