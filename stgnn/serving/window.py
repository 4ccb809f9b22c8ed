"""What a served model expects as input, read from its checkpoint alone, and how a raw window becomes a batch.

A client sends the most recent ``input_len`` readings of every sensor in raw units (``None``
where a reading is missing).  :class:`WindowSpec` turns them into the :class:`~stgnn.data.batch.Batch`
the model was trained on, exactly as :class:`~stgnn.data.windows.WindowData` builds training
windows: missing readings hold 0 before scaling (the series convention of
:class:`~stgnn.data.dataset.TrafficDataset`) and are marked in ``x_mask``, the readings are
scaled with the checkpoint's scaler (fitted on the training period only), and the covariates
(time of day, day of week) are computed from the timestamps.  Only the checkpoint is read: no
data files are needed to describe or check a request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from stgnn.data.batch import Batch
from stgnn.data.preview import preview
from stgnn.data.windows import StandardScaler, covariates, time_of_week_slot
from stgnn.training.config import RunConfig

__all__ = ["WindowError", "WindowSpec", "concat_batches", "split_rows"]


class WindowError(ValueError):
    """A request window that does not fit the model (the message says which part and why)."""


@dataclass(frozen=True)
class WindowSpec:
    """The input a checkpoint's model takes, and its scaling.

    Attributes:
        model: Registry name of the model.
        dataset: Name of the dataset it was trained on.
        sensor_ids: Sensor ids in the model's node order.
        interval_minutes: Sampling interval of the readings.
        input_len: Steps of history per window (``T_in``).
        horizon: Forecast steps (``H``).
        steps_per_day: Steps in one day.
        input_features: Indices of the dataset features the model reads (raw readings per sensor
            and step); the request gives these, in this order.
        target_features: Indices of the forecast features.
        covariate_names: Covariates appended to the scaled readings.
        scaler: The training scaler over all dataset features.
        config: The checkpoint's resolved config.
    """

    model: str
    dataset: str
    sensor_ids: tuple[str, ...]
    interval_minutes: int
    input_len: int
    horizon: int
    steps_per_day: int
    input_features: tuple[int, ...]
    target_features: tuple[int, ...]
    covariate_names: tuple[str, ...]
    scaler: StandardScaler
    config: RunConfig

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], path: str | os.PathLike[str]) -> WindowSpec:
        """Read the spec from a loaded checkpoint.

        Args:
            state: The checkpoint's contents (:func:`stgnn.training.checkpoint.load_checkpoint`).
            path: The checkpoint file (named in messages).

        Raises:
            ValueError: The checkpoint records no data fingerprint (written by an older stgnn), so
                its sensor ids and interval are unknown.
        """
        cfg = RunConfig.from_dict(state["config"], source=str(path))
        stored = state.get("data")
        if not stored:
            raise ValueError(f"{path}: the checkpoint records no data fingerprint (sensor ids, interval); "
                             "it was written by an older stgnn and cannot be served: retrain it")
        spec = state["spec"]
        scaler = StandardScaler.from_state_dict(state["scaler"])
        n_features = int(scaler.mean.numel())
        feats = tuple(cfg.data.input_features) if cfg.data.input_features else tuple(range(n_features))
        if state.get("covariate_scaler") or int(spec["in_channels"]) != len(feats) + len(cfg.data.covariates):
            raise ValueError(f"{path}: the model reads user covariates besides its readings ({spec['in_channels']} "
                             f"input channels); serving such a model is not supported yet (a request carries "
                             "readings only)")
        return cls(
            model=cfg.model,
            dataset=str(stored["name"]),
            sensor_ids=tuple(str(s) for s in stored["sensor_ids"]),
            interval_minutes=int(stored["interval_minutes"]),
            input_len=int(spec["input_len"]),
            horizon=int(spec["horizon"]),
            steps_per_day=int(spec["steps_per_day"]),
            input_features=feats,
            target_features=tuple(cfg.data.target_features),
            covariate_names=tuple(cfg.data.covariates),
            scaler=scaler,
            config=cfg,
        )

    @property
    def num_nodes(self) -> int:
        """``N``."""
        return len(self.sensor_ids)

    @property
    def in_channels(self) -> int:
        """``F_in`` of the model: input features plus covariates."""
        return len(self.input_features) + len(self.covariate_names)

    @property
    def target_scaler(self) -> StandardScaler:
        """The scaler of the forecast features (forecasts are inverted with it)."""
        tf = list(self.target_features)
        return StandardScaler(self.scaler.mean[tf], self.scaler.std[tf])

    def forecast_timestamps(self, last: pd.Timestamp) -> pd.DatetimeIndex:
        """The ``H`` timestamps forecast from a window whose last step is ``last``."""
        step = pd.Timedelta(minutes=self.interval_minutes)
        return pd.DatetimeIndex([last + (h + 1) * step for h in range(self.horizon)])

    def check_timestamps(self, timestamps: pd.DatetimeIndex) -> None:
        """``timestamps`` are ``input_len`` consecutive steps ``interval_minutes`` apart, oldest first.

        Raises:
            WindowError: Wrong count, a UTC offset, duplicates, unsorted order or a wrong spacing
                (each named with the offending timestamps).
        """
        if len(timestamps) != self.input_len:
            raise WindowError(f"timestamps: the model takes the last {self.input_len} steps, got {len(timestamps)}")
        if timestamps.tz is not None:
            raise WindowError("timestamps: carry a UTC offset, but the model's data has local timestamps without "
                              "one (the time-of-day covariate depends on it): send local times without offset")
        dup = timestamps[timestamps.duplicated()]
        if len(dup):
            raise WindowError(f"timestamps: duplicated: {preview([str(t) for t in dup.unique()])}")
        step = pd.Timedelta(minutes=self.interval_minutes)
        gaps = timestamps[1:] - timestamps[:-1]
        back = np.flatnonzero(gaps < pd.Timedelta(0))
        if back.size:
            i = int(back[0])
            raise WindowError(f"timestamps: not sorted oldest first ({timestamps[i]} before {timestamps[i + 1]})")
        off = np.flatnonzero(gaps != step)
        if off.size:
            i = int(off[0])
            raise WindowError(f"timestamps: must be consecutive steps {self.interval_minutes} min apart (the model's "
                              f"interval); {timestamps[i]} -> {timestamps[i + 1]} is {gaps[i]}")

    def batch(self, sensor_ids: list[str], timestamps: pd.DatetimeIndex, values: np.ndarray) -> Batch:
        """A one-window batch from raw readings.

        Args:
            sensor_ids: The request's sensors, in the column order of ``values``; every model sensor
                exactly once (any order).
            timestamps: ``input_len`` timestamps, oldest first.
            values: ``[T_in, len(sensor_ids), len(input_features)]`` float64 raw readings, NaN where
                missing.

        Returns:
            A :class:`Batch` of one window in the model's node order; targets unknown (``mask`` all
            False), ``start = -1`` (the window is not part of a stored series), ``slot`` the
            time-of-week slots of the forecast steps.

        Raises:
            WindowError: Unknown, duplicated or missing sensors, a bad shape, infinite values, bad
                timestamps.
        """
        self.check_timestamps(timestamps)
        order = self._node_order(sensor_ids)
        want = (self.input_len, len(sensor_ids), len(self.input_features))
        if values.shape != want:
            raise WindowError(f"values: expected {want[0]} rows (one per timestamp) of {want[1]} sensors x "
                              f"{want[2]} features, got shape {values.shape}")
        bad = np.isinf(values) | (np.abs(np.nan_to_num(values, posinf=0.0, neginf=0.0)) > np.finfo(np.float32).max)
        if bad.any():
            t, n, _ = np.nonzero(bad)
            where = ", ".join(f"sensor {sensor_ids[j]} at {timestamps[i]}" for i, j in zip(t[:5], n[:5], strict=True))
            raise WindowError(f"values: {int(bad.sum())} readings are infinite or beyond float32's range: {where}")
        values = values[:, order]
        observed = ~np.isnan(values)
        # a reading with some features missing is missing (as the series mask is per sensor and step)
        mask = observed.all(axis=-1)
        raw = torch.from_numpy(np.where(mask[..., None], values, 0.0).astype(np.float32))
        feats = list(self.input_features)
        scaled = StandardScaler(self.scaler.mean[feats], self.scaler.std[feats]).transform(raw)
        cov = covariates(timestamps, self.covariate_names)
        x = torch.cat([scaled, cov[:, None, :].expand(-1, self.num_nodes, -1)], dim=-1)
        future = self.forecast_timestamps(timestamps[-1])
        n_out = len(self.target_features)
        zeros = torch.zeros(1, self.horizon, self.num_nodes, n_out)
        return Batch(
            x=x.unsqueeze(0),
            y=zeros,
            y_scaled=zeros.clone(),
            mask=torch.zeros(1, self.horizon, self.num_nodes, dtype=torch.bool),
            start=torch.tensor([-1]),
            slot=time_of_week_slot(future, self.interval_minutes).unsqueeze(0),
            x_mask=torch.from_numpy(mask).unsqueeze(0),
        )

    def _node_order(self, sensor_ids: list[str]) -> list[int]:
        """Position in the request of each model node."""
        seen: dict[str, int] = {}
        dups = []
        for i, s in enumerate(sensor_ids):
            if s in seen:
                dups.append(s)
            seen[s] = i
        if dups:
            raise WindowError(f"sensor_ids: duplicated: {preview(list(dict.fromkeys(dups)))}")
        known = set(self.sensor_ids)
        unknown = [s for s in sensor_ids if s not in known]
        missing = [s for s in self.sensor_ids if s not in seen]
        problems = []
        if unknown:
            problems.append(f"{len(unknown)} unknown to the model: {preview(unknown)}")
        if missing:
            problems.append(f"{len(missing)} of the model's sensors missing: {preview(missing)}")
        if problems:
            raise WindowError(f"sensor_ids: {'; '.join(problems)} (the model forecasts {self.num_nodes} sensors "
                              "and needs every one of them; send a missing reading as null)")
        return [seen[s] for s in self.sensor_ids]


def concat_batches(batches: list[Batch]) -> Batch:
    """One batch holding the windows of ``batches`` in order (for micro-batching).

    Raises:
        ValueError: A batch holds a sampled subgraph (``node_index``): windows on different node
            sets cannot share a batch.
    """
    if any(b.node_index is not None for b in batches):
        raise ValueError("concat_batches: a batch holds a sampled subgraph (node_index); only full-graph windows "
                         "can be joined")
    if len(batches) == 1:
        return batches[0]
    x_masks = [b.x_mask for b in batches]
    return Batch(
        x=torch.cat([b.x for b in batches]),
        y=torch.cat([b.y for b in batches]),
        y_scaled=torch.cat([b.y_scaled for b in batches]),
        mask=torch.cat([b.mask for b in batches]),
        start=torch.cat([b.start for b in batches]),
        slot=torch.cat([b.slot for b in batches]),
        x_mask=None if any(m is None for m in x_masks) else torch.cat([m for m in x_masks if m is not None]),
    )


def split_rows(tensor: Tensor, sizes: list[int]) -> list[Tensor]:
    """``tensor`` cut along the batch axis into pieces of ``sizes`` windows."""
    return list(torch.split(tensor, sizes))
