"""The sensor graph: node ids plus PyG-style edges, built from every canonical graph format.

:class:`SensorGraph` is the one place where graph files are read and where graphs are converted
between layouts (dense, scipy sparse, torch sparse, networkx, PyG).  Its convention is DCRNN's
``adj_mx``: a dense matrix ``W`` is the set of edges ``i -> j`` with weight ``W[i, j]``
(row = source), and ``edge_index[0]`` holds the sources (PyG's convention).

Formats covered:

* DCRNN ``adj_mx.pkl`` / ``adj_mx_bay.pkl`` (:meth:`SensorGraph.from_adj_pickle`, loaded
  without running code, see :mod:`stgnn.data.safe_pickle`),
* DCRNN distance lists ``from,to,cost`` with or without a header
  (:meth:`SensorGraph.from_distances`, thresholded Gaussian kernel),
* ASTGCN edge lists ``PEMS0x.csv`` by index or by sensor id (:meth:`SensorGraph.from_edge_list`),
* dense matrices: T-GCN's ``los_adj.csv`` (:meth:`SensorGraph.from_dense_csv`) and STGCN's
  ``PeMSD7_W_228.csv`` distances (:meth:`SensorGraph.from_distance_matrix`),
* sensor coordinates (:meth:`SensorGraph.from_coordinates`) and networkx graphs.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor

from stgnn.data.safe_pickle import load_adj_pickle

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = [
    "Kernel",
    "SelfLoopPolicy",
    "SensorGraph",
    "WeightMode",
    "coordinates_table",
    "read_dense_csv",
    "read_sensor_ids",
]

PathLike = str | os.PathLike[str]
Kernel = Literal["dcrnn", "stgcn"]
WeightMode = Literal["cost", "binary", "inverse"]
SelfLoopPolicy = Literal["keep", "remove", "add"]

_DCRNN_THRESHOLD = 0.1
# STGCN's weight_matrix(): w = exp(-(d / 10000)^2 / sigma2) with sigma2 = 0.1, kept where
# w >= epsilon = 0.5.  That is exp(-(d / sigma)^2) with sigma = 10000 * sqrt(0.1) metres.
_STGCN_SIGMA = 10000.0 * math.sqrt(0.1)
_STGCN_EPSILON = 0.5
_EARTH_RADIUS_KM = 6371.0088
_ID_HEADERS = {"from", "to", "source", "target", "src", "dst", "i", "j"}
_LAT_NAMES = ("latitude", "lat")
_LON_NAMES = ("longitude", "lon", "lng", "long")
_ID_NAMES = ("sensor_id", "id", "station_id", "station", "node_id")
_SHOWN = 5


# --------------------------------------------------------------------------------------------
# Small helpers: messages, ids, files
# --------------------------------------------------------------------------------------------


def _preview(items: Sequence[Any], limit: int = _SHOWN) -> str:
    """``'a', 'b', 'c'`` or ``'a', 'b', ... (12 in all)`` for error messages."""
    shown = ", ".join(repr(item) for item in items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"


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
        raise ValueError(f"{label}: node_ids holds repeated ids: {_preview(repeated)}")
    return ids


def _warn(message: str) -> None:
    """``warnings.warn`` attributed to the first caller outside this module."""
    frame, level = sys._getframe(0), 1
    while frame.f_back is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _as_tensor(value: Tensor | np.ndarray | Sequence[Any], dtype: torch.dtype) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().to(device="cpu", dtype=dtype)
    return torch.tensor(np.asarray(value), dtype=dtype)  # a copy: pandas arrays may be read-only


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


# --------------------------------------------------------------------------------------------
# Tables of edges: from,to[,cost]
# --------------------------------------------------------------------------------------------


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
                         f"(data rows {_preview(empty.tolist())})")
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
                         f"(data rows {_preview(negative.tolist())})")
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
                             f"different costs: {_preview(shown)}")
        frame = frame.drop_duplicates(subset=["src", "dst"], keep="last")
        notes.append(f"{len(pairs)} edges listed with different costs; the last row kept "
                     f"({_preview(shown)})")
    if notes:
        _warn(f"{label}: {'; '.join(notes)}")
    kept_cost = frame["cost"].to_numpy() if cost is not None else None
    return frame["src"].to_numpy(), frame["dst"].to_numpy(), kept_cost


# --------------------------------------------------------------------------------------------
# Dense matrices
# --------------------------------------------------------------------------------------------


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


def _check_square(matrix: np.ndarray | sp.spmatrix | sp.sparray, label: str) -> None:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{label}: matrix is not square: shape {tuple(matrix.shape)}")
    if matrix.shape[0] == 0:
        raise ValueError(f"{label}: matrix is empty")


def _check_values(values: np.ndarray, label: str, *, allow_inf: bool, what: str) -> None:
    """Reject NaN (and infinities unless ``allow_inf``) and negative entries."""
    bad = np.isnan(values) if allow_inf else ~np.isfinite(values)
    if bad.any():
        kind = "NaN" if allow_inf else "non-finite"
        raise ValueError(f"{label}: {int(bad.sum())} {kind} entries in the {what}")
    negative = values < 0
    if negative.any():
        raise ValueError(f"{label}: negative {what} in {int(negative.sum())} entries "
                         f"(smallest {values[negative].min():g})")


def _as_dense_array(matrix: Any, label: str) -> np.ndarray:
    try:
        return np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{label}: not a numeric matrix ({exc})") from exc


def _gaussian_kernel(
    dist: np.ndarray, kernel: Kernel, sigma: float | None, threshold: float | None, label: str
) -> np.ndarray:
    """``w = exp(-(d / sigma)^2)`` with entries below ``threshold`` set to 0; ``inf`` -> 0.

    ``"dcrnn"``: sigma = std of the finite distances, threshold 0.1, diagonal as given.
    ``"stgcn"``: sigma = 10000 * sqrt(0.1) (metres), threshold 0.5, zero diagonal.
    """
    if kernel == "dcrnn":
        finite = dist[np.isfinite(dist)]
        sigma = float(finite.std()) if sigma is None and finite.size else sigma
        threshold = _DCRNN_THRESHOLD if threshold is None else threshold
    elif kernel == "stgcn":
        sigma = _STGCN_SIGMA if sigma is None else sigma
        threshold = _STGCN_EPSILON if threshold is None else threshold
    else:
        raise ValueError(f"{label}: unknown kernel {kernel!r}; expected 'dcrnn' or 'stgcn'")
    if sigma is None or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"{label}: the kernel width sigma must be positive and finite, got "
                         f"{sigma} (with kernel='dcrnn' it is the std of the distances; pass "
                         "sigma= when they are all equal)")
    if not 0 <= threshold <= 1:
        raise ValueError(f"{label}: threshold must lie in [0, 1], got {threshold}")
    weights = np.exp(-np.square(dist / sigma))
    weights[weights < threshold] = 0.0
    if kernel == "stgcn":
        np.fill_diagonal(weights, 0.0)
    return weights


def _haversine_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Pairwise great-circle distances in km between points given in degrees."""
    phi, lam = np.radians(lat), np.radians(lon)
    dphi = phi[:, None] - phi[None, :]
    dlam = lam[:, None] - lam[None, :]
    a = np.sin(dphi / 2) ** 2 + np.cos(phi)[:, None] * np.cos(phi)[None, :] * np.sin(dlam / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


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
        raise ValueError(f"{label}: sensor ids listed more than once: {_preview(repeated)}")
    missing = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if missing.size:
        raise ValueError(f"{label}: {missing.size} sensors have a missing or non-numeric latitude or "
                         f"longitude: {_preview([ids[i] for i in missing])}")
    lat, lon = values[:, 0], values[:, 1]
    outside = np.flatnonzero((np.abs(lat) > 90) | (np.abs(lon) > 180))
    if outside.size:
        shown = [f"{ids[i]} ({lat[i]:g}, {lon[i]:g})" for i in outside[:_SHOWN]]
        raise ValueError(f"{label}: latitudes must lie in [-90, 90] and longitudes in [-180, 180] "
                         f"degrees (are the columns swapped?); {outside.size} sensors are outside: "
                         f"{', '.join(shown)}")
    return pd.DataFrame({"latitude": lat, "longitude": lon}, index=pd.Index(ids, name="sensor_id"))


# --------------------------------------------------------------------------------------------
# SensorGraph
# --------------------------------------------------------------------------------------------


class SensorGraph:
    """A static sensor network: node ids, ``edge_index`` and ``edge_weight`` (PyG layout).

    Edges are stored sorted by (source, target) and unique.  A dense matrix ``W`` corresponds
    to the edges ``i -> j`` with weight ``W[i, j]`` (row = source), as in DCRNN's ``adj_mx``.
    Zero entries of a dense matrix are not edges; an edge list may hold explicit zero weights.

    Args:
        node_ids: Sensor ids, one per node, in node order (stored as ``str``).
        edge_index: ``[2, E]`` integer tensor or array; row 0 = source.
        edge_weight: ``[E]`` non-negative finite weights; ``None`` means all ones.
        coordinates: Optional ``[N, 2]`` (latitude, longitude) in degrees.
        source: Where the graph came from (a file name), used in messages.

    Attributes:
        node_ids: ``list[str]`` of length ``N``.
        edge_index: ``[2, E]`` ``torch.long``.
        edge_weight: ``[E]`` ``torch.float32``.
        coordinates: ``[N, 2]`` ``torch.float64`` (latitude, longitude) or ``None``.
        source: ``str`` or ``None``.

    Raises:
        ValueError: Shapes disagree, an index is out of range, an edge repeats, a weight is
            negative or not finite, or an id repeats.

    Example:
        >>> g = SensorGraph(["a", "b"], torch.tensor([[0], [1]]), torch.tensor([0.5]))
        >>> g
        SensorGraph(num_nodes=2, num_edges=1, source=None)
        >>> g.to_dense()
        array([[0. , 0.5],
               [0. , 0. ]], dtype=float32)
    """

    def __init__(
        self,
        node_ids: Sequence[Any],
        edge_index: Tensor | np.ndarray,
        edge_weight: Tensor | np.ndarray | None = None,
        *,
        coordinates: Tensor | np.ndarray | None = None,
        source: str | None = None,
    ) -> None:
        self.source = source
        self.node_ids = _node_id_list(node_ids, self._label)
        index = _as_tensor(edge_index, torch.long)
        if index.numel() == 0:
            index = index.reshape(2, 0)
        weight = (torch.ones(index.shape[-1], dtype=torch.float32) if edge_weight is None
                  else _as_tensor(edge_weight, torch.float32).reshape(-1))
        self.edge_index, self.edge_weight = self._sorted_edges(index, weight)
        self.coordinates = (None if coordinates is None
                            else _as_tensor(coordinates, torch.float64))
        self.validate()

    # ---------------------------------------------------------------- invariants

    @property
    def _label(self) -> str:
        return self.source or "SensorGraph"

    @property
    def num_nodes(self) -> int:
        """Number of nodes ``N``."""
        return len(self.node_ids)

    @property
    def num_edges(self) -> int:
        """Number of edges ``E`` (self loops included)."""
        return int(self.edge_index.shape[1])

    def _sorted_edges(self, index: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """Check shapes and range, sort by (source, target) and reject repeated edges."""
        n = len(self.node_ids)
        if index.ndim != 2 or index.shape[0] != 2:
            raise ValueError(f"{self._label}: edge_index must have shape [2, E], "
                             f"got {list(index.shape)}")
        if weight.shape[0] != index.shape[1]:
            raise ValueError(f"{self._label}: {weight.shape[0]} edge weights for "
                             f"{index.shape[1]} edges")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(f"{self._label}: edge_index holds node indices outside [0, {n})")
        key = index[0] * n + index[1]
        order = torch.argsort(key, stable=True)
        key, index, weight = key[order], index[:, order], weight[order]
        repeated = torch.nonzero(key[1:] == key[:-1]).flatten()
        if repeated.numel():
            pairs = [f"{self.node_ids[int(index[0, i])]}->{self.node_ids[int(index[1, i])]}"
                     for i in repeated[:_SHOWN]]
            raise ValueError(f"{self._label}: {repeated.numel()} repeated edges: "
                             f"{_preview(pairs)}")
        return index.contiguous(), weight.contiguous()

    def validate(self) -> None:
        """Check the invariants; warn about isolated nodes.

        Raises ``ValueError`` when a stored tensor has the wrong shape, an index is out of
        range, edges are unsorted or repeated, a weight is negative or not finite, or the
        coordinates are malformed.  Warns (``UserWarning``, one message with the count and
        the first ids) when nodes have no edge to or from another node: such a node gets no
        information from its neighbours in a graph convolution.

        Raises:
            ValueError: An invariant does not hold.

        Example:
            >>> SensorGraph(["a", "b"], torch.tensor([[0], [0]]))  # doctest: +SKIP
            UserWarning: SensorGraph: 2 isolated nodes ...
        """
        label, n = self._label, self.num_nodes
        index, weight = self.edge_index, self.edge_weight
        if index.dtype != torch.long or index.ndim != 2 or index.shape[0] != 2:
            raise ValueError(f"{label}: edge_index must be a [2, E] long tensor")
        if weight.dtype != torch.float32 or weight.shape != (index.shape[1],):
            raise ValueError(f"{label}: edge_weight must be a [E] float32 tensor")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(f"{label}: edge_index holds node indices outside [0, {n})")
        key = index[0] * n + index[1]
        if bool((key[1:] <= key[:-1]).any()):
            raise ValueError(f"{label}: edges are not sorted by (source, target) and unique")
        if not bool(torch.isfinite(weight).all()):
            raise ValueError(f"{label}: {int((~torch.isfinite(weight)).sum())} non-finite "
                             "edge weights")
        if bool((weight < 0).any()):
            raise ValueError(f"{label}: {int((weight < 0).sum())} negative edge weights")
        if self.coordinates is not None:
            coords = self.coordinates
            if coords.shape != (n, 2):
                raise ValueError(f"{label}: coordinates must have shape [{n}, 2], "
                                 f"got {list(coords.shape)}")
            if not bool(torch.isfinite(coords).all()):
                raise ValueError(f"{label}: coordinates hold non-finite values")
        off_diagonal = index[:, index[0] != index[1]]
        degree = torch.bincount(off_diagonal.flatten(), minlength=n)
        isolated = [self.node_ids[i] for i in torch.nonzero(degree == 0).flatten().tolist()]
        if isolated:
            plural = "s" if len(isolated) > 1 else ""
            _warn(f"{label}: {len(isolated)} isolated node{plural} (no edge to or from another "
                  f"node): {_preview(isolated)}")

    def __repr__(self) -> str:
        return (f"SensorGraph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"source={self.source!r})")

    # ---------------------------------------------------------------- constructors

    @classmethod
    def _from_coo(
        cls,
        node_ids: Sequence[str],
        src: np.ndarray,
        dst: np.ndarray,
        weight: np.ndarray | None,
        *,
        coordinates: np.ndarray | None = None,
        source: str | None = None,
    ) -> SensorGraph:
        index = np.stack([np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)])
        return cls(node_ids, index, weight, coordinates=coordinates, source=source)

    @classmethod
    def from_dense(
        cls,
        matrix: np.ndarray | sp.spmatrix | sp.sparray | Tensor,
        node_ids: Sequence[Any] | None = None,
        *,
        source: str | None = None,
    ) -> SensorGraph:
        """Build a graph from a weighted adjacency matrix (nonzero ``W[i, j]`` = edge i -> j).

        Args:
            matrix: ``[N, N]`` weights as a numpy array, a (sparse) tensor or a scipy sparse
                matrix; square, finite and non-negative.  Zeros are not edges.
            node_ids: Sensor ids in row order; default ``"0" .. "N-1"``.
            source: Name used in messages (e.g. the file the matrix came from).

        Returns:
            The graph, with edges sorted by (source, target).

        Raises:
            ValueError: The matrix is not square, holds non-finite or negative entries, or
                ``node_ids`` has the wrong length (the message names ``source``).

        Example:
            >>> g = SensorGraph.from_dense(np.array([[1.0, 0.5], [0.0, 1.0]]), ["a", "b"])
            >>> g.edge_index.tolist(), g.edge_weight.tolist()
            ([[0, 0, 1], [0, 1, 1]], [1.0, 0.5, 1.0])
        """
        label = source or "matrix"
        if isinstance(matrix, Tensor):
            matrix = matrix.detach().cpu()
            matrix = (matrix.to_dense() if matrix.is_sparse else matrix).numpy()
        if sp.issparse(matrix):
            _check_square(matrix, label)
            coo = sp.coo_matrix(matrix, dtype=np.float64)
            _check_values(coo.data, label, allow_inf=False, what="weights")
            coo.sum_duplicates()
            coo.eliminate_zeros()
            src, dst, weight = coo.row, coo.col, coo.data
        else:
            dense = _as_dense_array(matrix, label)
            _check_square(dense, label)
            _check_values(dense, label, allow_inf=False, what="weights")
            src, dst = np.nonzero(dense)
            weight = dense[src, dst]
        n = matrix.shape[0]
        ids = _default_ids(n) if node_ids is None else list(node_ids)
        if len(ids) != n:
            raise ValueError(f"{label}: {len(ids)} node ids for a {n}x{n} matrix")
        return cls._from_coo(ids, src, dst, weight, source=source)

    @classmethod
    def from_dense_csv(
        cls, path: PathLike, node_ids: Sequence[Any] | None = None
    ) -> SensorGraph:
        """Read a headerless comma-separated weight matrix such as T-GCN's ``los_adj.csv``.

        Args:
            path: The CSV file: ``N`` lines of ``N`` numbers, no header, no index column.
            node_ids: Sensor ids in row order; default ``"0" .. "N-1"``.

        Returns:
            The graph (see :meth:`from_dense`), with ``source`` = the file name.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: The file is not a numeric matrix, or the matrix is invalid (see
                :meth:`from_dense`); the message names the file.

        Example:
            >>> g = SensorGraph.from_dense_csv("datasets/los-loop/los_adj.csv")  # doctest: +SKIP
            >>> g.num_nodes  # doctest: +SKIP
            207
        """
        matrix = read_dense_csv(path)
        return cls.from_dense(matrix, node_ids, source=str(path))

    @classmethod
    def from_distance_matrix(
        cls,
        matrix: PathLike | np.ndarray,
        node_ids: Sequence[Any] | None = None,
        *,
        kernel: Kernel = "dcrnn",
        threshold: float | None = None,
        sigma: float | None = None,
        source: str | None = None,
    ) -> SensorGraph:
        """Turn a dense ``[N, N]`` road-distance matrix into weights with a Gaussian kernel.

        ``w_ij = exp(-(d_ij / sigma)^2)``, set to 0 below ``threshold``; ``inf`` = no path.

        * ``kernel="dcrnn"`` (DCRNN's ``gen_adj_mx.py``): ``sigma`` defaults to the standard
          deviation of the finite distances, ``threshold`` to 0.1; the diagonal is kept.
        * ``kernel="stgcn"`` (STGCN's ``weight_matrix``, distances in metres): ``sigma``
          defaults to ``10000 * sqrt(0.1)`` m, i.e. ``exp(-(d / 10^4)^2 / 0.1)``,
          ``threshold`` (STGCN's epsilon) to 0.5; the diagonal is zero.

        Args:
            matrix: The distances, or a headerless CSV file of them (``PeMSD7_W_228.csv``).
            node_ids: Sensor ids in row order; default ``"0" .. "N-1"``.
            kernel: ``"dcrnn"`` or ``"stgcn"``.
            threshold: Weights below it become 0; default per kernel (above).
            sigma: Kernel width in the units of the distances; default per kernel (above).
            source: Name used in messages; default the file path.

        Returns:
            The directed graph (symmetric when the distances are).

        Raises:
            FileNotFoundError: ``matrix`` is a path that does not exist.
            ValueError: Not square, NaN or negative distances, bad ``kernel``, ``sigma`` or
                ``threshold``; the message names the file or ``source``.

        Example:
            >>> g = SensorGraph.from_distance_matrix(
            ...     "datasets/pemsd7m/PeMSD7_W_228.csv", kernel="stgcn")  # doctest: +SKIP
            >>> g.num_nodes  # doctest: +SKIP
            228
        """
        if isinstance(matrix, (str, os.PathLike)):
            label = source or str(matrix)
            dist = read_dense_csv(matrix)
        else:
            label = source or "distance matrix"
            dist = _as_dense_array(matrix, label)
        _check_square(dist, label)
        _check_values(dist, label, allow_inf=True, what="distances")
        weights = _gaussian_kernel(dist, kernel, sigma, threshold, label)
        return cls.from_dense(weights, node_ids, source=label)

    @classmethod
    def from_distances(
        cls,
        distances: PathLike | pd.DataFrame,
        node_ids: Sequence[Any],
        *,
        kernel: Kernel = "dcrnn",
        threshold: float | None = None,
        sigma: float | None = None,
        source: str | None = None,
    ) -> SensorGraph:
        """Build DCRNN's thresholded Gaussian-kernel graph from ``from,to,cost`` distances.

        Reproduces ``get_adjacency_matrix`` of DCRNN's ``gen_adj_mx.py``: an ``[N, N]``
        distance matrix starts at ``inf``; each row with both ids in ``node_ids`` sets
        ``dist[from, to] = cost`` (directed, not symmetrised; a repeated pair keeps its last
        row, with a warning); then :meth:`from_distance_matrix`'s kernel applies.  Self pairs
        of cost 0 give diagonal weights of 1, as in ``adj_mx.pkl``.

        Args:
            distances: A CSV file (with a ``from,to,cost`` header as in
                ``distances_la_2012.csv`` or without one as in ``distances_bay_2017.csv``;
                detected) or a DataFrame whose first three columns are from, to, cost.
            node_ids: The graph's sensor ids, in node order (e.g. ``graph_sensor_ids.txt``).
                Rows naming other sensors are ignored.
            kernel: ``"dcrnn"`` (default) or ``"stgcn"``, see :meth:`from_distance_matrix`.
            threshold: Weights below it become 0; default 0.1 (dcrnn) / 0.5 (stgcn).
            sigma: Kernel width; default the std (ddof 0) of the finite distances (dcrnn).
            source: Name used in messages; default the path.

        Returns:
            The graph; ``to_dense()`` equals DCRNN's ``adj_mx`` to float32 precision.

        Raises:
            FileNotFoundError: ``distances`` is a path that does not exist.
            ValueError: The file cannot be parsed, a cost is missing or negative, or no row
                connects two of ``node_ids``.

        Example:
            >>> bay = "datasets/pems-bay/"
            >>> ids, _, adj = load_adj_pickle(bay + "adj_mx_bay.pkl")  # doctest: +SKIP
            >>> csv = bay + "distances_bay_2017.csv"
            >>> g = SensorGraph.from_distances(csv, ids)  # doctest: +SKIP
            >>> np.allclose(g.to_dense(), adj, atol=1e-5)  # doctest: +SKIP
            True
        """
        src_ids, dst_ids, cost, label = _edge_table(distances, source, "distance list")
        if cost is None:
            raise ValueError(f"{label}: expected columns from,to,cost; there is no cost column")
        ids = _node_id_list(node_ids, label)
        position = pd.Index(ids)
        src, dst = position.get_indexer(src_ids), position.get_indexer(dst_ids)
        known = (src >= 0) & (dst >= 0)
        if not known.any():
            raise ValueError(
                f"{label}: none of its {len(src_ids)} rows connects two of the {len(ids)} "
                f"given node ids (file ids such as {_preview(list(src_ids[:3]))}; node ids "
                f"such as {_preview(ids[:3])})"
            )
        src, dst, cost = _merge_duplicates(src[known], dst[known], cost[known], ids, label,
                                           on_conflict="last")
        assert cost is not None
        dist = np.full((len(ids), len(ids)), np.inf)
        dist[src, dst] = cost
        return cls.from_distance_matrix(dist, ids, kernel=kernel, threshold=threshold,
                                        sigma=sigma, source=label)

    @classmethod
    def from_edge_list(
        cls,
        edges: PathLike | pd.DataFrame,
        node_ids: Sequence[Any] | None = None,
        *,
        num_nodes: int | None = None,
        weight: WeightMode = "cost",
        symmetric: bool = False,
        id_map: Mapping[Any, int] | None = None,
        source: str | None = None,
    ) -> SensorGraph:
        """Read an edge list ``from,to[,cost]`` such as ASTGCN's ``PEMS0x.csv``.

        Exact repeated rows are merged with a warning naming the file and the count
        (``PEMS08.csv`` repeats 18 of its 295 rows); a pair listed twice with different costs
        raises.

        Args:
            edges: A CSV file (header detected) or DataFrame; columns 1-2 are the endpoints,
                an optional column 3 the cost (e.g. ``cost`` or ``distance``).
            node_ids: The sensor ids in node order, when the endpoints are sensor ids
                (``PEMS03.csv`` with :func:`read_sensor_ids` of ``PEMS03.txt``).  ``None``: the
                endpoints are 0-based node indices (``PEMS04/07/08``).
            num_nodes: Number of nodes when the endpoints are indices; default max index + 1.
            weight: ``"cost"`` (the cost column), ``"binary"`` (1 for every edge) or
                ``"inverse"`` (1 / cost; costs must be positive).
            symmetric: Also add every reverse edge (a reverse edge already listed must have
                the same cost).
            id_map: Alternative to ``node_ids``: a mapping sensor id -> node index
                (a bijection onto ``0 .. N-1``).
            source: Name used in messages; default the path.

        Returns:
            The graph.

        Raises:
            FileNotFoundError: ``edges`` is a path that does not exist.
            ValueError: The file cannot be parsed; an endpoint is not a known id (or is out of
                range); a pair repeats with another cost; ``weight`` needs a cost column that
                is absent, or ``"inverse"`` meets a zero cost.  Messages name the file.

        Example:
            >>> g = SensorGraph.from_edge_list("datasets/pems04/PEMS04.csv")  # doctest: +SKIP
            >>> g.num_nodes, g.num_edges  # doctest: +SKIP
            (307, 340)
        """
        src_ids, dst_ids, cost, label = _edge_table(edges, source, "edge list")
        if weight not in ("cost", "binary", "inverse"):
            raise ValueError(f"{label}: unknown weight {weight!r}; expected 'cost', "
                             "'binary' or 'inverse'")
        if weight != "binary" and cost is None:
            raise ValueError(f"{label}: weight={weight!r} needs a cost column (a third "
                             "column); use weight='binary' for an unweighted list")
        if id_map is not None:
            if node_ids is not None:
                raise ValueError(f"{label}: pass node_ids or id_map, not both")
            node_ids = cls._ids_from_map(id_map, label)
        if node_ids is not None:
            ids = _node_id_list(node_ids, label)
            if num_nodes is not None and num_nodes != len(ids):
                raise ValueError(f"{label}: num_nodes={num_nodes} but {len(ids)} node ids")
            position = pd.Index(ids)
            src, dst = position.get_indexer(src_ids), position.get_indexer(dst_ids)
            unknown = pd.unique(np.concatenate([src_ids[src < 0], dst_ids[dst < 0]]))
            if unknown.size:
                raise ValueError(f"{label}: {unknown.size} ids are not among the {len(ids)} "
                                 f"node ids: {_preview(list(unknown))}")
        else:
            src, dst, n = cls._indices(src_ids, dst_ids, num_nodes, label)
            ids = _default_ids(n)
        src, dst, cost = _merge_duplicates(src, dst, cost, ids, label, on_conflict="raise")
        values = cls._edge_values(src, dst, cost, ids, weight, label)
        if symmetric:
            src, dst, values = cls._symmetrize(src, dst, values, ids, label)
        return cls._from_coo(ids, src, dst, values, source=label)

    @staticmethod
    def _ids_from_map(id_map: Mapping[Any, int], label: str) -> list[str]:
        """Node ids in index order from an id -> index mapping."""
        ids = [_normalize_id(key) for key in id_map]
        positions = [int(value) for value in id_map.values()]
        if sorted(positions) != list(range(len(positions))):
            raise ValueError(f"{label}: id_map values must be the indices 0..{len(ids) - 1}, "
                             "each once")
        ordered = [""] * len(ids)
        for sensor, position in zip(ids, positions, strict=True):
            ordered[position] = sensor
        return ordered

    @staticmethod
    def _indices(
        src_ids: np.ndarray, dst_ids: np.ndarray, num_nodes: int | None, label: str
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Parse 0-based node indices and check them against ``num_nodes``."""
        both = np.concatenate([src_ids, dst_ids])
        numbers = pd.to_numeric(pd.Series(both), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(numbers) | (numbers < 0) | (numbers != np.round(numbers))
        if bad.any():
            raise ValueError(
                f"{label}: endpoints must be 0-based node indices when node_ids is None; "
                f"{int(bad.sum())} are not: {_preview(list(pd.unique(both[bad])))} "
                "(pass node_ids= for sensor ids)"
            )
        indices = numbers.astype(np.int64)
        n = int(indices.max()) + 1 if num_nodes is None else num_nodes
        outside = indices >= n
        if outside.any():
            raise ValueError(f"{label}: {int(outside.sum())} endpoints are outside the node "
                             f"range [0, {n}): {_preview(sorted(set(indices[outside].tolist())))}")
        return indices[: len(src_ids)], indices[len(src_ids):], n

    @staticmethod
    def _edge_values(
        src: np.ndarray,
        dst: np.ndarray,
        cost: np.ndarray | None,
        ids: Sequence[str],
        weight: WeightMode,
        label: str,
    ) -> np.ndarray:
        if weight == "binary" or cost is None:
            return np.ones(len(src))
        if weight == "inverse":
            zero = np.flatnonzero(cost == 0)
            if zero.size:
                pairs = [f"{ids[src[i]]}->{ids[dst[i]]}" for i in zero]
                raise ValueError(f"{label}: weight='inverse' needs positive costs; "
                                 f"{zero.size} edges have cost 0: {_preview(pairs)}")
            return 1.0 / cost
        return cost

    @staticmethod
    def _symmetrize(
        src: np.ndarray, dst: np.ndarray, values: np.ndarray, ids: Sequence[str], label: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Add reverse edges; a reverse edge already present must carry the same weight."""
        frame = pd.DataFrame({
            "src": np.concatenate([src, dst]),
            "dst": np.concatenate([dst, src]),
            "w": np.concatenate([values, values]),
        }).drop_duplicates()
        clash = frame.duplicated(subset=["src", "dst"], keep=False)
        if clash.any():
            pairs = frame.loc[clash & (frame["src"] < frame["dst"]), ["src", "dst"]]
            shown = [f"{ids[s]}<->{ids[d]}" for s, d in pairs.drop_duplicates()
                     .itertuples(index=False)]
            raise ValueError(f"{label}: symmetric=True but {len(shown)} edges are listed in "
                             f"both directions with different costs: {_preview(shown)}")
        return frame["src"].to_numpy(), frame["dst"].to_numpy(), frame["w"].to_numpy()

    @classmethod
    def from_networkx(
        cls, graph: nx.Graph, weight: str = "weight", *, source: str | None = None
    ) -> SensorGraph:
        """Convert a networkx graph; node order is ``list(graph.nodes)``.

        Node ids come from a ``sensor_id`` node attribute where present (as written by
        :meth:`to_networkx`), otherwise from the node keys; ``latitude``/``longitude``
        attributes on every node become ``coordinates``.  An undirected graph gives both
        directions of each edge.  Edges without the weight attribute get weight 1.

        Args:
            graph: A ``nx.Graph`` or ``nx.DiGraph`` (multigraphs are rejected).
            weight: Edge attribute holding the weight.
            source: Name used in messages.

        Returns:
            The graph.

        Raises:
            ValueError: A multigraph, an empty graph, or invalid weights.

        Example:
            >>> g = SensorGraph.from_networkx(nx.path_graph(3))
            >>> g.num_edges
            4
        """
        label = source or "networkx graph"
        if graph.is_multigraph():
            raise ValueError(f"{label}: multigraphs are not supported; merge parallel edges")
        nodes = list(graph.nodes)
        if not nodes:
            raise ValueError(f"{label}: the graph has no nodes")
        position = {node: i for i, node in enumerate(nodes)}
        ids = [graph.nodes[node].get("sensor_id", node) for node in nodes]
        edges = list(graph.edges(data=weight, default=1.0))
        src = np.array([position[u] for u, _, _ in edges], dtype=np.int64)
        dst = np.array([position[v] for _, v, _ in edges], dtype=np.int64)
        try:
            values = np.array([w for _, _, w in edges], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{label}: edge attribute {weight!r} is not numeric ({exc})") \
                from exc
        if not graph.is_directed():
            loop = src == dst
            src, dst = np.concatenate([src, dst[~loop]]), np.concatenate([dst, src[~loop]])
            values = np.concatenate([values, values[~loop]])
        attrs = [graph.nodes[node] for node in nodes]
        coordinates = (np.array([[a["latitude"], a["longitude"]] for a in attrs])
                       if all("latitude" in a and "longitude" in a for a in attrs) else None)
        return cls._from_coo(ids, src, dst, values, coordinates=coordinates, source=source)

    @classmethod
    def from_coordinates(
        cls,
        coords: pd.DataFrame | np.ndarray,
        node_ids: Sequence[Any] | None = None,
        *,
        k: int | None = None,
        radius_km: float | None = None,
        sigma: float | None = None,
        threshold: float | None = None,
        source: str | None = None,
    ) -> SensorGraph:
        """Build a graph from sensor locations (great-circle distance, Gaussian kernel).

        Each node ``i`` gets edges ``i -> j`` to its ``k`` nearest other sensors, or to every
        other sensor within ``radius_km``; the kept distances ``d`` become weights
        ``exp(-(d / sigma)^2)`` (``sigma`` = std of the kept distances, DCRNN's choice) and
        weights below ``threshold`` are dropped.  No self loops (see :meth:`with_self_loops`).

        With ``k`` the neighbourhood is the sparsifier, so by default every node keeps its
        ``k`` edges (``threshold`` 0): a remote sensor whose nearest neighbours are all far
        away would otherwise lose every edge to the kernel threshold and be isolated.  An
        explicit ``threshold`` that leaves nodes without edges is applied, with a warning
        naming them.

        Args:
            coords: A DataFrame with latitude/longitude columns (``latitude``/``lat`` and
                ``longitude``/``lon``/``lng``, any case) and ids in a ``sensor_id``/``id``
                column or the index; or an ``[N, 2]`` array of (latitude, longitude).
            node_ids: Sensor ids in row order; overrides those found in ``coords``.
            k: Number of nearest neighbours (exactly one of ``k`` and ``radius_km``).
            radius_km: Connection radius in km.
            sigma: Kernel width in km; default the std of the kept distances.
            threshold: Weights below it are dropped; default 0 with ``k`` (every node keeps
                its ``k`` edges) and 0.1 (DCRNN's) with ``radius_km``.
            source: Name used in messages.

        Returns:
            The graph, with ``coordinates`` set.

        Raises:
            ValueError: Missing columns, invalid coordinates, neither or both of ``k`` and
                ``radius_km``, ``k`` outside ``[1, N-1]``, or a zero kernel width.

        Example:
            >>> xy = np.array([[34.0, -118.0], [34.01, -118.0], [34.5, -118.0]])
            >>> SensorGraph.from_coordinates(xy, k=1, threshold=0.0).num_edges
            3
        """
        label = source or "coordinates"
        lat, lon, found_ids = cls._read_coordinates(coords, label)
        n = lat.shape[0]
        ids = found_ids if node_ids is None else list(node_ids)
        if len(ids) != n:
            raise ValueError(f"{label}: {len(ids)} node ids for {n} coordinates")
        if (k is None) == (radius_km is None):
            raise ValueError(f"{label}: pass exactly one of k and radius_km")
        dist = _haversine_km(lat, lon)
        np.fill_diagonal(dist, np.inf)
        if k is not None:
            if not 1 <= k <= n - 1:
                raise ValueError(f"{label}: k must lie in [1, {n - 1}], got {k}")
            dst = np.argsort(dist, axis=1, kind="stable")[:, :k].reshape(-1)
            src = np.repeat(np.arange(n), k)
        else:
            assert radius_km is not None
            if not radius_km > 0:
                raise ValueError(f"{label}: radius_km must be positive, got {radius_km}")
            src, dst = np.nonzero(dist <= radius_km)
        kept = dist[src, dst]
        width = float(kept.std()) if sigma is None and kept.size else sigma
        if width is None or not math.isfinite(width) or width <= 0:
            raise ValueError(f"{label}: the kernel width sigma must be positive, got {width} "
                             "(all kept distances equal?); pass sigma=")
        weights = np.exp(-np.square(kept / width))
        if threshold is None:
            threshold = 0.0 if k is not None else _DCRNN_THRESHOLD
        keep = weights >= threshold
        if k is not None:
            alone = np.setdiff1d(np.arange(n), np.concatenate([src[keep], dst[keep]]))
            if alone.size:
                _warn(f"{label}: threshold={threshold:g} drops all {k} nearest-neighbour edges of "
                      f"{alone.size} sensors, which are left isolated: {_preview([ids[i] for i in alone])}; "
                      f"their neighbours are far compared with sigma={width:g} km; leave threshold "
                      "unset (0) to keep every sensor's k edges")
        return cls._from_coo(ids, src[keep], dst[keep], weights[keep],
                             coordinates=np.stack([lat, lon], axis=1), source=source)

    @staticmethod
    def _read_coordinates(
        coords: pd.DataFrame | np.ndarray, label: str
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(latitude, longitude, ids)`` from a DataFrame or an ``[N, 2]`` array."""
        if isinstance(coords, pd.DataFrame):
            table = coordinates_table(coords, label)
        else:
            values = _as_dense_array(coords, label)
            if values.ndim != 2 or values.shape[1] != 2:
                raise ValueError(f"{label}: expected an [N, 2] array of (latitude, longitude), "
                                 f"got shape {values.shape}")
            table = _checked_coordinates(_default_ids(values.shape[0]), values, label)
        if len(table) < 2:
            raise ValueError(f"{label}: needs at least 2 sensors, got {len(table)}")
        return (table["latitude"].to_numpy(), table["longitude"].to_numpy(),
                [str(i) for i in table.index])

    @classmethod
    def from_adj_pickle(cls, path: PathLike) -> SensorGraph:
        """Load DCRNN's ``adj_mx.pkl`` / ``adj_mx_bay.pkl`` without executing pickle code.

        Args:
            path: The pickle of ``[sensor_ids, sensor_id_to_ind, adj_mx]``.

        Returns:
            The graph with the pickle's sensor ids and ``to_dense() == adj_mx``.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            stgnn.data.safe_pickle.UnsafePickleError: The file names a forbidden global.
            ValueError: Malformed content (see :func:`load_adj_pickle`) or invalid weights.

        Example:
            >>> SensorGraph.from_adj_pickle("datasets/metr-la/adj_mx.pkl")  # doctest: +SKIP
            SensorGraph(num_nodes=207, num_edges=1722, source='adj_mx.pkl')
        """
        ids, _, adj = load_adj_pickle(path)
        return cls.from_dense(adj, ids, source=str(path))

    # ---------------------------------------------------------------- converters

    def _numpy_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = self.edge_index.numpy()
        return index[0], index[1], self.edge_weight.numpy()

    def to_dense(self) -> np.ndarray:
        """The ``[N, N]`` float32 weight matrix, ``W[source, target]``."""
        src, dst, weight = self._numpy_edges()
        dense = np.zeros((self.num_nodes, self.num_nodes), dtype=np.float32)
        dense[src, dst] = weight
        return dense

    def to_scipy(self) -> sp.csr_matrix:
        """The weight matrix as a float32 ``scipy.sparse.csr_matrix`` (row = source)."""
        src, dst, weight = self._numpy_edges()
        return sp.csr_matrix((weight, (src, dst)), shape=(self.num_nodes, self.num_nodes))

    def to_torch_sparse(self) -> Tensor:
        """The weight matrix as a coalesced float32 sparse COO tensor ``[N, N]``."""
        size = (self.num_nodes, self.num_nodes)
        # The invariants (indices in range, sorted, unique) were checked by validate().
        return torch.sparse_coo_tensor(self.edge_index, self.edge_weight, size,
                                       check_invariants=False).coalesce()

    def to_networkx(self) -> nx.DiGraph:
        """A ``nx.DiGraph`` on nodes ``0 .. N-1`` with ``sensor_id`` (and, where known,
        ``latitude``/``longitude``) node attributes and ``weight`` edge attributes."""
        graph = nx.DiGraph(source=self.source)
        for i, sensor in enumerate(self.node_ids):
            attrs: dict[str, Any] = {"sensor_id": sensor}
            if self.coordinates is not None:
                attrs["latitude"], attrs["longitude"] = self.coordinates[i].tolist()
            graph.add_node(i, **attrs)
        src, dst, weight = self._numpy_edges()
        graph.add_weighted_edges_from(zip(src.tolist(), dst.tolist(), weight.tolist(), strict=True))
        return graph

    def to_pyg(self) -> Data:
        """A ``torch_geometric.data.Data(edge_index, edge_attr=edge_weight, num_nodes=N)``."""
        from torch_geometric.data import Data

        return Data(edge_index=self.edge_index.clone(), edge_attr=self.edge_weight.clone(),
                    num_nodes=self.num_nodes)

    # ---------------------------------------------------------------- derived graphs

    def reorder(self, node_ids: Sequence[Any]) -> SensorGraph:
        """The graph restricted to ``node_ids``, in that order (edges among them kept).

        Args:
            node_ids: Ids of this graph, each at most once (e.g. the series' columns).

        Returns:
            A new graph whose node ``i`` is ``node_ids[i]``.

        Raises:
            ValueError: Some ids are not in the graph (named) or repeat.

        Example:
            >>> g = SensorGraph.from_dense(np.array([[0.0, 2.0], [0.0, 0.0]]), ["a", "b"])
            >>> g.reorder(["b", "a"]).to_dense()
            array([[0., 0.],
                   [2., 0.]], dtype=float32)
        """
        wanted = _node_id_list(node_ids, self._label)
        position = {sensor: i for i, sensor in enumerate(self.node_ids)}
        missing = [sensor for sensor in wanted if sensor not in position]
        if missing:
            raise ValueError(f"{self._label}: {len(missing)} requested ids are not in the "
                             f"graph: {_preview(missing)}")
        old = torch.tensor([position[sensor] for sensor in wanted], dtype=torch.long)
        new_of_old = torch.full((self.num_nodes,), -1, dtype=torch.long)
        new_of_old[old] = torch.arange(len(wanted))
        mapped = new_of_old[self.edge_index]
        keep = (mapped >= 0).all(dim=0)
        coordinates = None if self.coordinates is None else self.coordinates[old]
        return SensorGraph(wanted, mapped[:, keep], self.edge_weight[keep],
                           coordinates=coordinates, source=self.source)

    def check_nodes(
        self, sensor_ids: Sequence[Any], source: str | None = None, *, ordered: bool = False
    ) -> None:
        """Check that a series' sensor ids are exactly this graph's nodes.

        Args:
            sensor_ids: The series' sensor ids (e.g. its columns).
            source: Name of the series, for the message.
            ordered: Also require the same order (node ``i`` = column ``i``); by default only
                the sets are compared, so that a caller can :meth:`reorder` afterwards.

        Raises:
            ValueError: The ids differ: the message gives the count and first few of the
                series ids missing from the graph and of the graph ids absent from the series,
                or the first position where the order differs (fix with :meth:`reorder`).

        Example:
            >>> g = SensorGraph.from_dense(np.eye(2), ["a", "b"])
            >>> g.check_nodes(["a", "c"], "speed.csv")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: speed.csv: sensor ids do not match graph SensorGraph: ...
        """
        series = [_normalize_id(sensor) for sensor in sensor_ids]
        label = f"{source or 'series'}: sensor ids do not match graph {self._label}"
        in_graph = set(self.node_ids)
        in_series = set(series)
        not_in_graph = [s for s in series if s not in in_graph]
        not_in_series = [s for s in self.node_ids if s not in in_series]
        problems = []
        if not_in_graph:
            problems.append(f"{len(not_in_graph)} series ids are missing from the graph: "
                            f"{_preview(not_in_graph)}")
        if not_in_series:
            problems.append(f"{len(not_in_series)} graph ids are not in the series: "
                            f"{_preview(not_in_series)}")
        if len(in_series) != len(series):
            problems.append(f"{len(series) - len(in_series)} series ids repeat")
        if problems:
            raise ValueError(f"{label}: " + "; ".join(problems))
        if ordered and series != self.node_ids:
            pairs = zip(series, self.node_ids, strict=True)
            at = next(i for i, (mine, theirs) in enumerate(pairs) if mine != theirs)
            raise ValueError(f"{label}: same ids in another order (position {at}: series has "
                             f"{series[at]!r}, graph has {self.node_ids[at]!r}); use "
                             "graph.reorder(sensor_ids)")

    def with_self_loops(self, policy: SelfLoopPolicy) -> SensorGraph:
        """Apply an explicit self-loop policy.

        Args:
            policy: ``"keep"`` (return the graph as is), ``"remove"`` (drop ``i -> i``
                edges) or ``"add"`` (add ``i -> i`` with weight 1 where missing; existing
                loops keep their weight, e.g. DCRNN's diagonal).

        Returns:
            The graph under that policy.

        Raises:
            ValueError: Unknown policy.

        Example:
            >>> g = SensorGraph.from_dense(np.array([[0.0, 2.0], [3.0, 0.0]]))
            >>> g.with_self_loops("add").num_edges
            4
        """
        if policy == "keep":
            return self
        loop = self.edge_index[0] == self.edge_index[1]
        if policy == "remove":
            index, weight = self.edge_index[:, ~loop], self.edge_weight[~loop]
        elif policy == "add":
            has_loop = torch.zeros(self.num_nodes, dtype=torch.bool)
            has_loop[self.edge_index[0, loop]] = True
            new = torch.nonzero(~has_loop).flatten()
            index = torch.cat([self.edge_index, new.repeat(2, 1)], dim=1)
            weight = torch.cat([self.edge_weight, torch.ones(new.numel())])
        else:
            raise ValueError(f"{self._label}: unknown self-loop policy {policy!r}; expected "
                             "'keep', 'remove' or 'add'")
        return SensorGraph(self.node_ids, index, weight, coordinates=self.coordinates,
                           source=self.source)
