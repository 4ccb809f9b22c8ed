"""The mini-batch of windows that :class:`~stgnn.data.windows.WindowData` gathers.

It lives with the data (not with the models) so that ``import stgnn.data`` does not load any
model; :mod:`stgnn.models` re-exports it as ``stgnn.models.Batch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Batch"]


@dataclass
class Batch:
    """One mini-batch of windows.

    Attributes:
        x: Scaled inputs ``[B, T_in, N, F_in]``.
        y: Raw (unscaled) targets ``[B, H, N, F_out]``.
        y_scaled: Scaled targets ``[B, H, N, F_out]`` (teacher forcing).
        mask: ``[B, H, N]``, True where the target reading exists.
        start: ``[B]`` index (into the series) of the first forecast step.
        slot: ``[B, H]`` time-of-week slot (``0 .. 7 * steps_per_day - 1``) of each
            forecast step, for seasonal baselines.
        x_mask: ``[B, T_in, N]``, True where an input reading exists (None: all observed).
    """

    x: Tensor
    y: Tensor
    y_scaled: Tensor
    mask: Tensor
    start: Tensor
    slot: Tensor
    x_mask: Tensor | None = None

    def pin_memory(self) -> Batch:
        """A copy in page-locked host memory, from which ``to(cuda)`` copies without blocking."""
        return Batch(
            self.x.pin_memory(),
            self.y.pin_memory(),
            self.y_scaled.pin_memory(),
            self.mask.pin_memory(),
            self.start.pin_memory(),
            self.slot.pin_memory(),
            None if self.x_mask is None else self.x_mask.pin_memory(),
        )

    def to(self, device: torch.device | str) -> Batch:
        """Move every tensor to ``device``."""
        return Batch(
            self.x.to(device, non_blocking=True),
            self.y.to(device, non_blocking=True),
            self.y_scaled.to(device, non_blocking=True),
            self.mask.to(device, non_blocking=True),
            self.start.to(device, non_blocking=True),
            self.slot.to(device, non_blocking=True),
            None if self.x_mask is None else self.x_mask.to(device, non_blocking=True),
        )
