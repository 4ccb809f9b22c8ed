"""Stand-ins for the explanation tests: data with a known upstream sensor, a tiny attention model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from stgnn.models import Forecaster, ModelSpec
from stgnn.training.config import RunConfig


class TinyAttention(Forecaster):
    """Temporal self-attention over each sensor's readings, following the attention-map interface:
    with ``record_attention`` set, a forward stores ``temporal [T, T]`` (mean over batch and nodes),
    ``spatial [N, N]`` and an integer ``groups [N]``."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.query = torch.nn.Linear(spec.in_channels, 4)
        self.key = torch.nn.Linear(spec.in_channels, 4)
        self.out = torch.nn.Linear(spec.in_channels, spec.horizon * spec.out_channels)
        self.record_attention = False
        self.attention_maps: dict[str, Tensor] = {}

    def weights(self, x: Tensor) -> Tensor:
        """``[B, N, T, T]`` attention of every sensor's steps."""
        q, k = self.query(x).transpose(1, 2), self.key(x).transpose(1, 2)
        return torch.softmax(q @ k.transpose(-1, -2), dim=-1)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        att = self.weights(x)
        mixed = att @ x.transpose(1, 2)  # [B, N, T, F]
        out = self.out(mixed[:, :, -1])  # [B, N, H * F_out]
        if self.record_attention:
            n = x.shape[2]
            level = x[..., 0].mean(1)  # [B, N]
            self.attention_maps = {"temporal": att.mean(dim=(0, 1)),
                                   "spatial": torch.softmax(level.T @ level, dim=-1),
                                   "groups": torch.arange(n) % 2}
        return out.view(x.shape[0], x.shape[2], self.spec.horizon, -1).transpose(1, 2)


UPSTREAM, TARGET, LAG = 0, 3, 2


def upstream_data(folder: Path, t: int = 600, n: int = 5) -> tuple[Path, Path, Path, list[str]]:
    """Independent noise at every sensor, except the target, which repeats the upstream sensor
    ``LAG`` steps later.  Every other sensor is a neighbour of the target as well: the graph does
    not single out the upstream one."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(t, n))
    x[:, TARGET] = np.roll(x[:, UPSTREAM], LAG) + 0.1 * rng.normal(size=t)
    ids = [f"S{i}" for i in range(n)]
    frame = pd.DataFrame(50 + 5 * x, columns=ids)
    frame.insert(0, "timestamp", pd.date_range("2024-01-01", periods=t, freq="5min"))
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "readings.csv", index=False)
    others = [s for s in ids if s != ids[TARGET]]
    pd.DataFrame({"sensor_id": ids, "latitude": 34.0 + 0.01 * np.arange(n),
                  "longitude": -118.2 + 0.01 * (np.arange(n) % 2)}).to_csv(folder / "sensors.csv", index=False)
    pd.DataFrame({"from": others + [ids[TARGET]] * len(others),
                  "to": [ids[TARGET]] * len(others) + others}).to_csv(folder / "edges.csv", index=False)
    return folder / "readings.csv", folder / "edges.csv", folder / "sensors.csv", ids


def upstream_config(readings: Path, graph: Path, kind: str = "edges", epochs: int = 5) -> RunConfig:
    return RunConfig.from_dict({
        "model": "gwnet", "dataset": "custom", "custom": {"series": str(readings), kind: str(graph)},
        "data": {"input_len": 4, "horizon": 1, "covariates": []},
        "train": {"epochs": epochs, "batch_size": 32, "lr": 0.01, "device": "cpu", "patience": 0},
        "model_params": {"residual_channels": 16, "dilation_channels": 16, "skip_channels": 32,
                         "end_channels": 32, "blocks": 1, "dropout": 0.0},
    })
