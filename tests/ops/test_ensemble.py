"""stgnn ensemble: mean and validation-weighted mean of checkpoints, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import standins
import torch

from stgnn.cli import main
from stgnn.ops.ensemble import Ensemble, ensemble_weights
from stgnn.training.trainer import experiment_from_checkpoint


def _train(tmp: Path, name: str, series: Path, locations: Path, *extra: str) -> Path:
    out = tmp / name
    assert main(["train", "--series", str(series), "--locations", str(locations), "--output", str(out),
                 "--device", "cpu", "--quiet", *extra]) == 0
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    tmp = tmp_path_factory.mktemp("ensemble")
    series, locations = standins.write_custom(tmp / "data", t=400, n=4)
    lstm = _train(tmp, "lstm", series, locations, "--model", "lstm", "--epochs", "2", "--max-batches", "3")
    last = _train(tmp, "last", series, locations, "--model", "last")
    ha = _train(tmp, "ha", series, locations, "--model", "ha")
    return tmp, series, locations, [lstm, last, ha]


def test_weights_formula():
    assert ensemble_weights("mean", [3.0, 1.0]) == [0.5, 0.5]
    w = ensemble_weights("weighted", [1.0, 3.0])
    assert w == pytest.approx([0.75, 0.25])
    with pytest.raises(ValueError, match="positive and finite"):
        ensemble_weights("weighted", [1.0, float("nan")])


def test_ensemble_cli_equals_the_weighted_mean_of_member_forecasts(runs, capsys):
    tmp, _, _, ckpts = runs
    out = tmp / "ens-weighted"
    assert main(["ensemble", "--checkpoints", *map(str, ckpts), "--method", "weighted",
                 "--output", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "ensemble (weighted)" in printed and "| **ensemble (weighted)** |" in printed
    result = json.loads((out / "metrics.json").read_text())
    members = result["members"]
    val_mae = [m["val"]["average"]["mae"] for m in members]
    inverse = [1 / v for v in val_mae]
    assert [m["weight"] for m in members] == pytest.approx([v / sum(inverse) for v in inverse])
    # each member's test metrics are its own evaluate's
    for m, ckpt in zip(members, ckpts, strict=True):
        exp, _ = experiment_from_checkpoint(ckpt)
        own = exp.evaluate("test").compute()["average"]
        assert m["horizons"]["average"]["mae"] == pytest.approx(own["mae"], rel=1e-5)
    # the ensemble's test MAE is that of the weighted mean of the forecasts, computed here by hand
    exps = [experiment_from_checkpoint(c)[0] for c in ckpts]
    starts = exps[0].data.splits["test"]
    batch = exps[0].data.batch(starts)
    mixed = sum(m["weight"] * e.predict(e.data.batch(starts)) for m, e in zip(members, exps, strict=True))
    mae = ((mixed - batch.y).abs()[batch.mask.unsqueeze(-1)]).mean()
    assert result["horizons"]["average"]["mae"] == pytest.approx(float(mae), rel=1e-5)
    assert set(result["horizons"]) == {"3", "6", "12", "average"} and result["method"] == "weighted"
    assert (out / "members.md").read_text().count("\n") == 2 + len(ckpts) + 1
    assert "torch" in json.loads((out / "environment.json").read_text())["packages"]


def test_ensemble_matches_sensors_by_id(runs):
    _, _, _, ckpts = runs
    exps = [experiment_from_checkpoint(c)[0] for c in ckpts[:2]]
    ens = Ensemble(exps, [0.5, 0.5])
    starts = exps[0].data.splits["test"][:5]
    plain = ens.member_forecasts(starts)[1]
    # the second member with its sensors in reverse order: forecasts come back in the first one's order
    from stgnn.training.fingerprint import align_sensors

    ids = exps[1].dataset.node_ids
    flipped = align_sensors(exps[1].dataset, ids[::-1], "test")
    exps[1].dataset = flipped
    exps[1].data = type(exps[1].data)(flipped, input_len=12, horizon=12, scaler=exps[1].data.scaler,
                                      covariate_names=exps[1].config.data.covariates)
    exps[1].edge_index = flipped.graph.edge_index
    exps[1].edge_weight = flipped.graph.edge_weight
    ens = Ensemble(exps, [0.5, 0.5])
    torch.testing.assert_close(ens.member_forecasts(starts)[1], plain)


def test_ensemble_refuses_other_data_or_windows(runs, tmp_path, capsys):
    tmp, series, locations, ckpts = runs
    other_series, other_locations = standins.write_custom(tmp_path / "other", t=300, n=4)
    other = _train(tmp_path, "other", other_series, other_locations, "--model", "last")
    assert main(["ensemble", "--checkpoints", str(ckpts[1]), str(other), "--output", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "cannot ensemble these checkpoints" in err and "num_steps 400 vs 300" in err

    config = tmp_path / "h6.toml"
    config.write_text("[data]\nhorizon = 6\n")
    short = tmp_path / "h6"
    assert main(["train", "--model", "last", "--config", str(config), "--series", str(series), "--locations",
                 str(locations), "--output", str(short), "--quiet"]) == 0
    assert main(["ensemble", "--checkpoints", str(ckpts[1]), str(short / "checkpoint.pt"),
                 "--output", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "[data] horizon is 6, but 12" in err

    assert main(["ensemble", "--checkpoints", str(ckpts[1]), "--output", str(tmp_path / "e")]) == 2
    assert "at least two checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_gaussian_mixture_quantiles_and_crps_against_numerical_integration():
    from stgnn.distributions import GaussianForecast
    from stgnn.ops.ensemble import GaussianMixtureForecast

    means = torch.tensor([[-1.0, 3.0], [2.0, 3.5]], dtype=torch.float64)  # [M=2, 2 readings]
    scales = torch.tensor([[0.5, 1.0], [1.5, 0.2]], dtype=torch.float64)
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)
    mix = GaussianMixtureForecast(means, scales, weights)
    torch.testing.assert_close(mix.mean, (weights[:, None] * means).sum(0))
    for q in (0.05, 0.5, 0.9):
        torch.testing.assert_close(mix.cdf(mix.quantile(q)), torch.full((2,), q, dtype=torch.float64))
    y = torch.tensor([0.5, 3.2], dtype=torch.float64)
    # CRPS = ∫_{-inf}^{y} F(x)² dx + ∫_{y}^{inf} (1 - F(x))² dx, each side on its own grid (no jump inside)
    steps = torch.linspace(0, 1, 100001, dtype=torch.float64)[:, None]
    wide = GaussianMixtureForecast(means[:, None].expand(-1, steps.shape[0], -1),
                                   scales[:, None].expand(-1, steps.shape[0], -1), weights)
    below, above = y - 20 * (1 - steps), y + 20 * steps
    numeric = (torch.trapezoid(wide.cdf(below).square(), below, dim=0)
               + torch.trapezoid((1 - wide.cdf(above)).square(), above, dim=0))
    torch.testing.assert_close(mix.crps(y), numeric, rtol=1e-6, atol=1e-8)
    one = GaussianMixtureForecast(means[:1], scales[:1], torch.ones(1, dtype=torch.float64))
    torch.testing.assert_close(one.crps(y), GaussianForecast(means[0], scales[0]).crps(y))
    torch.testing.assert_close(one.interval(0.8)[1], GaussianForecast(means[0], scales[0]).interval(0.8)[1])


def test_mixture_of_gaussian_heads_is_scored_as_a_distribution(runs, tmp_path, capsys):
    tmp, series, locations, ckpts = runs
    members = [_train(tmp_path, f"g{seed}", series, locations, "--model", "lstm", "--head", "gaussian", "--epochs",
                      "1", "--max-batches", "3", "--seed", str(seed)) for seed in (0, 1)]
    out = tmp_path / "mix"
    assert main(["ensemble", "--checkpoints", *map(str, members), "--method", "mixture", "--output", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    avg = result["horizons"]["average"]
    assert avg["crps"] > 0 and 0 <= avg["coverage_80"] <= 1 and avg["width_95"] > avg["width_80"] > 0
    assert [m["weight"] for m in result["members"]] == [0.5, 0.5]
    table = capsys.readouterr().out  # the probabilistic columns, members and the mixture
    assert "CRPS / coverage 80 % / 95 % |" in table
    assert f"{avg['crps']:.2f} / {avg['coverage_80']:.2f} / {avg['coverage_95']:.2f} |" in table
    member = result["members"][0]["horizons"]["average"]
    assert f"{member['crps']:.2f} / {member['coverage_80']:.2f} / {member['coverage_95']:.2f} |" in table
    # the mixture's point forecast is the mean of the members' means
    exps = [experiment_from_checkpoint(c)[0] for c in members]
    starts = exps[0].data.splits["test"]
    batch = exps[0].data.batch(starts)
    mean = sum(0.5 * e.predict(e.data.batch(starts)) for e in exps)
    assert avg["mae"] == pytest.approx(float((mean - batch.y).abs()[batch.mask.unsqueeze(-1)].mean()), rel=1e-5)
    capsys.readouterr()
    assert main(["ensemble", "--checkpoints", str(members[0]), str(ckpts[1]), "--method", "mixture",
                 "--output", str(tmp_path / "bad")]) == 2
    assert "--method mixture: needs members with Gaussian heads" in capsys.readouterr().err
