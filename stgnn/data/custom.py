"""A user's own sensor network: readings file plus coordinates, distances or an edge list."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from stgnn.data.dataset import TrafficDataset
from stgnn.data.graph import SensorGraph, read_dense_csv

__all__ = ["load_custom", "read_series_table"]

PathLike = str | os.PathLike[str]


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except ImportError as exc:
        raise ImportError(f"{path}: reading Parquet needs pyarrow (pip install 'stgnn[parquet]')") from exc
    except Exception as exc:
        raise ValueError(f"{path}: not a readable table ({type(exc).__name__}: {exc})") from exc


def read_series_table(path: PathLike) -> tuple[pd.DatetimeIndex, list[str], np.ndarray, int]:
    """Read a ``timestamps x sensors`` table (CSV or Parquet).

    The timestamps are the DataFrame index if it holds datetimes, else the first column.
    The other columns are sensors (their names are the sensor ids).  Rows are sorted by
    time and put on a regular grid: steps absent from the file become missing readings,
    never dropped windows.

    Returns:
        ``(timestamps, sensor_ids, values [T, N] float64 with NaN for missing, interval_minutes)``.
    """
    path = Path(path)
    frame = _read_table(path)
    if isinstance(frame.index, pd.DatetimeIndex):
        stamps = frame.index
    else:
        if frame.shape[1] < 2:
            raise ValueError(f"{path}: expected a timestamp column followed by one column per sensor")
        first = frame.columns[0]
        try:
            stamps = pd.DatetimeIndex(pd.to_datetime(frame[first]))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: first column {first!r} is not a timestamp column ({exc})") from exc
        frame = frame.drop(columns=first)
    if stamps.has_duplicates:
        dup = stamps[stamps.duplicated()][:3].tolist()
        raise ValueError(f"{path}: duplicate timestamps, e.g. {dup}")
    try:
        values = frame.apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: sensor columns must be numeric ({exc})") from exc
    order = np.argsort(stamps.values, kind="stable")
    stamps, values = stamps[order], values[order]
    if len(stamps) < 2:
        raise ValueError(f"{path}: needs at least two timestamps")
    step = pd.Series(stamps).diff().dropna().min()
    if step <= pd.Timedelta(0) or step % pd.Timedelta(minutes=1) != pd.Timedelta(0):
        raise ValueError(f"{path}: the sampling interval must be a whole number of minutes, got {step}")
    grid = pd.date_range(stamps[0], stamps[-1], freq=step)
    if len(grid) != len(stamps):
        values = pd.DataFrame(values, index=stamps).reindex(grid).to_numpy()
    return grid, [str(c) for c in frame.columns], values, int(step / pd.Timedelta(minutes=1))


def load_custom(
    series: PathLike,
    *,
    locations: PathLike | None = None,
    distances: PathLike | None = None,
    edges: PathLike | None = None,
    adjacency: PathLike | None = None,
    name: str | None = None,
    k_neighbors: int = 8,
    zero_is_missing: bool = False,
    split: tuple[float, float, float] = (0.7, 0.1, 0.2),
    units: str = "",
) -> TrafficDataset:
    """Build a dataset from your own readings and exactly one graph description.

    Args:
        series: CSV / Parquet of timestamps x sensors (see :func:`read_series_table`).
        locations: CSV with ``sensor_id, latitude, longitude``: graph of the
            ``k_neighbors`` nearest sensors (haversine), Gaussian-kernel weights.
        distances: CSV of ``from,to,cost`` road distances: DCRNN Gaussian kernel.
        edges: CSV of ``from,to[,weight]`` sensor-id pairs: weights as given (1 if absent).
        adjacency: headerless dense ``N x N`` CSV in the series' column order.
        name: Dataset name (default: the series file stem).
        k_neighbors: Neighbours per sensor for ``locations`` (at most ``N - 1``).
        zero_is_missing: Treat exact zeros as missing readings (NaN always is).
        split: Chronological (train, val, test) fractions.
        units: Units of the readings, for reports.

    Raises:
        ValueError: not exactly one graph source, or ids that do not match the series.
    """
    given = {k: v for k, v in dict(locations=locations, distances=distances, edges=edges,
                                   adjacency=adjacency).items() if v is not None}
    if len(given) != 1:
        raise ValueError(
            "give exactly one graph source (locations, distances, edges or adjacency); "
            f"got {sorted(given) or 'none'}"
        )
    stamps, ids, values, interval = read_series_table(series)
    kind, path = next(iter(given.items()))
    path = Path(path)
    if kind == "locations":
        table = _read_table(path)
        cols = {c.lower(): c for c in table.columns}
        id_col = next((cols[c] for c in ("sensor_id", "id", "sensor", "node_id") if c in cols), None)
        if id_col is None:
            raise ValueError(f"{path}: needs a sensor id column (sensor_id / id), has {list(table.columns)}")
        table = table.set_index(table[id_col].astype(str)).drop(columns=id_col)
        missing = [i for i in ids if i not in table.index]
        if missing:
            raise ValueError(f"{path}: no coordinates for {len(missing)} sensors of {series}, e.g. {missing[:5]}")
        graph = SensorGraph.from_coordinates(table.loc[ids], ids, k=min(k_neighbors, len(ids) - 1))
    elif kind == "distances":
        graph = SensorGraph.from_distances(path, ids, kernel="dcrnn")
    elif kind == "edges":
        weighted = len(_read_table(path).columns) >= 3  # from,to[,weight]
        graph = SensorGraph.from_edge_list(path, ids, weight="cost" if weighted else "binary")
    else:
        graph = SensorGraph.from_dense(read_dense_csv(path), ids, source=str(path))
    graph.check_nodes(ids, source=str(series))
    return TrafficDataset.from_arrays(
        name or Path(series).stem,
        values,
        graph,
        stamps,
        interval_minutes=interval,
        units=units,
        feature_names=("value",),
        source=str(series),
        split=split,
        missing_zero=zero_is_missing,
    )
