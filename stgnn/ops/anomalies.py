"""Anomaly alerts from a trained forecaster: residual z-scores, stuck sensors and dropouts.

Three kinds of alert, each on one (sensor, time) point of a readings file:

* **spike / drop** -- the observed reading is far from the model's forecast made
  ``horizon`` steps earlier.  The residual ``r = observed - forecast`` is turned into a
  z-score ``z = (r - mean) / std`` whose mean and standard deviation are taken per sensor and
  time-of-day slot from the residuals of the *training period* of the checkpoint's own data;
  ``|z| > threshold`` is an alert: ``spike`` above the forecast, ``drop`` below it.  (Traffic
  residuals are heavy-tailed: a robust scale such as 1.4826 * MAD is about half the standard
  deviation on Los-loop and flags the ordinary tails, so the plain standard deviation is used.)
  A slot with fewer than ``min_slot_count`` training residuals for a sensor uses that
  sensor's statistics over the whole day instead; a standard deviation below ``1e-3`` of the
  readings' standard deviation is raised to it (a perfectly predicted sensor would otherwise
  alert on rounding).
* **spike / drop, probabilistic models** -- a model with a Gaussian or quantile head alerts
  where the reading falls outside the central ``interval`` of its forecast distribution
  (default 0.99; a quantile head's widest); the score is the residual in units of the
  interval's half-width on that side (``|score| > 1``), and no residual statistics are used.
* **stuck** -- a run of at least ``stuck_steps`` consecutive identical observed readings
  (every point of the run is an alert; the score is the run length in steps).
* **dropout** -- a run of at least ``min_dropout`` consecutive missing readings: NaN cells,
  timestamps absent from the file, declared sentinels, and zeros with ``zero_is_missing``
  (score: run length).

A point gets one alert, the first of dropout, stuck, spike/drop that applies.

**Forecasts from cleaned history.**  A spike at ``t`` enters the model's input window for
the next ``input_len`` steps and would make the forecasts there (and hence their residuals)
wrong.  The scan therefore walks forward in time the way an online detector would: every
point that is missing, stuck or flagged is replaced, in the model's input, by its forecast
before later steps are forecast -- spike/drop alerts only for the first ``clean_steps`` in a
row of a sensor: a real change of level (congestion setting in) would otherwise keep the
forecast at the old level and be flagged until it ends.  Forecasts whose input window holds no replaced reading come
from one batched pass; only the others are recomputed, one time step at a time.

The first ``input_len + horizon - 1`` steps of a file have no forecast: they get stuck and
dropout alerts only (and an ``expected`` of NaN).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from stgnn.data.custom import read_series_table
from stgnn.data.dataset import TrafficDataset
from stgnn.data.graph import SensorGraph
from stgnn.training.checkpoint import write_json
from stgnn.training.config import RunConfig
from stgnn.training.fingerprint import align_sensors
from stgnn.training.trainer import Experiment

__all__ = [
    "ALERT_COLUMNS",
    "AnomalySettings",
    "Detection",
    "ResidualStatistics",
    "detect_anomalies",
    "inject_anomalies",
    "interval_level",
    "plot_sensors",
    "read_series",
    "residual_statistics",
    "run_lengths",
    "score_alerts",
    "write_report",
]

ALERT_COLUMNS = ("sensor", "time", "kind", "score", "observed", "expected")
"""Columns of the alerts table (``alerts.csv``)."""

_SCALE_FLOOR = 1e-3


@dataclass(frozen=True)
class AnomalySettings:
    """What counts as an anomaly.

    Attributes:
        threshold: ``|z|`` above which a residual is an alert. Default 4.
        horizon: Forecast step whose residual is scored (1 = the forecast made one step
            earlier). Default 1.
        slot_minutes: Width of the time-of-day slots of the residual statistics; divides a
            day. Default 60.
        stuck_steps: Identical consecutive readings that make a stuck run. Default 12.
        min_dropout: Consecutive missing readings that make a dropout alert. Default 1.
        min_slot_count: Training residuals a (sensor, slot) needs for its own statistics.
            Default 20.
        clean_steps: Consecutive spike/drop alerts of a sensor whose readings are replaced by
            their forecasts in the model's input; later ones are kept (a lasting change of
            level is then followed rather than flagged forever). Default 3.
        interval: Probabilistic models only: the central interval level outside which a
            reading alerts (default 0.99, or the widest a quantile head holds; see
            :func:`interval_level`).
    """

    threshold: float = 4.0
    horizon: int = 1
    slot_minutes: int = 60
    stuck_steps: int = 12
    min_dropout: int = 1
    min_slot_count: int = 20
    clean_steps: int = 3
    interval: float | None = None

    def check(self, model_horizon: int) -> None:
        """Raise ``ValueError`` naming the option of every setting out of range."""
        problems = []
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            problems.append(f"--threshold: must be a positive number, got {self.threshold}")
        if not 1 <= self.horizon <= model_horizon:
            problems.append(f"--horizon: must be in 1..{model_horizon} (the model's horizon), got {self.horizon}")
        if not (1 <= self.slot_minutes <= 1440 and 1440 % self.slot_minutes == 0):
            problems.append(f"--slot-minutes: must divide a day (1440 minutes), got {self.slot_minutes}")
        if self.stuck_steps < 2:
            problems.append(f"--stuck-steps: must be >= 2, got {self.stuck_steps}")
        if self.min_dropout < 1:
            problems.append(f"--min-dropout: must be >= 1, got {self.min_dropout}")
        if self.interval is not None and not 0.0 < self.interval < 1.0:
            problems.append(f"--interval: must be in (0, 1), e.g. 0.99, got {self.interval}")
        if self.clean_steps < 0:
            problems.append(f"clean_steps: must be >= 0, got {self.clean_steps}")
        if self.min_slot_count < 2:
            problems.append(f"min_slot_count: must be >= 2, got {self.min_slot_count}")
        if problems:
            raise ValueError("\n".join(problems))


@dataclass
class ResidualStatistics:
    """Mean and standard deviation of forecast residuals per time-of-day slot and sensor.

    Attributes:
        center: ``[S, N]`` mean residual.
        scale: ``[S, N]`` standard deviation (floored, see the module docstring).
        count: ``[S, N]`` training residuals in each slot (before any fallback).
        slot_minutes: Slot width; ``S = 1440 / slot_minutes``.
    """

    center: Tensor
    scale: Tensor
    count: Tensor
    slot_minutes: int

    def slots(self, timestamps: pd.DatetimeIndex) -> np.ndarray:
        """``[T]`` time-of-day slot index of each timestamp."""
        minutes = timestamps.hour.to_numpy() * 60 + timestamps.minute.to_numpy()
        return (minutes // self.slot_minutes).astype(np.int64)


def _forecasts(exp: Experiment, starts: Tensor, step: int, batch_size: int) -> np.ndarray:
    """``[len(starts), N]`` raw-unit point forecasts ``step`` (0-based) ahead of each window's inputs."""
    return _forecast_bands(exp, starts, step, batch_size, None)[0]


