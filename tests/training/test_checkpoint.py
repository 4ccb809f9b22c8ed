"""Atomic writes and safe checkpoint loading."""

import os
import subprocess

import pytest
import torch

from stgnn.training.checkpoint import atomic_write_text, environment, git_state, load_checkpoint, save_checkpoint


def test_atomic_writes_leave_no_temp_file_and_usual_permissions(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_checkpoint_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"config": {}, "model": {}, "payload": os.system}, path)  # a function reference
    with pytest.raises(ValueError, match="evil.pt: not a loadable stgnn checkpoint"):
        load_checkpoint(path)


def test_checkpoint_round_trip_and_missing(tmp_path):
    save_checkpoint({"config": {"model": "ha"}, "model": {"w": torch.ones(2)}}, tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt")["config"] == {"model": "ha"}
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_git_state_records_a_dirty_tree(tmp_path):
    assert git_state(tmp_path) == {"git_commit": None, "git_dirty": None}  # not a repository
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    clean = git_state(repo)
    assert len(clean["git_commit"]) == 40 and clean["git_dirty"] is False
    (repo / "a.py").write_text("x = 2\n")
    assert git_state(repo)["git_dirty"] is True
    subprocess.run([*git, "checkout", "-q", "a.py"], check=True)
    (repo / "new.py").write_text("")  # an untracked source file also makes the commit insufficient
    assert git_state(repo)["git_dirty"] is True


def test_environment_has_the_dirty_flag():
    env = environment(torch.device("cpu"))
    assert "git_dirty" in env and "git_commit" in env
