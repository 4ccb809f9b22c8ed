"""``stgnn explain`` end to end: a Graph WaveNet on own data with coordinates, an attention model, errors."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from explain_standins import TARGET, UPSTREAM, TinyAttention, upstream_data

from stgnn.cli import main
from stgnn.models import MODELS

GWNET = """model = "gwnet"
[data]
input_len = 4
horizon = 2
covariates = ["time_of_day"]
[train]
epochs = 5
batch_size = 32
lr = 0.01
patience = 0
device = "cpu"
[model_params]
residual_channels = 16
dilation_channels = 16
skip_channels = 32
end_channels = 32
blocks = 1
dropout = 0.0
"""


def test_explain_graph_wavenet_writes_pngs_and_csvs(tmp_path, capsys, single_thread):
    readings, _, sensors, ids = upstream_data(tmp_path / "data")
    (tmp_path / "gwnet.toml").write_text(GWNET)
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "gwnet.toml"), "--series", str(readings), "--locations",
                 str(sensors), "--output", str(run), "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "explain"
    time = "2024-01-02T22:00"  # in the test period (600 steps of 5 minutes from 2024-01-01)
    assert main(["explain", "--checkpoint", str(run / "checkpoint.pt"), "--sensor", ids[TARGET], "--time", time,
                 "--output", str(out), "--top-k", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"forecast of sensor {ids[TARGET]} for 2024-01-02 22:00:00 (1 step ahead)" in printed
    for name in ("attribution.csv", "sensor_importance.csv", "attribution.png", "adaptive_adjacency.csv",
                 "adaptive_top_edges.csv", "adaptive_adjacency.png", "adaptive_edges_map.png", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["origin"] == "2024-01-02 21:55:00" and summary["sensor"] == ids[TARGET]
    assert summary["top_sensors"][0]["sensor"] == ids[UPSTREAM]
    assert abs(summary["completeness_gap"]) < 0.05 * abs(summary["forecast"] - summary["baseline_forecast"]) + 1e-3
    frame = pd.read_csv(out / "attribution.csv")
    assert len(frame) == 4 * len(ids) * 2  # input steps x sensors x channels (reading, time_of_day)
    assert set(frame["channel"]) == {"value", "time_of_day"}
    assert frame["timestamp"].iloc[0] == "2024-01-02 21:40:00"
    assert frame["step"].tolist()[:: 2 * len(ids)] == [-3, -2, -1, 0]
    assert (frame.loc[frame["channel"] == "time_of_day", "attribution"] == 0).all()  # kept at its value
    assert frame["attribution"].sum() == pytest.approx(summary["attribution_sum"], rel=1e-4)
    edges = pd.read_csv(out / "adaptive_top_edges.csv")
    assert len(edges) == 3 and (edges["source"] != edges["target"]).all()
    adj = pd.read_csv(out / "adaptive_adjacency.csv", index_col="source")
    assert list(adj.columns) == ids and adj.sum(axis=1).round(5).eq(1.0).all()


def test_explain_averages_the_attention_of_an_attention_model(tmp_path, monkeypatch, capsys, single_thread):
    monkeypatch.setitem(MODELS, "tinyatt", TinyAttention)
    readings, edges, _, ids = upstream_data(tmp_path / "data", t=200)
    run = tmp_path / "run"
    assert main(["train", "--model", "tinyatt", "--series", str(readings), "--edges", str(edges), "--epochs", "1",
                 "--device", "cpu", "--output", str(run), "--quiet"]) == 0
    out = tmp_path / "explain"
    assert main(["explain", "--checkpoint", str(run / "checkpoint.pt"), "--sensor", "S1", "--time",
                 "2024-01-01T12:00", "--horizon", "3", "--windows", "10", "--output", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attention"] == {"split": "test", "windows": 10, "maps": ["temporal", "spatial", "groups"]}
    temporal = pd.read_csv(out / "attention_temporal.csv", index_col=0)
    assert temporal.shape == (12, 12) and list(temporal.columns)[-1] == "0"
    assert temporal.sum(axis=1).round(5).eq(1.0).all()
    spatial = pd.read_csv(out / "attention_spatial.csv", index_col=0)
    assert list(spatial.columns) == ids
    assert (out / "attention_temporal.png").is_file() and (out / "attention_groups.csv").is_file()
    assert not (out / "adaptive_adjacency.csv").exists()


@pytest.mark.parametrize(("model", "maps"), [("transformer", {"temporal_0", "temporal_1"}),
                                             ("stpatch", {"temporal_0", "spatial_0", "temporal_1", "spatial_1"})])
def test_explain_the_attention_models_of_the_zoo(tmp_path, model, maps, single_thread):
    readings, _, sensors, _ = upstream_data(tmp_path / "data", t=300)
    run = tmp_path / "run"
    assert main(["train", "--model", model, "--series", str(readings), "--locations", str(sensors), "--epochs", "1",
                 "--max-batches", "2", "--device", "cpu", "--output", str(run), "--quiet"]) == 0
    out = tmp_path / "explain"
    assert main(["explain", "--checkpoint", str(run / "checkpoint.pt"), "--sensor", "S3", "--time",
                 "2024-01-01T20:00", "--windows", "20", "--output", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["attention"]["maps"]) == maps and summary["attention"]["windows"] == 20
    for name in maps:
        assert (out / f"attention_{name}.png").is_file()
    temporal = pd.read_csv(out / "attention_temporal_0.csv", index_col=0)
    assert temporal.sum(axis=1).round(4).eq(1.0).all()  # rows of an attention matrix sum to one
    assert (out / "attention_clusters.csv").is_file() == (model == "stpatch")


@pytest.mark.parametrize("head", ["gaussian", "quantile"])
def test_explain_a_probabilistic_head_attributes_its_point_forecast(tmp_path, capsys, head, single_thread):
    readings, edges, _, _ = upstream_data(tmp_path / "data", t=200)
    run = tmp_path / "run"
    assert main(["train", "--model", "gru", "--head", head, "--series", str(readings), "--edges", str(edges),
                 "--epochs", "1", "--max-batches", "2", "--device", "cpu", "--output", str(run), "--quiet"]) == 0
    out = tmp_path / "explain"
    assert main(["explain", "--checkpoint", str(run / "checkpoint.pt"), "--sensor", "S1", "--time",
                 "2024-01-01T12:00", "--output", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    change = summary["forecast"] - summary["baseline_forecast"]
    assert abs(summary["attribution_sum"] - change) == pytest.approx(abs(summary["completeness_gap"]), abs=1e-6)
    assert abs(summary["completeness_gap"]) < 0.05 * abs(change) + 1e-3


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gru")
    readings, edges, _, _ = upstream_data(folder / "data", t=200)
    assert main(["train", "--model", "gru", "--series", str(readings), "--edges", str(edges), "--epochs", "1",
                 "--max-batches", "1", "--device", "cpu", "--output", str(folder / "run"), "--quiet"]) == 0
    return folder / "run"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sensor", "nope", "--time", "2024-01-01T06:00"], r"sensor 'nope': not a sensor of readings \('S0'"),
        (["--sensor", "S1", "--time", "2024-01-01T06:02"], r"time 2024-01-01T06:02: not a step of readings"),
        (["--sensor", "S1", "--time", "2024-01-01T00:10"],
         r"needs 12 steps of history before it; the earliest is 2024-01-01 01:00:00"),
        (["--sensor", "S1", "--time", "2024-01-01T06:00", "--horizon", "13"], r"horizon 13: must be in 1..12"),
        (["--sensor", "S1", "--time", "2024-01-01T06:00", "--steps", "0"], r"--steps: must be >= 1"),
    ],
)
def test_explain_errors_name_the_argument(gru_run, tmp_path, capsys, args, message):
    capsys.readouterr()
    assert main(["explain", "--checkpoint", str(gru_run / "checkpoint.pt"), *args, "--output",
                 str(tmp_path / "x")]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_explain_refuses_a_model_without_gradients(tmp_path, capsys):
    readings, edges, _, _ = upstream_data(tmp_path / "data", t=200)
    run = tmp_path / "run"
    assert main(["train", "--model", "ha", "--series", str(readings), "--edges", str(edges), "--device", "cpu",
                 "--output", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["explain", "--checkpoint", str(run / "checkpoint.pt"), "--sensor", "S1", "--time",
                 "2024-01-01T12:00", "--output", str(tmp_path / "x")]) == 2
    assert "HistoricalAverage does not depend on its inputs" in capsys.readouterr().err
