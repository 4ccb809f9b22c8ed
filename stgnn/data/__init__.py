"""Data: canonical benchmark readers, sensor graphs, windows, splits and scaling.

The names below are imported on first use (PEP 562), so that ``import stgnn.data.batch`` (which
every model needs) does not load pandas, SciPy and NetworkX with the readers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stgnn.data.batch import Batch
    from stgnn.data.custom import load_custom
    from stgnn.data.dataset import TrafficDataset
    from stgnn.data.download import download_dataset, ensure_dataset
    from stgnn.data.graph import SensorGraph
    from stgnn.data.integrity import ChecksumError, MissingFilesError, missing_files, verify_dataset
    from stgnn.data.readers import load_dataset
    from stgnn.data.registry import DATASETS, get_info
    from stgnn.data.transfer import DownloadError
    from stgnn.data.windows import StandardScaler, WindowData, split_windows

_HOME = {
    "Batch": "stgnn.data.batch",
    "load_custom": "stgnn.data.custom",
    "TrafficDataset": "stgnn.data.dataset",
    "download_dataset": "stgnn.data.download",
    "ensure_dataset": "stgnn.data.download",
    "SensorGraph": "stgnn.data.graph",
    "ChecksumError": "stgnn.data.integrity",
    "MissingFilesError": "stgnn.data.integrity",
    "missing_files": "stgnn.data.integrity",
    "verify_dataset": "stgnn.data.integrity",
    "load_dataset": "stgnn.data.readers",
    "DATASETS": "stgnn.data.registry",
    "get_info": "stgnn.data.registry",
    "DownloadError": "stgnn.data.transfer",
    "StandardScaler": "stgnn.data.windows",
    "WindowData": "stgnn.data.windows",
    "split_windows": "stgnn.data.windows",
}

__all__ = [
    "Batch",
    "DATASETS",
    "ChecksumError",
    "DownloadError",
    "MissingFilesError",
    "SensorGraph",
    "StandardScaler",
    "TrafficDataset",
    "WindowData",
    "download_dataset",
    "ensure_dataset",
    "get_info",
    "load_custom",
    "load_dataset",
    "missing_files",
    "split_windows",
    "verify_dataset",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
