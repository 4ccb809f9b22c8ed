"""Input imputation: what a model sees where an input reading is missing.

Training and evaluation already leave missing *targets* out of the loss and the metrics (the
mask).  A missing *input* reading, though, still reaches the model as a number: by default
(``"none"``) the value stored for it, 0 in raw units.  An :class:`InputImputer` fills those
inputs instead, with one of

* ``"historical"``: the sensor's mean at that time of day (slot of ``interval`` minutes) over
  the training period; a slot never observed falls back to the sensor's training mean, and a
  sensor never observed to the mean of all training readings;
* ``"neighbours"``: the graph neighbours' readings at the same step, as a weighted average of
  their deviations from their own time-of-day means (edge weights, both directions, self-loops
  left out) added to the sensor's own time-of-day mean; with no neighbour observed at that step,
  the ``"historical"`` value;
* ``"linear"``: linear interpolation in time between the nearest observed readings of the same
  sensor *inside the input window* (leading / trailing gaps take the nearest observed reading of
  the window); a sensor with no reading in the window gets the ``"historical"`` value.  Only the
  window is used, so a forecast never sees a reading from its own horizon.

Every statistic (time-of-day and sensor means) is fitted on the training period only
(:meth:`InputImputer.fit`); targets are never imputed.

Example:
    >>> import torch
    >>> from stgnn.data.graph import SensorGraph
    >>> g = SensorGraph.from_dense(torch.tensor([[0.0, 1.0], [1.0, 0.0]]).numpy(), ["a", "b"])
    >>> series = torch.tensor([[10.0, 20.0], [12.0, 22.0], [0.0, 24.0]])[..., None]  # [T, N, F]
    >>> mask = torch.tensor([[True, True], [True, True], [False, True]])
    >>> day_slot = torch.tensor([0, 0, 0])
    >>> imp = InputImputer.fit("neighbours", series[:2], mask[:2], day_slot[:2], steps_per_day=1, graph=g)
    >>> imp.fill(series, mask, day_slot)[2, 0].item()  # a's mean 11 + b's deviation (24 - 21)
    14.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from stgnn.data.graph import SensorGraph

__all__ = ["IMPUTE_METHODS", "ImputeMethod", "InputImputer", "interpolate_windows"]

ImputeMethod = Literal["none", "linear", "historical", "neighbours"]
IMPUTE_METHODS: tuple[str, ...] = get_args(ImputeMethod)


@dataclass
class InputImputer:
    """Fills missing input readings; every statistic comes from the training period.

    Attributes:
        method: One of :data:`IMPUTE_METHODS`.
        slot_mean: ``[S, N, F]`` mean reading per time-of-day slot and sensor (with the
            fallbacks described in the module docstring already applied).
        weights: ``[N, N]`` symmetric neighbour weights (``scipy.sparse``), zero diagonal;
            ``None`` unless ``method == "neighbours"``.
    """

    method: str
    slot_mean: Tensor
    weights: sp.csr_matrix | None = None

    @classmethod
    def fit(
        cls,
        method: str,
        series: Tensor,
        mask: Tensor,
        day_slot: Tensor,
        *,
        steps_per_day: int,
        graph: SensorGraph | None = None,
    ) -> InputImputer:
        """Fit on the training period.

        Args:
            method: ``"none"``, ``"linear"``, ``"historical"`` or ``"neighbours"``.
            series: Raw readings of the training period ``[T_train, N, F]``.
            mask: ``[T_train, N]``, True where a reading is observed.
            day_slot: ``[T_train]`` time-of-day slot (``0 .. steps_per_day - 1``) of each step.
            steps_per_day: Slots per day.
            graph: The sensor graph (needed for ``"neighbours"``).

        Raises:
            ValueError: An unknown method, mismatched shapes, or ``"neighbours"`` without a graph.
        """
        if method not in IMPUTE_METHODS:
            raise ValueError(f"data.impute: unknown method {method!r}; known: {', '.join(IMPUTE_METHODS)}")
        t, n, f = series.shape
        if tuple(mask.shape) != (t, n) or tuple(day_slot.shape) != (t,):
            raise ValueError(f"impute: mask {tuple(mask.shape)} and day_slot {tuple(day_slot.shape)} do not fit "
                             f"series [T, N, F] = {(t, n, f)}")
        if method == "neighbours" and (graph is None or graph.num_nodes != n):
            raise ValueError(f"data.impute = 'neighbours' needs the sensor graph of the {n} sensors")
        observed = mask[..., None].to(torch.float64)
        values = series.to(torch.float64) * observed
        total = values.sum(dim=(0, 1))
        count = observed.sum(dim=(0, 1))
        overall = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))  # [F]
        sensor_count = observed.sum(dim=0)  # [N, 1]
        sensor = torch.where(sensor_count > 0, values.sum(dim=0) / sensor_count.clamp(min=1), overall)  # [N, F]
        slot_sum = torch.zeros(steps_per_day, n, f, dtype=torch.float64).index_add_(0, day_slot, values)
        slot_count = torch.zeros(steps_per_day, n, 1, dtype=torch.float64).index_add_(0, day_slot, observed)
        slot_mean = torch.where(slot_count > 0, slot_sum / slot_count.clamp(min=1), sensor)
        weights = None
        if method == "neighbours":
            assert graph is not None
            w = graph.to_scipy().astype(np.float64)
            w = (w + w.T).tolil()
            w.setdiag(0.0)
            weights = w.tocsr()
            weights.eliminate_zeros()
        return cls(method, slot_mean.float(), weights)

    def fill(self, series: Tensor, mask: Tensor, day_slot: Tensor) -> Tensor:
        """``series [T, N, F]`` with every reading where ``mask`` is False imputed.

        ``"linear"`` depends on the window and is finished by :func:`interpolate_windows`; here
        it (like ``"historical"``) fills the time-of-day mean, which that function keeps for
        sensors with no reading in a window.  ``"none"`` returns ``series`` unchanged.

        Args:
            series: Raw readings ``[T, N, F]``.
            mask: ``[T, N]``, True where observed.
            day_slot: ``[T]`` time-of-day slot of each step.
        """
        if self.method == "none":
            return series
        if int(day_slot.max()) >= self.slot_mean.shape[0] or int(day_slot.min()) < 0:
            raise ValueError(f"impute: time-of-day slots must lie in 0 .. {self.slot_mean.shape[0] - 1}")
        expected = self.slot_mean[day_slot]  # [T, N, F]
        if self.method == "neighbours":
            expected = self._neighbours(series, mask, expected)
        return torch.where(mask[..., None], series, expected.to(series.dtype))

    def _neighbours(self, series: Tensor, mask: Tensor, expected: Tensor) -> Tensor:
        t, n, f = series.shape
        observed = mask.to(torch.float64).T.numpy()  # [N, T]
        deviation = ((series.to(torch.float64) - expected.to(torch.float64)) * mask[..., None]).permute(1, 0, 2)
        assert self.weights is not None
        num = self.weights @ deviation.reshape(n, t * f).numpy()
        den = self.weights @ observed
        num_t = torch.from_numpy(np.asarray(num)).reshape(n, t, f).permute(1, 0, 2)
        den_t = torch.from_numpy(np.asarray(den)).T[..., None]  # [T, N, 1]
        shift = torch.where(den_t > 0, num_t / torch.where(den_t > 0, den_t, 1.0), 0.0)
        return (expected.to(torch.float64) + shift).float()


def interpolate_windows(x: Tensor, x_mask: Tensor) -> Tensor:
    """Linear interpolation in time inside each window, over the observed readings.

    A missing step between two observed steps of the same sensor gets the straight line between
    them; one before the first (after the last) observed step gets that step's value.  A sensor
    with no observed step in the window keeps what ``x`` holds there.

    Args:
        x: ``[B, T, N, F]`` values (any affine scaling: interpolation commutes with it).
        x_mask: ``[B, T, N]``, True where observed.

    Returns:
        A new ``[B, T, N, F]`` tensor; observed entries unchanged.
    """
    steps = x.shape[1]
    t = torch.arange(steps, device=x.device).view(1, steps, 1)
    before = torch.where(x_mask, t, -1).cummax(dim=1).values  # last observed step at or before t
    after = torch.where(x_mask, t, steps).flip(1).cummin(dim=1).values.flip(1)  # first at or after t
    has_before, has_after = before >= 0, after < steps
    lo = torch.where(has_before, before, after).clamp(0, steps - 1)
    hi = torch.where(has_after, after, before).clamp(0, steps - 1)
    x_lo = x.gather(1, lo[..., None].expand_as(x))
    x_hi = x.gather(1, hi[..., None].expand_as(x))
    span = (hi - lo).clamp(min=1).to(x.dtype)
    frac = ((t - lo).to(x.dtype) / span).clamp(0, 1)[..., None]
    line = x_lo + (x_hi - x_lo) * frac
    fill = (has_before | has_after) & ~x_mask
    return torch.where(fill[..., None], line, x)
