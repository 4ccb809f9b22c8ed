"""Forecast distributions: what a probabilistic head predicts, and how it is scored.

Three kinds share one interface (``kind``, ``mean``, ``point``, ``quantile(q)``,
``interval(level)``, ``crps(target)``, ``loss_terms(target)``, ``affine(scale, shift)``):

* :class:`PointForecast` — a plain forecast (``kind == "point"``); it has no quantiles or intervals.
* :class:`GaussianForecast` — a mean and a positive scale per reading; quantiles, intervals
  and the CRPS are exact (closed form); the training loss is the negative log-likelihood.
* :class:`QuantileForecast` — values at fixed levels (e.g. 0.1 / 0.5 / 0.9), increasing in the
  level.  Between two levels a quantile is interpolated linearly; outside the outermost levels
  it is refused (the tails are unknown).  The training loss is the pinball (quantile) loss
  averaged over the levels, and the CRPS is estimated from it (see :meth:`QuantileForecast.crps`).

Every tensor is ``[B, H, N, F]`` (quantile values carry a trailing level axis ``[..., K]``).
A head predicts in the scaled space of the targets; :meth:`~ForecastDistribution.affine`
maps a distribution to raw units with the scaler's ``std`` and ``mean``: locations and
quantiles are multiplied and shifted, a scale is only multiplied.

Example:
    >>> import torch
    >>> d = GaussianForecast(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    >>> low, high = d.interval(0.95)
    >>> round(float(high), 2)
    1.96
    >>> raw = d.affine(torch.tensor([10.0]), torch.tensor([50.0]))   # std 10, mean 50
    >>> float(raw.mean), float(raw.scale)
    (50.0, 10.0)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Normal

__all__ = [
    "ForecastDistribution",
    "GaussianForecast",
    "PointForecast",
    "QuantileForecast",
    "check_level",
    "pinball_loss",
]

_SQRT_PI = math.sqrt(math.pi)


def check_level(level: float) -> float:
    """``level`` if it is a central-interval probability in (0, 1), else a ``ValueError``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be in (0, 1) (e.g. 0.8 for an 80 % interval), got {level}")
    return float(level)


def pinball_loss(values: Tensor, target: Tensor, levels: Tensor) -> Tensor:
    """Elementwise pinball (quantile) loss ``max(q (y - v), (q - 1)(y - v))``.

    Args:
        values: Predicted quantiles ``[..., K]``.
        target: Readings ``[...]`` (broadcast over the level axis).
        levels: ``[K]`` quantile levels in (0, 1).

    Returns:
        ``[..., K]``.
    """
    diff = target.unsqueeze(-1) - values
    return torch.maximum(levels * diff, (levels - 1.0) * diff)


