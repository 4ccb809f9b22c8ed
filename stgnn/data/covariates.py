"""User covariates for any dataset (own data or a benchmark): time covariates (weather, events) and static
node attributes.

Two tables, both CSV (comma-separated, one header row) or Parquet:

* **Time covariates** (``time_covariates``), indexed by timestamp, in one of two layouts:

  - *global* (one value per time step for every sensor): a ``timestamp`` column, then one
    column per covariate, e.g. ``timestamp,temperature,rain,holiday``;
  - *per sensor* (long layout): a ``timestamp`` column, a ``sensor_id`` column, then one column
    per covariate, one row per (timestamp, sensor) pair, e.g.
    ``timestamp,sensor_id,incident,lane_closed``.

  Every timestamp of the readings' grid needs a row (per sensor: a row for every sensor);
  rows before the first or after the last reading are not used.  Values are numeric (booleans
  become 0/1) and finite: a categorical time covariate must be one-hot encoded by the user
  (one 0/1 column per category), because the categories seen in training would otherwise
  depend on the period.

* **Node attributes** (``node_attributes``), indexed by sensor id: a ``sensor_id`` column, then
  one column per attribute, e.g. ``sensor_id,lanes,speed_limit,road_type``.  Numeric columns are
  used as they are; a text column is categorical and is one-hot encoded into one 0/1 column per
  category, named ``column=category`` (categories sorted).  Every sensor of the readings needs a
  row, and every row must name a sensor of the readings.

Covariates are fed as extra input channels over the input window (the value at each input
step; node attributes repeated at every step), after the scaled readings and the
``time_of_day`` / ``day_of_week`` covariates.  A covariate known in advance (a weather forecast,
a scheduled event) helps forecasting when its row at time ``t`` holds what is known at ``t``
about the coming steps (shift it in the file).  They are standardised with statistics of the
training period only (:class:`~stgnn.data.windows.WindowData`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from stgnn.data.graph_io import _normalize_id
from stgnn.data.preview import preview

__all__ = ["UserCovariates", "align_time_covariates", "node_attribute_table"]

PathLike = str | os.PathLike[str]

_TIME = "timestamp"
_SENSOR = "sensor_id"


@dataclass(frozen=True)
class UserCovariates:
    """A user's covariates, aligned to a dataset's timestamps and sensor order (unscaled).

    Attributes:
        time: ``[T, N, C]`` float32 time covariates (a global covariate is the same for every
            sensor), or ``None``.
        time_names: The ``C`` names.
        node: ``[N, A]`` float32 static node attributes (one-hot columns included), or ``None``.
        node_names: The ``A`` names.
    """

    time: Tensor | None = None
    time_names: tuple[str, ...] = ()
    node: Tensor | None = None
    node_names: tuple[str, ...] = ()

    @property
    def num_channels(self) -> int:
        """``C + A``: the input channels they add."""
        return len(self.time_names) + len(self.node_names)

    @property
    def names(self) -> tuple[str, ...]:
        """Channel names, time covariates first."""
        return (*self.time_names, *self.node_names)

    def check(self, num_steps: int, num_nodes: int, label: str) -> None:
        """Raise ``ValueError`` (naming ``label``) when the shapes do not fit ``[T, N]``."""
        if self.time is not None and (tuple(self.time.shape) != (num_steps, num_nodes, len(self.time_names))):
            raise ValueError(f"{label}: time covariates {tuple(self.time.shape)} do not fit "
                             f"[T, N, C] = {(num_steps, num_nodes, len(self.time_names))}")
        if self.node is not None and tuple(self.node.shape) != (num_nodes, len(self.node_names)):
            raise ValueError(f"{label}: node attributes {tuple(self.node.shape)} do not fit "
                             f"[N, A] = {(num_nodes, len(self.node_names))}")

    def reorder(self, order: Tensor) -> UserCovariates:
        """The same covariates with the nodes taken in ``order`` (``[N]`` indices)."""
        return UserCovariates(
            None if self.time is None else self.time[:, order].contiguous(), self.time_names,
            None if self.node is None else self.node[order].contiguous(), self.node_names,
        )

    def expand(self, num_steps: int, num_nodes: int) -> Tensor:
        """``[T, N, C + A]`` float32: time covariates, then node attributes repeated over time."""
        parts = []
        if self.time is not None:
            parts.append(self.time)
        if self.node is not None:
            parts.append(self.node[None].expand(num_steps, -1, -1))
        if not parts:
            return torch.zeros(num_steps, num_nodes, 0)
        return torch.cat(parts, dim=-1)


def _numeric_columns(path: Path, frame: pd.DataFrame, what: str, where: pd.Index) -> np.ndarray:
    """Columns as float64; booleans become 0/1; text or non-finite cells are errors naming ``where``."""
    out = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column):
            column = column.astype(np.float64)
        if not pd.api.types.is_numeric_dtype(column):
            raise ValueError(
                f"{path}: {what} column {str(name)!r} is not numeric (e.g. {column.dropna().iloc[0]!r}); "
                "time covariates must be numbers: one-hot encode a categorical one (one 0/1 column per "
                "category)")
        values = column.to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(f"{path}: {what} column {str(name)!r} has {bad.size} empty or non-finite cells "
                             f"(at {preview([str(where[i]) for i in bad])}); covariates cannot be missing")
        out.append(values)
    return np.stack(out, axis=1)


def _parse_stamps(path: Path, column: pd.Series) -> pd.DatetimeIndex:
    try:
        stamps = pd.DatetimeIndex(pd.to_datetime(column, format="ISO8601"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: column {_TIME!r} does not hold timestamps ({exc})") from exc
    if stamps.tz is not None:
        stamps = stamps.tz_convert(None)
    if stamps.hasnans:
        raise ValueError(f"{path}: {int(stamps.isna().sum())} rows have no timestamp")
    return stamps


def align_time_covariates(
    frame: pd.DataFrame, path: PathLike, timestamps: pd.DatetimeIndex, sensor_ids: Sequence[str]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Align a time-covariate table to the readings' timestamps and sensors.

    The layout (global, or per sensor with a ``sensor_id`` column) is described in
    :mod:`stgnn.data.covariates`.

    Args:
        frame: The table as read (:func:`stgnn.data.custom.read_table`).
        path: Its file, named in messages.
        timestamps: The readings' ``T`` timestamps (its regular grid).
        sensor_ids: The readings' ``N`` sensor ids, in node order.

    Returns:
        ``(values [T, N, C] float64, covariate names)``.

    Raises:
        ValueError: The message names the file and the problem: no ``timestamp`` column, no
            covariate column, repeated rows, timestamps of the readings that have no row (listed),
            sensor ids that are unknown or have no rows (listed), non-numeric or missing values.
    """
    path = Path(path)
    frame = frame.set_axis([str(c).strip() for c in frame.columns], axis=1)
    if _TIME not in frame.columns:
        raise ValueError(f"{path}: time covariates need a {_TIME!r} column; found {preview(list(frame.columns))}")
    per_sensor = _SENSOR in frame.columns
    names = tuple(c for c in frame.columns if c not in (_TIME, _SENSOR))
    if not names:
        besides = f"{_TIME!r}" + (f" and {_SENSOR!r}" if per_sensor else "")
        raise ValueError(f"{path}: no covariate columns besides {besides}")
    stamps = _parse_stamps(path, frame[_TIME])
    ids = [str(s) for s in sensor_ids]
    if per_sensor:
        rows_ids = [_normalize_id(v) for v in frame[_SENSOR]]
        unknown = sorted(set(rows_ids) - set(ids))
        if unknown:
            raise ValueError(f"{path}: {len(unknown)} sensor ids are not sensors of the readings: {preview(unknown)}")
        absent = [s for s in ids if s not in set(rows_ids)]
        if absent:
            raise ValueError(f"{path}: no rows for {len(absent)} sensors of the readings: {preview(absent)}")
        index = pd.MultiIndex.from_arrays([stamps, rows_ids])
    else:
        index = pd.Index(stamps)
    if index.has_duplicates:
        dup = [str(k) for k in index[index.duplicated()]]
        key = " (timestamp, sensor_id)" if per_sensor else ""
        raise ValueError(f"{path}: repeated rows{key} for {preview(dup)}")
    inside = (stamps >= timestamps[0]) & (stamps <= timestamps[-1])
    off_grid = inside & ~stamps.isin(timestamps)
    if off_grid.any():
        shown = preview([str(s) for s in stamps[off_grid]])
        raise ValueError(f"{path}: {int(off_grid.sum())} rows have timestamps between the first and the last "
                         f"reading that are not on the readings' grid, e.g. {shown}")
    values = _numeric_columns(path, frame[list(names)], "covariate", pd.Index([str(k) for k in index]))
    table = pd.DataFrame(values, index=index, columns=list(names))
    if per_sensor:
        wanted = pd.MultiIndex.from_product([timestamps, ids])
        aligned = table.reindex(wanted)
        hole = aligned.isna().any(axis=1).to_numpy().reshape(len(timestamps), len(ids))
        if hole.any():
            t, n = np.nonzero(hole)
            shown = preview([f"{timestamps[i]} sensor {ids[j]}" for i, j in zip(t.tolist(), n.tolist(), strict=True)])
            raise ValueError(f"{path}: {int(hole.sum())} (timestamp, sensor) pairs of the readings have no row: "
                             f"{shown}")
        return aligned.to_numpy().reshape(len(timestamps), len(ids), len(names)), names
    aligned = table.reindex(timestamps)
    hole = aligned.isna().any(axis=1).to_numpy()
    if hole.any():
        shown = preview([str(s) for s in timestamps[hole]])
        raise ValueError(f"{path}: {int(hole.sum())} timestamps of the readings have no row: {shown}")
    values = aligned.to_numpy()
    return np.broadcast_to(values[:, None, :], (len(timestamps), len(ids), len(names))).copy(), names


