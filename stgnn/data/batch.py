"""The mini-batch of windows that :class:`~stgnn.data.windows.WindowData` gathers.

It lives with the data (not with the models) so that ``import stgnn.data`` does not load any
model; :mod:`stgnn.models` re-exports it as ``stgnn.models.Batch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

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
        node_index: ``[N]`` ids of the batch's nodes among the dataset's when the batch holds a
            sampled subgraph (:meth:`select_nodes`); ``None`` when it holds every node in order.
    """

    x: Tensor
    y: Tensor
    y_scaled: Tensor
    mask: Tensor
    start: Tensor
    slot: Tensor
    x_mask: Tensor | None = None
    node_index: Tensor | None = None

    def select_nodes(self, nodes: Tensor, core: Tensor | None = None) -> Batch:
        """The same windows on the subset ``nodes [n]`` of the nodes (a sampled subgraph).

        Args:
            nodes: ``[n]`` node ids (int64) into this batch's nodes.
            core: Optional ``[n]`` bool: the nodes whose targets count (a partition's own nodes);
                the others (its halo) get ``mask = False``, so losses and metrics skip them.
        """
        if self.node_index is not None:
            raise ValueError("select_nodes: this batch holds a subgraph already")
        mask = self.mask[:, :, nodes]
        if core is not None:
            mask = mask & core.to(mask.device)
        return Batch(
            self.x[:, :, nodes], self.y[:, :, nodes], self.y_scaled[:, :, nodes], mask, self.start, self.slot,
            None if self.x_mask is None else self.x_mask[:, :, nodes], nodes,
        )

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        """A batch with ``fn`` applied to every tensor field (``None`` fields stay ``None``)."""
        moved: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        mapped: dict[str, Any] = {k: None if v is None else fn(v) for k, v in moved.items()}
        return Batch(**mapped)

    def pin_memory(self) -> Batch:
        """A copy in page-locked host memory, from which ``to(cuda)`` copies without blocking."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: torch.device | str) -> Batch:
        """Move every tensor to ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=True))
