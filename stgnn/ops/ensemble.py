"""Ensembles of trained checkpoints: the mean or the validation-weighted mean of their forecasts.

Members may be different models, but must have been trained on the same data with the same
windows: the same dataset (name, sensors, sampling interval, length, time range and file
digests as recorded in each checkpoint), and the same ``input_len``, ``horizon``, ``split``,
``target_features`` and ``null_value``.  Anything else is refused, naming each difference.
Each member reads its inputs through its own scaler and covariates; the forecasts are combined
in raw units, sensor by sensor (matched by id).

Methods:

* ``mean``: every member weighs ``1 / M``.
* ``weighted``: member ``i`` weighs ``w_i = (1 / MAE_i) / sum_j (1 / MAE_j)``, where ``MAE_i``
  is its masked MAE over all horizons on the *validation* split (never the test split), so
  a member with half the error counts twice as much.
* ``mixture`` (members with Gaussian heads): the equally weighted mixture of the members'
  forecast distributions, :class:`GaussianMixtureForecast`; its point forecast is the
  mixture's mean, and it is scored like a probabilistic model (CRPS, interval coverage and
  width beside MAE / RMSE / MAPE).  Quantile heads are refused: a mixture of distributions
  known only at a few quantiles has no well-defined quantiles between them.

``mean`` and ``weighted`` combine the members' point forecasts (a probabilistic member
contributes its mean or median).

The ensemble is evaluated like a trained model: masked metrics at horizons 3, 6, 12 and the
average on the validation and test splits, beside each member's own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Normal

from stgnn.distributions import ForecastDistribution, GaussianForecast, check_level
from stgnn.metrics import MaskedMetrics
from stgnn.training.trainer import Experiment

__all__ = [
    "METHODS",
    "Ensemble",
    "GaussianMixtureForecast",
    "check_members",
    "comparison_table",
    "ensemble_weights",
    "evaluate_ensemble",
]

METHODS = ("mean", "weighted", "mixture")
"""Ways of combining members (see the module docstring)."""

_SAME_DATA = ("name", "sensor_ids", "interval_minutes", "num_steps", "first_timestamp", "last_timestamp",
              "windows", "files")
_SAME_WINDOWS = ("input_len", "horizon", "split", "target_features", "null_value")


def check_members(members: Sequence[tuple[str, Experiment, dict[str, Any]]]) -> None:
    """Refuse members that were not trained on the same data and windows.

    Args:
        members: ``(checkpoint path, experiment, checkpoint state)`` per member.

    Raises:
        ValueError: Fewer than two members, a checkpoint without a data fingerprint, or
            differences from the first member (each key and both values named).
    """
    if len(members) < 2:
        raise ValueError(f"--checkpoints: an ensemble needs at least two checkpoints, got {len(members)}")
    problems = []
    first_path, first_exp, first_state = members[0]
    for path, _, state in members:
        if state.get("data") is None:
            problems.append(f"{path}: records no data fingerprint (written by an older stgnn); "
                            "its training data cannot be compared")
    if problems:
        raise ValueError("\n".join(problems))
    for path, exp, state in members[1:]:
        for key in _SAME_DATA:
            a, b = first_state["data"].get(key), state["data"].get(key)
            if key == "sensor_ids" and a is not None and b is not None:
                a, b = sorted(a), sorted(b)  # the order may differ: forecasts are matched by id
            if a != b:
                shown = "differ" if key in ("sensor_ids", "files") else f"{a!r} vs {b!r}"
                problems.append(f"{path}: trained on other data than {first_path}: {key} {shown}")
        for key in _SAME_WINDOWS:
            a, b = getattr(first_exp.config.data, key), getattr(exp.config.data, key)
            if a != b:
                problems.append(f"{path}: [data] {key} is {b!r}, but {a!r} in {first_path}")
    if problems:
        raise ValueError("cannot ensemble these checkpoints (members must forecast the same windows of the "
                         "same data):\n" + "\n".join(f"  {p}" for p in problems))


def ensemble_weights(method: str, val_mae: Sequence[float]) -> list[float]:
    """Member weights: ``1 / M`` for ``mean``; normalised inverse validation MAE for ``weighted``.

    Example:
        >>> ensemble_weights("weighted", [1.0, 2.0, 4.0])
        [0.5714285714285714, 0.2857142857142857, 0.14285714285714285]

    Raises:
        ValueError: An unknown method, or a validation MAE that is not a positive finite number.
    """
    if method in ("mean", "mixture"):
        return [1.0 / len(val_mae)] * len(val_mae)
    if method != "weighted":
        raise ValueError(f"--method {method!r}: known methods are {', '.join(METHODS)}")
    bad = [m for m in val_mae if not (m > 0 and m < float("inf"))]
    if bad:
        raise ValueError(f"--method weighted: validation MAEs must be positive and finite, got {list(val_mae)}")
    inverse = [1.0 / m for m in val_mae]
    return [v / sum(inverse) for v in inverse]


def _abs_moment(m: Tensor, s: Tensor) -> Tensor:
    """``E|X|`` for ``X ~ N(m, s²)``: ``2 s φ(m / s) + m (2 Φ(m / s) - 1)``."""
    z = m / s
    std = Normal(torch.zeros_like(z), torch.ones_like(z), validate_args=False)
    return 2.0 * s * std.log_prob(z).exp() + m * (2.0 * std.cdf(z) - 1.0)


class GaussianMixtureForecast(ForecastDistribution):
    """A mixture of Gaussian forecasts per reading: ``sum_i w_i N(mu_i, sigma_i²)``.

    Args:
        means: ``[M, B, H, N, F]`` member means.
        scales: ``[M, B, H, N, F]`` member standard deviations (> 0).
        weights: ``[M]`` mixture weights summing to 1.

    Quantiles invert the mixture's CDF by bisection (60 halvings of a bracket 10 standard
    deviations wide around the members: far below float32 resolution); the CRPS is exact
    (Grimit et al. 2006): ``sum_i w_i E|X_i - y| - 1/2 sum_ij w_i w_j E|X_i - X'_j|``.

    Example:
        >>> d = GaussianMixtureForecast(torch.tensor([[0.0], [0.0]]), torch.tensor([[1.0], [1.0]]),
        ...                             torch.tensor([0.5, 0.5]))
        >>> round(float(d.quantile(0.975)[0]), 3)
        1.96
    """

    kind: ClassVar[str] = "gaussian_mixture"

    def __init__(self, means: Tensor, scales: Tensor, weights: Tensor) -> None:
        if means.shape != scales.shape or means.shape[0] != weights.numel():
            raise ValueError(f"means {tuple(means.shape)}, scales {tuple(scales.shape)} and weights "
                             f"{tuple(weights.shape)} do not fit")
        self.means, self.scales = means, scales
        self.weights = weights.to(means).reshape(-1, *([1] * (means.dim() - 1)))

    @property
    def mean(self) -> Tensor:
        """The mixture's mean ``sum_i w_i mu_i``."""
        return (self.weights * self.means).sum(dim=0)

    def cdf(self, x: Tensor) -> Tensor:
        """``P(X <= x)`` per reading."""
        return (self.weights * Normal(self.means, self.scales, validate_args=False).cdf(x.unsqueeze(0))).sum(dim=0)

    def quantile(self, q: float) -> Tensor:
        """The ``q`` quantile, by bisection of the CDF.

        Raises:
            ValueError: ``q`` is not in (0, 1).
        """
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile level must be in (0, 1), got {q}")
        low = (self.means - 10.0 * self.scales).amin(dim=0)
        high = (self.means + 10.0 * self.scales).amax(dim=0)
        for _ in range(60):
            mid = (low + high) / 2
            below = self.cdf(mid) < q
            low, high = torch.where(below, mid, low), torch.where(below, high, mid)
        return (low + high) / 2

    def interval(self, level: float) -> tuple[Tensor, Tensor]:
        """The central ``level`` interval (see :meth:`quantile`)."""
        level = check_level(level)
        return self.quantile((1.0 - level) / 2.0), self.quantile((1.0 + level) / 2.0)

    def crps(self, target: Tensor) -> Tensor:
        """Exact CRPS of the mixture (see the class docstring)."""
        w = self.weights
        spread = (w * _abs_moment(target.unsqueeze(0) - self.means, self.scales)).sum(dim=0)
        diff = self.means.unsqueeze(0) - self.means.unsqueeze(1)
        joint = (self.scales.unsqueeze(0).square() + self.scales.unsqueeze(1).square()).sqrt()
        pairs = (w.unsqueeze(0) * w.unsqueeze(1) * _abs_moment(diff, joint)).sum(dim=(0, 1))
        return spread - 0.5 * pairs

    def loss_terms(self, target: Tensor) -> Tensor:
        """Negative log-likelihood of the mixture."""
        log_p = Normal(self.means, self.scales, validate_args=False).log_prob(target.unsqueeze(0))
        return -torch.logsumexp(log_p + self.weights.log(), dim=0)

    def affine(self, scale: Tensor, shift: Tensor) -> GaussianMixtureForecast:
        """Each member mapped as :meth:`GaussianForecast.affine`."""
        s = scale.to(self.means)
        flat = self.weights.reshape(-1)
        return GaussianMixtureForecast(self.means * s + shift.to(self.means), self.scales * s, flat)