class ForecastDistribution(ABC):
    """A predictive distribution per reading, ``[B, H, N, F]``."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def mean(self) -> Tensor:
        """The central forecast ``[B, H, N, F]`` (see each class for what it is)."""

    @property
    def point(self) -> Tensor:
        """The point forecast scored by MAE / RMSE / MAPE (the mean; the median for quantiles)."""
        return self.mean

    @abstractmethod
    def quantile(self, q: float) -> Tensor:
        """The ``q`` quantile ``[B, H, N, F]``."""

    def covers(self, level: float) -> bool:
        """Whether :meth:`interval` can give the central ``level`` interval."""
        return True

    def interval(self, level: float) -> tuple[Tensor, Tensor]:
        """The central interval holding probability ``level``: quantiles ``(1 - level) / 2`` and ``(1 + level) / 2``.

        Raises:
            ValueError: ``level`` is not in (0, 1), or the distribution cannot give it.
        """
        level = check_level(level)
        return self.quantile((1.0 - level) / 2.0), self.quantile((1.0 + level) / 2.0)

    @abstractmethod
    def crps(self, target: Tensor) -> Tensor:
        """Continuous ranked probability score per reading ``[B, H, N, F]`` (in the target's units)."""

    @abstractmethod
    def loss_terms(self, target: Tensor) -> Tensor:
        """The training loss per reading ``[B, H, N, F]`` (to be masked and averaged)."""

    @abstractmethod
    def affine(self, scale: Tensor, shift: Tensor) -> ForecastDistribution:
        """The distribution of ``x * scale + shift`` for ``scale > 0`` (``[F]``, broadcast on the last axis)."""


class PointForecast(ForecastDistribution):
    """A point forecast seen through the distribution interface (``kind == "point"``).

    Args:
        value: ``[B, H, N, F]``.
    """

    kind: ClassVar[str] = "point"

    def __init__(self, value: Tensor) -> None:
        self.value = value

    @property
    def mean(self) -> Tensor:
        """The forecast itself."""
        return self.value

    def covers(self, level: float) -> bool:
        """Never: a point forecast has no intervals."""
        return False

    def quantile(self, q: float) -> Tensor:
        """Refused: a point model has no quantiles."""
        raise ValueError(
            "a point forecast has no quantiles or intervals; train the model with a probabilistic head "
            "([head] kind = \"gaussian\" or \"quantile\", or stgnn train --head gaussian)"
        )

    def crps(self, target: Tensor) -> Tensor:
        """The CRPS of a point mass, the absolute error."""
        return (self.value - target).abs()

    def loss_terms(self, target: Tensor) -> Tensor:
        """The absolute error (the trainer's masked MAE loss)."""
        return (self.value - target).abs()

    def affine(self, scale: Tensor, shift: Tensor) -> PointForecast:
        """``value * scale + shift``."""
        return PointForecast(self.value * scale.to(self.value) + shift.to(self.value))


class GaussianForecast(ForecastDistribution):
    """Independent Gaussians ``N(mean, scale²)`` per reading.

    Args:
        mean: ``[B, H, N, F]``.
        scale: ``[B, H, N, F]``, > 0 (the standard deviation).
    """

    kind: ClassVar[str] = "gaussian"

    def __init__(self, mean: Tensor, scale: Tensor) -> None:
        if mean.shape != scale.shape:
            raise ValueError(f"mean {tuple(mean.shape)} and scale {tuple(scale.shape)} differ")
        self.loc = mean
        self.scale = scale

    @property
    def mean(self) -> Tensor:
        """The mean (also the median)."""
        return self.loc

    def _normal(self) -> Normal:
        return Normal(self.loc, self.scale, validate_args=False)

    def quantile(self, q: float) -> Tensor:
        """Exact: ``mean + scale * Φ⁻¹(q)``.

        Raises:
            ValueError: ``q`` is not in (0, 1).
        """
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile level must be in (0, 1), got {q}")
        return self._normal().icdf(torch.full_like(self.loc, q))

    def crps(self, target: Tensor) -> Tensor:
        """Closed form (Gneiting & Raftery 2007): ``σ [z (2Φ(z) - 1) + 2φ(z) - 1/√π]``, ``z = (y - μ) / σ``."""
        z = (target - self.loc) / self.scale
        std = Normal(torch.zeros_like(z), torch.ones_like(z), validate_args=False)
        return self.scale * (z * (2.0 * std.cdf(z) - 1.0) + 2.0 * std.log_prob(z).exp() - 1.0 / _SQRT_PI)

    def loss_terms(self, target: Tensor) -> Tensor:
        """Negative log-likelihood ``log σ + (y - μ)² / (2σ²) + log √(2π)``."""
        return -self._normal().log_prob(target)

    def affine(self, scale: Tensor, shift: Tensor) -> GaussianForecast:
        """``N(μ s + m, (σ s)²)``: the scale is multiplied, never shifted."""
        s = scale.to(self.loc)
        return GaussianForecast(self.loc * s + shift.to(self.loc), self.scale * s)


class QuantileForecast(ForecastDistribution):
    """Quantiles at fixed levels per reading.

    Args:
        levels: Increasing levels in (0, 1), ``K`` of them.
        values: ``[B, H, N, F, K]``, non-decreasing along the last axis.
    """

    kind: ClassVar[str] = "quantile"

    def __init__(self, levels: Sequence[float], values: Tensor) -> None:
        levels = tuple(float(q) for q in levels)
        if values.shape[-1] != len(levels):
            raise ValueError(f"values have {values.shape[-1]} quantiles, levels {len(levels)}")
        if any(b <= a for a, b in zip(levels, levels[1:], strict=False)) or not all(0 < q < 1 for q in levels):
            raise ValueError(f"quantile levels must be increasing and in (0, 1), got {list(levels)}")
        self.levels = levels
        self.values = values

    @property
    def mean(self) -> Tensor:
        """The median, ``quantile(0.5)``: a set of quantiles does not determine the mean, and the
        median is the point forecast that the pinball loss at 0.5 trains."""
        return self.quantile(0.5)

    def covers(self, level: float) -> bool:
        """Whether both ends of the central ``level`` interval lie within the predicted levels."""
        level = check_level(level)
        return self.levels[0] <= (1 - level) / 2 + 1e-12 and (1 + level) / 2 - 1e-12 <= self.levels[-1]

    def quantile(self, q: float) -> Tensor:
        """A predicted level, or the linear interpolation between the two levels around ``q``.

        Raises:
            ValueError: ``q`` lies outside the predicted levels (nothing is extrapolated).
        """
        lv = self.levels
        for k, level in enumerate(lv):
            if math.isclose(q, level, abs_tol=1e-9):
                return self.values[..., k]
        if not lv[0] < q < lv[-1]:
            raise ValueError(
                f"quantile {q:g} lies outside the levels this head predicts ({', '.join(f'{x:g}' for x in lv)}); "
                "tails are not extrapolated: train with [head] quantiles that include it"
            )
        hi = next(k for k, level in enumerate(lv) if level > q)
        w = (q - lv[hi - 1]) / (lv[hi] - lv[hi - 1])
        return torch.lerp(self.values[..., hi - 1], self.values[..., hi], w)

    def crps(self, target: Tensor) -> Tensor:
        """Twice the pinball loss averaged over the levels, ``(2 / K) Σ_k ρ_{τ_k}(y - q_k)``.

        The CRPS is ``2 ∫₀¹ ρ_τ(y - F⁻¹(τ)) dτ``; this is that integral estimated at the predicted
        levels (each weighted equally).  It converges to the CRPS as the levels fill (0, 1) evenly
        (``K`` levels ``(k - ½) / K``: the midpoint rule); with a few levels it is the
        quantile-loss score commonly reported as CRPS for quantile forecasts.
        """
        levels = torch.tensor(self.levels, dtype=self.values.dtype, device=self.values.device)
        return 2.0 * pinball_loss(self.values, target, levels).mean(-1)

    def loss_terms(self, target: Tensor) -> Tensor:
        """The pinball loss averaged over the levels."""
        levels = torch.tensor(self.levels, dtype=self.values.dtype, device=self.values.device)
        return pinball_loss(self.values, target, levels).mean(-1)

    def affine(self, scale: Tensor, shift: Tensor) -> QuantileForecast:
        """Quantiles of ``x * scale + shift`` (order kept since ``scale > 0``)."""
        s, m = scale.to(self.values).unsqueeze(-1), shift.to(self.values).unsqueeze(-1)
        return QuantileForecast(self.levels, self.values * s + m)
