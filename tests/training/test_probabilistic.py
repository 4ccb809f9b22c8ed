"""Probabilistic runs end to end: [head] config, training, metrics.json, checkpoints, resume, predict, plot."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_runs import make_config, trainer, write_data

from stgnn.cli import main
from stgnn.distributions import GaussianForecast, QuantileForecast
from stgnn.models.heads import DistributionalForecaster
from stgnn.report import interval_table
from stgnn.training.config import ConfigError, HeadConfig, RunConfig
from stgnn.training.trainer import Experiment, Trainer, experiment_from_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    return write_data(tmp_path / "data", t=300, n=4)


def _config(data: tuple[Path, Path], kind: str, **train) -> RunConfig:
    cfg = make_config(*data, **train)
    quantiles = [0.025, 0.1, 0.5, 0.9, 0.975] if kind == "quantile" else []
    return RunConfig.from_dict({**cfg.to_dict(), "head": {"kind": kind, "quantiles": quantiles}})


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("head", "message"),
    [
        ({"kind": "beta"}, "[head] kind: Input should be 'point', 'gaussian' or 'quantile'"),
        ({"kind": "quantile", "quantiles": [0.1, 1.2]}, "strictly between 0 and 1"),
        ({"kind": "quantile", "quantiles": [0.5, 0.1, 0.9]}, "strictly increasing"),
        ({"kind": "quantile", "quantiles": [0.1, 0.1, 0.9]}, "strictly increasing"),
        ({"kind": "quantile", "quantiles": [0.6, 0.9]}, "from at most 0.5 to at least 0.5"),
        ({"kind": "gaussian", "quantiles": [0.1, 0.9]}, "apply only to kind = 'quantile'"),
        ({"kind": "gaussian", "levels": [0.1]}, "[head] levels: unknown key"),
    ],
)
def test_bad_head_config_is_an_error_naming_the_key(head, message):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"head": head}, source="run.toml")
    assert message in str(err.value) and "run.toml" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": "ha"}, "fitted by statistics"),
        ({"model": "stgcn", "model_params": {"single_step": True}}, "single_step = True feeds forecasts back"),
        ({"model": "dcrnn", "train": {"teacher_forcing": "inverse_sigmoid"}}, 'use teacher_forcing = "none"'),
    ],
)
def test_models_that_cannot_take_a_head_are_refused_at_parse_time(raw, message):
    with pytest.raises(ConfigError, match="kind = 'gaussian'") as err:
        RunConfig.from_dict({**raw, "head": {"kind": "gaussian"}})
    assert message in str(err.value)


def test_quantile_head_defaults_to_three_levels_and_round_trips():
    cfg = RunConfig.from_dict({"head": {"kind": "quantile"}})
    assert cfg.head.quantiles == [0.1, 0.5, 0.9]
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig().head == HeadConfig(kind="point")


def test_cli_head_errors_name_the_option(data, tmp_path, capsys):
    series, locations = data
    base = ["train", "--model", "gru", "--series", str(series), "--locations", str(locations),
            "--output", str(tmp_path / "run"), "--quiet"]
    assert main([*base, "--head", "quantile", "--quantiles", "0.6", "0.9"]) == 2
    err = capsys.readouterr().err
    assert "stgnn: error: --quantiles: quantiles must reach from at most 0.5 to at least 0.5" in err
    assert main([*base, "--head", "gaussian", "--model", "ha"]) == 2
    assert "fitted by statistics" in capsys.readouterr().err


# ----------------------------------------------------------------------------- training and checkpoints
@pytest.mark.parametrize("kind", ["gaussian", "quantile"])
def test_probabilistic_run_writes_distribution_metrics_and_reloads(data, tmp_path, kind):
    out = tmp_path / kind
    result = trainer(_config(data, kind), out).fit()
    for key in ("3", "12", "average"):
        row = result["horizons"][key]
        for name in ("mae", "crps", "coverage_80", "width_80", "coverage_95", "width_95"):
            assert row[name] is not None and row[name] >= 0, name
        assert row["width_95"] > row["width_80"]
    assert "crps" in result["per_step"][0]
    assert json.loads((out / "metrics.json").read_text())["horizons"] == result["horizons"]

    exp, _ = experiment_from_checkpoint(out / "checkpoint.pt")
    assert isinstance(exp.model, DistributionalForecaster) and exp.model.kind == kind
    assert exp.evaluate("test").compute() == result["horizons"]  # the head is rebuilt from the checkpoint
    batch = exp.data.batch(exp.data.splits["test"][:3])
    dist = exp.predict_distribution(batch)
    assert dist.kind == kind and dist.mean.shape == batch.y.shape
    low, high = dist.interval(0.8)
    assert (low <= dist.mean).all() and (dist.mean <= high).all()
    torch.testing.assert_close(exp.predict(batch), dist.mean)


def test_point_runs_keep_their_metrics_and_give_a_point_distribution(data, tmp_path):
    result = trainer(make_config(*data), tmp_path / "point").fit()
    assert "crps" not in result["horizons"]["average"]
    exp, _ = experiment_from_checkpoint(tmp_path / "point" / "checkpoint.pt")
    dist = exp.predict_distribution(exp.data.batch(exp.data.splits["test"][:2]))
    assert dist.kind == "point"
    with pytest.raises(ValueError, match="no quantiles or intervals"):
        dist.interval(0.8)


def test_scale_parameters_are_mapped_to_raw_units_by_multiplying(data):
    exp = Experiment.build(_config(data, "gaussian"))
    std, mean = exp.data.target_scaler.std, exp.data.target_scaler.mean
    assert float(std[0]) != 1.0 and float(mean[0]) != 0.0
    params = torch.stack([torch.full((1, 2, 4, 1), 0.5), torch.full((1, 2, 4, 1), 0.25)], dim=-1)
    raw = exp.to_raw(params)
    assert isinstance(raw, GaussianForecast)
    torch.testing.assert_close(raw.scale, torch.full((1, 2, 4, 1), 0.25) * std)
    torch.testing.assert_close(raw.mean, 0.5 * std + mean + torch.zeros(1, 2, 4, 1))
    q = Experiment.build(_config(data, "quantile")).to_raw(torch.arange(5.0).expand(1, 2, 4, 1, 5))
    assert isinstance(q, QuantileForecast)
    torch.testing.assert_close(q.values[0, 0, 0, 0], torch.arange(5.0) * std + mean)


class _Interrupted(Exception):
    pass


def test_interrupted_probabilistic_run_resumes_to_the_same_metrics(data, tmp_path):
    cfg = _config(data, "quantile", epochs=3, max_batches=3)
    expected = trainer(cfg, tmp_path / "full").fit()

    class Stops(Trainer):
        def on_step(self, epoch: int, step: int) -> None:
            if epoch == 2:
                raise _Interrupted

    run = tmp_path / "run"
    with pytest.raises(_Interrupted):
        Stops(Experiment.build(cfg), run, progress=False, log=lambda _: None).fit()
    assert not (run / "metrics.json").exists()
    resumed = trainer(cfg, run).fit(resume=True)
    assert resumed["horizons"] == expected["horizons"] and resumed["epochs_run"] == 3

    other = RunConfig.from_dict({**cfg.to_dict(), "head": {"kind": "gaussian"}})
    with pytest.raises(ValueError, match="head.kind: 'quantile' in the run, 'gaussian' now"):
        trainer(other, run).fit(resume=True)


# ----------------------------------------------------------------------------- predict / plot
def test_predict_writes_interval_columns_and_plot_draws_the_band(data, tmp_path, monkeypatch):
    series, locations = data
    run = tmp_path / "run"
    assert main(["train", "--model", "gru", "--series", str(series), "--locations", str(locations), "--epochs", "1",
                 "--max-batches", "2", "--output", str(run), "--quiet", "--head", "quantile",
                 "--quantiles", "0.025", "0.1", "0.5", "0.9", "0.975"]) == 0
    checkpoint = str(run / "checkpoint.pt")
    at = str(pd.read_csv(series).iloc[150, 0])
    assert main(["predict", "--checkpoint", checkpoint, "--at", at, "--output", str(tmp_path / "p.csv")]) == 0
    frame = pd.read_csv(tmp_path / "p.csv")
    assert list(frame.columns[-4:]) == ["lower_80", "upper_80", "lower_95", "upper_95"]
    assert len(frame) == 12 * 4
    assert (frame.lower_95 <= frame.lower_80).all() and (frame.lower_80 <= frame.prediction).all()
    assert (frame.prediction <= frame.upper_80).all() and (frame.upper_80 <= frame.upper_95).all()

    import matplotlib.axes

    bands: list[str] = []
    original = matplotlib.axes.Axes.fill_between

    def spy(self, *args, **kwargs):
        bands.append(kwargs.get("label", ""))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between", spy)
    assert main(["plot", "--checkpoint", checkpoint, "--sensors", "0,1", "--output", str(tmp_path / "plots")]) == 0
    assert bands == ["95 % interval", "80 % interval"] * 2
    assert (tmp_path / "plots" / "forecast.png").stat().st_size > 0


def test_interval_table_shows_coverage_in_percent_and_missing_levels_as_dashes():
    row = {"crps": 1.234, "coverage_80": 0.8123, "width_80": 5.0, "coverage_95": None, "width_95": None}
    text = interval_table({"3": row, "average": row})
    assert "| @3 (15 min) | 1.23 | 81.2 % | 5.00 | - | - |" in text
    assert "| average 1-12 |" in text
