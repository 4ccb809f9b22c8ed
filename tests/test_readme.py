"""The README's commands and examples run as written.

Shell blocks run through ``python -m stgnn`` in a scratch folder with ``STGNN_DATA`` pointing at
the real benchmark files; training commands get only speed caps appended (``--max-batches``,
``--epochs 1`` for reproduce, ``--quiet``). ``make run`` / ``make test`` / ``make lint`` are what
CI runs (``.ci/run``), not repeated here.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _block(marker):
    (block,) = [b for b in _blocks("bash") if marker in b]
    return [shlex.split(line, comments=True) for line in block.strip().splitlines()]


_SPEED = {"train": ["--max-batches", "2", "--quiet"], "reproduce": ["--epochs", "1", "--max-batches", "1", "--quiet"],
          "evaluate": ["--quiet"], "predict": ["--quiet"], "plot": ["--quiet"], "explain": ["--quiet"]}


def _run(commands, cwd, data):
    env = {**os.environ, "PYTHONPATH": str(REPO), "STGNN_DATA": str(data)}
    for args in commands:
        if args[0] == "python":
            args = [sys.executable, str(REPO / args[1]), *args[2:]]
        else:
            assert args[0] == "stgnn", args
            args = [sys.executable, "-m", "stgnn", *args[1:], *_SPEED.get(args[1], [])]
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{shlex.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def test_opens_with_the_two_set_up_commands():
    first = _blocks("bash")[0].strip().splitlines()
    assert [line.split()[:2] for line in first] == [["make", "run"], ["make", "test"]]
    assert "../shared" not in README


def test_pyg_layer_example_runs():
    (code,) = [b for b in _blocks("python") if "from stgnn.nn import" in b]
    exec(compile(code, "README.md", "exec"), {})


@pytest.mark.slow
def test_quickstart_runs(tmp_path, shared_data):
    _run(_block("stgnn datasets list"), tmp_path, shared_data)
    assert (tmp_path / "runs" / "lstm" / "metrics.json").is_file()
    assert (tmp_path / "forecast.csv").is_file() and (tmp_path / "plots" / "forecast.png").is_file()


def test_own_data_example_runs(tmp_path, shared_data):
    _run(_block("make_example.py"), tmp_path, shared_data)
    assert (tmp_path / "runs" / "own" / "metrics.json").is_file()


def test_probabilistic_example_runs(tmp_path, shared_data):
    _run(_block("--head gaussian"), tmp_path, shared_data)
    horizons = json.loads((tmp_path / "runs" / "stgcn-quant" / "metrics.json").read_text())["horizons"]
    assert {"crps", "coverage_80", "width_95"} <= set(horizons["average"])
    header = (tmp_path / "interval-forecast.csv").read_text().splitlines()[0]
    assert header.endswith("lower_80,upper_80,lower_95,upper_95")
    assert (tmp_path / "interval-plots" / "forecast.png").is_file()


@pytest.mark.slow
def test_covariates_and_explain_example_runs(tmp_path, shared_data):
    make_example = [args for args in _block("make_example.py") if args[0] == "python"]
    _run(make_example + _block("stgnn explain"), tmp_path, shared_data)
    for name in ("attribution.png", "sensor_importance.csv", "adaptive_edges_map.png", "summary.json"):
        assert (tmp_path / "explain" / name).is_file(), name


@pytest.mark.slow
def test_reproduce_example_runs(tmp_path, shared_data):
    _run(_block("stgnn reproduce"), tmp_path, shared_data)
    summary = (tmp_path / "results" / "RESULTS.md").read_text()
    for model in ("ha", "lstm", "stgcn", "dcrnn", "gwnet"):
        assert f"[{model}](los-loop/{model}.md)" in summary


def test_larger_than_memory_example_runs(tmp_path, shared_data):
    _run(_block("stgnn datasets convert"), tmp_path, shared_data)
    assert (tmp_path / "runs" / "big" / "metrics.json").is_file()
    assert (tmp_path / "big" / "los-loop" / "stgnn-series.json").is_file()


def test_load_dataset_example_runs(shared_data, monkeypatch):
    (code,) = [b for b in _blocks("python") if "from stgnn.data import load_dataset" in b]
    monkeypatch.setenv("STGNN_DATA", str(shared_data))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert tuple(scope["ds"].series.shape) == (2016, 207, 1)


def test_every_block_is_covered():
    markers = ("make run", "stgnn datasets list", "make_example.py", "stgnn reproduce", "make test     #",
               "--head gaussian", "stgnn explain", "stgnn datasets convert", "torchrun")
    assert all(any(m in b for m in markers) for b in _blocks("bash"))
    assert len(_blocks("python")) == 2


@pytest.mark.slow
def test_distributed_launch_examples_parse_and_the_cpu_one_runs(tmp_path, shared_data):
    """Every torchrun line parses (torchrun's own parser, then stgnn's); the CPU one runs (2 processes)."""
    from torch.distributed.run import get_args_parser

    from stgnn.cli import build_parser

    lines = [args for args in _block("torchrun --standalone") if args]  # comment lines are empty
    assert len(lines) == 3 and all(args[0] == "torchrun" for args in lines)
    for args in lines:
        launch = get_args_parser().parse_args(args[1:])
        assert launch.module and launch.training_script == "stgnn"
        assert build_parser().parse_args(launch.training_script_args).command == "train"
    (cpu,) = [args for args in lines if "cpu" in args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "STGNN_DATA": str(shared_data), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", *cpu[1:], "--epochs", "1",
                           *_SPEED["train"]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data-parallel training: 2 processes" in done.stdout
    assert (tmp_path / "runs" / "lstm-2" / "metrics.json").is_file()
