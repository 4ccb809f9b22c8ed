"""The in-memory form of a traffic dataset: one series tensor, its mask, its graph."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from stgnn.data.graph import SensorGraph
from stgnn.data.preview import SHOWN, preview

if TYPE_CHECKING:
    from stgnn.data.covariates import UserCovariates

__all__ = ["TrafficDataset", "check_readings", "derive_timestamps"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_readings(values: np.ndarray, node_ids: list[str], timestamps: pd.DatetimeIndex,
                   missing: np.ndarray, label: str) -> None:
    """Refuse readings float32 cannot hold; warn about all-missing sensors and negative readings.

    Args:
        values: ``[T, N, F]`` float64 readings, NaN where missing.
        node_ids: The ``N`` sensor ids.
        timestamps: The ``T`` timestamps.
        missing: ``[T, N]`` bool, True where a reading is missing.
        label: The file (or dataset) named in messages.

    Raises:
        ValueError: A reading is infinite or larger in magnitude than float32's maximum
            (it would become ``inf`` and every loss and metric ``nan``/``inf``); the message
            names the file, the sensors, the timestamps and the values.
    """
    bad = np.isinf(values) | (np.abs(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)) > _FLOAT32_MAX)
    if bad.any():
        t, n, _ = np.nonzero(bad)
        shown = "; ".join(f"sensor {node_ids[j]} at {timestamps[i]}: {values[i, j][bad[i, j]][0]:g}"
                          for i, j in list(dict.fromkeys(zip(t.tolist(), n.tolist(), strict=True)))[:SHOWN])
        raise ValueError(f"{label}: {int(bad.sum())} readings are infinite or beyond float32's range "
                         f"(|x| > {_FLOAT32_MAX:.3g}): {shown}")
    empty = np.flatnonzero(missing.all(axis=0))
    if empty.size:
        names = preview([node_ids[i] for i in empty])
        warnings.warn(f"{label}: {empty.size} sensors have no reading at all: {names}", UserWarning,
                      stacklevel=3)
    negative = values < 0
    if negative.any():
        counts = Counter(values[negative].tolist()).most_common(3)
        common = ", ".join(f"{v:g} x{c}" for v, c in counts)
        sensors = int(negative.any(axis=(0, 2)).sum())
        warnings.warn(f"{label}: {int(negative.sum())} negative readings in {sensors} sensors (most common: "
                      f"{common}); if a value marks a missing reading (a sentinel such as -9999), "
                      "declare it as missing: missing_values = [-9999] in a config's [custom] section "
                      "(load_custom(..., missing_values=[-9999]) in Python)", UserWarning, stacklevel=3)


@dataclass
class TrafficDataset:
    """A multivariate sensor time series on a sensor graph.

    Attributes:
        name: Dataset name (registry name, or the file stem for a user's own data).
        series: Readings ``[T, N, F]`` float32.  Missing readings hold 0.
        mask: ``[T, N]`` bool, False where a reading is missing.
        timestamps: ``T`` timestamps (a :class:`pandas.DatetimeIndex`).
        graph: The sensor graph; its node order is the series' node order.
        interval_minutes: Sampling interval.
        units: Units of the readings.
        feature_names: Names of the ``F`` features.
        source: Where the data comes from.
        split: Default chronological (train, val, test) fractions.
        timestamps_derived: True when the files carry no timestamps and they were
            derived from the documented start date and the step index.
        user_covariates: A user's time covariates and node attributes, aligned to the
            timestamps and the node order (see :mod:`stgnn.data.covariates`), or ``None``.
        release_pages: For a memory-mapped series (:mod:`stgnn.data.ondisk`): drops the pages
            read so far from the process's resident memory (the OS keeps them cached); ``None``
            for a series in memory.  Readers of the whole series call it between chunks.
    """

    name: str
    series: Tensor
    mask: Tensor
    timestamps: pd.DatetimeIndex
    graph: SensorGraph
    interval_minutes: int
    units: str
    feature_names: tuple[str, ...]
    source: str
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    timestamps_derived: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    user_covariates: UserCovariates | None = None
    release_pages: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.series.dim() != 3:
            raise ValueError(f"{self.name}: series must be [T, N, F], got {tuple(self.series.shape)}")
        t, n, f = self.series.shape
        if tuple(self.mask.shape) != (t, n):
            raise ValueError(f"{self.name}: mask {tuple(self.mask.shape)} does not match series [T, N] = {(t, n)}")
        if len(self.timestamps) != t:
            raise ValueError(f"{self.name}: {len(self.timestamps)} timestamps for {t} steps")
        if self.graph.num_nodes != n:
            raise ValueError(f"{self.name}: graph has {self.graph.num_nodes} nodes, series has {n} sensors")
        if len(self.feature_names) != f:
            raise ValueError(f"{self.name}: {len(self.feature_names)} feature names for {f} features")
        if self.user_covariates is not None:
            self.user_covariates.check(t, n, self.name)

    @property
    def num_steps(self) -> int:
        """``T``."""
        return int(self.series.shape[0])

    @property
    def num_nodes(self) -> int:
        """``N``."""
        return int(self.series.shape[1])

    @property
    def num_features(self) -> int:
        """``F``."""
        return int(self.series.shape[2])

    @property
    def node_ids(self) -> list[str]:
        """Sensor ids in node order."""
        return list(self.graph.node_ids)

    @property
    def steps_per_day(self) -> int:
        """Steps in one day."""
        return int(round(24 * 60 / self.interval_minutes))

    def step_chunks(self, steps: int | None = None, end: int | None = None) -> Iterator[slice]:
        """Slices of consecutive steps covering ``[0, end)`` (default all), about 16M readings each.

        After each slice is yielded, a memory-mapped series' pages are released
        (:attr:`release_pages`), so a pass over the whole series keeps bounded resident memory.
        """
        end = self.num_steps if end is None else end
        step = steps or max(1, (1 << 24) // max(1, self.num_nodes * self.num_features))
        for start in range(0, end, step):
            yield slice(start, min(start + step, end))
            if self.release_pages is not None:
                self.release_pages()

    @property
    def missing_rate(self) -> float:
        """Fraction of missing readings."""
        observed = sum(int(self.mask[s].sum()) for s in self.step_chunks())
        return 1.0 - observed / max(1, self.mask.numel())

    def __repr__(self) -> str:
        t, n, f = self.series.shape
        return (
            f"TrafficDataset(name={self.name!r}, T={t}, N={n}, F={f}, "
            f"interval={self.interval_minutes}min, missing={self.missing_rate:.2%})"
        )

    @staticmethod
    def from_arrays(
        name: str,
        values: np.ndarray,
        graph: SensorGraph,
        timestamps: pd.DatetimeIndex,
        *,
        interval_minutes: int,
        units: str,
        feature_names: tuple[str, ...],
        source: str,
        split: tuple[float, float, float] = (0.7, 0.1, 0.2),
        missing_zero: bool = True,
        timestamps_derived: bool = False,
        notes: tuple[str, ...] = (),
        file: str | None = None,
    ) -> TrafficDataset:
        """Build a dataset from a ``[T, N]`` or ``[T, N, F]`` array.

        NaN readings are missing; with ``missing_zero`` exact zeros are missing too (the
        METR-LA / PEMS convention).  A node is missing at a step when its first feature is.
        The readings are checked with :func:`check_readings`; messages name ``file``
        (default ``source``).
        """
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise ValueError(f"{name}: expected a [T, N] or [T, N, F] array, got shape {arr.shape}")
        first = arr[:, :, 0]
        missing = ~np.isfinite(first)
        if missing_zero:
            missing |= first == 0
        if len(timestamps) == arr.shape[0] and graph.num_nodes == arr.shape[1]:  # else __post_init__ says why
            check_readings(arr, graph.node_ids, timestamps, missing, file or source)
        arr = np.where(np.isfinite(arr), arr, 0.0)
        return TrafficDataset(
            name=name,
            series=torch.from_numpy(arr.astype(np.float32)),
            mask=torch.from_numpy(~missing),
            timestamps=timestamps,
            graph=graph,
            interval_minutes=interval_minutes,
            units=units,
            feature_names=feature_names,
            source=source,
            split=split,
            timestamps_derived=timestamps_derived,
            notes=notes,
        )


def derive_timestamps(
    start: str, steps: int, interval_minutes: int, *, weekdays_only: bool = False
) -> pd.DatetimeIndex:
    """Timestamps for a file without them, from its documented start date.

    With ``weekdays_only`` the series is taken to hold whole weekdays back to back
    (PeMSD7(M): 288 steps per weekday, weekends absent).
    """
    freq = pd.Timedelta(minutes=interval_minutes)
    if not weekdays_only:
        return pd.date_range(start=start, periods=steps, freq=freq)
    per_day = int(round(pd.Timedelta(days=1) / freq))
    days = -(-steps // per_day)
    day_starts = pd.bdate_range(start=start, periods=days)
    offsets = pd.timedelta_range(start=0, periods=per_day, freq=freq)
    stamps = (day_starts.values[:, None] + offsets.values[None, :]).reshape(-1)[:steps]
    return pd.DatetimeIndex(stamps)
