"""Masked MAE / RMSE / MAPE that accumulate sums and counts, then divide once.

The mean of per-batch RMSEs is not the RMSE of the set, and the mean of per-batch
MAEs is wrong when batches hold different numbers of observed readings; so
:class:`MaskedMetrics` keeps per-horizon sums of absolute, squared and absolute
percentage errors and the number of readings behind them, and divides at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["MaskedMetrics", "masked_abs_error", "masked_mae_loss", "valid_mask"]


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


class MaskedMetrics:
    """Accumulates masked MAE, RMSE and MAPE per horizon over a whole evaluation set.

    Args:
        horizons: 1-based horizons to report (default 3, 6, 12 = 15/30/60 min at 5 min).
        null_value: A target value also treated as missing, on top of ``mask`` (default
            ``None``: the mask is the record of what is missing, as in the config's default
            ``null_value = "none"``; the benchmark datasets' zeros are already in their masks).

    Example:
        >>> m = MaskedMetrics(horizons=(1,))
        >>> m.update(torch.tensor([[[[1.0]], [[3.0]]]]), torch.tensor([[[[2.0]], [[2.0]]]]))
        >>> m.compute()["average"]["mae"]
        1.0
    """

    def __init__(self, horizons: Sequence[int] = (3, 6, 12), null_value: float | None = None) -> None:
        self.horizons = tuple(int(h) for h in horizons)
        self.null_value = null_value
        self._abs: Tensor | None = None
        self._sq: Tensor | None = None
        self._ape: Tensor | None = None
        self._n: Tensor | None = None
        self._n_ape: Tensor | None = None

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch: ``pred`` and ``target`` ``[B, H, N, F]`` (raw units), ``mask [B, H, N]``."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        pred, target = pred.detach().double(), target.detach().double()
        valid = valid_mask(target, None if mask is None else mask.detach(), self.null_value)
        err = torch.where(valid, pred - target, torch.zeros_like(pred))
        nonzero = valid & (target.abs() > 1e-8)  # MAPE is undefined at a true 0
        ape = torch.where(nonzero, err.abs() / target.abs().clamp(min=1e-8), torch.zeros_like(pred))
        dims = [d for d in range(pred.dim()) if d != 1]  # keep the horizon axis
        sums = (
            err.abs().sum(dims),
            (err * err).sum(dims),
            ape.sum(dims),
            valid.sum(dims).double(),
            nonzero.sum(dims).double(),
        )
        if self._abs is None:
            self._abs, self._sq, self._ape, self._n, self._n_ape = (s.cpu() for s in sums)
        else:
            assert self._sq is not None and self._ape is not None
            assert self._n is not None and self._n_ape is not None
            if sums[0].shape != self._abs.shape:
                raise ValueError(f"horizon length changed from {self._abs.shape[0]} to {sums[0].shape[0]}")
            self._abs += sums[0].cpu()
            self._sq += sums[1].cpu()
            self._ape += sums[2].cpu()
            self._n += sums[3].cpu()
            self._n_ape += sums[4].cpu()

    def totals(self, steps: int) -> Tensor:
        """The accumulated sums and counts, ``[5, steps]`` float64 (zeros before any update).

        Rows: absolute errors, squared errors, absolute percentage errors, valid readings,
        readings counted by MAPE; one column per forecast step.  Summing the totals of several
        accumulators (e.g. across the processes of a data-parallel run) and loading the sum
        with :meth:`load_totals` gives the metrics of the union of their batches.
        """
        if self._abs is None:
            return torch.zeros(5, steps, dtype=torch.float64)
        assert self._sq is not None and self._ape is not None
        assert self._n is not None and self._n_ape is not None
        if self._abs.shape[0] != steps:
            raise ValueError(f"horizon length is {self._abs.shape[0]}, not {steps}")
        return torch.stack([self._abs, self._sq, self._ape, self._n, self._n_ape])

    def load_totals(self, totals: Tensor) -> None:
        """Replace the accumulated sums and counts by ``totals`` (the layout of :meth:`totals`)."""
        if totals.dim() != 2 or totals.shape[0] != 5:
            raise ValueError(f"totals must be [5, steps], got {tuple(totals.shape)}")
        t = totals.detach().double().cpu()
        self._abs, self._sq, self._ape, self._n, self._n_ape = (t[i].clone() for i in range(5))

    @staticmethod
    def _finish(abs_: Tensor, sq: Tensor, ape: Tensor, n: Tensor, n_ape: Tensor) -> dict[str, float | None]:
        count, count_ape = float(n.sum()), float(n_ape.sum())
        if count == 0:
            return {"mae": None, "rmse": None, "mape": None, "count": 0}
        return {
            "mae": float(abs_.sum()) / count,
            "rmse": (float(sq.sum()) / count) ** 0.5,
            "mape": 100.0 * float(ape.sum()) / count_ape if count_ape else None,
            "count": int(count),
        }

    def compute(self) -> dict[str, dict[str, float | None]]:
        """``{"3": {...}, "6": {...}, "12": {...}, "average": {...}}``; MAPE in percent.

        ``average`` pools every forecast step.  A set with no valid reading gives
        ``None`` values (never NaN or inf).
        """
        if self._abs is None:
            empty: dict[str, float | None] = {"mae": None, "rmse": None, "mape": None, "count": 0}
            return {**{str(h): dict(empty) for h in self.horizons}, "average": dict(empty)}
        assert self._sq is not None and self._ape is not None
        assert self._n is not None and self._n_ape is not None
        steps = self._abs.shape[0]
        out: dict[str, dict[str, float | None]] = {}
        for h in self.horizons:
            if not 1 <= h <= steps:
                raise ValueError(f"horizon {h} outside the forecast length {steps}")
            i = slice(h - 1, h)
            out[str(h)] = self._finish(self._abs[i], self._sq[i], self._ape[i], self._n[i], self._n_ape[i])
        out["average"] = self._finish(self._abs, self._sq, self._ape, self._n, self._n_ape)
        return out

    def per_step(self) -> list[dict[str, float | None]]:
        """Metrics for every forecast step 1..H (for error-by-horizon plots)."""
        if self._abs is None:
            return []
        assert self._sq is not None and self._ape is not None
        assert self._n is not None and self._n_ape is not None
        return [
            self._finish(self._abs[i : i + 1], self._sq[i : i + 1], self._ape[i : i + 1],
                         self._n[i : i + 1], self._n_ape[i : i + 1])
            for i in range(self._abs.shape[0])
        ]
