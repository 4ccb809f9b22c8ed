"""Data-parallel training on the CPU (gloo, 2 processes) equals a single process; a killed run resumes.

The processes run ``stgnn.cli.main`` with torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``): the same code path as
``torchrun --nproc-per-node 2 -m stgnn train``.  They are forked from the test process (as
DataLoader workers are, one intra-op thread each), which saves importing torch three times per
run; one test launches the real ``torchrun``.

Tolerance: the 2-process metrics equal the 1-process run's (same config, same global batch of 16
windows, the 2 ranks holding 8 each; readings missing at random so that the ranks' counts of
observed readings differ; a last batch of one window, so one rank runs a masked stand-in)
within ``RTOL = 1e-6`` relative.  What differs is only the order of floating-point sums (gradient
all-reduce, metric sums); measured differences are about 1e-10.  A resumed 2-process run equals
the uninterrupted 2-process run exactly (same ranks, same reduction order).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import standins
import torch

from stgnn.metrics import MaskedMetrics
from stgnn.training.distributed import Distributed

pytestmark = pytest.mark.usefixtures("single_thread")

RTOL = 1e-6
WORLD = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, port: int, argv: list[str], kill_rank_at_epoch: tuple[int, int] | None) -> None:
    """One process of the job (forked): torchrun's environment, then the CLI."""
    code = 1
    try:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.set_num_threads(1)
        if kill_rank_at_epoch is not None and kill_rank_at_epoch[0] == rank:
            from stgnn.training.trainer import Trainer

            def on_step(self: Trainer, epoch: int, step: int) -> None:  # after the first update of that epoch
                if epoch == kill_rank_at_epoch[1]:
                    os.kill(os.getpid(), signal.SIGKILL)

            Trainer.on_step = on_step  # type: ignore[method-assign]
        from stgnn.cli import main

        code = main(argv)
    except BaseException:  # report, then leave without running the parent's (pytest's) exit handlers
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _job(argv: list[str], kill_rank_at_epoch: tuple[int, int] | None = None, timeout: float = 300) -> list[int]:
    """Exit codes of a 2-process job; when one process dies the others are killed (as torchrun does)."""
    ctx = multiprocessing.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, argv, kill_rank_at_epoch)) for r in range(WORLD)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    while any(p.exitcode is None for p in procs) and time.monotonic() < deadline:
        if any(p.exitcode not in (None, 0) for p in procs):
            break
        time.sleep(0.05)
    for p in procs:
        if p.exitcode is None:
            p.kill()
        p.join()
    return [int(p.exitcode) for p in procs if p.exitcode is not None]


@pytest.fixture(scope="module")
def job_args(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], list[str]]:
    """CLI arguments of a tiny run: 367 windows (257 train: 16 batches of 16 and one of 1)."""
    folder = tmp_path_factory.mktemp("ddp-data")
    series, locations = standins.write_custom(folder, t=390, n=5)
    frame = pd.read_csv(series)
    values = frame.iloc[:, 1:].to_numpy()
    values[np.random.default_rng(0).random(values.shape) < 0.1] = np.nan  # missing at random
    frame.iloc[:, 1:] = values
    frame.to_csv(series, index=False)
    config = folder / "run.toml"
    config.write_text(
        'model = "lstm"\n[train]\nepochs = 3\nbatch_size = 16\neval_batch_size = 16\nseed = 3\ndevice = "cpu"\n'
        "patience = 0\n[model_params]\nhidden_channels = 8\nnum_layers = 1\n"
        f'[custom]\nseries = "{series}"\nlocations = "{locations}"\n'
    )
    return lambda out: ["train", "--config", str(config), "--output", str(out), "--quiet"]