@dataclass
class Ensemble:
    """Members that forecast the same windows, and their weights.

    Attributes:
        members: The members' experiments (best weights, own scalers).
        weights: One weight per member, summing to 1.
        method: ``mixture`` scores the mixture distribution; otherwise the weighted mean of
            the point forecasts.
    """

    members: list[Experiment]
    weights: list[float]
    method: str = "mean"

    def __post_init__(self) -> None:
        reference = self.members[0].dataset.node_ids
        self._order: list[Tensor | None] = []
        for exp in self.members:
            ids = exp.dataset.node_ids
            self._order.append(None if ids == reference else
                               torch.tensor([ids.index(s) for s in reference], dtype=torch.long))

    @property
    def reference(self) -> Experiment:
        """The first member: its windows, targets and masks are the ensemble's."""
        return self.members[0]

    def member_distributions(self, starts: Tensor) -> list[ForecastDistribution]:
        """Each member's forecast distribution in raw units (point models give a point forecast)."""
        return [exp.predict_distribution(exp.data.batch(starts)) for exp in self.members]

    def _ordered(self, i: int, value: Tensor) -> Tensor:
        order = self._order[i]
        return value if order is None else value[:, :, order]

    def member_forecasts(self, starts: Tensor) -> list[Tensor]:
        """Each member's point forecast ``[B, H, N, F]`` in raw units, nodes in the first member's order."""
        return [self._ordered(i, d.point) for i, d in enumerate(self.member_distributions(starts))]

    def mixture(self, starts: Tensor) -> GaussianMixtureForecast:
        """The mixture of the members' Gaussian forecasts, weighted by :attr:`weights`.

        Raises:
            ValueError: A member's forecast is not Gaussian (named with its model).
        """
        dists = self.member_distributions(starts)
        gaussians = [d for d in dists if isinstance(d, GaussianForecast)]
        if len(gaussians) != len(dists):
            bad = [f"{exp.config.model} ({d.kind})" for exp, d in zip(self.members, dists, strict=True)
                   if not isinstance(d, GaussianForecast)]
            raise ValueError(f"--method mixture: needs members with Gaussian heads (stgnn train --head gaussian); "
                             f"not: {', '.join(bad)}")
        means = torch.stack([self._ordered(i, d.loc) for i, d in enumerate(gaussians)])
        scales = torch.stack([self._ordered(i, d.scale) for i, d in enumerate(gaussians)])
        return GaussianMixtureForecast(means, scales, torch.tensor(self.weights))

    def evaluate(self, split: str, batch_size: int, *,
                 members_only: bool = False) -> tuple[MaskedMetrics | None, list[MaskedMetrics]]:
        """Masked metrics of the ensemble and of each member over ``split``.

        Args:
            split: ``train``, ``val`` or ``test``.
            batch_size: Windows per forward pass.
            members_only: Skip the ensemble (its weights may not be known yet).

        Returns:
            ``(ensemble metrics or None, [member metrics])``.
        """
        ref = self.reference
        mixture = self.method == "mixture"

        def fresh() -> MaskedMetrics:
            horizons = [h for h in (3, 6, 12) if h <= ref.spec.horizon] or [ref.spec.horizon]
            return MaskedMetrics(horizons=horizons, null_value=ref.config.data.null_value)

        combined = None if members_only else fresh()
        each = [fresh() for _ in self.members]
        starts = ref.data.splits[split]
        for i in range(0, starts.numel(), batch_size):
            chunk = starts[i : i + batch_size]
            batch = ref.data.batch(chunk)
            dists = self.member_distributions(chunk)
            for k, (metrics, dist) in enumerate(zip(each, dists, strict=True)):
                metrics.update(dist if self._order[k] is None else self._ordered(k, dist.point), batch.y, batch.mask)
            if combined is not None and mixture:
                combined.update(self.mixture(chunk), batch.y, batch.mask)
            elif combined is not None:
                points = [self._ordered(k, d.point) for k, d in enumerate(dists)]
                mixed = torch.stack([w * p for w, p in zip(self.weights, points, strict=True)]).sum(dim=0)
                combined.update(mixed, batch.y, batch.mask)
        return combined, each


