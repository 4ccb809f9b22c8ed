"""experiments/step_profile.py: comparing two records of a training step's kernels."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def step_profile():
    spec = importlib.util.spec_from_file_location("step_profile", ROOT / "experiments" / "step_profile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["step_profile"] = module
    spec.loader.exec_module(module)
    return module


def _write(path: Path, kernels: dict[str, int], overhead: float) -> Path:
    path.write_text(json.dumps({"model": "dcrnn", "stgnn": str(path), "kernels": kernels, "overhead_ms": overhead}))
    return path


def test_identical_kernels_are_reported_as_the_same_arithmetic(step_profile, tmp_path):
    k = {"aten::mm [[16, 64], [64, 64]]": 3, "aten::add [[], []]": 2}
    out = step_profile.compare(_write(tmp_path / "a.json", k, 10.0), _write(tmp_path / "b.json", k, 12.0))
    assert "identical" in out and "B/A 1.200" in out


def test_differences_are_listed_and_split_by_input_size(step_profile, tmp_path):
    a = {"aten::mm [[207, 64], [64, 64]]": 3, "aten::equal [[1722], [1722]]": 0}
    b = {"aten::mm [[207, 64], [64, 64]]": 4, "aten::equal [[1722], [1722]]": 2}
    out = step_profile.compare(_write(tmp_path / "a.json", a, 10.0), _write(tmp_path / "b.json", b, 10.0))
    assert "2 (operator, shapes) entries differ, 1 of them on inputs of >= 10,000 elements" in out
    assert "3 ->      4  aten::mm" in out
    assert step_profile._largest_input("aten::mm [[207, 64], [64, 64]]") == 207 * 64
    assert step_profile._largest_input("aten::add [[], []]") == 0
