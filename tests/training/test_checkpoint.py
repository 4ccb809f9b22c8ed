"""Atomic writes and safe checkpoint loading."""

import os

import pytest
import torch

from stgnn.training.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint


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