def evaluate_ensemble(members: Sequence[tuple[str, Experiment, dict[str, Any]]], method: str,
                      batch_size: int = 64) -> dict[str, Any]:
    """Check, weigh and evaluate an ensemble; the ``metrics.json`` content.

    Args:
        members: ``(checkpoint path, experiment, checkpoint state)`` per member.
        method: One of :data:`METHODS`.
        batch_size: Windows per forward pass.

    Returns:
        ``horizons`` / ``per_step`` (test) and ``val`` of the ensemble, in the layout of a
        training run's ``metrics.json``, plus ``method``, ``weight_formula`` and ``members``
        (checkpoint, model, weight, validation and test metrics of each).

    Raises:
        ValueError: See :func:`check_members` and :func:`ensemble_weights`.
    """
    if method not in METHODS:
        raise ValueError(f"--method {method!r}: known methods are {', '.join(METHODS)}")
    check_members(members)
    ensemble = Ensemble([exp for _, exp, _ in members], [1.0 / len(members)] * len(members), method)
    if method == "mixture":
        bad = [f"{path} ({exp.config.head.kind})" for path, exp, _ in members if exp.config.head.kind != "gaussian"]
        if bad:
            raise ValueError("--method mixture: needs members with Gaussian heads (stgnn train --head gaussian); "
                             f"not: {', '.join(bad)}")
    _, val_members = ensemble.evaluate("val", batch_size, members_only=True)
    val_mae = [float(m.compute()["average"]["mae"] or float("nan")) for m in val_members]
    ensemble.weights = ensemble_weights(method, val_mae)
    val, _ = ensemble.evaluate("val", batch_size)
    test, test_members = ensemble.evaluate("test", batch_size)
    assert val is not None and test is not None
    ref = ensemble.reference
    return {
        "horizons": test.compute(),
        "per_step": test.per_step(),
        "val": val.compute(),
        "model": "ensemble",
        "method": method,
        "weight_formula": ("w_i = 1 / M" if method in ("mean", "mixture") else
                           "w_i = (1 / val_MAE_i) / sum_j (1 / val_MAE_j), val_MAE = masked MAE over all "
                           "horizons on the validation split"),
        "dataset": ref.dataset.name,
        "windows": {k: ref.data.num_windows(k) for k in ("train", "val", "test")},
        "units": ref.dataset.units,
        "mape_unit": "percent",
        "members": [
            {"checkpoint": str(path), "model": exp.config.model, "weight": w, "val": vm.compute(),
             "horizons": tm.compute()}
            for (path, exp, _), w, vm, tm in zip(members, ensemble.weights, val_members, test_members, strict=True)
        ],
    }


