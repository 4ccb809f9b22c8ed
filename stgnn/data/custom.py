"""A user's own sensor network: readings file plus coordinates, distances or an edge list."""

from __future__ import annotations

import csv
import dataclasses
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stgnn.data.covariates import UserCovariates, align_time_covariates, node_attribute_table
from stgnn.data.dataset import TrafficDataset
from stgnn.data.graph import SensorGraph
from stgnn.data.graph_io import _existing_file, coordinates_table, read_dense_csv
from stgnn.data.preview import preview

__all__ = ["attach_covariates", "load_custom", "read_series_table", "read_table"]

PathLike = str | os.PathLike[str]

_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return next((line for line in handle if line.strip()), "")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text CSV file ({exc})") from exc


def _check_csv_header(path: Path) -> None:
    """Reject a delimiter other than a comma and repeated column names, from the raw header.

    pandas would read a ``;``-separated file as one column, and rename a second ``767541``
    column to ``767541.1``; both must be caught before it parses the file.
    """
    line = _first_line(path)
    if not line:
        raise ValueError(f"{path}: file is empty")
    if "," not in line:
        others = [name for sep, name in _OTHER_DELIMITERS.items() if sep in line]
        if others:
            raise ValueError(f"{path}: the header is separated by {others[0]}s, not commas; "
                             "save the file as comma-separated values")
    names = [name.strip() for name in next(csv.reader([line]))]
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise ValueError(f"{path}: column names repeated in the header: {preview(repeated)} "
                         "(each sensor must appear once)")


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (comma-separated, one header row) or Parquet table, with clear errors.

    A CSV's raw header is checked first (see :func:`_check_csv_header`): a delimiter other
    than a comma and repeated column names are errors naming the file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a file (a folder), or it cannot be parsed (the message names it).
    """
    path = _existing_file(path, "table")
    parquet = path.suffix.lower() in {".parquet", ".pq"}
    if not parquet:
        _check_csv_header(path)
    try:
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path, encoding="utf-8-sig")
    except ImportError as exc:
        raise ImportError(f"{path}: reading Parquet needs pyarrow (pip install 'stgnn[parquet]')") from exc
    except Exception as exc:
        raise ValueError(f"{path}: not a readable table ({type(exc).__name__}: {exc})") from exc
    return frame


def _timestamps(path: Path, frame: pd.DataFrame) -> tuple[pd.DatetimeIndex, pd.DataFrame]:
    """The time axis (the index if it holds datetimes, else the first column) and the sensors."""
    if isinstance(frame.index, pd.DatetimeIndex):
        stamps = frame.index
    else:
        if frame.shape[1] < 2:
            raise ValueError(f"{path}: expected a timestamp column followed by one column per sensor, "
                             f"found {frame.shape[1]} column(s) {[str(c) for c in frame.columns]}")
        first = frame.columns[0]
        column = frame[first]
        if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)
                or pd.api.types.is_datetime64_any_dtype(column)):
            raise ValueError(f"{path}: first column {str(first)!r} holds {column.dtype} values, not "
                             "timestamps; the first column must be the time of each row")
        try:
            with warnings.catch_warnings():  # pandas' "could not infer format" note: dateutil parses each cell
                warnings.filterwarnings("ignore", "Could not infer format", UserWarning)
                stamps = pd.DatetimeIndex(pd.to_datetime(column))
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"{path}: first column {str(first)!r} is not a timestamp column ({exc})") from exc
        frame = frame.drop(columns=first)
    if stamps.tz is not None:
        stamps = stamps.tz_convert(None)
    empty = np.flatnonzero(stamps.isna())
    if empty.size:
        raise ValueError(f"{path}: {empty.size} rows have no timestamp (data rows {preview(empty.tolist())})")
    if stamps.has_duplicates:
        dup = [str(s) for s in stamps[stamps.duplicated()]]
        raise ValueError(f"{path}: duplicate timestamps, {preview(dup)}")
    return stamps, frame


def _numeric_values(path: Path, frame: pd.DataFrame, stamps: pd.DatetimeIndex) -> np.ndarray:
    """The sensor columns as float64 (NaN = missing); boolean or text cells are named."""
    columns = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column):
            raise ValueError(f"{path}: sensor column {str(name)!r} holds booleans (True/False), "
                             "expected numeric readings")
        if pd.api.types.is_numeric_dtype(column):
            columns.append(column.to_numpy(dtype=np.float64))
            continue
        numeric = pd.to_numeric(column, errors="coerce")
        bad = np.flatnonzero(numeric.isna().to_numpy() & column.notna().to_numpy())
        if bad.size:
            shown = "; ".join(f"{stamps[i]}: {column.iloc[i]!r}" for i in bad[:3])
            raise ValueError(f"{path}: sensor column {str(name)!r} must be numeric; {bad.size} cells are "
                             f"not ({shown})")
        columns.append(numeric.to_numpy(dtype=np.float64))
    return np.stack(columns, axis=1)


def _interval(path: Path, stamps: pd.DatetimeIndex) -> pd.Timedelta:
    """The sampling interval: the most common gap between consecutive timestamps."""
    gaps = pd.Series(stamps[1:] - stamps[:-1])
    counts = gaps.value_counts()
    # Most common gap; ties go to the shorter one.
    step = min(counts.index[counts == counts.max()])
    if step <= pd.Timedelta(0) or step % pd.Timedelta(minutes=1) != pd.Timedelta(0):
        raise ValueError(f"{path}: the sampling interval (most common gap between timestamps) must be "
                         f"a whole number of minutes, got {step}")
    return pd.Timedelta(step)


def _warn_gaps(path: Path, stamps: pd.DatetimeIndex, step: pd.Timedelta, steps: int) -> None:
    """Say how many grid steps have no row (they become missing readings) and where the longest gap is.

    When gaps outnumber the rows, the timestamps were probably misread (day-first dates such
    as ``01/03/2012`` read month-first turn two days into two months), so the warning says so.
    """
    gaps = stamps[1:] - stamps[:-1]
    longest = int(np.argmax(gaps))
    absent = steps - len(stamps)
    minutes = step // pd.Timedelta(minutes=1)
    message = (f"{path}: {absent} of the {steps} {minutes}-minute steps from {stamps[0]} to {stamps[-1]} have "
               f"no row in the file and are missing readings; the longest gap runs from {stamps[longest]} "
               f"to {stamps[longest + 1]}")
    if absent > len(stamps):
        message += (" (more steps are missing than the file has rows: check how the timestamps were read; "
                    "day-first dates such as 01/03/2012 are read month-first, so write ISO dates, 2012-03-01)")
    warnings.warn(message, UserWarning, stacklevel=3)


def read_series_table(
    path: PathLike,
    *,
    resample: bool = False,
    missing_values: Sequence[float] = (),
) -> tuple[pd.DatetimeIndex, list[str], np.ndarray, int]:
    """Read a ``timestamps x sensors`` table (CSV or Parquet).

    The timestamps are the DataFrame index if it holds datetimes, else the first column.
    The other columns are sensors (their names are the sensor ids).  Rows are sorted by
    time and put on a regular grid whose interval is the most common gap between
    consecutive timestamps: steps absent from the file become missing readings.

    A timestamp off that grid (e.g. 5-minute steps that turn into 7-minute steps) is an
    error listing the first few, unless ``resample``: then each grid step
    ``[t, t + interval)`` takes the mean of the readings that fall into it (no reading is
    dropped; several in one step are averaged; a step with none is missing).

    Args:
        path: CSV (comma-separated, one header row) or Parquet file.
        resample: Put off-grid timestamps onto the grid (see above). Default ``False``.
        missing_values: Readings that mean "no reading" (sentinels such as ``-9999``);
            they become missing. Default none.

    Returns:
        ``(timestamps, sensor_ids, values [T, N] float64 with NaN for missing, interval_minutes)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The message names the file and the problem: a delimiter other than a
            comma, repeated sensor columns, a first column that is not timestamps, missing or
            duplicate timestamps, non-numeric or boolean sensor columns, an interval that is
            not a whole number of minutes, or off-grid timestamps without ``resample``.
    """
    path = Path(path)
    frame = read_table(path)
    stamps, frame = _timestamps(path, frame)
    values = _numeric_values(path, frame, stamps)
    sentinels = np.asarray(list(missing_values), dtype=np.float64)
    if sentinels.size:
        values[np.isin(values, sentinels)] = np.nan
    order = np.argsort(stamps.values, kind="stable")
    stamps, values = stamps[order], values[order]
    if len(stamps) < 2:
        raise ValueError(f"{path}: needs at least two timestamps")
    step = _interval(path, stamps)
    off_grid = (stamps - stamps[0]) % step != pd.Timedelta(0)
    if off_grid.any():
        if not resample:
            shown = preview([str(s) for s in stamps[off_grid]])
            raise ValueError(
                f"{path}: {int(off_grid.sum())} timestamps are off the {step // pd.Timedelta(minutes=1)}-minute "
                f"grid that starts at "
                f"{stamps[0]} (the interval is the most common gap), e.g. {shown}; fix the file or "
                "resample onto the grid (each grid step takes the mean of its readings): resample = true in a "
                "config's [custom] section (load_custom(..., resample=True) in Python)"
            )
        resampler = pd.DataFrame(values, index=stamps).resample(step, origin=stamps[0])
        binned, shared = resampler.mean(), int((resampler.size() > 1).sum())
        grid = pd.DatetimeIndex(binned.index)
        values = binned.to_numpy(dtype=np.float64)
        warnings.warn(f"{path}: {int(off_grid.sum())} off-grid timestamps resampled onto the "
                      f"{step // pd.Timedelta(minutes=1)}-minute grid; {shared} grid steps hold the mean of "
                      "several rows", UserWarning, stacklevel=2)
    else:
        grid = pd.date_range(stamps[0], stamps[-1], freq=step)
        if len(grid) != len(stamps):
            values = pd.DataFrame(values, index=stamps).reindex(grid).to_numpy()
            _warn_gaps(path, stamps, step, len(grid))
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
    sigma: float | None = None,
    zero_is_missing: bool = False,
    missing_values: Sequence[float] = (),
    resample: bool = False,
    split: tuple[float, float, float] = (0.7, 0.1, 0.2),
    units: str = "",
    time_covariates: PathLike | None = None,
    node_attributes: PathLike | None = None,
) -> TrafficDataset:
    """Build a dataset from your own readings and exactly one graph description.

    Args:
        series: CSV / Parquet of timestamps x sensors (see :func:`read_series_table`).
        locations: CSV with ``sensor_id, latitude, longitude``: graph of the
            ``k_neighbors`` nearest sensors (haversine), Gaussian-kernel weights; every
            sensor keeps its ``k_neighbors`` edges.
        distances: CSV of ``from,to,cost`` road distances: DCRNN Gaussian kernel.
        edges: CSV of ``from,to[,weight]`` sensor-id pairs: weights as given (1 if absent).
        adjacency: headerless dense ``N x N`` CSV in the series' column order.
        name: Dataset name (default: the series file stem).
        k_neighbors: Neighbours per sensor for ``locations`` (at most ``N - 1``).
        sigma: Gaussian kernel width for ``distances`` (cost units) or ``locations`` (km);
            default: the standard deviation of the distances kept.
        zero_is_missing: Treat exact zeros as missing readings (NaN always is).
        missing_values: Sentinel readings (e.g. ``-9999``) that mean "no reading".
        resample: Put off-grid timestamps onto the grid (see :func:`read_series_table`).
        split: Chronological (train, val, test) fractions.
        units: Units of the readings, for reports.
        time_covariates: CSV / Parquet of covariates by timestamp, global or per sensor
            (layouts in :mod:`stgnn.data.covariates`); fed to the model as extra inputs.
        node_attributes: CSV / Parquet of static attributes by sensor id (text columns
            one-hot encoded); fed to the model as extra inputs.

    Raises:
        ValueError: not exactly one graph source, ids that do not match the series, or a
            malformed file (the message names the file and the problem).
    """
    given = {k: v for k, v in dict(locations=locations, distances=distances, edges=edges,
                                   adjacency=adjacency).items() if v is not None}
    if len(given) != 1:
        raise ValueError(
            "give exactly one graph source (locations, distances, edges or adjacency); "
            f"got {sorted(given) or 'none'}"
        )
    stamps, ids, values, interval = read_series_table(series, resample=resample, missing_values=missing_values)
    kind, path = next(iter(given.items()))
    path = Path(path)
    if kind == "locations":
        table = coordinates_table(read_table(path), str(path))
        missing = [i for i in ids if i not in table.index]
        if missing:
            raise ValueError(f"{path}: no coordinates for {len(missing)} sensors of {series}, {preview(missing)}")
        graph = SensorGraph.from_coordinates(table.loc[ids], ids, k=min(k_neighbors, len(ids) - 1),
                                             sigma=sigma, source=str(path))
    elif kind == "distances":
        graph = SensorGraph.from_distances(path, ids, kernel="dcrnn", sigma=sigma)
    elif kind == "edges":
        weighted = len(read_table(path).columns) >= 3  # from,to[,weight]
        graph = SensorGraph.from_edge_list(path, ids, weight="cost" if weighted else "binary")
    else:
        graph = SensorGraph.from_dense(read_dense_csv(path), ids, source=str(path))
    graph.check_nodes(ids, source=str(series))
    dataset = TrafficDataset.from_arrays(
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
    return attach_covariates(dataset, time_covariates, node_attributes)


def attach_covariates(
    dataset: TrafficDataset, time_covariates: PathLike | None = None, node_attributes: PathLike | None = None
) -> TrafficDataset:
    """``dataset`` with a user's covariate files aligned to its timestamps and sensor ids.

    Works for any dataset: own data, a registered benchmark or a converted folder (the files'
    layouts are in :mod:`stgnn.data.covariates`).  For a dataset whose files carry no timestamps
    (``timestamps_derived``, e.g. PEMS0X), the time covariates are aligned to the derived
    timestamps (the dataset's documented start and interval); a warning says so.

    Args:
        dataset: The readings.
        time_covariates: CSV / Parquet of covariates by timestamp (global or per sensor), or ``None``.
        node_attributes: CSV / Parquet of static attributes by sensor id, or ``None``.

    Raises:
        ValueError: A file that does not fit the readings (the message names the file and the problem).
    """
    if time_covariates is None and node_attributes is None:
        return dataset
    stamps, ids = dataset.timestamps, list(dataset.node_ids)
    if time_covariates is not None and dataset.timestamps_derived:
        warnings.warn(f"{time_covariates}: {dataset.name}'s files carry no timestamps; the covariates are aligned "
                      f"to derived ones ({stamps[0]} onwards, every {dataset.interval_minutes} min)", stacklevel=2)
    time_values, time_names = (
        align_time_covariates(read_table(Path(time_covariates)), time_covariates, stamps, ids)
        if time_covariates is not None else (None, ()))
    node_values, node_names = (
        node_attribute_table(read_table(Path(node_attributes)), node_attributes, ids)
        if node_attributes is not None else (None, ()))
    extra = UserCovariates(
        None if time_values is None else torch.from_numpy(time_values.astype(np.float32)), time_names,
        None if node_values is None else torch.from_numpy(node_values.astype(np.float32)), node_names,
    )
    return dataclasses.replace(dataset, user_covariates=extra)
