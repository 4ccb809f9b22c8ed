"""Tiny own-data runs for the training tests: data files, a config, a trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import standins

from stgnn.training.config import DataConfig, RunConfig, TrainConfig
from stgnn.training.trainer import Experiment, Trainer


def write_data(folder: Path, t: int = 400, n: int = 4) -> tuple[Path, Path]:
    """Own-data CSVs whose sensors have clearly different levels (sensor i is offset by 10 i)."""
    series, locations = standins.write_custom(folder, t=t, n=n)
    frame = pd.read_csv(series)
    for i, column in enumerate(frame.columns[1:]):
        frame[column] += 10.0 * i
    frame.to_csv(series, index=False)
    return series, locations


def make_config(series: Path, locations: Path, model: str = "lstm", split: list[float] | None = None,
                **train: Any) -> RunConfig:
    options: dict[str, Any] = {"epochs": 2, "batch_size": 32, "max_batches": 2, "device": "cpu", "seed": 1}
    options.update(train)
    return RunConfig(
        model=model,
        dataset="custom",
        data=DataConfig(split=split or []),
        train=TrainConfig(**options),
        model_params={"hidden_channels": 8, "num_layers": 1} if model == "lstm" else {},
        custom={"series": str(series), "locations": str(locations)},
    )


def trainer(cfg: RunConfig, out: Path, logs: list[str] | None = None) -> Trainer:
    sink = logs if logs is not None else []
    return Trainer(Experiment.build(cfg), out, progress=False, log=sink.append)
