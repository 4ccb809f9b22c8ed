"""Conversion to and from torch-geometric-temporal's ``StaticGraphTemporalSignal``.

Optional: needs the ``pygt`` extra (``pip install 'stgnn[pygt]'``), which in turn needs
the compiled ``torch-sparse`` and ``torch-scatter``.  Nothing else in stgnn imports it.

torch-geometric-temporal stores one array per snapshot (its METR-LA loader: features
``[N, F, T_in]``, targets ``[N, H]``), so :func:`to_static_graph_temporal_signal`
materialises the windows of one split; stgnn itself never does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from stgnn.data.dataset import TrafficDataset
from stgnn.data.graph import SensorGraph
from stgnn.data.windows import WindowData

__all__ = ["from_static_graph_temporal_signal", "to_static_graph_temporal_signal"]


def _signal_class() -> Any:
    try:
        from torch_geometric_temporal.signal import StaticGraphTemporalSignal
    except ImportError as exc:
        raise ImportError(
            "torch-geometric-temporal is not installed: pip install 'stgnn[pygt]' "
            "(it needs the compiled torch-sparse and torch-scatter)"
        ) from exc
    return StaticGraphTemporalSignal


def to_static_graph_temporal_signal(data: WindowData, split: str = "train") -> Any:
    """The windows of ``split`` as a ``StaticGraphTemporalSignal``.

    Features are stgnn's model inputs (readings scaled with the train-only scaler, then
    covariates) laid out as torch-geometric-temporal's loaders do, ``[N, F_in, T_in]``;
    targets are the scaled first target feature, ``[N, H]``.

    Args:
        data: Windowed dataset.
        split: ``train``, ``val`` or ``test``.
    """
    signal_cls = _signal_class()
    if split not in data.splits:
        raise ValueError(f"split must be one of {sorted(data.splits)}, got {split!r}")
    batch = data.batch(data.splits[split])
    features = batch.x.permute(0, 2, 3, 1).numpy()  # [B, T, N, F] -> [B, N, F, T]
    targets = batch.y_scaled[..., 0].permute(0, 2, 1).numpy()  # [B, H, N] -> [B, N, H]
    graph = data.dataset.graph
    return signal_cls(
        edge_index=graph.edge_index.numpy(),
        edge_weight=graph.edge_weight.numpy(),
        features=list(features),
        targets=list(targets),
    )


def from_static_graph_temporal_signal(
    signal: Any,
    *,
    name: str = "pygt",
    start: str = "2000-01-01",
    interval_minutes: int = 5,
    feature_names: tuple[str, ...] | None = None,
    units: str = "",
) -> TrafficDataset:
    """A :class:`TrafficDataset` from a ``StaticGraphTemporalSignal``.

    Snapshots whose features are ``[N, F]`` are consecutive time steps.  Snapshots of
    ``[N, F, T_in]`` windows must be stride-1 sliding windows of one series (as the
    library's loaders make them); the series is rebuilt from them and the overlap is
    checked.  Timestamps are derived from ``start`` and ``interval_minutes``.

    Raises:
        ValueError: empty signal, mixed shapes, or windows that do not overlap consistently.
    """
    feats = [np.asarray(f) for f in signal.features]
    if not feats:
        raise ValueError("signal has no snapshots")
    shapes = {f.shape for f in feats}
    if len(shapes) != 1:
        raise ValueError(f"snapshots have different feature shapes: {sorted(shapes)[:3]}")
    if feats[0].ndim == 2:
        series = np.stack(feats)  # [T, N, F]
    elif feats[0].ndim == 3:
        windows = np.stack(feats).transpose(0, 3, 1, 2)  # [S, T_in, N, F]
        if not np.allclose(windows[1:, :-1], windows[:-1, 1:]):
            raise ValueError("snapshot windows are not stride-1 sliding windows of one series")
        series = np.concatenate([windows[:, 0], windows[-1, 1:]])
    else:
        raise ValueError(f"snapshot features must be [N, F] or [N, F, T], got {feats[0].shape}")
    n = series.shape[1]
    graph = SensorGraph(
        [str(i) for i in range(n)],
        torch.as_tensor(np.asarray(signal.edge_index), dtype=torch.long),
        None if signal.edge_weight is None else torch.as_tensor(np.asarray(signal.edge_weight)),
        source=name,
    )
    f = series.shape[2]
    stamps = pd.date_range(start, periods=series.shape[0], freq=pd.Timedelta(minutes=interval_minutes))
    return TrafficDataset.from_arrays(
        name, series, graph, stamps, interval_minutes=interval_minutes, units=units,
        feature_names=feature_names or tuple(f"f{i}" for i in range(f)), source="StaticGraphTemporalSignal",
        missing_zero=False, timestamps_derived=True,
    )
