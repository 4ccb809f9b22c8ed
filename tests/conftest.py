"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
