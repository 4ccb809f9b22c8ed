"""The T-GCN evaluation protocol (Zhao et al., IEEE T-ITS 2020), exactly as the authors ran it.

Facts, from the paper (arXiv:1811.05320) and the authors' code (github.com/lehaifeng/T-GCN,
``T-GCN/T-GCN-TensorFlow/main.py`` and ``input_data.py``; ``Baselines/baselines.py``):

* **Scaling**: the whole series is divided by its maximum (``np.max`` over all steps and
  sensors, *including the test period*: test statistics reach the model's inputs; the DCRNN-style
  protocol of this package fits its scaler on the training split only).
* **Split**: chronological, ``train_size = int(T * 0.8)`` steps for training and the rest for
  testing; no validation split.
* **Windows**: inside each part separately, ``for i in range(len(part) - seq_len - pre_len)``:
  inputs ``part[i : i + seq_len]``, targets ``part[i + seq_len : i + seq_len + pre_len]``.  That is
  ``len - seq_len - pre_len`` windows, one fewer than fit (the last possible window is never
  used).  On Los-loop (2016 steps, 1612 train / 404 test) with ``seq_len = 12``: 389 / 386 / 383 /
  380 test windows for ``pre_len`` 3 / 6 / 9 / 12.
* **Horizons**: Los-loop (5 min) ``seq_len = 12``, ``pre_len`` 3, 6, 9, 12 = 15/30/45/60 min;
  SZ-taxi (15 min) ``seq_len = 4``, ``pre_len`` 1, 2, 3, 4.  One model is trained per ``pre_len``.
* **Metrics**: on de-normalised values, over all ``pre_len`` steps of all test windows at once
  (the targets reshaped to ``[windows * pre_len, N]``), unmasked: RMSE, MAE,
  Accuracy ``1 - ||Y - Y^||_F / ||Y||_F``, ``R^2 = 1 - sum (Y - Y^)^2 / sum (Y - mean Y)^2`` (one
  mean over the whole matrix) and explained variance ``1 - Var(Y - Y^) / Var(Y)`` (population
  variances over the whole matrix).  (The PyTorch re-implementation's ``r2`` subtracts the mean
  of the *prediction*; the authors' TensorFlow code and the paper use the mean of ``Y``, as here.)
* **Model selection**: the model is evaluated on the test set after every epoch and the paper
  reports the epoch with the lowest test RMSE (``selection="test"``).  The honest variant
  (``selection="val"``) holds out the last 10 % of the training period as validation, selects on
  it and reports the test metrics of that epoch.
* **Training** (T-GCN, GRU, GCN): Adam, lr 0.001, loss ``||Y - Y^||^2 / 2 + lambda * sum ||w||^2 / 2``
  summed over the batch with ``lambda = 0.0015`` over every trainable tensor (``tf.nn.l2_loss``),
  mini-batches in order without shuffling, the last partial batch dropped, 5000 epochs; batch 64
  and 64 hidden units on Los-loop, batch 32 and 100 units on SZ-taxi (the run folders of the
  authors' repository: ``out/tgcn_los_lr0.001_batch64_unit64_seq12_pre3_epoch5000`` and
  ``out/tgcn_sz_lr0.001_batch32_unit100_seq4_pre1_epoch5000``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "PROTOCOL_SETTINGS",
    "ProtocolSettings",
    "Selection",
    "TGCNSplit",
    "max_scale",
    "tgcn_l2_loss",
    "tgcn_metrics",
    "tgcn_split",
    "tgcn_windows",
    "to_rows",
    "train_size",
    "window_count",
]

Selection = Literal["test", "val"]
"""``"test"``: the authors' best epoch on the test set; ``"val"``: best epoch on a held-out validation
period (the last 10 % of the training period)."""

TRAIN_RATE = 0.8
VAL_FRACTION = 0.1
L2_LAMBDA = 0.0015


@dataclass(frozen=True)
class ProtocolSettings:
    """The protocol's per-dataset settings (authors' README and run folders).

    Attributes:
        seq_len: Input steps.
        pre_lens: The forecast lengths of the paper's table, in steps.
        minutes: The horizon each ``pre_len`` stands for, in minutes.
        batch_size: The authors' batch size.
        hidden_channels: The paper's hidden units of T-GCN.
        epochs: The authors' training length.
        lr: Adam learning rate.
        l2: ``lambda`` of the L2 term.
    """

    seq_len: int
    pre_lens: tuple[int, ...]
    minutes: tuple[int, ...]
    batch_size: int
    hidden_channels: int
    epochs: int = 5000
    lr: float = 0.001
    l2: float = L2_LAMBDA


PROTOCOL_SETTINGS: dict[str, ProtocolSettings] = {
    "los-loop": ProtocolSettings(seq_len=12, pre_lens=(3, 6, 9, 12), minutes=(15, 30, 45, 60),
                                 batch_size=64, hidden_channels=64),
    "sz-taxi": ProtocolSettings(seq_len=4, pre_lens=(1, 2, 3, 4), minutes=(15, 30, 45, 60),
                                batch_size=32, hidden_channels=100),
}


def max_scale(series: np.ndarray | Tensor) -> tuple[np.ndarray, float]:
    """Divide the whole series by its maximum, as the authors do (test period included).

    Args:
        series: ``[T, N]`` (or ``[T, N, 1]``) readings.

    Returns:
        The scaled ``float32`` series and the maximum.

    Raises:
        ValueError: the series has a non-finite value or its maximum is not positive.
    """
    values = np.asarray(series, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("T-GCN protocol: the series has NaN or infinite values (it is defined on complete series)")
    peak = float(values.max())
    if peak <= 0:
        raise ValueError(f"T-GCN protocol: the series maximum is {peak}; max-scaling needs a positive maximum")
    return (values / peak).astype(np.float32), peak


def train_size(num_steps: int, rate: float = TRAIN_RATE) -> int:
    """``int(num_steps * rate)``: the authors' training length."""
    return int(num_steps * rate)


