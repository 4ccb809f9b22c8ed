"""Tiny trained checkpoints shared by the serving and export tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from training.tiny_runs import make_config, trainer, write_data

from stgnn.training.trainer import Experiment, experiment_from_checkpoint


def _train(folder: Path, model: str, **params: object) -> Path:
    series, locations = write_data(folder / "data", t=400, n=4)
    cfg = make_config(series, locations, model=model, epochs=1)
    if params:
        cfg.model_params = dict(params)
    trainer(cfg, folder / "run").fit()
    return folder / "run" / "checkpoint.pt"


@pytest.fixture(scope="session")
def lstm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch FC-LSTM on 4 own-data sensors."""
    torch.set_num_threads(1)
    return _train(tmp_path_factory.mktemp("lstm"), "lstm", hidden_channels=8, num_layers=1)


@pytest.fixture(scope="session")
def stgcn_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch STGCN (a graph model) on 4 own-data sensors."""
    torch.set_num_threads(1)
    return _train(tmp_path_factory.mktemp("stgcn"), "stgcn", channels=[8, 4, 8], output_channels=[16, 16])


def load_experiment(checkpoint: Path) -> Experiment:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return experiment_from_checkpoint(checkpoint)[0]


@pytest.fixture(scope="session")
def quantile_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch GRU with a quantile head (levels 0.05, 0.5, 0.95) on 4 own-data sensors."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("quantile")
    series, locations = write_data(folder / "data", t=400, n=4)
    cfg = make_config(series, locations, model="gru", epochs=1)
    cfg.model_params = {"hidden_channels": 8}
    cfg.head.kind = "quantile"
    cfg.head.quantiles = [0.05, 0.5, 0.95]
    trainer(cfg, folder / "run").fit()
    return folder / "run" / "checkpoint.pt"
