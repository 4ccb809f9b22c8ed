"""``stgnn datasets convert`` and training from a converted (memory-mapped) folder."""

from __future__ import annotations

import json

import pytest
import standins

from stgnn.cli import main


def test_convert_own_data_then_train_and_evaluate_from_the_folder(tmp_path, capsys):
    series, locations = standins.write_custom(tmp_path / "data", t=400, n=5)
    conv = tmp_path / "conv"
    assert main(["datasets", "convert", str(series), "--locations", str(locations), "--output", str(conv),
                 "--chunk-steps", "50"]) == 0
    assert "400 x 5 x 1" in capsys.readouterr().out
    mapped, memory = tmp_path / "mapped", tmp_path / "memory"
    common = ["--model", "lstm", "--epochs", "1", "--max-batches", "2", "--quiet", "--device", "cpu"]
    assert main(["train", "--dataset", str(conv), *common, "--output", str(mapped)]) == 0
    assert main(["train", "--series", str(series), "--locations", str(locations), *common,
                 "--output", str(memory)]) == 0
    a = json.loads((mapped / "metrics.json").read_text())
    b = json.loads((memory / "metrics.json").read_text())
    assert a["horizons"] == b["horizons"] and a["windows"] == b["windows"]  # the same run, from disk
    assert main(["evaluate", "--checkpoint", str(mapped / "checkpoint.pt"), "--output",
                 str(tmp_path / "eval.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["horizons"] == a["horizons"]


def test_convert_and_dataset_errors_name_the_argument(tmp_path, capsys):
    series, locations = standins.write_custom(tmp_path / "data", t=100, n=3)
    assert main(["datasets", "convert", str(series), "--output", str(tmp_path / "x")]) == 2
    assert "exactly one graph source" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    assert main(["datasets", "convert", str(series), "--locations", str(locations),
                 "--output", str(tmp_path / "full")]) == 2
    assert "full: exists and is not an empty folder" in capsys.readouterr().err
    assert main(["datasets", "convert", "no-such-thing", "--output", str(tmp_path / "y")]) == 2
    assert "neither a registered dataset" in capsys.readouterr().err
    assert main(["datasets", "verify", "no-such-thing"]) == 2
    assert "'no-such-thing' is not a registered dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own usage error
        main(["train", "--dataset", str(tmp_path / "full")])
    assert exit_info.value.code == 2
    assert "neither a registered dataset" in capsys.readouterr().err