def window_count(length: int, seq_len: int, pre_len: int) -> int:
    """Windows the authors' loop builds in a part of ``length`` steps: ``length - seq_len - pre_len``."""
    return max(length - seq_len - pre_len, 0)


def tgcn_windows(part: np.ndarray | Tensor, seq_len: int, pre_len: int) -> tuple[Tensor, Tensor]:
    """Inputs and targets of every window of ``part`` as the authors' loop builds them.

    Args:
        part: ``[L, N, ...]`` one chronological part (train, validation or test).
        seq_len: Input steps.
        pre_len: Forecast steps.

    Returns:
        ``x [W, seq_len, N, ...]`` and ``y [W, pre_len, N, ...]`` with
        ``W = L - seq_len - pre_len``, as views of ``part`` (no copy).

    Raises:
        ValueError: ``seq_len`` or ``pre_len`` is not positive, or the part is too short for one window.
    """
    if seq_len < 1 or pre_len < 1:
        raise ValueError(f"seq_len and pre_len must be >= 1, got {seq_len} and {pre_len}")
    data = torch.as_tensor(part)
    count = window_count(data.shape[0], seq_len, pre_len)
    if count == 0:
        raise ValueError(f"T-GCN protocol: a part of {data.shape[0]} steps is too short for windows of "
                         f"{seq_len} + {pre_len} steps (it needs at least {seq_len + pre_len + 1})")
    # unfold puts the window axis last: [W, N, ..., seq + pre] -> [W, seq + pre, N, ...]
    win = data.unfold(0, seq_len + pre_len, 1)[:count].movedim(-1, 1)
    return win[:, :seq_len], win[:, seq_len:]


@dataclass(frozen=True)
class TGCNSplit:
    """Scaled windows of one dataset under the protocol.

    Attributes:
        train: ``(x, y)`` training windows, scaled.
        val: ``(x, y)`` validation windows (``selection="val"`` only), scaled, else ``None``.
        test: ``(x, y)`` test windows, scaled.
        max_value: The scale (multiply to de-normalise).
        bounds: ``{"train": (start, stop), "val": ..., "test": ...}`` step ranges of the parts.
    """

    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor] | None
    test: tuple[Tensor, Tensor]
    max_value: float
    bounds: dict[str, tuple[int, int]]


