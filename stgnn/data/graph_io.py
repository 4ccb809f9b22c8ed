"""Reading sensor-graph files: ids, edge tables, dense matrices and coordinates.

The file side of :class:`~stgnn.data.graph.SensorGraph`: every reader checks what it reads and
names the file and the offending rows or sensors in its errors.  Also the small helpers for ids
and messages that the graph modules share.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from stgnn.data.preview import SHOWN, preview

__all__ = ["coordinates_table", "read_dense_csv", "read_sensor_ids"]

PathLike = str | os.PathLike[str]

_ID_HEADERS = {"from", "to", "source", "target", "src", "dst", "i", "j"}
_LAT_NAMES = ("latitude", "lat")
_LON_NAMES = ("longitude", "lon", "lng", "long")
_ID_NAMES = ("sensor_id", "id", "station_id", "station", "node_id")
def _normalize_id(value: Any) -> str:
    """A sensor id as ``str``: integers (and integral floats) print without a decimal point."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _node_id_list(node_ids: Iterable[Any], label: str) -> list[str]:
    """Normalise ids to ``str`` and reject empty or repeated id lists."""
    ids = [_normalize_id(value) for value in node_ids]
    if not ids:
        raise ValueError(f"{label}: node_ids is empty")
    if len(set(ids)) != len(ids):
        repeated = [sensor for sensor, count in Counter(ids).items() if count > 1]
        raise ValueError(f"{label}: node_ids holds repeated ids: {preview(repeated)}")
    return ids