def node_attribute_table(
    frame: pd.DataFrame, path: PathLike, sensor_ids: Sequence[str]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """A node-attribute table (``sensor_id`` column, then attributes) in the readings' node order.

    Text columns are categorical and become one-hot 0/1 columns named ``column=category``
    (categories sorted); numeric columns are kept; booleans become 0/1.

    Args:
        frame: The table as read (:func:`stgnn.data.custom.read_table`).
        path: Its file, named in messages.
        sensor_ids: The readings' ``N`` sensor ids, in node order.

    Returns:
        ``(values [N, A] float64, attribute names)``.

    Raises:
        ValueError: The message names the file and the problem: no ``sensor_id`` column, no
            attribute column, repeated or unknown sensor ids, sensors without a row (listed),
            missing values.
    """
    path = Path(path)
    frame = frame.set_axis([str(c).strip() for c in frame.columns], axis=1)
    if _SENSOR not in frame.columns:
        raise ValueError(f"{path}: node attributes need a {_SENSOR!r} column; found {preview(list(frame.columns))}")
    rows_ids = [_normalize_id(v) for v in frame[_SENSOR]]
    frame = frame.drop(columns=_SENSOR)
    if frame.shape[1] == 0:
        raise ValueError(f"{path}: no attribute columns besides {_SENSOR!r}")
    repeated = sorted({s for s in rows_ids if rows_ids.count(s) > 1})
    if repeated:
        raise ValueError(f"{path}: sensor ids repeated: {preview(repeated)}")
    ids = [str(s) for s in sensor_ids]
    unknown = [s for s in rows_ids if s not in set(ids)]
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} sensor ids are not sensors of the readings: {preview(unknown)}")
    absent = [s for s in ids if s not in set(rows_ids)]
    if absent:
        raise ValueError(f"{path}: no attributes for {len(absent)} sensors of the readings: {preview(absent)}")
    frame.index = pd.Index(rows_ids)
    columns: list[np.ndarray] = []
    names: list[str] = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            columns.append(_numeric_columns(path, frame[[name]], "attribute", frame.index)[:, 0])
            names.append(name)
            continue
        empty = column.isna().to_numpy()
        if empty.any():
            raise ValueError(f"{path}: attribute column {name!r} is empty for sensors "
                             f"{preview([rows_ids[i] for i in np.flatnonzero(empty)])}")
        labels = column.astype(str).str.strip()
        for category in sorted(labels.unique()):
            columns.append((labels == category).to_numpy(dtype=np.float64))
            names.append(f"{name}={category}")
    values = np.stack(columns, axis=1)
    order = [rows_ids.index(s) for s in ids]
    return values[order], tuple(names)
