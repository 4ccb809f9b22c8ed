"""Sliding windows, chronological splits, covariates and the train-only scaler.

Windows are never materialized: a split is a tensor of window *start* indices
into one ``[T, N, F]`` tensor, and a batch gathers only its own windows.  The
scaler is fitted on the steps the training windows cover, ignoring missing
readings, after the split — never on the whole series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from stgnn.data.batch import Batch
from stgnn.data.dataset import TrafficDataset
from stgnn.data.impute import InputImputer, interpolate_windows

__all__ = [
    "COVARIATES",
    "StandardScaler",
    "WindowData",
    "covariates",
    "split_windows",
    "time_of_week_slot",
]

COVARIATES = ("time_of_day", "day_of_week")


def split_windows(
    num_steps: int, input_len: int, horizon: int, split: Sequence[float]
) -> dict[str, Tensor]:
    """Chronological split of all windows into train / val / test start indices.

    Follows DCRNN's convention: with ``S = T - input_len - horizon + 1`` windows,
    ``test = round(S * split[2])``, ``train = round(S * split[0])``, ``val`` the rest.
    On METR-LA (T = 34272, 12 + 12, 70/10/20) this gives 23974 / 3425 / 6850.

    Returns:
        ``{"train", "val", "test"}`` -> ``int64`` tensors of window starts (the index of
        each window's first input step).
    """
    if input_len < 1 or horizon < 1:
        raise ValueError(f"input_len and horizon must be >= 1, got {input_len}, {horizon}")
    if len(split) != 3 or any(s < 0 for s in split) or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"split must be three non-negative fractions summing to 1, got {list(split)}")
    total = num_steps - input_len - horizon + 1
    if total < 3:
        raise ValueError(
            f"series of {num_steps} steps is too short for windows of {input_len} in + {horizon} out"
        )
    n_test = int(round(total * split[2]))
    n_train = int(round(total * split[0]))
    n_val = total - n_train - n_test
    if n_train < 1 or n_val < 0:
        raise ValueError(f"split {list(split)} leaves no training windows out of {total}")
    starts = torch.arange(total, dtype=torch.long)
    return {
        "train": starts[:n_train],
        "val": starts[n_train : n_train + n_val],
        "test": starts[n_train + n_val :],
    }


def time_of_week_slot(timestamps: pd.DatetimeIndex, interval_minutes: int) -> Tensor:
    """``[T]`` int64 slot index in ``0 .. 7 * steps_per_day - 1`` (Monday 00:00 = 0)."""
    minutes = timestamps.day_of_week.to_numpy() * 1440 + timestamps.hour.to_numpy() * 60 + timestamps.minute.to_numpy()
    return torch.from_numpy((minutes // interval_minutes).astype(np.int64))


def covariates(timestamps: pd.DatetimeIndex, names: Sequence[str]) -> Tensor:
    """``[T, C]`` float32 covariates: time of day in [0, 1) and day of week / 7 in [0, 1)."""
    cols = []
    for name in names:
        if name == "time_of_day":
            seconds = timestamps.hour * 3600 + timestamps.minute * 60 + timestamps.second
            cols.append(np.asarray(seconds, dtype=np.float64) / 86400.0)
        elif name == "day_of_week":
            cols.append(np.asarray(timestamps.day_of_week, dtype=np.float64) / 7.0)
        else:
            raise ValueError(f"unknown covariate {name!r}; known: {', '.join(COVARIATES)}")
    if not cols:
        return torch.zeros(len(timestamps), 0)
    return torch.from_numpy(np.stack(cols, axis=1).astype(np.float32))


@dataclass
class StandardScaler:
    """Per-feature z-score ``(x - mean) / std``; fit on observed training readings only.

    Attributes:
        mean: ``[F]``.
        std: ``[F]`` (1 where a feature is constant, so the transform stays finite).
    """

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(
        cls,
        series: Tensor,
        mask: Tensor,
        *,
        chunks: Callable[[], Iterable[slice]] | None = None,
    ) -> StandardScaler:
        """Fit on ``series [T, N, F]`` where ``mask [T, N]`` is True.

        The statistics are accumulated in float64 over chunks of steps (two passes: the mean,
        then the mean squared deviation from it), so a memory-mapped series is never loaded at
        once.

        Args:
            series: ``[T, N, F]`` readings.
            mask: ``[T, N]`` bool.
            chunks: Called once per pass, gives the step slices covering ``[0, T)`` to read at a
                time (default: one slice); ``lambda: dataset.step_chunks(end=T)`` gives slices
                that release a memory-mapped series' pages (:meth:`TrafficDataset.step_chunks`).
        """
        def parts() -> Iterable[slice]:
            return chunks() if chunks is not None else [slice(0, series.shape[0])]

        count = 0
        total = torch.zeros(series.shape[-1], dtype=torch.float64)
        for part in parts():
            observed = series[part][mask[part]].double()  # [M, F]
            count += observed.shape[0]
            total += observed.sum(dim=0)
        if count == 0:
            raise ValueError("cannot fit the scaler: the training period has no observed readings")
        mean = total / count
        squares = torch.zeros_like(total)
        for part in parts():
            observed = series[part][mask[part]].double()
            squares += (observed - mean).square().sum(dim=0)
        std = (squares / count).sqrt()
        std = torch.where(std > 0, std, torch.ones_like(std))
        return cls(mean.float(), std.float())

    def transform(self, x: Tensor) -> Tensor:
        """Scale ``x [..., F]``."""
        return (x - self.mean.to(x)) / self.std.to(x)

    def inverse(self, x: Tensor) -> Tensor:
        """Undo :meth:`transform`."""
        return x * self.std.to(x) + self.mean.to(x)

    def to(self, device: torch.device | str) -> StandardScaler:
        """The same scaler with its mean and std on ``device``."""
        return StandardScaler(self.mean.to(device), self.std.to(device))

    def state_dict(self) -> dict[str, list[float]]:
        """Plain-list form for checkpoints and JSON."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[float]]) -> StandardScaler:
        """Inverse of :meth:`state_dict`."""
        return cls(torch.tensor(state["mean"]), torch.tensor(state["std"]))


class WindowData:
    """Model-ready windows over one dataset, without copying windows.

    For a series in memory it holds three full-length tensors: the model inputs
    ``[T, N, F_in]`` (scaled readings followed by covariates), the raw targets
    ``[T, N, F_out]`` and their scaled copy, plus the mask.  For a memory-mapped series
    (:mod:`stgnn.data.ondisk`, ``dataset.release_pages`` set) nothing full-length is built:
    each batch reads its own steps from the mapped files and scales them the same way (the
    same operations on the same values, so the windows are equal bit for bit), and the scaler
    statistics are accumulated over chunks of the training period.  Either way a batch is
    gathered from window starts on demand.

    Args:
        dataset: The dataset.
        input_len: Input steps per window.
        horizon: Forecast steps per window.
        split: Chronological fractions (default: the dataset's own).
        covariate_names: Covariates appended to the inputs.
        input_features: Indices of the reading features fed to the model (default all).
        target_features: Indices of the features to forecast (default ``[0]``).
        scaler: A fitted scaler to reuse (e.g. from a checkpoint); default: fit on train.
        covariate_scaler: A fitted scaler of the dataset's user covariates to reuse (e.g. from
            a checkpoint); default: :meth:`fit_covariate_scaler`.
        impute: How missing input readings are filled (see :mod:`stgnn.data.impute`): ``"none"``
            (the stored value, 0), ``"linear"``, ``"historical"`` or ``"neighbours"``; fitted on
            the training period.  Targets are never imputed.  A series held in memory only.
        input_mask: ``[T, N]`` readings the *inputs* may use (default: the dataset's mask); a
            reading it hides is a missing input (0 before imputation) but stays a target, so
            dropped inputs can be simulated without changing what is scored.  A series held in
            memory only.

    The dataset's user covariates (:attr:`TrafficDataset.user_covariates`, from the user's files)
    follow the covariates above as further input channels, standardised per channel: time
    covariates with their mean and deviation over the steps the training windows cover (the
    validation and test periods never enter), node attributes over the sensors.

    For a memory-mapped series the full-length :attr:`inputs`, :attr:`targets` and
    :attr:`targets_scaled` do not exist (reading them is an error naming the dataset); use
    :meth:`batch`, or :meth:`inputs_at` / :meth:`targets_at` for given steps.
    """

    def __init__(
        self,
        dataset: TrafficDataset,
        *,
        input_len: int = 12,
        horizon: int = 12,
        split: Sequence[float] | None = None,
        covariate_names: Sequence[str] = ("time_of_day",),
        input_features: Sequence[int] | None = None,
        target_features: Sequence[int] = (0,),
        scaler: StandardScaler | None = None,
        covariate_scaler: StandardScaler | None = None,
        impute: str = "none",
        input_mask: Tensor | None = None,
    ) -> None:
        nf = dataset.num_features
        tf = list(target_features)
        feats = list(range(nf)) if input_features is None else list(input_features)
        for name, idx in (("input_features", feats), ("target_features", tf)):
            bad = [i for i in idx if not 0 <= i < nf]
            if bad or not idx:
                raise ValueError(f"{name} {idx} out of range for {nf} features {dataset.feature_names}")
        if feats[: len(tf)] != tf:
            # Models read the latest observation of the targets from the leading inputs.
            raise ValueError(f"input_features {feats} must start with the target_features {tf}")
        self.dataset = dataset
        self.input_len = input_len
        self.horizon = horizon
        self.splits = split_windows(dataset.num_steps, input_len, horizon, split or dataset.split)
        # Steps covered by training windows (their inputs and targets): the only
        # steps the scaler may see.
        self.train_end = int(self.splits["train"][-1]) + input_len + horizon
        if scaler is None:
            scaler = StandardScaler.fit(dataset.series, dataset.mask,
                                        chunks=lambda: dataset.step_chunks(end=self.train_end))
        self.scaler = scaler
        self.mapped = dataset.release_pages is not None
        self.mask = dataset.mask
        self.slot = time_of_week_slot(dataset.timestamps, dataset.interval_minutes)
        if input_mask is None:
            input_mask = dataset.mask
        elif input_mask.dtype != torch.bool or input_mask.shape != dataset.mask.shape:
            raise ValueError(f"input_mask: expected a bool tensor of shape {tuple(dataset.mask.shape)} [T, N], got "
                             f"{input_mask.dtype} {tuple(input_mask.shape)}")
        if self.mapped and (impute != "none" or input_mask is not dataset.mask):
            raise ValueError(f"{dataset.source}: input imputation (data.impute = {impute!r}) and input masks need "
                             "the series in memory; this one is memory-mapped (train without them, or from the "
                             "original files)")
        self.input_mask = input_mask
        day_slot = self.slot % dataset.steps_per_day
        self._input_series = dataset.series  # readings the inputs are built from (imputed below)
        if self.mapped:
            self.imputer = InputImputer("none", torch.zeros(0))
        else:
            series = dataset.series
            raw = series if input_mask is dataset.mask else torch.where(input_mask[..., None], series, 0.0)
            end = self.train_end
            self.imputer = InputImputer.fit(impute, raw[:end], input_mask[:end], day_slot[:end],
                                            steps_per_day=dataset.steps_per_day, graph=dataset.graph)
            self._input_series = self.imputer.fill(raw, input_mask, day_slot)
        self._features = feats
        self._reading_channels = len(feats)
        self._covariates = covariates(dataset.timestamps, covariate_names)  # [T, C]
        self.covariate_scaler: StandardScaler | None = None
        self._user_inputs: Tensor | None = None  # [T, N, C_user], scaled (own data, held in memory)
        user = dataset.user_covariates
        if user is not None and user.num_channels:
            if covariate_scaler is None:
                covariate_scaler = self.fit_covariate_scaler()
            elif covariate_scaler.mean.numel() != user.num_channels:
                raise ValueError(f"{dataset.name}: the covariate scaler has {covariate_scaler.mean.numel()} "
                                 f"channels, the data's covariates {user.num_channels} ({', '.join(user.names)})")
            self.covariate_scaler = covariate_scaler
            self._user_inputs = covariate_scaler.transform(user.expand(dataset.num_steps, dataset.num_nodes))
        self.channel_names: tuple[str, ...] = (
            *(dataset.feature_names[i] for i in feats), *covariate_names, *(user.names if user is not None else ()))
        """The name of every input channel (``F_in``): reading features, covariates, user covariates."""
        self.target_features = tf
        self._full: tuple[Tensor, Tensor, Tensor] | None = None
        if not self.mapped:
            every = torch.arange(dataset.num_steps)
            raw, scaled = self.targets_at(every)
            self._full = (self.inputs_at(every).contiguous(), raw.contiguous(), scaled.contiguous())
        self.target_scaler = StandardScaler(scaler.mean[tf], scaler.std[tf])
        self._in_offsets = torch.arange(input_len)
        self._out_offsets = torch.arange(input_len, input_len + horizon)

    def _whole(self, i: int, what: str) -> Tensor:
        if self._full is None:
            raise ValueError(f"{self.dataset.source}: the series is memory-mapped, so there is no full-length "
                             f"{what} tensor; read windows with batch() or steps with inputs_at() / targets_at()")
        return self._full[i]

    @property
    def inputs(self) -> Tensor:
        """``[T, N, F_in]`` model inputs (series in memory only)."""
        return self._whole(0, "inputs")

    @property
    def targets(self) -> Tensor:
        """``[T, N, F_out]`` raw targets (series in memory only)."""
        return self._whole(1, "targets")

    @property
    def targets_scaled(self) -> Tensor:
        """``[T, N, F_out]`` scaled targets (series in memory only)."""
        return self._whole(2, "targets_scaled")

    def inputs_at(self, steps: Tensor) -> Tensor:
        """Scaled input features, covariates and user covariates at ``steps [...]``: ``[..., N, F_in]``."""
        scaled = self.scaler.transform(self._input_series[steps])[..., self._features]
        cov = self._covariates[steps]  # [..., C]
        cov = cov.unsqueeze(-2).expand(*cov.shape[:-1], self.dataset.num_nodes, cov.shape[-1])
        parts = [scaled, cov]
        if self._user_inputs is not None:
            parts.append(self._user_inputs[steps])
        return torch.cat(parts, dim=-1)

    def targets_at(self, steps: Tensor) -> tuple[Tensor, Tensor]:
        """Raw and scaled targets at ``steps [...]``: two ``[..., N, F_out]``."""
        raw = self.dataset.series[steps]
        return raw[..., self.target_features], self.scaler.transform(raw)[..., self.target_features]

    def fit_covariate_scaler(self) -> StandardScaler:
        """Per-channel standardisation of the user covariates, from the training period only.

        Time covariates: mean and deviation over the steps the training windows cover and all
        sensors.  Node attributes (static): over the sensors.

        Raises:
            ValueError: The dataset has no user covariates.
        """
        user = self.dataset.user_covariates
        if user is None or not user.num_channels:
            raise ValueError(f"{self.dataset.name}: has no user covariates to scale")
        means, stds = [], []
        if user.time is not None:
            period = user.time[: self.train_end]
            fitted = StandardScaler.fit(period, torch.ones(period.shape[:2], dtype=torch.bool))
            means.append(fitted.mean)
            stds.append(fitted.std)
        if user.node is not None:
            fitted = StandardScaler.fit(user.node[None], torch.ones(1, user.node.shape[0], dtype=torch.bool))
            means.append(fitted.mean)
            stds.append(fitted.std)
        return StandardScaler(torch.cat(means), torch.cat(stds))

    @property
    def in_channels(self) -> int:
        """``F_in``: reading features, covariates and user covariates."""
        return len(self.channel_names)

    @property
    def out_channels(self) -> int:
        """``F_out``."""
        return len(self.target_features)

    def num_windows(self, split: str) -> int:
        """Windows in ``split``."""
        return int(self.splits[split].numel())

    def batch(self, starts: Tensor) -> Batch:
        """Gather the windows starting at ``starts [B]``.

        Forecast steps past the end of the series (forecasting the future) get
        ``mask = False`` and time slots extrapolated from the last timestamp.
        """
        x_idx = starts[:, None] + self._in_offsets  # [B, T_in]
        y_idx = starts[:, None] + self._out_offsets  # [B, H]
        last = self.dataset.num_steps - 1
        inside = y_idx <= last
        y_at = y_idx.clamp(max=last)
        slots_per_week = 7 * self.dataset.steps_per_day
        if self._full is not None:
            inputs, targets, targets_scaled = self._full
            x, y, y_scaled = inputs[x_idx], targets[y_at], targets_scaled[y_at]
        else:
            x = self.inputs_at(x_idx)
            y, y_scaled = self.targets_at(y_at)
        x_mask = self.input_mask[x_idx]
        if self.imputer.method == "linear":
            c = self._reading_channels
            x = torch.cat([interpolate_windows(x[..., :c], x_mask), x[..., c:]], dim=-1)
        batch = Batch(
            x=x,
            y=y,
            y_scaled=y_scaled,
            mask=self.mask[y_at] & inside.unsqueeze(-1),
            start=y_idx[:, 0],
            slot=torch.where(inside, self.slot[y_at], (self.slot[last] + y_idx - last) % slots_per_week),
            x_mask=x_mask,
        )
        if self.dataset.release_pages is not None:
            self.dataset.release_pages()
        return batch

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        part: tuple[int, int] | None = None,
    ) -> Iterator[Batch]:
        """Iterate over ``split`` in mini-batches (shuffled with ``generator`` if asked).

        Args:
            split: ``train``, ``val`` or ``test``.
            batch_size: Windows per batch.
            shuffle: Draw a permutation of the windows from ``generator``.
            generator: The random generator of the permutation.
            drop_last: Leave out a last batch shorter than ``batch_size``.
            part: ``(k, K)``: yield the ``k``-th of ``K`` parts of every batch (its windows
                ``k, k + K, k + 2K, ...``), one process's share in data-parallel training; the
                ``K`` parts of a batch together are the batch.  A part left empty (a batch of
                fewer than ``K`` windows) gets the batch's first window with its mask cleared,
                so that it counts for nothing in losses and metrics.
        """
        starts = self.splits[split]
        if part is not None and not 0 <= part[0] < part[1]:
            raise ValueError(f"part {part}: need 0 <= k < K")
        if shuffle:
            starts = starts[torch.randperm(starts.numel(), generator=generator)]
        stop = starts.numel() - (starts.numel() % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            chunk = starts[i : i + batch_size]
            if part is None:
                yield self.batch(chunk)
                continue
            mine = chunk[part[0] :: part[1]]
            if mine.numel() == 0:
                stand_in = self.batch(chunk[:1])
                yield replace(stand_in, mask=torch.zeros_like(stand_in.mask))
            else:
                yield self.batch(mine)

    def train_period(self) -> tuple[Tensor, Tensor, Tensor]:
        """Scaled targets, mask and time-of-week slots of the training period (read into memory
        for a memory-mapped series)."""
        end = self.train_end
        scaled = self._full[2][:end] if self._full is not None else self.targets_at(torch.arange(end))[1]
        return scaled, self.mask[:end].clone() if self.mapped else self.mask[:end], self.slot[:end]
