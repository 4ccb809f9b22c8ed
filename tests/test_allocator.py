"""stgnn.allocator.tune_malloc, run in fresh interpreters (mallopt changes the whole process)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import stgnn.cli
from stgnn.allocator import tune_malloc

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc Linux only"
)


def _run(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "STGNN_MALLOC"}
    clean.update(env)
    code = "from stgnn.allocator import tune_malloc; print(tune_malloc(), tune_malloc())"
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@glibc
def test_applies_on_glibc_linux():
    assert _run() == "True True"  # idempotent


@pytest.mark.parametrize(
    "env",
    [
        {"STGNN_MALLOC": "default"},
        {"STGNN_MALLOC": "DEFAULT"},
        {"MALLOC_ARENA_MAX": "2"},
        {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"},
    ],
)
def test_respects_opt_out_and_user_settings(env):
    assert _run(**env) == "False False"


def test_returns_bool_in_process():
    assert isinstance(tune_malloc(), bool)


def test_cli_main_calls_it(monkeypatch):
    calls = []
    monkeypatch.setattr(stgnn.cli, "tune_malloc", lambda: calls.append(1) or True)
    with pytest.raises(SystemExit):
        stgnn.cli.main(["--help"])
    assert calls == [1]
