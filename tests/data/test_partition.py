"""Balanced graph partitions and per-region datasets."""

import numpy as np
import pandas as pd
import pytest
import torch

from stgnn.data.dataset import TrafficDataset
from stgnn.data.graph import SensorGraph
from stgnn.data.partition import partition_graph, region_dataset


def _two_cliques(size=5):
    n = 2 * size
    adj = np.zeros((n, n))
    adj[:size, :size] = 1.0
    adj[size:, size:] = 1.0
    np.fill_diagonal(adj, 0.0)
    adj[size - 1, size] = adj[size, size - 1] = 0.1  # one weak bridge
    order = np.random.default_rng(0).permutation(n)  # ids interleave the cliques
    ids = [f"n{i}" for i in order]
    return SensorGraph.from_dense(adj[np.ix_(order, order)], ids), {f"n{i}" for i in range(size)}


def test_bisection_finds_the_two_communities():
    graph, first = _two_cliques()
    a, b = partition_graph(graph, 2)
    assert {frozenset(a), frozenset(b)} == {frozenset(first), frozenset(set(graph.node_ids) - first)}
    assert a == [s for s in graph.node_ids if s in set(a)]  # in the graph's node order


@pytest.mark.parametrize("parts", [2, 3, 4])
def test_regions_are_balanced_disjoint_and_cover_every_node(parts):
    rng = np.random.default_rng(1)
    adj = (rng.random((23, 23)) < 0.2).astype(float)
    graph = SensorGraph.from_dense(adj, [str(i) for i in range(23)])
    regions = partition_graph(graph, parts, seed=3)
    assert len(regions) == parts
    assert sorted(s for r in regions for s in r) == sorted(graph.node_ids)
    assert max(map(len, regions)) - min(map(len, regions)) <= 1
    assert regions == partition_graph(graph, parts, seed=3)


def test_bad_part_counts_are_refused():
    graph, _ = _two_cliques(2)
    for parts in (1, 5):
        with pytest.raises(ValueError, match=f"parts: cannot cut a graph of 4 nodes into {parts} regions"):
            partition_graph(graph, parts)


def test_region_dataset_keeps_its_sensors_readings_and_inner_edges():
    graph, _ = _two_cliques(3)
    t = 50
    values = np.arange(t * 6, dtype=np.float64).reshape(t, 6) + 1.0
    ds = TrafficDataset.from_arrays("toy", values, graph, pd.date_range("2024-01-01", periods=t, freq="5min"),
                                    interval_minutes=5, units="mph", feature_names=("speed",), source="test")
    ids = [graph.node_ids[4], graph.node_ids[1]]
    part = region_dataset(ds, ids, "toy-a")
    assert part.node_ids == ids and part.name == "toy-a"
    torch.testing.assert_close(part.series[:, :, 0], ds.series[:, [4, 1], 0])
    dense = graph.to_dense()
    np.testing.assert_allclose(part.graph.to_dense(), dense[np.ix_([4, 1], [4, 1])])
    with pytest.raises(ValueError, match="not in the graph"):
        region_dataset(ds, ["nope"])


def test_scoring_a_region_of_the_whole_network_equals_scoring_the_region_alone(tmp_path):
    import standins

    from stgnn.training.config import RunConfig
    from stgnn.training.trainer import Experiment

    series, locations = standins.write_custom(tmp_path, t=300, n=5)
    cfg = RunConfig.from_dict({"model": "last", "dataset": "custom",
                               "custom": {"series": str(series), "locations": str(locations)}})
    whole = Experiment.build(cfg)
    ids = [whole.dataset.node_ids[i] for i in (3, 0)]
    alone = Experiment.build(cfg, dataset=region_dataset(whole.dataset, ids), scaler=whole.data.scaler)
    part = whole.evaluate("test", nodes=torch.tensor([3, 0])).compute()
    assert part == alone.evaluate("test").compute()
    assert part != whole.evaluate("test").compute()