@pytest.fixture(scope="module")
def single(job_args: Callable[[Path], list[str]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from stgnn.cli import main

    out = tmp_path_factory.mktemp("single") / "run"
    assert main(job_args(out)) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def two(job_args: Callable[[Path], list[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("two") / "run"
    assert _job(job_args(out)) == [0, 0]
    return out


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= RTOL * max(abs(a), abs(b))
    return bool(a == b)


def test_two_processes_equal_one_process_with_the_same_global_batch(single: dict[str, Any], two: Path) -> None:
    metrics = json.loads((two / "metrics.json").read_text())
    assert metrics["processes"] == 2 and single["processes"] == 1
    assert metrics["windows"] == single["windows"] and metrics["windows"]["train"] == 257
    for key in ("horizons", "per_step", "val"):
        assert _close(metrics[key], single[key]), key
    assert metrics["horizons"]["average"]["count"] == single["horizons"]["average"]["count"]  # every window once
    assert metrics["horizons"] != {}  # not vacuous: the models trained (loss fell) and were evaluated
    log = pd.read_csv(two / "log.csv")
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]


def test_only_rank_zero_writes_the_run_folder(two: Path) -> None:
    names = sorted(p.name for p in two.iterdir() if p.name != "tensorboard")
    assert names == [".lock", "checkpoint.pt", "config.toml", "environment.json", "log.csv", "metrics.json"]
    assert len(pd.read_csv(two / "log.csv")) == 3  # one row per epoch, written once


def test_killed_two_process_run_resumes_to_the_same_metrics(job_args: Callable[[Path], list[str]], two: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "killed"
    codes = _job(job_args(out), kill_rank_at_epoch=(0, 2))
    assert -signal.SIGKILL in codes
    assert not (out / "metrics.json").exists() and len(pd.read_csv(out / "log.csv")) == 1
    assert _job([*job_args(out), "--resume"]) == [0, 0]
    resumed = json.loads((out / "metrics.json").read_text())
    expected = json.loads((two / "metrics.json").read_text())
    assert resumed["horizons"] == expected["horizons"] and resumed["val"] == expected["val"]
    assert resumed["epochs_run"] == 3


def test_a_two_process_run_resumes_in_one_process(job_args: Callable[[Path], list[str]], single: dict[str, Any],
                                                   tmp_path: Path) -> None:
    from stgnn.cli import main

    out = tmp_path / "killed"
    assert -signal.SIGKILL in _job(job_args(out), kill_rank_at_epoch=(1, 2))  # this time rank 1 dies
    assert main([*job_args(out), "--resume"]) == 0  # the global batch is the config's: any process count
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["processes"] == 1 and _close(resumed["horizons"], single["horizons"])


def test_an_error_on_rank_zero_stops_every_rank(job_args: Callable[[Path], list[str]], two: Path) -> None:
    # the folder holds a finished run: rank 0 refuses it without --resume; rank 1 must not wait for it
    start = time.monotonic()
    assert _job(job_args(two), timeout=120) == [2, 2]
    assert time.monotonic() - start < 60


def test_torchrun_launch(job_args: Callable[[Path], list[str]], two: Path, tmp_path: Path) -> None:
    """The real launcher: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m stgnn``."""
    out = tmp_path / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "stgnn",
         *job_args(out)], env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "data-parallel training: 2 processes" in run.stdout
    expected = json.loads((two / "metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text())["horizons"] == expected["horizons"]


# ----------------------------------------------------------------------------- the pieces
def test_from_env_reads_torchrun_variables() -> None:
    assert Distributed.from_env({}) is None
    assert Distributed.from_env({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) is None  # one process: plain
    d = Distributed.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert d == Distributed(rank=3, world_size=4, local_rank=1) and not d.is_main
    with pytest.raises(ValueError, match="RANK is not"):
        Distributed.from_env({"WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        Distributed.from_env({"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="inconsistent"):
        Distributed.from_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})


def test_device_with_an_index_is_refused_under_torchrun() -> None:
    with pytest.raises(ValueError, match="each process takes its own device"):
        Distributed(0, 2, 0).setup("cuda:1")


def test_batch_parts_together_are_the_batch_and_an_empty_part_counts_for_nothing(tmp_path: Path) -> None:
    from stgnn.data.custom import load_custom
    from stgnn.data.windows import WindowData

    series, locations = standins.write_custom(tmp_path, t=60, n=3)
    data = WindowData(load_custom(series, locations=locations), input_len=4, horizon=2)
    n = data.num_windows("train")
    assert n == 38  # batches of 37: the last one has one window, and parts 1 and 2 get a masked stand-in
    whole = list(data.batches("train", 37, shuffle=True, generator=torch.Generator().manual_seed(1)))
    parts = [list(data.batches("train", 37, shuffle=True, generator=torch.Generator().manual_seed(1), part=(k, 3)))
             for k in range(3)]
    assert all(len(p) == len(whole) for p in parts)
    for i, batch in enumerate(whole):
        got = torch.cat([p[i].start[p[i].mask.any(dim=(1, 2))] for p in parts])
        assert sorted(got.tolist()) == sorted(batch.start.tolist())
    assert not parts[1][-1].mask.any() and not parts[2][-1].mask.any() and parts[0][-1].mask.any()
    with pytest.raises(ValueError, match="part"):
        next(data.batches("train", 5, part=(3, 3)))


def test_metric_totals_of_two_halves_sum_to_the_whole() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(6, 3, 4, 1, generator=g), torch.randn(6, 3, 4, 1, generator=g) + 2
    mask = torch.rand(6, 3, 4, generator=g) > 0.3
    whole, a, b = MaskedMetrics((1, 3)), MaskedMetrics((1, 3)), MaskedMetrics((1, 3))
    whole.update(pred, target, mask)
    a.update(pred[:2], target[:2], mask[:2])
    b.update(pred[2:], target[2:], mask[2:])
    merged = MaskedMetrics((1, 3))
    merged.update(pred[:1], target[:1], mask[:1])  # any batch: its sums are replaced
    totals_a, totals_b = a.totals(), b.totals()
    merged.load_totals({k: totals_a[k] + totals_b[k] for k in totals_a})
    for key, value in whole.compute().items():
        assert merged.compute()[key] == pytest.approx(value), key
    assert MaskedMetrics().totals() == {}
    with pytest.raises(ValueError, match="totals hold"):
        merged.load_totals({"abs": totals_a["abs"]})


def test_probabilistic_metric_totals_of_two_halves_sum_to_the_whole() -> None:
    from stgnn.distributions import GaussianForecast, QuantileForecast

    g = torch.Generator().manual_seed(1)
    mean, target = torch.randn(6, 3, 4, 1, generator=g), torch.randn(6, 3, 4, 1, generator=g)
    scale = torch.rand(6, 3, 4, 1, generator=g) + 0.5
    mask = torch.rand(6, 3, 4, generator=g) > 0.3
    quantiles = mean.unsqueeze(-1) + torch.tensor([-1.0, 0.0, 1.0])
    gaussian = lambda i: GaussianForecast(mean[i], scale[i])  # noqa: E731
    quantile = lambda i: QuantileForecast((0.1, 0.5, 0.9), quantiles[i])  # noqa: E731
    for make in (gaussian, quantile):
        whole, a, b = MaskedMetrics((1, 3)), MaskedMetrics((1, 3)), MaskedMetrics((1, 3))
        whole.update(make(slice(None)), target, mask)
        a.update(make(slice(0, 2)), target[:2], mask[:2])
        b.update(make(slice(2, None)), target[2:], mask[2:])
        totals_a, totals_b = a.totals(), b.totals()
        a.load_totals({k: totals_a[k] + totals_b[k] for k in totals_a})
        for key, value in whole.compute().items():
            assert a.compute()[key] == pytest.approx(value, nan_ok=True), key
        assert a.compute()["average"]["crps"] is not None and a.compute()["average"]["coverage_80"] is not None
