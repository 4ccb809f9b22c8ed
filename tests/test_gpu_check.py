"""``experiments/gpu_check.sh --dry-run``: the GPU check's steps run on the CPU at tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stgnn.models import MODELS

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "GPU_CHECK.md"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "STGNN_DATA": str(tmp_path / "none")}
    run = subprocess.run(["bash", str(REPO / "experiments" / "gpu_check.sh"), "--dry-run", "--out", str(out),
                          "--ref-root", str(tmp_path / "no-refs")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = out.read_text()
    assert "dry run on the CPU" in text and "FAILED" not in text
    assert "## Tests marked cuda: ok" in text and "skipped" in text  # no GPU here: the cuda tests skip
    for name in MODELS:
        assert f"\n| {name} | cpu | float32 |" in text, name
    assert "### Training throughput" in text and "### Inference latency" in text
    assert "| stgcn | - |" in text  # ours, env allocator only


def test_gpu_check_without_a_gpu_says_to_use_the_dry_run() -> None:
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the check runs")
    run = subprocess.run(["bash", str(REPO / "experiments" / "gpu_check.sh")], capture_output=True, text=True,
                         env={**os.environ, "PYTHON": sys.executable}, timeout=120)
    assert run.returncode == 2 and "--dry-run" in run.stderr
