"""Checkpoints record their data; evaluate / predict map sensors by id and refuse other sensors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tiny_runs import make_config, trainer, write_data

from stgnn.cli import main
from stgnn.training.checkpoint import load_checkpoint, save_checkpoint
from stgnn.training.config import RunConfig, TrainConfig
from stgnn.training.trainer import Experiment

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture()
def ha_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A historical-average run (per-sensor statistics: the sensor order matters)."""
    series, locations = write_data(tmp_path / "data", t=600, n=5)
    out = tmp_path / "run"
    trainer(make_config(series, locations, model="ha"), out).fit()
    return series, locations, out / "checkpoint.pt"


def _evaluate(checkpoint: Path, target: Path) -> dict:
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(target), "--quiet"]) == 0
    return json.loads(target.read_text())


def _predict(checkpoint: Path, at: str, target: Path) -> pd.DataFrame:
    assert main(["predict", "--checkpoint", str(checkpoint), "--at", at, "--output", str(target)]) == 0
    return pd.read_csv(target).sort_values(["horizon", "sensor"]).reset_index(drop=True)


def test_reordered_columns_give_each_sensor_its_own_forecast(ha_run, tmp_path):
    series, _, checkpoint = ha_run
    frame = pd.read_csv(series)
    at = str(frame["timestamp"].iloc[450])
    before = _evaluate(checkpoint, tmp_path / "before.json")
    pred_before = _predict(checkpoint, at, tmp_path / "before.csv")

    frame[["timestamp", *reversed(frame.columns[1:])]].to_csv(series, index=False)
    with pytest.warns(UserWarning, match=r"data changed since training: readings.csv sha256"):
        after = _evaluate(checkpoint, tmp_path / "after.json")
    assert after["horizons"] == before["horizons"]
    with pytest.warns(UserWarning, match="data changed since training"):
        pred_after = _predict(checkpoint, at, tmp_path / "after.csv")
    pd.testing.assert_frame_equal(pred_after, pred_before)


def test_a_sensor_lost_since_training_is_named(ha_run, capsys):
    series, _, checkpoint = ha_run
    pd.read_csv(series).drop(columns=["S3"]).to_csv(series, index=False)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "readings.csv: sensors differ from those" in err and "checkpoint.pt was trained on" in err
    assert "1 trained sensors are missing from the data: 'S3'" in err


def test_an_extra_sensor_is_named(ha_run, capsys):
    series, locations, checkpoint = ha_run
    frame = pd.read_csv(series)
    frame["S9"] = frame["S0"]
    frame.to_csv(series, index=False)
    loc = pd.read_csv(locations)
    pd.concat([loc, loc.iloc[[0]].assign(sensor_id="S9", latitude=34.2)]).to_csv(locations, index=False)
    assert main(["predict", "--checkpoint", str(checkpoint), "--at", str(frame["timestamp"].iloc[300]),
                 "--output", str(checkpoint.parent / "p.csv")]) == 2
    assert "1 sensors were not in the training data: 'S9'" in capsys.readouterr().err


def test_another_sampling_interval_is_refused(ha_run, capsys):
    series, _, checkpoint = ha_run
    frame = pd.read_csv(series)
    frame["timestamp"] = pd.date_range("2024-01-01", periods=len(frame), freq="10min")
    frame.to_csv(series, index=False)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--quiet"]) == 2
    assert "readings every 10 min, but" in capsys.readouterr().err


def test_checkpoint_whose_config_and_weights_disagree(tmp_path, capsys):
    series, locations = write_data(tmp_path / "data")
    out = tmp_path / "run"
    trainer(make_config(series, locations, epochs=1), out).fit()
    state = load_checkpoint(out / "checkpoint.pt")
    state["config"]["model_params"]["hidden_channels"] = 16  # trained with 8
    save_checkpoint(state, out / "checkpoint.pt")
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt: its weights do not fit the lstm model its config describes" in err
    assert "size mismatch" in err and "Traceback" not in err


def test_old_checkpoint_without_fingerprint_still_loads_with_a_warning(ha_run, tmp_path):
    _, _, checkpoint = ha_run
    state = load_checkpoint(checkpoint)
    del state["data"]
    save_checkpoint(state, checkpoint)
    with pytest.warns(UserWarning, match="records no data fingerprint"):
        result = _evaluate(checkpoint, tmp_path / "e.json")
    assert result["horizons"]["average"]["mae"] is not None


def test_registry_dataset_fingerprint_lists_its_files(shared_data, tmp_path):
    cfg = RunConfig(model="ha", dataset="los-loop", train=TrainConfig(device="cpu"))
    exp = Experiment.build(cfg, shared_data)
    fp = exp.fingerprint()
    assert len(fp["sensor_ids"]) == 207 and fp["interval_minutes"] == 5 and fp["num_steps"] == 2016
    assert fp["windows"] == {"train": 1395, "val": 199, "test": 399}
    assert {"los_speed.csv", "los_adj.csv"} <= set(fp["files"])
