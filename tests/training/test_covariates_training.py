"""User covariates end to end: config keys, the models that take them, training, checkpoints, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stgnn.cli import main
from stgnn.models import MODELS, Batch, ModelSpec, build_model
from stgnn.training.config import ConfigError, RunConfig, load_config
from stgnn.training.trainer import Experiment, Trainer

LEAD = 2  # the readings follow the covariate two steps later


def _informative(folder: Path, t: int = 800, n: int = 3) -> dict[str, Path]:
    """Readings driven by a white-noise signal two steps earlier: the readings' own history says
    nothing about the next two steps, the signal in the input window says almost everything."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    signal = rng.normal(size=t)
    stamps = pd.date_range("2024-01-01", periods=t, freq="5min")
    ids = [f"S{i}" for i in range(n)]
    values = 50 + 5 * np.roll(signal, LEAD)[:, None] * (1 + 0.2 * np.arange(n)) + rng.normal(0, 0.3, (t, n))
    frame = pd.DataFrame(values, columns=ids)
    frame.insert(0, "timestamp", stamps)
    files = {"series": folder / "readings.csv", "edges": folder / "edges.csv",
             "time_covariates": folder / "signal.csv", "node_attributes": folder / "attrs.csv"}
    frame.to_csv(files["series"], index=False)
    pd.DataFrame({"from": ids[:-1], "to": ids[1:]}).to_csv(files["edges"], index=False)
    pd.DataFrame({"timestamp": stamps, "signal": signal}).to_csv(files["time_covariates"], index=False)
    pd.DataFrame({"sensor_id": ids, "lanes": [2, 3, 4]}).to_csv(files["node_attributes"], index=False)
    return files


def _config(files: dict[str, Path], model: str, use: tuple[str, ...], **model_params: object) -> RunConfig:
    custom = {"series": str(files["series"]), "edges": str(files["edges"])}
    custom.update({k: str(files[k]) for k in use})
    return RunConfig.from_dict({
        "model": model, "dataset": "custom", "custom": custom,
        "data": {"input_len": 4, "horizon": 2, "covariates": []},
        "train": {"epochs": 5, "batch_size": 32, "lr": 0.01, "device": "cpu", "patience": 0},
        "model_params": model_params,
    })


def test_an_informative_covariate_beats_the_same_model_without_it(tmp_path, single_thread):
    files = _informative(tmp_path / "data")
    mae = {}
    for use in ((), ("time_covariates",)):
        cfg = _config(files, "gru", use, hidden_channels=16)
        result = Trainer(Experiment.build(cfg), tmp_path / f"run{len(use)}", progress=False, log=lambda _: None).fit()
        mae[use] = result["horizons"]["average"]["mae"]
    # without the signal the best forecast is the mean (MAE ~ 4.8); with it, ~1
    assert mae[("time_covariates",)] < 0.4 * mae[()], mae


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_that_accept_covariates_read_every_input_channel(name, single_thread):
    model_cls = MODELS[name]
    spec = ModelSpec(num_nodes=4, in_channels=3, out_channels=1, input_len=12, horizon=2, steps_per_day=24)
    if not model_cls.accepts_covariates:
        assert not model_cls.trainable  # the statistical baselines only
        return
    torch.manual_seed(0)
    model = build_model(name, spec).eval()  # through forecast(batch): models that need time slots get them
    edge_index = torch.tensor([[0, 1, 2, 3, 1], [1, 2, 3, 0, 3]])
    x = torch.randn(2, 12, 4, 3, requires_grad=True)
    batch = Batch(x=x, y=torch.zeros(2, 2, 4, 1), y_scaled=torch.zeros(2, 2, 4, 1),
                  mask=torch.ones(2, 2, 4, dtype=torch.bool), start=torch.tensor([12, 13]),
                  slot=torch.tensor([[12, 13], [13, 14]]), x_mask=torch.ones(2, 12, 4, dtype=torch.bool))
    model.forecast(batch, edge_index).square().sum().backward()
    assert x.grad is not None
    assert x.grad[..., 2].abs().sum() > 0, f"{name} ignores its last input channel"


def test_a_model_that_cannot_use_covariates_is_refused_by_the_config(tmp_path):
    files = _informative(tmp_path, t=40)
    with pytest.raises(ConfigError, match=r"\[custom\] time_covariates: model 'ha' cannot use covariates .*"
                                          r"models that do: .*gwnet"):
        _config(files, "ha", ("time_covariates",))
    config = tmp_path / "run.toml"  # covariates go with a registered dataset too
    config.write_text('model = "ha"\ndataset = "metr-la"\n[custom]\nnode_attributes = "attrs.csv"\n')
    with pytest.raises(ConfigError, match=r"\[custom\] node_attributes: model 'ha' cannot use covariates"):
        load_config(config)
    config.write_text('model = "gru"\ndataset = "metr-la"\n[custom]\nnode_attributes = "attrs.csv"\n')
    assert load_config(config).custom.node_attributes == str((tmp_path / "attrs.csv").resolve())


def test_config_paths_are_relative_to_the_config_file(tmp_path):
    files = _informative(tmp_path, t=40)
    config = tmp_path / "cfg" / "run.toml"
    config.parent.mkdir()
    config.write_text('model = "gru"\ndataset = "custom"\n[custom]\nseries = "../readings.csv"\n'
                      'edges = "../edges.csv"\ntime_covariates = "../signal.csv"\nnode_attributes = "../attrs.csv"\n')
    cfg = load_config(config)
    assert Path(cfg.custom.time_covariates or "") == files["time_covariates"].resolve()
    assert Path(cfg.custom.node_attributes or "") == files["node_attributes"].resolve()


