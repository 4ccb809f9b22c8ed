"""Masked MAE / RMSE / MAPE (and CRPS, interval coverage and width) that accumulate sums and counts, then divide once.

The mean of per-batch RMSEs is not the RMSE of the set, and the mean of per-batch
MAEs is wrong when batches hold different numbers of observed readings; so
:class:`MaskedMetrics` keeps per-horizon sums of absolute, squared and absolute
percentage errors and the number of readings behind them, and divides at the end.
Given a probabilistic forecast (:mod:`stgnn.distributions`) it also sums the CRPS and,
for each interval level, the readings inside the interval and the interval widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from stgnn.distributions import ForecastDistribution, PointForecast

__all__ = [
    "INTERVAL_LEVELS",
    "MaskedMetrics",
    "masked_abs_error",
    "masked_forecast_loss",
    "masked_forecast_loss_sum",
    "masked_mae_loss",
    "valid_mask",
]

INTERVAL_LEVELS = (0.8, 0.95)
"""Central interval levels whose coverage and width are reported for probabilistic forecasts."""


def valid_mask(target: Tensor, mask: Tensor | None, null_value: float | None) -> Tensor:
    """Readings that count: ``mask`` (broadcast over features) and ``target != null_value``.

    Args:
        target: ``[B, H, N, F]``.
        mask: ``[B, H, N]`` bool or ``None``.
        null_value: Readings equal to this are treated as missing (``None``: no null value).
    """
    valid = torch.isfinite(target)
    if mask is not None:
        valid = valid & mask.unsqueeze(-1)
    if null_value is not None:
        valid = valid & (target != null_value)
    return valid


def masked_mae_loss(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, null_value: float | None = None
) -> Tensor:
    """Mean absolute error over valid readings; 0 (with gradient) when none is valid.

    Args:
        pred: ``[B, H, N, F]`` forecasts.
        target: ``[B, H, N, F]`` readings.
        mask: ``[B, H, N]`` bool, False where a reading is missing (``None``: all present).
        null_value: A target value also treated as missing (default ``None``: only ``mask``
            and non-finite targets are left out, as in the config's ``null_value = "none"``).
    """
    err_sum, count = masked_abs_error(pred, target, mask, null_value)
    return err_sum / count.clamp(min=1)


def masked_abs_error(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, null_value: float | None = None
) -> tuple[Tensor, Tensor]:
    """The parts of :func:`masked_mae_loss`: the sum of absolute errors over valid readings
    (with gradient) and their count (``int64``), for a mean taken over more than one batch
    (data-parallel training divides by the count of the global batch).

    Args: as :func:`masked_mae_loss`.
    """
    valid = valid_mask(target, mask, null_value)
    err = torch.where(valid, (pred - target).abs(), torch.zeros_like(pred))
    return err.sum(), valid.sum()


def masked_forecast_loss(
    forecast: ForecastDistribution, target: Tensor, mask: Tensor | None = None, null_value: float | None = None
) -> Tensor:
    """The training loss of a forecast over valid readings: MAE for a point forecast, the
    negative log-likelihood of a Gaussian, the pinball loss of quantiles; 0 (with gradient)
    when no reading is valid.

    Args:
        forecast: The forecast in the target's units, ``[B, H, N, F]`` per reading.
        target: ``[B, H, N, F]`` readings.
        mask: ``[B, H, N]`` bool, False where a reading is missing (``None``: all present).
        null_value: A target value also treated as missing.
    """
    total, count = masked_forecast_loss_sum(forecast, target, mask, null_value)
    return total / count.clamp(min=1)


def masked_forecast_loss_sum(
    forecast: ForecastDistribution, target: Tensor, mask: Tensor | None = None, null_value: float | None = None
) -> tuple[Tensor, Tensor]:
    """The parts of :func:`masked_forecast_loss`: the sum of the loss terms over valid readings
    (with gradient) and their count (``int64``), for a mean over more than one batch
    (data-parallel training divides by the count of the global batch).

    Args: as :func:`masked_forecast_loss`.
    """
    if isinstance(forecast, PointForecast):
        return masked_abs_error(forecast.value, target, mask, null_value)
    valid = valid_mask(target, mask, null_value)
    # missing targets (possibly NaN) are replaced before the loss so that no NaN reaches a gradient
    safe = torch.where(valid, target, forecast.point.detach())
    terms = forecast.loss_terms(safe)
    return torch.where(valid, terms, torch.zeros_like(terms)).sum(), valid.sum()


class MaskedMetrics:
    """Accumulates masked metrics per horizon over a whole evaluation set.

    A point forecast (a tensor, or a :class:`~stgnn.distributions.PointForecast`) gives MAE,
    RMSE and MAPE.  A probabilistic forecast (:class:`~stgnn.distributions.GaussianForecast`,
    :class:`~stgnn.distributions.QuantileForecast`) scores its point forecast (mean / median)
    the same way and adds ``crps``, and per level ``p`` of ``interval_levels``
    ``coverage_<p>`` (the fraction of valid readings inside the central ``p`` interval) and
    ``width_<p>`` (its mean width), e.g. ``coverage_80`` and ``width_95``.  A level that the
    forecast cannot give (a quantile head whose levels do not reach it) is reported as ``None``.

    Args:
        horizons: 1-based horizons to report (default 3, 6, 12 = 15/30/60 min at 5 min).
        null_value: A target value also treated as missing, on top of ``mask`` (default
            ``None``: the mask is the record of what is missing, as in the config's default
            ``null_value = "none"``; the benchmark datasets' zeros are already in their masks).
        interval_levels: Central interval levels scored for probabilistic forecasts.

    Example:
        >>> m = MaskedMetrics(horizons=(1,))
        >>> m.update(torch.tensor([[[[1.0]], [[3.0]]]]), torch.tensor([[[[2.0]], [[2.0]]]]))
        >>> m.compute()["average"]["mae"]
        1.0
    """

    def __init__(
        self,
        horizons: Sequence[int] = (3, 6, 12),
        null_value: float | None = None,
        interval_levels: Sequence[float] = INTERVAL_LEVELS,
    ) -> None:
        self.horizons = tuple(int(h) for h in horizons)
        self.null_value = null_value
        self.interval_levels = tuple(float(p) for p in interval_levels)
        self._sums: dict[str, Tensor] = {}  # per-horizon sums [H]
        self._kind: str | None = None

    def totals(self) -> dict[str, Tensor]:
        """A copy of the accumulated per-horizon sums and counts (``{}`` before any update).

        Summing the totals of several accumulators of the same kind of forecast, key by key
        (e.g. across the processes of a data-parallel run), and loading the sum with
        :meth:`load_totals` gives the metrics of the union of their batches.
        """
        return {k: v.clone() for k, v in self._sums.items()}

    def load_totals(self, totals: dict[str, Tensor]) -> None:
        """Replace the accumulated sums and counts by ``totals`` (the keys of :meth:`totals`).

        Raises:
            ValueError: The keys differ from this accumulator's (another kind of forecast).
        """
        if set(totals) != set(self._sums):
            raise ValueError(f"totals hold {sorted(totals)}, these metrics {sorted(self._sums)}")
        self._sums = {k: v.detach().double().cpu().clone() for k, v in totals.items()}

    @staticmethod
    def _label(level: float) -> str:
        return f"{100 * level:g}".replace(".", "_")

    def update(self, pred: Tensor | ForecastDistribution, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch: ``pred`` (a tensor or a forecast distribution) and ``target`` ``[B, H, N, F]``
        (raw units), ``mask [B, H, N]``.

        Raises:
            ValueError: Shapes differ, the horizon length changed, or point and probabilistic
                forecasts are mixed in one set.
        """
        forecast = pred if isinstance(pred, ForecastDistribution) else PointForecast(pred)
        if self._kind is not None and (self._kind == "point") != (forecast.kind == "point"):
            raise ValueError(f"a {forecast.kind} forecast added to metrics of {self._kind} forecasts")
        self._kind = forecast.kind
        point = forecast.point
        if point.shape != target.shape:
            raise ValueError(f"pred {tuple(point.shape)} and target {tuple(target.shape)} differ")
        point, target = point.detach().double(), target.detach().double()
        valid = valid_mask(target, None if mask is None else mask.detach(), self.null_value)
        zero = torch.zeros_like(point)
        err = torch.where(valid, point - target, zero)
        nonzero = valid & (target.abs() > 1e-8)  # MAPE is undefined at a true 0
        ape = torch.where(nonzero, err.abs() / target.abs().clamp(min=1e-8), zero)
        terms = {"abs": err.abs(), "sq": err * err, "ape": ape, "n": valid.double(), "n_ape": nonzero.double()}
        if forecast.kind != "point":
            safe = torch.where(valid, target, point)
            with torch.no_grad():
                terms["crps"] = torch.where(valid, forecast.crps(safe.to(forecast.point)).double(), zero)
                for level in self.interval_levels:
                    if not forecast.covers(level):
                        continue
                    low, high = (v.double() for v in forecast.interval(level))
                    inside = valid & (low <= target) & (target <= high)
                    key = self._label(level)
                    terms[f"in_{key}"] = inside.double()
                    terms[f"width_{key}"] = torch.where(valid, high - low, zero)
        dims = [d for d in range(point.dim()) if d != 1]  # keep the horizon axis
        sums = {k: v.sum(dims).cpu() for k, v in terms.items()}
        if not self._sums:
            self._sums = sums
            return
        if sums["n"].shape != self._sums["n"].shape:
            raise ValueError(f"horizon length changed from {self._sums['n'].shape[0]} to {sums['n'].shape[0]}")
        for key, value in sums.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value

    def _finish(self, i: slice) -> dict[str, float | None]:
        s = {k: float(v[i].sum()) for k, v in self._sums.items()}
        count, count_ape = s["n"], s["n_ape"]
        out: dict[str, float | None]
        if count == 0:
            out = {"mae": None, "rmse": None, "mape": None, "count": 0}
        else:
            out = {
                "mae": s["abs"] / count,
                "rmse": (s["sq"] / count) ** 0.5,
                "mape": 100.0 * s["ape"] / count_ape if count_ape else None,
                "count": int(count),
            }
        if self._kind not in (None, "point"):
            out.update(self._finish_probabilistic(s, count))
        return out

    def _finish_probabilistic(self, s: dict[str, float], count: float) -> dict[str, float | None]:
        out: dict[str, float | None] = {"crps": s["crps"] / count if count else None}
        for level in self.interval_levels:
            key = self._label(level)
            known = count and f"in_{key}" in s
            out[f"coverage_{key}"] = s[f"in_{key}"] / count if known else None
            out[f"width_{key}"] = s[f"width_{key}"] / count if known else None
        return out

    def compute(self) -> dict[str, dict[str, float | None]]:
        """``{"3": {...}, "6": {...}, "12": {...}, "average": {...}}``; MAPE in percent.

        ``average`` pools every forecast step.  A set with no valid reading gives
        ``None`` values (never NaN or inf).
        """
        if not self._sums:
            empty: dict[str, float | None] = {"mae": None, "rmse": None, "mape": None, "count": 0}
            return {**{str(h): dict(empty) for h in self.horizons}, "average": dict(empty)}
        steps = self._sums["n"].shape[0]
        out: dict[str, dict[str, float | None]] = {}
        for h in self.horizons:
            if not 1 <= h <= steps:
                raise ValueError(f"horizon {h} outside the forecast length {steps}")
            out[str(h)] = self._finish(slice(h - 1, h))
        out["average"] = self._finish(slice(None))
        return out

    def per_step(self) -> list[dict[str, float | None]]:
        """Metrics for every forecast step 1..H (for error-by-horizon plots)."""
        if not self._sums:
            return []
        return [self._finish(slice(i, i + 1)) for i in range(self._sums["n"].shape[0])]
