"""Data: canonical benchmark readers, sensor graphs, windows, splits and scaling."""

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
