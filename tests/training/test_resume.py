"""A run killed with SIGKILL mid-epoch and resumed ends exactly like an uninterrupted run.

The kill happens at a deterministic point (right after the first update of epoch 2, through
the trainer's ``on_step`` hook), so the test needs no sleeps or polling.
"""

import json
import os
import subprocess
import sys

import standins

# Runs the CLI with a trainer that SIGKILLs its own process after the first update of epoch 2.
_KILLED_RUN = """
import os, signal, sys
from stgnn.training.trainer import Trainer

def on_step(self, epoch, step):
    if epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)

Trainer.on_step = on_step
from stgnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _args(series, locations, out, *extra):
    return ["train", "--model", "lstm", "--series", str(series), "--locations", str(locations),
            "--epochs", "3", "--seed", "3", "--max-batches", "4", "--output", str(out), "--quiet", *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_sigkill_mid_epoch_then_resume_matches(tmp_path):
    series, locations = standins.write_custom(tmp_path / "data", t=600, n=6)
    full = tmp_path / "full"
    subprocess.run([sys.executable, "-m", "stgnn.cli", *_args(series, locations, full)],
                   check=True, env=_env(), capture_output=True)
    expected = json.loads((full / "metrics.json").read_text())

    run = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, *_args(series, locations, run)],
                            env=_env(), capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert not (run / "metrics.json").exists()
    assert len((run / "log.csv").read_text().splitlines()) == 2  # header + epoch 1

    subprocess.run([sys.executable, "-m", "stgnn.cli", *_args(series, locations, run, "--resume")],
                   check=True, env=_env(), capture_output=True)
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["horizons"] == expected["horizons"]
    assert resumed["epochs_run"] == 3


def test_existing_run_needs_resume_flag(tmp_path):
    series, locations = standins.write_custom(tmp_path / "data", t=300, n=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "stgnn.cli", *_args(series, locations, out)]
    cmd[cmd.index("3")] = "1"
    subprocess.run(cmd, check=True, env=_env(), capture_output=True)
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr


def test_refused_resume_gives_advice_that_works(tmp_path, capsys):
    from stgnn.cli import main

    series, locations = standins.write_custom(tmp_path / "data", t=300, n=4)
    out = tmp_path / "run"
    args = _args(series, locations, out)
    args[args.index("3")] = "1"
    assert main(args) == 0
    assert main([*args, "--lr", "0.01", "--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train.lr: 0.001 in the run, 0.01 now" in err and "train.epochs" not in err.split("Only")[0]
    advice = err[err.index("stgnn train --config"):].split(". ")[0].split()
    assert advice[:2] == ["stgnn", "train"]
    assert main([*advice[1:], "--epochs", "2", "--quiet"]) == 0  # the advised command (with more epochs)
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2


def test_reusing_a_folder_whose_run_died_before_its_first_checkpoint_is_said(tmp_path):
    from tiny_runs import make_config, trainer, write_data

    data = write_data(tmp_path / "data")
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text("# left by a run killed in its first epoch\n")
    logs: list[str] = []
    trainer(make_config(*data, epochs=1), out, logs).fit()
    assert any("ended before its first checkpoint" in line for line in logs)


# Runs the CLI with a trainer that pauses after its first update until stdin gets a line.
_PAUSED_RUN = """
import sys
from stgnn.training.trainer import Trainer

def on_step(self, epoch, step):
    if step == 1:
        print("holding", flush=True)
        sys.stdin.readline()

Trainer.on_step = on_step
from stgnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_second_run_into_a_busy_folder_is_refused_and_the_first_completes(tmp_path):
    series, locations = standins.write_custom(tmp_path / "data", t=300, n=4)
    out = tmp_path / "run"
    args = _args(series, locations, out)
    args[args.index("3")] = "1"
    first = subprocess.Popen([sys.executable, "-c", _PAUSED_RUN, *args], env=_env(), text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert first.stdout is not None
        lines = iter(first.stdout.readline, "")
        assert any(line.strip() == "holding" for line in lines), "the first run ended before its first update"
        second = subprocess.run([sys.executable, "-m", "stgnn.cli", *args], env=_env(), capture_output=True,
                                text=True)
    finally:
        rest, err = first.communicate("\n", timeout=300)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"run folder is in use by pid {first.pid} on " in second.stderr
    assert first.returncode == 0, err[-2000:]
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1
