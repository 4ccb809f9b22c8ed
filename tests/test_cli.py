"""End-to-end CLI runs on tiny data."""

import json

import pandas as pd
import standins

from stgnn.cli import main


def _shape_ok(metrics):
    assert set(metrics["horizons"]) == {"3", "6", "12", "average"}
    for row in metrics["horizons"].values():
        assert set(row) >= {"mae", "rmse", "mape"}
        assert row["mae"] is not None and row["rmse"] >= row["mae"] > 0


def test_own_data_train_evaluate_predict_plot(tmp_path, capsys):
    series, locations = standins.write_custom(tmp_path / "data", t=500, n=5)
    out = tmp_path / "run"
    assert main(["train", "--model", "lstm", "--series", str(series), "--locations", str(locations),
                 "--epochs", "2", "--output", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "@3 (15 min)" in printed and "ours MAE" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    _shape_ok(metrics)
    for name in ("config.toml", "environment.json", "checkpoint.pt", "log.csv"):
        assert (out / name).is_file(), name
    env = json.loads((out / "environment.json").read_text())
    assert "torch" in env["packages"] and env["device"] == "cpu"

    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--output",
                 str(tmp_path / "eval.json"), "--quiet"]) == 0
    again = json.loads((tmp_path / "eval.json").read_text())
    assert again["horizons"] == metrics["horizons"]  # same weights, same scaler, same split

    stamps = pd.read_csv(series)["timestamp"]
    assert main(["predict", "--checkpoint", str(out / "checkpoint.pt"), "--at", stamps.iloc[100],
                 "--at", stamps.iloc[-1], "--output", str(tmp_path / "pred.csv")]) == 0
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == 2 * 12 * 5
    assert pred["truth"].iloc[:60].notna().all() and pred["truth"].iloc[60:].isna().all()

    assert main(["plot", "--checkpoint", str(out / "checkpoint.pt"), "--sensors", "0,2",
                 "--output", str(tmp_path / "plots")]) == 0
    for name in ("forecast.png", "error_by_horizon.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_predict_plot_read_the_checkpoint_once(tmp_path, monkeypatch):
    import stgnn.cli
    import stgnn.training.trainer
    from stgnn.training.checkpoint import load_checkpoint

    series, locations = standins.write_custom(tmp_path / "data", t=300, n=3)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    assert main(["train", "--model", "last", "--series", str(series), "--locations", str(locations),
                 "--output", str(ckpt.parent), "--quiet"]) == 0
    reads: list[str] = []

    def counted(path, *args, **kwargs):
        reads.append(str(path))
        return load_checkpoint(path, *args, **kwargs)

    monkeypatch.setattr(stgnn.cli, "load_checkpoint", counted)
    monkeypatch.setattr(stgnn.training.trainer, "load_checkpoint", counted)
    at = pd.read_csv(series)["timestamp"].iloc[100]
    for argv in (["evaluate", "--quiet"], ["predict", "--at", at, "--output", str(tmp_path / "p.csv")],
                 ["plot", "--sensors", "0", "--output", str(tmp_path / "plots")]):
        reads.clear()
        assert main([*argv, "--checkpoint", str(ckpt)]) == 0
        assert reads == [str(ckpt)], argv[0]


def test_predict_rejects_unknown_timestamp(tmp_path, capsys):
    series, locations = standins.write_custom(tmp_path / "data", t=300, n=3)
    out = tmp_path / "run"
    main(["train", "--model", "last", "--series", str(series), "--locations", str(locations),
          "--output", str(out), "--quiet"])
    for at in ("1999-01-01", "yesterday"):
        assert main(["predict", "--checkpoint", str(out / "checkpoint.pt"), "--at", at,
                     "--output", str(tmp_path / "p.csv")]) == 2
        assert f"stgnn: error: --at {at}: not a timestamp" in capsys.readouterr().err


def test_ha_on_los_loop_writes_metrics(tmp_path, shared_data):
    out = tmp_path / "OUT"
    assert main(["train", "--model", "ha", "--dataset", "los-loop", "--data-dir", str(shared_data),
                 "--output", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    _shape_ok(metrics)
    assert metrics["windows"] == {"train": 1395, "val": 199, "test": 399}


def test_datasets_list_and_verify(shared_data, capsys):
    assert main(["datasets", "list", "--data-dir", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert "los-loop" in out and "2016 x 207 x 1" in out
    assert main(["datasets", "verify", "los-loop", "--data-dir", str(shared_data)]) == 0
    assert "ok" in capsys.readouterr().out
    # metr-la.h5 is not in the shared folder: verify fails and says so.
    assert main(["datasets", "verify", "metr-la", "--data-dir", str(shared_data)]) == 1
    assert "MISSING" in capsys.readouterr().out


def test_missing_dataset_is_a_clear_cli_error(tmp_path, capsys):
    assert main(["train", "--model", "ha", "--dataset", "pems04", "--data-dir", str(tmp_path), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert "PEMS04.npz" in err and str(tmp_path / "pems04") in err


def test_bad_own_data_arguments(tmp_path, capsys):
    series, locations = standins.write_custom(tmp_path / "data", t=100, n=3)
    assert main(["train", "--series", str(series)]) == 2
    assert "stgnn: error: --series: series needs exactly one of locations" in capsys.readouterr().err
    assert main(["train", "--locations", str(locations)]) == 2
    assert "--locations: locations given without series" in capsys.readouterr().err


def test_version_and_max_batches_help(capsys):
    import pytest

    import stgnn

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"stgnn {stgnn.__version__}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "0 = no cap" in " ".join(capsys.readouterr().out.split())
