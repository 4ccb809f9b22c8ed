"""Baselines: historical average, last-value persistence and FC-LSTM.

They run the whole pipeline end to end without a graph and give the floor every
graph model must beat.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from stgnn.models.base import Batch, Forecaster, ModelSpec

__all__ = ["FCLSTM", "HistoricalAverage", "LastValue"]


class HistoricalAverage(Forecaster):
    """Seasonal historical average (HA), as the DCRNN paper's baseline: period one week.

    The forecast for a step is the mean of the observed training readings of the same
    sensor in the same time-of-week slot.  Slots never seen in training fall back to the
    same time of day (any weekday), then to the sensor's training mean.  (DCRNN weights
    past seasons; an unweighted mean over the training period is used here.)

    Args:
        spec: Sizes derived from the data.

    Shapes:
        forecast: ``[B, H, N, F_out]`` from ``batch.slot [B, H]``.
    """

    trainable: ClassVar[bool] = False
    accepts_covariates: ClassVar[bool] = False  # forecasts from time slots, never reads x
    table: Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        slots = 7 * spec.steps_per_day
        self.register_buffer("table", torch.zeros(slots, spec.num_nodes, spec.out_channels))

    def fit_statistics(self, series: Tensor, mask: Tensor, slot: Tensor) -> None:
        """Fit the slot table on the training period (see :class:`Forecaster`)."""
        n_slots, spd = int(self.table.shape[0]), self.spec.steps_per_day
        m = mask.unsqueeze(-1).to(series.dtype)  # [T, N, 1]
        values = series * m

        def mean_by(index: Tensor, size: int) -> tuple[Tensor, Tensor]:
            tot = torch.zeros(size, *series.shape[1:], device=series.device).index_add_(0, index, values)
            cnt = torch.zeros(size, series.shape[1], 1, device=series.device).index_add_(0, index, m)
            return tot / cnt.clamp(min=1), cnt > 0

        week, seen_week = mean_by(slot, n_slots)
        day, seen_day = mean_by(slot % spd, spd)
        node, seen_node = mean_by(torch.zeros_like(slot), 1)
        node = torch.where(seen_node, node, torch.zeros_like(node))
        day = torch.where(seen_day, day, node)
        table = torch.where(seen_week, week, day.repeat(n_slots // spd, 1, 1))
        self.table.copy_(table)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Not used: HA needs the forecast slots of a :class:`Batch`; call :meth:`forecast`."""
        raise TypeError("HistoricalAverage forecasts from time slots: call forecast(batch, ...)")

    def forecast(
        self,
        batch: Batch,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        teacher_forcing: float = 0.0,
    ) -> Tensor:
        """The slot means for ``batch.slot``."""
        return self.table[batch.slot]


class LastValue(Forecaster):
    """Persistence: every horizon repeats the last observed reading of each sensor.

    Uses ``batch.x_mask`` to skip missing inputs; a sensor with no observed input in
    the window gets 0 in scaled space (its training mean).

    Shapes:
        forward: ``x [B, T, N, F_in] -> [B, H, N, F_out]`` (targets are the leading inputs).
    """

    trainable: ClassVar[bool] = False
    accepts_covariates: ClassVar[bool] = False  # repeats the readings, ignores other channels

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, *, x_mask: Tensor | None = None
    ) -> Tensor:
        """Repeat the last (observed) value ``H`` times."""
        values = x[..., : self.spec.out_channels]  # [B, T, N, F_out]
        if x_mask is None:
            last = values[:, -1]
        else:
            t = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
            latest = (x_mask * t).argmax(dim=1)  # [B, N] index of the last observed step
            last = values.gather(1, latest[:, None, :, None].expand(-1, 1, -1, values.shape[-1]))[:, 0]
            last = torch.where(x_mask.any(dim=1).unsqueeze(-1), last, torch.zeros_like(last))
        return last.unsqueeze(1).expand(-1, self.spec.horizon, -1, -1)

    def forecast(
        self,
        batch: Batch,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        teacher_forcing: float = 0.0,
    ) -> Tensor:
        """Persistence forecast using the batch's input mask."""
        return self(batch.x, edge_index, edge_weight, x_mask=batch.x_mask)


class FCLSTM(Forecaster):
    """Encoder–decoder LSTM shared across sensors (the FC-LSTM baseline of DCRNN).

    Each sensor's sequence is encoded by a stacked LSTM and decoded autoregressively
    for ``H`` steps from a zero GO symbol; weights are shared by all sensors, so the
    model ignores the graph.  (DCRNN's FC-LSTM flattens all sensors into one vector;
    sharing across sensors is the variant common in later benchmarks and scales to
    any ``N``.)

    Args:
        spec: Sizes derived from the data.
        hidden_channels: LSTM units per layer (default 64).
        num_layers: Stacked LSTM layers (default 2).
        dropout: Dropout between LSTM layers (default 0.0).

    Shapes:
        forward: ``x [B, T, N, F_in] -> [B, H, N, F_out]``.

    Example:
        >>> m = FCLSTM(ModelSpec(num_nodes=3, in_channels=2, out_channels=1))
        >>> m(torch.randn(4, 12, 3, 2), torch.empty(2, 0, dtype=torch.long)).shape
        torch.Size([4, 12, 3, 1])
    """

    def __init__(
        self, spec: ModelSpec, hidden_channels: int = 64, num_layers: int = 2, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = nn.LSTM(spec.in_channels, hidden_channels, num_layers, batch_first=True,
                               dropout=dropout)
        self.decoder = nn.LSTM(spec.out_channels, hidden_channels, num_layers, batch_first=True,
                               dropout=dropout)
        self.proj = nn.Linear(hidden_channels, spec.out_channels)

    def reset_parameters(self) -> None:
        """Re-initialise all weights."""
        self.encoder.reset_parameters()
        self.decoder.reset_parameters()
        self.proj.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Encode the window, decode ``H`` steps (the graph is ignored)."""
        b, _, n, _ = x.shape
        seq = rearrange(x, "b t n f -> (b n) t f")
        _, state = self.encoder(seq)
        step = seq.new_zeros(b * n, 1, self.spec.out_channels)
        outputs = []
        for _ in range(self.spec.horizon):
            hidden, state = self.decoder(step, state)
            step = self.proj(hidden)
            outputs.append(step)
        return rearrange(torch.cat(outputs, dim=1), "(b n) h f -> b h n f", b=b, n=n)
