"""Every user error of the ``stgnn`` command: one line naming the argument or file, exit 2, no traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import standins

from stgnn import cli
from stgnn.cli import main

REPO = Path(__file__).resolve().parents[1]


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("stgnn: error: "), err
    return err


@pytest.fixture
def own_data(tmp_path):
    return standins.write_custom(tmp_path / "data", t=300, n=4)


def _train(series, locations, out, *extra):
    return main(["train", "--model", "last", "--series", str(series), "--locations", str(locations),
                 "--output", str(out), "--quiet", *extra])


@pytest.mark.parametrize(("args", "message"), [
    # issue 7 item 9: --epochs -3 trained nothing and wrote untrained metrics; batch size 0 divided by zero
    (["--epochs", "-3"], "--epochs: Input should be greater than or equal to 1"),
    (["--batch-size", "0"], "--batch-size: Input should be greater than or equal to 1"),
    (["--lr", "-0.1"], "--lr: Input should be greater than 0"),
    (["--lr", "nan"], "--lr: Input should be a finite number"),
    (["--max-batches", "-1"], "--max-batches: Input should be greater than or equal to 0"),
    (["--device", "foo"], "--device: 'foo' is not a device name"),
])
def test_bad_options_fail_before_data_is_read(tmp_path, capsys, args, message):
    # the data root is empty: a data error would name the missing files instead
    assert main(["train", "--model", "lstm", "--dataset", "los-loop", "--data-dir", str(tmp_path / "none"),
                 "--no-download", *args]) == 2
    assert message in _error(capsys)


def test_unavailable_cuda_device(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["train", "--model", "lstm", "--dataset", "los-loop", "--data-dir", str(tmp_path),
                 "--no-download", "--device", "cuda:7"]) == 2
    assert "--device: device 'cuda:7' requested but CUDA is not available" in _error(capsys)


def test_cuda_index_out_of_range(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    assert main(["train", "--model", "lstm", "--dataset", "los-loop", "--data-dir", str(tmp_path),
                 "--no-download", "--device", "cuda:7"]) == 2
    assert "only 1 CUDA device(s) exist" in _error(capsys)


def test_several_config_problems_one_line_each(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("[train]\nepochs = 2.5\nbatch_size = 0\n")
    assert main(["train", "--config", str(config), "--dataset", "los-loop", "--data-dir", str(tmp_path),
                 "--no-download"]) == 2
    lines = _error(capsys).splitlines()
    assert lines == [f"stgnn: error: {config}: [train] epochs: Input should be a valid integer (got 2.5)",
                     f"stgnn: error: {config}: [train] batch_size: Input should be greater than or equal to 1 (got 0)"]


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="--epochs"):
        main(["train", "--dataset", "los-loop", "--data-dir", str(tmp_path), "--epochs", "0", "--debug"])


def test_resume_needs_output(capsys, tmp_path):
    # issue 7 item 6: --resume without --output started a new run
    assert main(["train", "--model", "lstm", "--dataset", "los-loop", "--data-dir", str(tmp_path), "--resume"]) == 2
    assert "--resume: needs --output" in _error(capsys)


def test_second_run_into_a_folder(tmp_path, capsys, own_data):
    out = tmp_path / "run"
    assert _train(*own_data, out) == 0
    capsys.readouterr()
    assert _train(*own_data, out) == 2
    assert f"{out} already holds a run" in _error(capsys)


def test_output_that_is_a_file(tmp_path, capsys, own_data):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _train(*own_data, blocker / "run") == 2
    assert f"--output {blocker / 'run'}: {blocker} is a file, not a folder" in _error(capsys)


def test_unwritable_output(tmp_path, capsys, own_data, monkeypatch):
    real = os.access
    monkeypatch.setattr(cli.os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    assert _train(*own_data, tmp_path / "run") == 2
    assert f"--output {tmp_path / 'run'}: {tmp_path} is not writable" in _error(capsys)


def test_custom_section_is_merged_with_series(tmp_path, own_data):
    # issue 7 item 8: [custom] was silently ignored with --series
    series, locations = own_data
    config = tmp_path / "c.toml"
    config.write_text("[custom]\nk_neighbors = 1\nzero_is_missing = true\n")
    out = tmp_path / "run"
    assert main(["train", "--model", "last", "--config", str(config), "--series", str(series),
                 "--locations", str(locations), "--output", str(out), "--quiet"]) == 0
    saved = (out / "config.toml").read_text()
    assert "k_neighbors = 1" in saved and "zero_is_missing = true" in saved


def test_custom_section_alone_is_a_custom_run(tmp_path, own_data):
    series, locations = own_data
    config = tmp_path / "c.toml"
    config.write_text(f'model = "last"\n[custom]\nseries = "{series.name}"\nlocations = "{locations.name}"\n')
    config = config.rename(series.parent / "c.toml")  # paths are relative to the config file
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--output", str(out), "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["dataset"] == "readings"


def test_custom_section_typo(tmp_path, capsys, own_data):
    series, locations = own_data
    config = tmp_path / "c.toml"
    config.write_text("[custom]\nk_neighbours = 3\n")
    assert main(["train", "--config", str(config), "--series", str(series), "--locations", str(locations)]) == 2
    assert f"{config}: [custom] k_neighbours: unknown key; known: series," in _error(capsys)


def test_graph_file_on_the_command_line_replaces_the_configs(tmp_path, own_data):
    series, locations = own_data
    config = tmp_path / "c.toml"
    config.write_text(f'[custom]\nseries = "{series}"\nedges = "{tmp_path / "missing.csv"}"\n')
    out = tmp_path / "run"
    assert main(["train", "--model", "last", "--config", str(config), "--locations", str(locations),
                 "--series", str(series), "--output", str(out), "--quiet"]) == 0


def test_null_value_none_run_evaluates(tmp_path, own_data):
    # issue 7 item 10: null_value = "none" made evaluate / predict / plot / resume fail
    series, locations = own_data
    config = tmp_path / "c.toml"
    config.write_text('[data]\nnull_value = "none"\n[train]\nepochs = 1\nmax_batches = 1\n')
    out = tmp_path / "run"
    assert main(["train", "--model", "lstm", "--config", str(config), "--series", str(series),
                 "--locations", str(locations), "--output", str(out), "--quiet"]) == 0
    assert 'null_value = "none"' in (out / "config.toml").read_text()
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--quiet"]) == 0
    assert main(["train", "--model", "lstm", "--config", str(config), "--series", str(series),
                 "--locations", str(locations), "--output", str(out), "--quiet", "--resume"]) == 0


def test_evaluate_errors(tmp_path, capsys, own_data):
    out = tmp_path / "run"
    assert _train(*own_data, out) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt" in _error(capsys)
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--device", "foo"]) == 2
    assert "--device: 'foo' is not a device name" in _error(capsys)
    assert main(["predict", "--checkpoint", str(out / "checkpoint.pt"), "--at", "2024-01-01T02:00",
                 "--output", str(tmp_path / "p.txt")]) == 2
    assert "--output" in _error(capsys)
    assert main(["plot", "--checkpoint", str(out / "checkpoint.pt"), "--sensors", "a,b",
                 "--output", str(tmp_path / "plots")]) == 2
    assert "--sensors a,b: 'a' is neither a sensor id nor a node index in 0..3" in _error(capsys)
    assert main(["plot", "--checkpoint", str(out / "checkpoint.pt"), "--sensors", "S1,#3",
                 "--output", str(tmp_path / "plots")]) == 0


def test_plot_sensors_by_id_or_index():
    from stgnn.cli import UsageError, _sensor_nodes

    ids = ["S0", "S1", "7", "3"]
    assert _sensor_nodes("S1,0", ids) == [1, 0]
    assert _sensor_nodes("id:7,#2, 1", ids) == [2, 2, 1]
    assert _sensor_nodes("3", ids) == [3]  # id "3" is node 3: no ambiguity
    with pytest.raises(UsageError, match=r"'7' is the id of node 2 and also a node index; write id:7 or #7"):
        _sensor_nodes("7", ["a", "b", "7", "c", "d", "e", "f", "g"])
    with pytest.raises(UsageError, match=r"no sensor with id 'x'"):
        _sensor_nodes("id:x", ids)
    with pytest.raises(UsageError, match=r"'#9' is neither"):
        _sensor_nodes("#9", ids)


def test_reproduce_errors(tmp_path, capsys):
    assert main(["reproduce", "ha", "metr-la"]) == 2
    assert "no paper config stgnn/configs/ha/metr-la.toml" in _error(capsys)
    assert main(["reproduce"]) == 2
    assert "give MODEL DATASET, or --all" in _error(capsys)
    assert main(["reproduce", "--all", "--data-dir", str(tmp_path)]) == 2
    assert "--all: no dataset with a paper config" in _error(capsys)
    assert main(["reproduce", "ha", "los-loop", "--epochs", "-3", "--data-dir", str(tmp_path), "--no-download",
                 "--results-dir", str(tmp_path / "results")]) == 2
    assert "--epochs: Input should be greater than or equal to 1" in _error(capsys)
    assert not (tmp_path / "results").exists()


def test_train_fetches_a_missing_dataset_unless_told_not_to(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_ensure(name, root, *, download, progress):
        calls.append((name, download))
        raise FileNotFoundError(f"{name}: offline in this test")

    monkeypatch.setattr(cli, "ensure_dataset", fake_ensure)
    args = ["train", "--model", "ha", "--dataset", "los-loop", "--data-dir", str(tmp_path), "--quiet"]
    assert main(args) == 2
    assert main([*args, "--no-download"]) == 2
    assert calls == [("los-loop", True), ("los-loop", False)]
    assert "los-loop: offline in this test" in _error(capsys)


def test_closed_stdout_does_not_stop_a_run(tmp_path, own_data):
    series, locations = own_data
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stgnn", "train", "--model", "last", "--series", str(series),
         "--locations", str(locations), "--output", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader went away (`| head` that has read enough)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    assert (out / "metrics.json").is_file()


def test_warnings_are_one_plain_line_each(tmp_path, own_data):
    # a warning is for the user: "stgnn: warning: <message>", not Python's file:line and source line
    import pandas as pd

    series, locations = own_data
    frame = pd.read_csv(series)
    frame["S2"] = float("nan")
    frame.to_csv(series, index=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "stgnn", "train", "--model", "last", "--series", str(series),
            "--locations", str(locations), "--output", str(tmp_path / "run"), "--quiet"]
    err = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300).stderr
    assert "stgnn: warning: " + str(series) + ": 1 sensors have no reading at all: 'S2'" in err.splitlines()
    assert "UserWarning" not in err and ".py:" not in err
    import warnings

    formatter = warnings.formatwarning
    assert main(["train", "--model", "last", "--series", str(series), "--locations", str(locations),
                 "--output", str(tmp_path / "run2"), "--quiet"]) == 0
    assert warnings.formatwarning is formatter  # the calling program's warnings keep their form


def test_make_run_twice_gets_two_folders(tmp_path, monkeypatch):
    # `make run` is `stgnn train` without --output: each run gets its own new folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.time, "strftime", lambda fmt: "20260101-000000")
    cfg = cli.RunConfig(model="stgcn", dataset="los-loop")
    first = cli._default_output(cfg)
    first.mkdir(parents=True)
    second = cli._default_output(cfg)
    assert first == Path("runs/stgcn-los-loop-20260101-000000") and second == Path(f"{first}-2")


def test_main_job_without_data_is_a_clear_error(tmp_path, capsys, monkeypatch):
    # `make run` on a clean clone that cannot download: names the dataset, the files and the folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STGNN_DATA", raising=False)
    assert main(["train", "--no-download", "--quiet"]) == 2
    err = _error(capsys)
    assert "los-loop" in err and "los_speed.csv" in err and str(Path("datasets") / "los-loop") in err
    assert not (tmp_path / "runs").exists()  # nothing written for a run that never started


def test_non_integer_option_is_refused_by_the_parser(capsys):
    # `--epochs 2.5` is not rounded: argparse names the option and exits with status 2
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--epochs", "2.5"])
    assert exit_.value.code == 2
    assert "argument --epochs: invalid int value: '2.5'" in capsys.readouterr().err
