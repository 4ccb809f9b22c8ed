"""Graph partitions with k-hop halos (sampled-subgraph training)."""

from __future__ import annotations

import pytest
import torch

from stgnn.data.partition import partition_nodes, partition_subgraphs


def _random_graph(n: int = 60, e: int = 150, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei = ei[:, ei[0] != ei[1]].unique(dim=1)
    return ei, torch.rand(ei.size(1), generator=g)


def _hops(ei: torch.Tensor, start: set[int], hops: int) -> set[int]:
    """Brute-force neighbourhood, edges taken both ways."""
    seen = set(start)
    frontier = set(start)
    pairs = ei.t().tolist()
    for _ in range(hops):
        frontier = {b for a, b in pairs if a in frontier} | {a for a, b in pairs if b in frontier}
        frontier -= seen
        seen |= frontier
    return seen


@pytest.mark.parametrize("parts", [1, 3, 7])
def test_parts_are_balanced_and_cover_every_node_once(parts):
    ei, _ = _random_graph()
    assignment = partition_nodes(ei, 60, parts)
    sizes = assignment.bincount(minlength=parts)
    assert sizes.sum() == 60 and sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize("hops", [0, 1, 2])
def test_subgraphs_hold_each_core_with_its_exact_halo_and_induced_edges(hops):
    ei, w = _random_graph()
    subs = partition_subgraphs(ei, w, 60, 4, hops)
    cores = torch.cat([s.nodes[s.core] for s in subs]).sort().values
    assert torch.equal(cores, torch.arange(60))  # the cores partition the nodes
    full = {(a, b): wt for (a, b), wt in zip(ei.t().tolist(), w.tolist(), strict=True)}
    for s in subs:
        core = set(s.nodes[s.core].tolist())
        assert set(s.nodes.tolist()) == _hops(ei, core, hops)
        kept = set(s.nodes.tolist())
        back = {(int(s.nodes[a]), int(s.nodes[b])): wt
                for (a, b), wt in zip(s.edge_index.t().tolist(), s.edge_weight.tolist(), strict=True)}
        assert back == {k: v for k, v in full.items() if k[0] in kept and k[1] in kept}


def test_a_contiguous_road_is_cut_into_contiguous_stretches():
    n = 40
    path = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    assignment = partition_nodes(path, n, 4)
    changes = int((assignment[1:] != assignment[:-1]).sum())
    assert changes == 3  # four stretches of ten, not a scatter


def test_bad_part_counts_are_refused():
    ei, _ = _random_graph()
    with pytest.raises(ValueError, match="partitions must be between 1 and the number of nodes \\(60\\), got 61"):
        partition_nodes(ei, 60, 61)
    with pytest.raises(ValueError, match="halo_hops must be >= 0"):
        partition_subgraphs(ei, None, 60, 2, -1)
