"""Atomic checkpoints, safe loading, and the run's environment record."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write_text", "environment", "git_state", "load_checkpoint", "save_checkpoint", "write_json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``state`` with :func:`torch.save` to a temp file, fsync, then rename over ``path``.

    A reader (or a run killed mid-write) never sees a partial checkpoint.
    """
    _atomic(Path(path), lambda fh: torch.save(state, fh))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text atomically (temp file + rename)."""
    _atomic(Path(path), lambda fh: fh.write(text.encode()))


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a stgnn checkpoint or holds arbitrary objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a loadable stgnn checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"{path}: not a stgnn checkpoint (missing 'config' / 'model')")
    return state


def git_state(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The commit checked out at ``path`` (default: this package's folder) and whether the tree is dirty.

    Returns:
        ``{"git_commit": sha or None, "git_dirty": bool or None}``; ``None`` where ``path`` is
        not inside a git work tree or git is not installed (e.g. a wheel install).  Dirty means
        ``git status --porcelain`` lists anything: modified, staged or untracked (not ignored)
        files, so the commit alone does not describe the code that ran.
    """
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = git("status", "--porcelain")
    return {"git_commit": commit.strip() or None, "git_dirty": None if status is None else bool(status.strip())}


def environment(device: torch.device) -> dict[str, Any]:
    """Package versions, device, threads, git commit and dirty flag, for ``environment.json``."""
    versions: dict[str, str | None] = {}
    for pkg in ("stgnn", "torch", "torch-geometric", "numpy", "scipy", "pandas", "networkx", "tables"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        **git_state(),
        "malloc_env": {k: os.environ[k] for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ},
    }
    if device.type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(device)
    return info


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Atomic pretty JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
