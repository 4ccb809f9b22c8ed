"""A run killed with SIGKILL mid-epoch and resumed ends exactly like an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import standins


def _cmd(series, locations, out, *extra):
    return [sys.executable, "-m", "stgnn.cli", "train", "--model", "lstm", "--series", str(series),
            "--locations", str(locations), "--epochs", "4", "--seed", "3", "--output", str(out),
            "--quiet", *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_sigkill_mid_epoch_then_resume_matches(tmp_path):
    series, locations = standins.write_custom(tmp_path / "data", t=3000, n=12)
    full = tmp_path / "full"
    subprocess.run(_cmd(series, locations, full), check=True, env=_env(), capture_output=True)
    expected = json.loads((full / "metrics.json").read_text())

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(series, locations, run), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        log = run / "log.csv"
        if log.exists() and len(log.read_text().splitlines()) >= 2:  # header + epoch 1
            break
        time.sleep(0.05)
    time.sleep(0.3)  # well into epoch 2
    assert proc.poll() is None, "run ended before it could be killed; make the epochs longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "metrics.json").exists()
    epochs_done = len((run / "log.csv").read_text().splitlines()) - 1
    assert 1 <= epochs_done < 4

    subprocess.run(_cmd(series, locations, run, "--resume"), check=True, env=_env(), capture_output=True)
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["horizons"] == expected["horizons"]
    assert resumed["epochs_run"] == 4


def test_existing_run_needs_resume_flag(tmp_path):
    series, locations = standins.write_custom(tmp_path / "data", t=300, n=4)
    out = tmp_path / "run"
    cmd = _cmd(series, locations, out)
    cmd[cmd.index("4")] = "1"
    subprocess.run(cmd, check=True, env=_env(), capture_output=True)
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert again.returncode != 0 and "--resume" in again.stderr