def tgcn_split(
    series: np.ndarray | Tensor,
    seq_len: int,
    pre_len: int,
    selection: Selection = "test",
    *,
    rate: float = TRAIN_RATE,
    val_fraction: float = VAL_FRACTION,
) -> TGCNSplit:
    """Scale, split and window ``series`` ``[T, N]`` or ``[T, N, F]`` under the protocol.

    ``selection="test"`` is the authors' setting (train / test).  ``selection="val"`` cuts the
    last ``int(train_size * val_fraction)`` steps of the training period off as validation; the
    test period is the same in both.

    Raises:
        ValueError: an unknown ``selection``, or a part too short for one window.
    """
    if selection not in ("test", "val"):
        raise ValueError(f"selection must be 'test' or 'val', got {selection!r}")
    scaled, peak = max_scale(series)
    num_steps = scaled.shape[0]
    n_train = train_size(num_steps, rate)
    bounds = {"train": (0, n_train), "test": (n_train, num_steps)}
    val = None
    if selection == "val":
        n_val = int(n_train * val_fraction)
        bounds["train"] = (0, n_train - n_val)
        bounds["val"] = (n_train - n_val, n_train)
        val = tgcn_windows(scaled[n_train - n_val : n_train], seq_len, pre_len)
    start, stop = bounds["train"]
    return TGCNSplit(
        train=tgcn_windows(scaled[start:stop], seq_len, pre_len),
        val=val,
        test=tgcn_windows(scaled[n_train:], seq_len, pre_len),
        max_value=peak,
        bounds=bounds,
    )


def to_rows(values: np.ndarray | Tensor) -> np.ndarray:
    """``[W, P, N]`` (or ``[W, P, N, 1]``) -> ``[W * P, N]`` float64: one row per (window, step) in
    window order, the layout of the authors' ``test_result.csv``."""
    arr = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=np.float64)
    if arr.ndim == 4:
        if arr.shape[-1] != 1:
            raise ValueError(f"expected one feature, got shape {arr.shape}")
        arr = arr[..., 0]
    if arr.ndim == 3:
        return arr.reshape(-1, arr.shape[-1])
    if arr.ndim == 2:
        return arr
    raise ValueError(f"expected [W, P, N] or [W * P, N] values, got shape {arr.shape}")


def tgcn_metrics(y_true: np.ndarray | Tensor, y_pred: np.ndarray | Tensor) -> dict[str, float]:
    """RMSE, MAE, Accuracy, R^2 and explained variance as the authors' ``evaluation``.

    Args:
        y_true: De-normalised targets ``[W, P, N]`` or ``[W * P, N]``.
        y_pred: Predictions of the same shape.

    Returns:
        ``{"rmse", "mae", "accuracy", "r2", "var"}`` over every value at once, unmasked.

    Raises:
        ValueError: shapes differ, the arrays are empty, or a value is not finite.

    Example:
        >>> m = tgcn_metrics(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 2.0], [3.0, 2.0]]))
        >>> round(m["rmse"], 4), m["mae"], round(m["accuracy"], 4)
        (1.0, 0.5, 0.6349)
    """
    a, b = to_rows(y_true), to_rows(y_pred)
    if a.shape != b.shape:
        raise ValueError(f"targets {a.shape} and predictions {b.shape} differ in shape")
    if a.size == 0:
        raise ValueError("no values to score")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("targets or predictions hold NaN or infinite values")
    err = a - b
    return {
        "rmse": math.sqrt(float(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "accuracy": 1.0 - float(np.linalg.norm(err) / np.linalg.norm(a)),
        "r2": 1.0 - float((err**2).sum() / ((a - a.mean()) ** 2).sum()),
        "var": 1.0 - float(np.var(err) / np.var(a)),
    }


def tgcn_l2_loss(pred: Tensor, target: Tensor, parameters: Iterable[Tensor], l2: float = L2_LAMBDA) -> Tensor:
    """The authors' training loss: ``sum (pred - target)^2 / 2 + l2 * sum_w sum w^2 / 2``.

    A sum over the batch, not a mean (``tf.nn.l2_loss``), with every trainable tensor (biases
    included) in the L2 term.
    """
    reg = sum((p.pow(2).sum() for p in parameters if p.requires_grad), pred.new_zeros(()))
    return 0.5 * (pred - target).pow(2).sum() + 0.5 * l2 * reg
