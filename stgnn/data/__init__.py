"""Data: canonical benchmark readers, sensor graphs, windows, splits and scaling."""

from stgnn.data.batch import Batch
from stgnn.data.custom import load_custom
from stgnn.data.dataset import TrafficDataset
from stgnn.data.download import ChecksumError, MissingFilesError, download_dataset, verify_dataset
from stgnn.data.graph import SensorGraph
from stgnn.data.readers import load_dataset
from stgnn.data.registry import DATASETS, get_info
from stgnn.data.windows import StandardScaler, WindowData, split_windows

__all__ = [
    "Batch",
    "DATASETS",
    "ChecksumError",
    "MissingFilesError",
    "SensorGraph",
    "StandardScaler",
    "TrafficDataset",
    "WindowData",
    "download_dataset",
    "get_info",
    "load_custom",
    "load_dataset",
    "split_windows",
    "verify_dataset",
]
