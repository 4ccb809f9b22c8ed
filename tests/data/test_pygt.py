"""Round trip with torch-geometric-temporal (runs only where the pygt extra is installed)."""

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("torch_geometric_temporal", reason="pygt extra not installed")

from stgnn.data.dataset import TrafficDataset  # noqa: E402
from stgnn.data.graph import SensorGraph  # noqa: E402
from stgnn.data.pygt import from_static_graph_temporal_signal, to_static_graph_temporal_signal  # noqa: E402
from stgnn.data.windows import WindowData  # noqa: E402


def _dataset(t=120, n=5):
    rng = np.random.default_rng(0)
    values = 40 + rng.random((t, n))
    graph = SensorGraph.from_dense(np.eye(n, k=1) + np.eye(n, k=-1) * 0.5, [f"s{i}" for i in range(n)])
    return TrafficDataset.from_arrays("toy", values, graph, pd.date_range("2024-01-01", periods=t, freq="5min"),
                                      interval_minutes=5, units="mph", feature_names=("speed",), source="t")


def test_windows_round_trip_through_static_graph_temporal_signal():
    data = WindowData(_dataset(), covariate_names=())
    signal = to_static_graph_temporal_signal(data, "train")
    snapshots = list(signal)
    assert len(snapshots) == data.num_windows("train")
    first = snapshots[0]
    assert tuple(first.x.shape) == (5, 1, 12) and tuple(first.y.shape) == (5, 12)
    torch.testing.assert_close(first.edge_index, data.dataset.graph.edge_index)
    back = from_static_graph_temporal_signal(signal)
    steps = data.num_windows("train") + 11
    torch.testing.assert_close(back.series, data.inputs[:steps], rtol=0, atol=1e-6)
    torch.testing.assert_close(back.graph.edge_weight, data.dataset.graph.edge_weight)


def test_inconsistent_windows_are_rejected():
    from torch_geometric_temporal.signal import StaticGraphTemporalSignal

    rng = np.random.default_rng(1)
    feats = [rng.random((3, 1, 4)) for _ in range(5)]  # unrelated windows
    sig = StaticGraphTemporalSignal(np.array([[0, 1], [1, 2]]), np.ones(2), feats, [np.zeros((3, 2))] * 5)
    with pytest.raises(ValueError, match="stride-1"):
        from_static_graph_temporal_signal(sig)
