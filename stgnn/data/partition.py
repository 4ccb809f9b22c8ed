"""Cutting a sensor network into regions: a balanced graph partition and per-region datasets.

A region is what one agency (one federated client, one city district) holds: its sensors, their
readings and the edges among them.  :func:`partition_graph` cuts a graph into ``parts`` regions of
(nearly) equal size with few cut edges, by recursive Kernighan-Lin bisection (networkx's
``kernighan_lin_bisection``, which swaps nodes between two sides of fixed sizes to lower the
weight of the edges between them); :func:`region_dataset` keeps one region of a dataset.

Example:
    >>> import numpy as np
    >>> ring = np.roll(np.eye(6), 1, axis=1) + np.roll(np.eye(6), -1, axis=1)
    >>> g = SensorGraph.from_dense(ring, [str(i) for i in range(6)])
    >>> sorted(len(r) for r in partition_graph(g, 3))
    [2, 2, 2]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import networkx as nx
import torch

from stgnn.data.dataset import TrafficDataset
from stgnn.data.graph import SensorGraph

__all__ = ["partition_graph", "region_dataset"]


def partition_graph(graph: SensorGraph, parts: int, *, seed: int = 0) -> list[list[str]]:
    """Balanced partition of ``graph`` into ``parts`` regions with few cut edges.

    The nodes are split recursively: a set that must become ``k`` regions is bisected into sides
    of ``round(n * (k // 2) / k)`` and the rest nodes, starting from a breadth-first order (so the
    sides start out connected where the graph allows) and refined by Kernighan-Lin on the
    symmetrised edge weights; region sizes differ by at most one node per level of recursion.

    Args:
        graph: The sensor graph.
        parts: Number of regions (2 .. number of nodes).
        seed: Seed of the Kernighan-Lin refinement.

    Returns:
        ``parts`` lists of sensor ids, each in the graph's node order; every node is in exactly one.

    Raises:
        ValueError: ``parts`` is below 2 or above the number of nodes.
    """
    n = graph.num_nodes
    if not 2 <= parts <= n:
        raise ValueError(f"parts: cannot cut a graph of {n} nodes into {parts} regions (need 2 .. {n})")
    undirected = nx.Graph()
    undirected.add_nodes_from(range(n))
    src, dst = graph.edge_index.tolist()
    for s, d, w in zip(src, dst, graph.edge_weight.tolist(), strict=True):
        if s != d:
            previous = undirected.get_edge_data(s, d, {"weight": 0.0})["weight"]
            undirected.add_edge(s, d, weight=previous + abs(w))
    regions = _split(undirected, list(range(n)), parts, seed)
    return [[graph.node_ids[i] for i in sorted(region)] for region in regions]


def _split(graph: nx.Graph, nodes: list[int], parts: int, seed: int) -> list[list[int]]:
    if parts == 1:
        return [nodes]
    left_parts = parts // 2
    size = round(len(nodes) * left_parts / parts)
    sub = graph.subgraph(nodes)
    order: list[int] = []
    for component in sorted(nx.connected_components(sub), key=lambda c: (-len(c), min(c))):
        order += list(nx.bfs_tree(sub, min(component)))
    left, right = nx.community.kernighan_lin_bisection(
        sub, partition=(set(order[:size]), set(order[size:])), weight="weight", seed=seed
    )
    if len(left) != size:  # the sizes are kept, the order of the two sides is not
        left, right = right, left
    return _split(graph, sorted(left), left_parts, seed) + _split(graph, sorted(right), parts - left_parts, seed)


def region_dataset(dataset: TrafficDataset, node_ids: Sequence[str], name: str | None = None) -> TrafficDataset:
    """The part of ``dataset`` on ``node_ids``: their readings, mask and the edges among them.

    Args:
        dataset: The whole network.
        node_ids: Sensor ids of the region, in the order its nodes get.
        name: Name of the new dataset (default ``"<dataset>-region"``).

    Raises:
        ValueError: An id is not a sensor of ``dataset`` or repeats (named).
    """
    graph = dataset.graph.reorder(node_ids)
    position = {sensor: i for i, sensor in enumerate(dataset.node_ids)}
    index = torch.tensor([position[sensor] for sensor in graph.node_ids], dtype=torch.long)
    return dataclasses.replace(
        dataset,
        name=name or f"{dataset.name}-region",
        series=dataset.series[:, index].contiguous(),
        mask=dataset.mask[:, index].contiguous(),
        graph=graph,
    )