def comparison_table(result: dict[str, Any]) -> str:
    """Markdown: test MAE at each horizon and average MAE / RMSE / MAPE, members then the ensemble;
    where any of them is probabilistic, also the average CRPS and the 80 % / 95 % interval coverage."""
    keys = [k for k in result["horizons"] if k != "average"]
    rows = [*(m["horizons"] for m in result["members"]), result["horizons"]]
    probabilistic = any(h["average"].get("crps") is not None for h in rows)
    head = "| model | weight | " + " | ".join(f"MAE @{k}" for k in keys) + " | average MAE / RMSE / MAPE % |"
    head += " CRPS / coverage 80 % / 95 % |" if probabilistic else ""
    lines = [head, "|" + "---|" * (len(keys) + 3 + probabilistic)]

    def row(name: str, weight: str, horizons: dict[str, Any]) -> str:
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"
        avg = horizons["average"]
        cells = " | ".join(f(horizons[k]["mae"]) for k in keys)
        line = f"| {name} | {weight} | {cells} | {f(avg['mae'])} / {f(avg['rmse'])} / {f(avg['mape'])} |"
        if probabilistic:
            line += f" {f(avg.get('crps'))} / {f(avg.get('coverage_80'))} / {f(avg.get('coverage_95'))} |"
        return line

    for m in result["members"]:
        lines.append(row(f"{m['model']} ({os.path.basename(os.path.dirname(m['checkpoint'])) or m['checkpoint']})",
                         f"{m['weight']:.3f}", m["horizons"]))
    lines.append(row(f"**ensemble ({result['method']})**", "-", result["horizons"]))
    return "\n".join(lines)