def _forecast_bands(exp: Experiment, starts: Tensor, step: int, batch_size: int,
                    level: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point forecasts and the central ``level`` interval (NaN without a level), each ``[len(starts), N]``."""
    points, lows, highs = [], [], []
    for i in range(0, starts.numel(), batch_size):
        dist = exp.predict_distribution(exp.data.batch(starts[i : i + batch_size]))
        points.append(dist.point[:, step, :, 0].numpy())
        if level is None:
            lows.append(np.full_like(points[-1], np.nan))
            highs.append(np.full_like(points[-1], np.nan))
        else:
            low, high = dist.interval(level)
            lows.append(low[:, step, :, 0].numpy())
            highs.append(high[:, step, :, 0].numpy())
    if not points:
        empty = np.zeros((0, exp.dataset.num_nodes), dtype=np.float32)
        return empty, empty, empty
    return np.concatenate(points), np.concatenate(lows), np.concatenate(highs)


def interval_level(config: RunConfig, settings: AnomalySettings) -> float | None:
    """The interval level a scan of ``config``'s model uses, or ``None`` for a point model (z-scores).

    A probabilistic model uses ``settings.interval``, by default 0.99 where its head gives it
    (Gaussian), else the widest central interval its quantile levels hold.

    Raises:
        ValueError: ``settings.interval`` given for a point model, or a level the head cannot give.
    """
    kind = config.head.kind
    if kind == "point":
        if settings.interval is not None:
            raise ValueError(f"--interval: the {config.model} checkpoint forecasts points (no intervals); "
                             "its alerts use residual z-scores (--threshold)")
        return None
    if settings.interval is not None:
        level = settings.interval
    elif kind == "quantile":
        levels = config.head.quantiles
        level = min(0.99, 1.0 - 2.0 * max(levels[0], 1.0 - levels[-1]))
    else:
        level = 0.99
    if kind == "quantile":
        levels = config.head.quantiles
        if not (levels[0] <= (1 - level) / 2 + 1e-12 and (1 + level) / 2 - 1e-12 <= levels[-1]):
            raise ValueError(f"--interval {level:g}: the quantile head predicts levels {levels}, which hold "
                             f"central intervals up to {1.0 - 2.0 * max(levels[0], 1.0 - levels[-1]):g}")
    return level


def residual_statistics(exp: Experiment, settings: AnomalySettings) -> ResidualStatistics:
    """Residual statistics of ``exp``'s model on the training period of its own data.

    Args:
        exp: The checkpoint's experiment (its data and fitted scaler).
        settings: ``horizon``, ``slot_minutes`` and ``min_slot_count`` are used.

    Raises:
        ValueError: The training period has no observed target at the scored horizon.
    """
    h, length = settings.horizon, exp.spec.input_len
    starts = exp.data.splits["train"]
    predicted = _forecasts(exp, starts, h - 1, exp.config.train.eval_batch_size)
    targets = (starts + length + h - 1).numpy()
    observed = exp.data.mask[targets].numpy()
    truth = exp.data.targets_at(torch.from_numpy(targets))[0][:, :, 0].numpy()
    residual = torch.from_numpy(np.where(observed, truth - predicted, np.nan).astype(np.float64))
    if not observed.any():
        raise ValueError(f"{exp.dataset.source}: the training period has no observed readings to fit "
                         "the residual statistics on")
    slots_per_day = 1440 // settings.slot_minutes
    stats = ResidualStatistics(torch.zeros(0), torch.zeros(0), torch.zeros(0), settings.slot_minutes)
    slot = torch.from_numpy(stats.slots(exp.dataset.timestamps[targets]))
    center, spread, count = (torch.zeros(slots_per_day, exp.dataset.num_nodes, dtype=torch.float64)
                             for _ in range(3))

    def moments(r: Tensor) -> tuple[Tensor, Tensor]:
        mean = r.nanmean(dim=0)
        return mean, (r - mean).square().nanmean(dim=0).sqrt()

    day_center, day_spread = moments(residual)
    for s in range(slots_per_day):
        rows = residual[slot == s]
        count[s] = (~rows.isnan()).sum(dim=0).double()
        if rows.shape[0]:
            center[s], spread[s] = moments(rows)
    sparse = count < settings.min_slot_count
    center = torch.where(sparse, day_center.expand_as(center), center)
    spread = torch.where(sparse, day_spread.expand_as(spread), spread)
    floor = _SCALE_FLOOR * float(exp.data.target_scaler.std[0])
    spread = torch.nan_to_num(spread, nan=floor).clamp(min=floor)  # a sensor never observed: floor
    return ResidualStatistics(torch.nan_to_num(center, nan=0.0), spread, count.long(), settings.slot_minutes)


def read_series(path: str | os.PathLike[str], exp: Experiment, *, zero_is_missing: bool = False,
                missing_values: Sequence[float] = ()) -> TrafficDataset:
    """Read a readings table (the own-data format) for the sensors ``exp``'s model was trained on.

    Args:
        path: CSV or Parquet, a timestamp column then one column per sensor id (see
            :func:`stgnn.data.custom.read_series_table`); the columns may come in any order.
        exp: The checkpoint's experiment (its sensors, graph and sampling interval).
        zero_is_missing: Zeros are missing readings (dropouts).
        missing_values: Sentinel readings that mean "no reading".

    Raises:
        ValueError: The file's sensors differ from the trained ones (both sides named), its
            sampling interval differs, it is too short for one forecast, or the model reads more
            than one feature per sensor (each naming ``path``).
    """
    features = exp.config.data.input_features or list(range(exp.dataset.num_features))
    if len(features) != 1:
        raise ValueError(f"{path}: the model reads {len(features)} features per sensor "
                         f"({', '.join(exp.dataset.feature_names)}), but a readings table holds one value per "
                         "sensor and time; anomaly scanning needs a model trained on one input feature")
    if exp.dataset.user_covariates is not None:
        raise ValueError(f"{path}: the model was trained with user covariates ([custom] covariates), which a "
                         "readings table does not carry; anomaly scanning needs a model trained without them")
    stamps, ids, values, interval = read_series_table(path, missing_values=missing_values)
    if interval != exp.dataset.interval_minutes:
        raise ValueError(f"{path}: readings every {interval} min, but the model was trained on readings every "
                         f"{exp.dataset.interval_minutes} min")
    need = exp.spec.input_len + exp.spec.horizon + 2
    if len(stamps) < need:
        raise ValueError(f"{path}: {len(stamps)} time steps; anomaly scanning needs at least {need} "
                         f"({exp.spec.input_len} input + {exp.spec.horizon} forecast steps, and a few windows)")
    if zero_is_missing:
        values = np.where(values == 0, np.nan, values)
    own = TrafficDataset.from_arrays(
        Path(path).stem, values, SensorGraph(ids, torch.zeros(2, 0, dtype=torch.long), source=str(path)), stamps,
        interval_minutes=interval, units=exp.dataset.units, feature_names=exp.dataset.feature_names[:1],
        source=str(path), missing_zero=False, file=str(path),
    )
    aligned = align_sensors(own, exp.dataset.node_ids, "the checkpoint")
    return dataclasses.replace(aligned, graph=exp.dataset.graph, split=exp.dataset.split)


def run_lengths(keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Length of the run each point belongs to: consecutive valid points with equal keys, per column.

    Args:
        keys: ``[T, N]`` values compared between neighbours in time.
        valid: ``[T, N]`` bool; invalid points end runs and get length 0.

    Returns:
        ``[T, N]`` int64.

    Example:
        >>> run_lengths(np.array([[1.0], [1.0], [2.0], [2.0], [2.0]]), np.ones((5, 1), bool))[:, 0]
        array([2, 2, 3, 3, 3])
    """
    same = np.zeros_like(valid, dtype=bool)
    same[1:] = valid[1:] & valid[:-1] & (keys[1:] == keys[:-1])
    out = np.zeros(valid.shape, dtype=np.int64)
    for n in range(valid.shape[1]):
        ids = np.cumsum(~same[:, n]) - 1
        out[:, n] = np.bincount(ids)[ids]
    return np.where(valid, out, 0)


@dataclass
class Detection:
    """The result of a scan.

    Attributes:
        alerts: One row per flagged point, columns :data:`ALERT_COLUMNS`, ordered by time then
            sensor order.
        timestamps: ``T`` timestamps of the scanned file.
        node_ids: ``N`` sensor ids (the model's order).
        observed: ``[T, N]`` readings, NaN where missing.
        expected: ``[T, N]`` forecasts from cleaned history, NaN where none.
        low: ``[T, N]`` lower alert bound of the residual test (``expected + center - threshold * scale``).
        high: ``[T, N]`` upper alert bound.
        kind: ``[T, N]`` alert kind per point (``""`` where none).
        recomputed_steps: Time steps whose forecasts were recomputed from cleaned history.
        level: The forecast interval used for spike/drop alerts (probabilistic models), or
            ``None`` when residual z-scores were used.
    """

    alerts: pd.DataFrame
    timestamps: pd.DatetimeIndex
    node_ids: list[str]
    observed: np.ndarray
    expected: np.ndarray
    low: np.ndarray
    high: np.ndarray
    kind: np.ndarray
    recomputed_steps: int
    level: float | None = None

    def counts(self) -> dict[str, int]:
        """Alerts per kind."""
        return {k: int((self.alerts["kind"] == k).sum()) for k in ("spike", "drop", "stuck", "dropout")}


def detect_anomalies(exp: Experiment, series: TrafficDataset, settings: AnomalySettings,
                     stats: ResidualStatistics | None = None, *, progress: bool = False) -> Detection:
    """Scan ``series`` with ``exp``'s model (see the module docstring for the method).

    Args:
        exp: The checkpoint's experiment (best weights, scaler, training data).
        series: The readings to scan, on ``exp``'s sensors in its order (:func:`read_series`).
        settings: Thresholds and window settings.
        stats: Residual statistics (default: :func:`residual_statistics` of ``exp``).
        progress: Show a progress bar over the time steps.

    Raises:
        ValueError: Settings out of range, or a model that forecasts more than one feature.
    """
    settings.check(exp.spec.horizon)
    if exp.spec.out_channels != 1:
        raise ValueError(f"anomalies: the model forecasts {exp.spec.out_channels} features; anomaly alerts "
                         "score one forecast feature")
    if series.node_ids != exp.dataset.node_ids:
        raise ValueError(f"{series.source}: sensors are not in the model's order (read it with read_series)")
    level = interval_level(exp.config, settings)
    if level is None and stats is None:
        stats = residual_statistics(exp, settings)
    scan = Experiment.build(exp.config, dataset=series, scaler=exp.data.scaler)
    scan.model.load_state_dict(exp.model.state_dict())
    h, length, steps = settings.horizon, exp.spec.input_len, series.num_steps
    present = series.mask.numpy()
    observed = np.where(present, series.series[:, :, exp.data.target_features[0]].numpy(), np.nan)
    dropout = run_lengths(np.zeros(present.shape), ~present)
    stuck = run_lengths(observed, present)
    kind = np.full(observed.shape, "", dtype=object)
    kind[dropout >= settings.min_dropout] = "dropout"
    kind[(kind == "") & (stuck >= settings.stuck_steps)] = "stuck"
    score = np.where(kind == "dropout", dropout, np.where(kind == "stuck", stuck, 0)).astype(np.float64)

    first = length + h - 1
    expected, low, high = (np.full(observed.shape, np.nan) for _ in range(3))
    expected[first:], low[first:], high[first:] = _forecast_bands(
        scan, torch.arange(steps - first, dtype=torch.long), h - 1, exp.config.train.eval_batch_size, level)
    if stats is not None:
        slot = stats.slots(series.timestamps)
        center, scale = stats.center.numpy()[slot], stats.scale.numpy()[slot]  # [T, N]
    mean, std = float(scan.data.scaler.mean[0]), float(scan.data.scaler.std[0])
    replaced = np.zeros(steps, dtype=bool)  # steps whose model input holds a forecast instead of a reading
    streak = np.zeros(series.num_nodes, dtype=np.int64)  # consecutive spike/drop alerts per sensor
    recomputed = 0
    for t in tqdm(range(first, steps), desc="scan", leave=False, disable=not progress, file=sys.stderr):
        if replaced[max(t - h - length + 1, 0) : t - h + 1].any():
            point, band_low, band_high = _forecast_bands(scan, torch.tensor([t - first]), h - 1, 1, level)
            expected[t] = point[0]
            if stats is None:
                low[t], high[t] = band_low[0], band_high[0]
            recomputed += 1
        if stats is not None:
            z = (observed[t] - expected[t] - center[t]) / scale[t]
            outside = np.abs(z) > settings.threshold
        else:  # residual in units of the interval's half-width on its side: |z| > 1 outside
            residual = observed[t] - expected[t]
            half = np.where(residual > 0, high[t] - expected[t], expected[t] - low[t])
            z = residual / np.maximum(half, 1e-12)
            outside = (observed[t] > high[t]) | (observed[t] < low[t])
        over = present[t] & (kind[t] == "") & outside
        kind[t, over] = np.where(z[over] > 0, "spike", "drop")
        score[t, over] = z[over]
        streak = np.where(over, streak + 1, 0)
        clean = ~present[t] | (kind[t] == "dropout") | (kind[t] == "stuck") | (over & (streak <= settings.clean_steps))
        if clean.any():
            # the model reads the target feature scaled, at input feature 0 (inputs start with the targets)
            scan.data.inputs[t, clean, 0] = torch.from_numpy(((expected[t, clean] - mean) / std).astype(np.float32))
            replaced[t] = True
    if stats is not None:  # the z-score bands, around the final forecasts
        low, high = (expected + center - settings.threshold * scale, expected + center + settings.threshold * scale)
    t_idx, n_idx = np.nonzero(kind != "")
    ids = np.asarray(series.node_ids, dtype=object)
    alerts = pd.DataFrame({
        "sensor": ids[n_idx], "time": series.timestamps[t_idx], "kind": kind[t_idx, n_idx].astype(str),
        "score": score[t_idx, n_idx], "observed": observed[t_idx, n_idx], "expected": expected[t_idx, n_idx],
    }, columns=list(ALERT_COLUMNS))
    return Detection(alerts, series.timestamps, list(series.node_ids), observed, expected, low, high, kind,
                     recomputed, level)


_COLOURS = {"spike": "tab:red", "drop": "tab:purple", "stuck": "tab:orange", "dropout": "tab:gray"}


def plot_sensors(detection: Detection, folder: str | os.PathLike[str], max_plots: int,
                 units: str = "") -> tuple[list[Path], list[str]]:
    """One PNG per flagged sensor (most alerts first), at most ``max_plots``.

    Each shows the readings, the forecast, the band outside which a residual alerts, and the
    alerts by kind.

    Returns:
        ``(written files, flagged sensors left without a plot because of the cap)``.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'stgnn[plot]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("anomaly plots need matplotlib: pip install 'stgnn[plot]'") from exc
    order = detection.alerts["sensor"].value_counts(sort=True)  # ties keep first-seen order
    sensors = [str(s) for s in order.index]
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    position = {s: i for i, s in enumerate(detection.node_ids)}
    times = detection.timestamps
    for sensor in sensors[:max_plots]:
        n = position[sensor]
        fig, ax = plt.subplots(figsize=(11, 3.2))
        ax.fill_between(times, detection.low[:, n], detection.high[:, n], color="tab:blue", alpha=0.15,
                        lw=0, label="no-alert band")
        ax.plot(times, detection.observed[:, n], lw=0.8, color="black", label="observed")
        ax.plot(times, detection.expected[:, n], lw=0.8, color="tab:blue", label="forecast")
        for name, colour in _COLOURS.items():
            at = np.flatnonzero(detection.kind[:, n] == name)
            if at.size:
                y = np.where(np.isnan(detection.observed[at, n]), detection.expected[at, n], detection.observed[at, n])
                ax.scatter(times[at], y, s=14, color=colour, zorder=3, label=f"{name} ({at.size})")
        ax.set_title(f"sensor {sensor}: {int(order[sensor])} alerts")
        ax.set_ylabel(units or "value")
        ax.legend(loc="lower left", fontsize=7, ncol=3)
        fig.tight_layout()
        path = out / f"sensor_{re.sub(r'[^A-Za-z0-9_.-]', '_', sensor)}.png"
        if path in written:  # two ids that differ only in characters a file name cannot hold
            path = path.with_name(f"{path.stem}_node{n}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written, sensors[max_plots:]


def write_report(detection: Detection, output: str | os.PathLike[str], settings: AnomalySettings, *,
                 max_plots: int, units: str = "", source: dict[str, str] | None = None) -> dict[str, Any]:
    """Write ``alerts.csv``, ``summary.json`` and ``plots/sensor_<id>.png`` into ``output``.

    Args:
        detection: The scan result.
        output: Folder (created).
        settings: The settings of the scan (recorded).
        max_plots: Most PNGs to write (sensors with the most alerts first); the others are
            listed in the summary as not plotted.
        units: Units of the readings, for the plots.
        source: Extra provenance recorded in the summary (checkpoint, series file, command).

    Returns:
        The summary written to ``summary.json``.
    """
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    detection.alerts.to_csv(out / "alerts.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
    plots, unplotted = plot_sensors(detection, out / "plots", max_plots, units) if len(detection.alerts) else ([], [])
    summary: dict[str, Any] = {
        **(source or {}),
        "settings": dataclasses.asdict(settings),
        "spike_drop_test": ("residual z-score" if detection.level is None
                            else f"outside the central {detection.level:g} forecast interval"),
        "steps": len(detection.timestamps),
        "sensors": len(detection.node_ids),
        "first_timestamp": str(detection.timestamps[0]),
        "last_timestamp": str(detection.timestamps[-1]),
        "alerts": detection.counts(),
        "flagged_sensors": int(detection.alerts["sensor"].nunique()),
        "plots": [p.name for p in plots],
        "plot_cap": max_plots,
        "not_plotted": unplotted,
        "recomputed_steps": detection.recomputed_steps,
    }
    write_json(out / "summary.json", summary)
    return summary


def inject_anomalies(values: np.ndarray, rng: np.random.Generator, *, spikes: int = 20, drops: int = 20,
                     stuck: int = 10, dropouts: int = 5, size: float = 0.5, drop_steps: int = 3,
                     stuck_steps: int = 18, dropout_steps: int = 6, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Plant anomalies of known kind and position into readings, for measuring a detector.

    * spike: one reading multiplied by ``1 + size``;
    * drop: ``drop_steps`` consecutive readings multiplied by ``1 - size``;
    * stuck: ``stuck_steps`` consecutive readings all equal to the first of them;
    * dropout: ``dropout_steps`` consecutive readings made missing (NaN).

    Anomalies go to random sensors and times at or after ``skip``; on one sensor, two planted
    anomalies are at least ``max(...) + 12`` steps apart, so each starts from normal readings.
    Only observed readings are changed.

    Args:
        values: ``[T, N]`` readings, NaN where missing (not modified).
        rng: Random generator (seeded by the caller).
        spikes, drops, stuck, dropouts: How many of each kind.
        size: Relative size of spikes and drops. Default 0.5.
        drop_steps, stuck_steps, dropout_steps: Run lengths.
        skip: First time step that may be changed.

    Returns:
        ``(changed copy of values, [T, N] labels: the planted kind, "" elsewhere)``.

    Raises:
        ValueError: The series is too short or has too few sensors to place them all apart.
    """
    out = values.astype(np.float64, copy=True)
    steps, sensors = out.shape
    truth = np.full(out.shape, "", dtype=object)
    gap = max(drop_steps, stuck_steps, dropout_steps) + 12
    plan = [("spike", 1)] * spikes + [("drop", drop_steps)] * drops + [("stuck", stuck_steps)] * stuck + \
        [("dropout", dropout_steps)] * dropouts
    for kind, length in plan:
        for _ in range(1000):
            n = int(rng.integers(sensors))
            t = int(rng.integers(skip, steps - length + 1)) if steps - length + 1 > skip else -1
            window = slice(max(t - gap, 0), t + length + gap)
            if t >= 0 and not (truth[window, n] != "").any() and np.isfinite(out[t : t + length, n]).all():
                break
        else:
            raise ValueError(f"cannot place {len(plan)} anomalies {gap} steps apart in {steps} steps x {sensors} "
                             "sensors; plant fewer or scan a longer series")
        run = slice(t, t + length)
        if kind == "spike":
            out[run, n] *= 1 + size
        elif kind == "drop":
            out[run, n] *= 1 - size
        elif kind == "stuck":
            out[run, n] = out[t, n]
        else:
            out[run, n] = np.nan
        truth[run, n] = kind
    return out, truth


def score_alerts(detection: Detection, truth: np.ndarray) -> dict[str, Any]:
    """Point-level precision and recall of a scan against known anomalies.

    Args:
        detection: The scan.
        truth: ``[T, N]`` labels, ``""`` where the reading is normal (e.g. from
            :func:`inject_anomalies`, plus anomalies already in the data).

    Returns:
        ``precision`` (alerts on labelled points / alerts), ``recall`` (labelled points alerted
        / labelled points), ``recall_by_kind``, ``alerts``, ``labelled`` and ``hits``.
    """
    flagged = detection.kind != ""
    labelled = truth != ""
    hits = flagged & labelled
    by_kind = {str(k): float(hits[truth == k].mean()) for k in sorted(set(truth[labelled].tolist()))}
    return {
        "precision": float(hits.sum() / flagged.sum()) if flagged.any() else float("nan"),
        "recall": float(hits.sum() / labelled.sum()) if labelled.any() else float("nan"),
        "recall_by_kind": by_kind,
        "alerts": int(flagged.sum()),
        "labelled": int(labelled.sum()),
        "hits": int(hits.sum()),
    }
