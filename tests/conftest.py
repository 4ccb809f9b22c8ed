"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are skipped on machines without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real benchmark graph files (read-only; never copied into the repo).

    Defaults to ``<repo>/../shared/data``; the environment variable ``STGNN_SHARED_DATA``
    overrides it.  Tests that use this fixture are skipped when the folder is absent.
    """
    override = os.environ.get("STGNN_SHARED_DATA")
    repo = Path(__file__).resolve().parents[1]
    root = Path(override) if override else repo.parent / "shared" / "data"
    if not root.is_dir():
        pytest.skip(f"real benchmark files not found at {root} "
                    "(set STGNN_SHARED_DATA to their folder)")
    return root


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for modules of tiny tensors: faster, and immune to spinning OpenMP
    workers on a shared 2-core machine (two threads made those tests ~10x slower there)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