def test_cli_train_then_evaluate_reuses_the_training_covariate_scaler(tmp_path, capsys, single_thread):
    files = _informative(tmp_path / "data", t=300)
    out = tmp_path / "run"
    assert main(["train", "--model", "gru", "--series", str(files["series"]), "--edges", str(files["edges"]),
                 "--time-covariates", str(files["time_covariates"]), "--node-attributes",
                 str(files["node_attributes"]), "--epochs", "1", "--max-batches", "2", "--device", "cpu",
                 "--output", str(out), "--quiet"]) == 0
    trained = json.loads((out / "metrics.json").read_text())
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["covariate_scaler"] is not None and len(state["covariate_scaler"]["mean"]) == 2
    assert "signal.csv" in state["data"]["files"] and "attrs.csv" in state["data"]["files"]
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--output", str(tmp_path / "ev.json"),
                 "--quiet"]) == 0
    evaluated = json.loads((tmp_path / "ev.json").read_text())
    assert evaluated["horizons"]["average"]["mae"] == pytest.approx(trained["horizons"]["average"]["mae"], rel=1e-6)
    # sensors reordered in the readings file: covariates follow their sensors to the trained nodes
    frame = pd.read_csv(files["series"])
    frame[["timestamp", *reversed(frame.columns[1:])]].to_csv(files["series"], index=False)
    with pytest.warns(UserWarning, match="the data changed since training"):
        assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--output",
                     str(tmp_path / "ev2.json"), "--quiet", "--debug"]) == 0
    again = json.loads((tmp_path / "ev2.json").read_text())
    assert again["horizons"]["average"]["mae"] == pytest.approx(trained["horizons"]["average"]["mae"], rel=1e-6)
    capsys.readouterr()
    assert main(["train", "--model", "last", "--series", str(files["series"]), "--edges", str(files["edges"]),
                 "--time-covariates", str(files["time_covariates"]), "--output", str(tmp_path / "x")]) == 2
    assert "model 'last' cannot use covariates" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:.*carry no timestamps")  # Los-loop's are derived (tested below)
def test_covariates_with_a_registered_dataset_real_los_loop(tmp_path, capsys, shared_data, single_thread):
    """``--dataset los-loop --time-covariates F --node-attributes G``: aligned to Los-loop's timestamps
    and sensor ids, recorded in the checkpoint (files and scaler), reused by ``evaluate``; a gap in the
    time covariates is an error naming the file and the missing timestamps."""
    from stgnn.data import load_dataset

    ds = load_dataset("los-loop", shared_data)
    stamps, ids = ds.timestamps, list(ds.node_ids)
    rng = np.random.default_rng(0)
    signal = tmp_path / "weather.csv"
    pd.DataFrame({"timestamp": stamps, "rain": rng.random(len(stamps))}).to_csv(signal, index=False)
    attrs = tmp_path / "lanes.csv"
    pd.DataFrame({"sensor_id": ids, "lanes": rng.integers(2, 6, len(ids)),
                  "road": ["freeway" if i % 3 else "ramp" for i in range(len(ids))]}).to_csv(attrs, index=False)
    out = tmp_path / "run"
    data = ["--data-dir", str(shared_data), "--no-download"]
    assert main(["train", "--model", "gru", "--dataset", "los-loop", "--time-covariates", str(signal),
                 "--node-attributes", str(attrs), "--epochs", "1", "--max-batches", "1", "--device", "cpu",
                 "--output", str(out), "--quiet", *data]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert "weather.csv" in state["data"]["files"] and "lanes.csv" in state["data"]["files"]
    assert "los_speed.csv" in state["data"]["files"]
    assert len(state["covariate_scaler"]["mean"]) == 1 + 1 + 2  # rain, lanes, road=freeway, road=ramp
    trained = json.loads((out / "metrics.json").read_text())
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--output", str(tmp_path / "ev.json"),
                 "--quiet", *data]) == 0
    evaluated = json.loads((tmp_path / "ev.json").read_text())
    assert evaluated["horizons"]["average"]["mae"] == pytest.approx(trained["horizons"]["average"]["mae"], rel=1e-6)
    pd.DataFrame({"timestamp": stamps[:-5], "rain": 0.0}).to_csv(signal, index=False)
    capsys.readouterr()
    assert main(["train", "--model", "gru", "--dataset", "los-loop", "--time-covariates", str(signal),
                 "--epochs", "1", "--output", str(tmp_path / "gap"), "--quiet", *data]) == 2
    assert f"{signal}:" in capsys.readouterr().err


def test_covariates_on_a_format_without_timestamps_align_to_the_derived_ones(tmp_path, monkeypatch, single_thread):
    """PEMS0X files carry no timestamps: covariates align to the derived grid, with a warning."""
    import standins

    from stgnn.data.custom import attach_covariates

    monkeypatch.setattr("stgnn.data.download.check_files", lambda info, folder: None)
    standins.write_pems(tmp_path / "pems08", "08", t=300, n=6, f=3)
    from stgnn.data import load_dataset

    ds = load_dataset("pems08", tmp_path)
    assert ds.timestamps_derived
    cov = tmp_path / "cov.csv"
    pd.DataFrame({"timestamp": ds.timestamps, "event": np.arange(300) % 2}).to_csv(cov, index=False)
    with pytest.warns(UserWarning, match="carry no timestamps; the covariates are aligned to derived ones"):
        out = attach_covariates(ds, cov)
    assert out.user_covariates is not None and out.user_covariates.time_names == ("event",)
    assert out.user_covariates.time is not None and out.user_covariates.time[:4, 0, 0].tolist() == [0, 1, 0, 1]
