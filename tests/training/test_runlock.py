"""The run-folder lock: one writer per run folder, the holder's pid named, dead holders' locks taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import make_config, trainer, write_data

from stgnn.training.runlock import LOCK_NAME, RunFolderLocked, RunLock

_HOLD = """
import os, sys
from stgnn.training.runlock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print(os.getpid(), flush=True)
sys.stdin.readline()  # hold the lock until the parent says so (or kills us)
"""


def _holder(folder: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())  # printed only once the lock is held: no sleep needed
    return proc, pid


def test_second_lock_in_the_same_folder_names_the_holder(tmp_path):
    with RunLock(tmp_path / "run") as first:
        assert first.held
        with pytest.raises(RunFolderLocked, match=rf"run: run folder is in use by pid {os.getpid()} on "):
            RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run") as again:  # released on exit
        assert again.held


def test_lock_held_by_another_process_names_its_pid_and_is_free_after_it_ends(tmp_path):
    folder = tmp_path / "run"
    proc, pid = _holder(folder)
    try:
        with pytest.raises(RunFolderLocked, match=rf"in use by pid {pid} on .*another --output"):
            RunLock(folder).acquire()
    finally:
        proc.communicate("\n", timeout=60)
    with RunLock(folder) as lock:
        assert lock.held


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    proc, pid = _holder(folder)
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert (folder / LOCK_NAME).read_text().split()[0] == str(pid)  # the dead holder's pid is still there
    with RunLock(folder) as lock:
        assert lock.held
        assert (folder / LOCK_NAME).read_text().split()[0] == str(os.getpid())


def test_trainer_refuses_a_locked_folder_before_writing(tmp_path):
    data = write_data(tmp_path / "data")
    out = tmp_path / "run"
    proc, pid = _holder(out)
    try:
        with pytest.raises(RunFolderLocked, match=f"pid {pid}"):
            trainer(make_config(*data, epochs=1), out).fit()
    finally:
        proc.communicate("\n", timeout=60)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