def _warn(message: str) -> None:
    """``warnings.warn`` attributed to the first caller outside the graph modules."""
    frame, level = sys._getframe(0), 1
    while frame.f_back is not None and str(frame.f_globals.get("__name__")).startswith("stgnn.data.graph"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _default_ids(num_nodes: int) -> list[str]:
    return [str(i) for i in range(num_nodes)]


def _existing_file(path: PathLike, what: str) -> Path:
    """``Path(path)``, after checking that it is a file (FileNotFoundError otherwise)."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{path}: {what} file not found")
    if not file.is_file():
        raise ValueError(f"{path}: {what} path is not a file")
    return file


def read_sensor_ids(path: PathLike) -> list[str]:
    """Read a sensor-id list, separated by commas and/or line breaks (LF or CRLF).

    Covers DCRNN's ``graph_sensor_ids.txt`` (one comma-separated line, no final newline) and
    ASTGCN's ``PEMS03.txt`` (one id per line, CRLF, no final newline).

    Args:
        path: The text file.

    Returns:
        The ids as ``str``, in file order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not text, holds no ids, or repeats an id.

    Example:
        >>> ids = read_sensor_ids("datasets/pems03/PEMS03.txt")  # doctest: +SKIP
        >>> len(ids)  # doctest: +SKIP
        358
    """
    file = _existing_file(path, "sensor id")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file of sensor ids ({exc})") from exc
    tokens = [token for token in text.replace(",", "\n").split() if token]
    if not tokens:
        raise ValueError(f"{path}: holds no sensor ids")
    return _node_id_list(tokens, str(path))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _has_header(first_line: str) -> bool:
    """Whether the first line of an edge CSV is a header (``from,to,cost``) or data."""
    tokens = [token.strip().strip('"') for token in first_line.split(",")]
    if len(tokens) >= 3:
        return not all(_is_number(token) for token in tokens[2:])
    return all(token.lower() in _ID_HEADERS for token in tokens)


def _read_csv_table(file: Path, label: str) -> pd.DataFrame:
    """Read an edge CSV as strings, detecting whether it has a header row."""
    try:
        with file.open(encoding="utf-8-sig") as handle:
            first_line = next((line for line in handle if line.strip()), "")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{label}: not a text CSV file ({exc})") from exc
    if not first_line:
        raise ValueError(f"{label}: file is empty")
    try:
        return pd.read_csv(
            file,
            header=0 if _has_header(first_line) else None,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=True,
            encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError) as exc:
        raise ValueError(f"{label}: cannot parse as CSV ({exc})") from exc


def _id_column(column: pd.Series, label: str, name: str) -> np.ndarray:
    """A column of sensor ids as an array of ``str``; rejects empty cells."""
    values = np.array([_normalize_id(v) for v in column.tolist()], dtype=object)
    empty = np.flatnonzero((values == "") | column.isna().to_numpy())
    if empty.size:
        raise ValueError(f"{label}: {empty.size} rows have an empty {name!r} id "
                         f"(data rows {preview(empty.tolist())})")
    return values


def _edge_table(
    edges: PathLike | pd.DataFrame, source: str | None, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """Read ``from,to[,cost]`` rows from a CSV path or a DataFrame.

    Returns:
        ``(from_ids, to_ids, cost_or_None, label)``; ids are ``str`` arrays, cost is float64,
        finite and non-negative.
    """
    if isinstance(edges, pd.DataFrame):
        label = source or "edges DataFrame"
        table = edges
    elif isinstance(edges, (str, os.PathLike)):
        label = source or str(edges)
        table = _read_csv_table(_existing_file(edges, what), label)
    else:
        raise ValueError(f"{source or what}: expected a CSV path or a pandas DataFrame, "
                         f"got {type(edges).__name__}")
    if table.shape[1] < 2:
        raise ValueError(f"{label}: expected columns from,to[,cost], found {table.shape[1]} "
                         f"column(s) {list(table.columns)}")
    if len(table) == 0:
        raise ValueError(f"{label}: holds no edges")
    src = _id_column(table.iloc[:, 0], label, "from")
    dst = _id_column(table.iloc[:, 1], label, "to")
    if table.shape[1] < 3:
        return src, dst, None, label
    raw = table.iloc[:, 2]
    cost = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(cost))
    if bad.size:
        examples = [f"row {i}: {raw.iloc[i]!r}" for i in bad[:3]]
        raise ValueError(f"{label}: {bad.size} rows have a missing, non-numeric or infinite "
                         f"cost in column {table.columns[2]!r} ({'; '.join(examples)})")
    negative = np.flatnonzero(cost < 0)
    if negative.size:
        raise ValueError(f"{label}: {negative.size} rows have a negative cost "
                         f"(data rows {preview(negative.tolist())})")
    return src, dst, cost, label


def _merge_duplicates(
    src: np.ndarray,
    dst: np.ndarray,
    cost: np.ndarray | None,
    node_ids: Sequence[str],
    label: str,
    *,
    on_conflict: Literal["raise", "last"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Drop repeated ``(from, to)`` rows: exact repeats are merged with a warning; rows that
    repeat a pair with another cost raise (``on_conflict="raise"``) or the last one wins with a
    warning (``"last"``, DCRNN's behaviour)."""
    frame = pd.DataFrame({"src": src, "dst": dst})
    if cost is not None:
        frame["cost"] = cost
    exact = frame.duplicated(keep="first")
    frame = frame[~exact]
    conflict = frame.duplicated(subset=["src", "dst"], keep=False)
    notes = []
    if exact.any():
        notes.append(f"{int(exact.sum())} duplicate rows (exact repeats of another row) merged")
    if conflict.any():
        pairs = frame.loc[conflict, ["src", "dst"]].drop_duplicates()
        shown = [f"{node_ids[s]}->{node_ids[d]}" for s, d in pairs.itertuples(index=False)]
        if on_conflict == "raise":
            raise ValueError(f"{label}: {len(pairs)} edges are listed more than once with "
                             f"different costs: {preview(shown)}")
        frame = frame.drop_duplicates(subset=["src", "dst"], keep="last")
        notes.append(f"{len(pairs)} edges listed with different costs; the last row kept "
                     f"({preview(shown)})")
    if notes:
        _warn(f"{label}: {'; '.join(notes)}")
    kept_cost = frame["cost"].to_numpy() if cost is not None else None
    return frame["src"].to_numpy(), frame["dst"].to_numpy(), kept_cost


def read_dense_csv(path: PathLike) -> np.ndarray:
    """Read a headerless, comma-separated numeric matrix.

    Covers T-GCN's ``los_adj.csv``, STGCN's ``PeMSD7_W_228.csv`` (``%.18e`` text) and
    ``PeMSD7_V_228.csv``.

    Args:
        path: The CSV file: rows of equally many numbers, no header, no index column.

    Returns:
        A 2-D float64 array.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is empty, ragged or not numeric (the message names the file).

    Example:
        >>> read_dense_csv("datasets/los-loop/los_adj.csv").shape  # doctest: +SKIP
        (207, 207)
    """
    file = _existing_file(path, "matrix")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy's "Empty input file"
            matrix = np.loadtxt(file, delimiter=",", dtype=np.float64, ndmin=2)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a headerless comma-separated numeric matrix ({exc})") \
            from exc
    if matrix.size == 0:
        raise ValueError(f"{path}: file is empty")
    return matrix


def _as_dense_array(matrix: Any, label: str) -> np.ndarray:
    try:
        return np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{label}: not a numeric matrix ({exc})") from exc


def _find_column(frame: pd.DataFrame, names: Sequence[str]) -> Any | None:
    """The first column whose name matches one of ``names`` case-insensitively."""
    lowered = {str(column).strip().lower(): column for column in frame.columns}
    return next((lowered[name] for name in names if name in lowered), None)


def coordinates_table(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Validated sensor coordinates: ``latitude`` and ``longitude`` columns indexed by sensor id.

    Column names are matched case-insensitively (``latitude``/``lat``,
    ``longitude``/``lon``/``lng``/``long``; ids in ``sensor_id``/``id``/``station_id``/... or
    the index).

    Args:
        frame: The table as read from the file.
        label: The file name (or another name) used in messages.

    Raises:
        ValueError: Missing columns, repeated sensor ids, or coordinates that are missing,
            non-numeric or out of range; the message names the sensors.
    """
    lat_col, lon_col = _find_column(frame, _LAT_NAMES), _find_column(frame, _LON_NAMES)
    if lat_col is None or lon_col is None:
        raise ValueError(f"{label}: needs latitude and longitude columns (names such "
                         f"as latitude/lat, longitude/lon), found {list(frame.columns)}")
    id_col = _find_column(frame, _ID_NAMES)
    ids = [_normalize_id(v) for v in (frame[id_col] if id_col is not None else frame.index).tolist()]
    values = frame[[lat_col, lon_col]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    return _checked_coordinates(ids, values, label)


def _checked_coordinates(ids: list[str], values: np.ndarray, label: str) -> pd.DataFrame:
    """``[N, 2]`` (latitude, longitude) with their ids, after naming every bad sensor."""
    repeated = [sensor for sensor, count in Counter(ids).items() if count > 1]
    if repeated:
        raise ValueError(f"{label}: sensor ids listed more than once: {preview(repeated)}")
    missing = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if missing.size:
        raise ValueError(f"{label}: {missing.size} sensors have a missing or non-numeric latitude or "
                         f"longitude: {preview([ids[i] for i in missing])}")
    lat, lon = values[:, 0], values[:, 1]
    outside = np.flatnonzero((np.abs(lat) > 90) | (np.abs(lon) > 180))
    if outside.size:
        shown = [f"{ids[i]} ({lat[i]:g}, {lon[i]:g})" for i in outside[:SHOWN]]
        raise ValueError(f"{label}: latitudes must lie in [-90, 90] and longitudes in [-180, 180] "
                         f"degrees (are the columns swapped?); {outside.size} sensors are outside: "
                         f"{', '.join(shown)}")
    return pd.DataFrame({"latitude": lat, "longitude": lon}, index=pd.Index(ids, name="sensor_id"))



def _coordinates_array(values: np.ndarray, label: str) -> pd.DataFrame:
    """An ``[N, 2]`` (latitude, longitude) array as a checked table with ids ``"0" .. "N-1"``."""
    if values.ndim != 2 or values.shape[1] != 2:
        raise ValueError(f"{label}: expected an [N, 2] array of (latitude, longitude), got shape {values.shape}")
    return _checked_coordinates(_default_ids(values.shape[0]), values, label)
