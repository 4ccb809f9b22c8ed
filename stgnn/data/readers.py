"""Readers for the canonical benchmark files, exactly as published.

Every reader takes the dataset folder and returns a :class:`TrafficDataset`.
``READERS`` maps each registry name to its reader; :func:`load_dataset` is the
public entry point.  File formats (see ``datasets/README.md``):

* METR-LA / PEMS-BAY: pandas HDFStore (key ``df`` / ``speed``), graph from the
  DCRNN ``adj_mx.pkl`` (Python 2 pickle, loaded through a restricted unpickler).
* PEMS03/04/07/08: ``np.load`` archive with key ``data`` ``[T, N, F]``; graph from
  the ``from,to,cost`` edge list (0-based indices; PEMS03 maps raw ids through
  ``PEMS03.txt``).
* PeMSD7(M): headerless ``V_228.csv`` (speeds) and ``W_228.csv`` (distances).
* Los-loop / SZ-taxi (T-GCN release): ``los_speed.csv`` / ``sz_speed.csv`` (header = sensor
  ids) and ``los_adj.csv`` / ``sz_adj.csv`` (dense, no header).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from stgnn.data.custom import read_table
from stgnn.data.dataset import TrafficDataset, derive_timestamps
from stgnn.data.download import ensure_dataset
from stgnn.data.graph import SensorGraph
from stgnn.data.graph_io import read_dense_csv
from stgnn.data.registry import DatasetInfo, get_info

__all__ = ["READERS", "load_dataset", "read_hdf_frame"]


def read_hdf_frame(path: Path, key: str) -> pd.DataFrame:
    """Read the DataFrame stored under ``key`` in a pandas HDFStore, with clear errors."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = [k.lstrip("/") for k in store.keys()]
            if key not in keys:
                raise ValueError(f"{path}: no key {key!r} in this HDF5 file (keys: {keys})")
            frame = store[key]
    except ValueError:
        raise
    except Exception as exc:  # PyTables raises a zoo of types for a damaged file
        raise ValueError(f"{path}: not a readable pandas HDF5 store ({type(exc).__name__}: {exc})") from exc
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{path}: key {key!r} holds a {type(frame).__name__}, expected a DataFrame")
    return frame


def _finish(
    info: DatasetInfo,
    values: np.ndarray,
    graph: SensorGraph,
    timestamps: pd.DatetimeIndex | None,
    file: Path,
) -> TrafficDataset:
    derived = timestamps is None
    if timestamps is None:
        if info.start is None:
            raise ValueError(f"{info.name}: no timestamps in the files and no documented start date")
        timestamps = derive_timestamps(
            info.start, values.shape[0], info.interval_minutes, weekdays_only=info.weekdays_only
        )
    return TrafficDataset.from_arrays(
        info.name,
        values,
        graph,
        timestamps,
        interval_minutes=info.interval_minutes,
        units=info.units,
        feature_names=info.feature_names[: values.shape[2]],
        source=info.source,
        split=info.split,
        missing_zero=info.missing_zero,
        timestamps_derived=derived,
        notes=info.notes,
        file=str(file),
    )


def _read_dcrnn(folder: Path, info: DatasetInfo, h5_name: str, key: str, pkl: str) -> TrafficDataset:
    frame = read_hdf_frame(folder / h5_name, key)
    graph = SensorGraph.from_adj_pickle(folder / pkl)
    sensor_ids = [str(c) for c in frame.columns]
    graph.check_nodes(sensor_ids, source=str(folder / h5_name))
    if sensor_ids != graph.node_ids:
        graph = graph.reorder(sensor_ids)
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError(f"{folder / h5_name}: index is {type(frame.index).__name__}, expected timestamps")
    return _finish(info, frame.to_numpy(dtype=np.float64)[:, :, None], graph, frame.index, folder / h5_name)


def _read_metr_la(folder: Path, info: DatasetInfo) -> TrafficDataset:
    return _read_dcrnn(folder, info, "metr-la.h5", "df", "adj_mx.pkl")


def _read_pems_bay(folder: Path, info: DatasetInfo) -> TrafficDataset:
    return _read_dcrnn(folder, info, "pems-bay.h5", "speed", "adj_mx_bay.pkl")


def _read_npz(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "data" not in archive.files:
                raise ValueError(f"{path}: no array 'data' in this archive (arrays: {archive.files})")
            data = archive["data"]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from exc
    if data.ndim != 3:
        raise ValueError(f"{path}: 'data' has shape {data.shape}, expected [T, N, F]")
    return data


def _pems_reader(number: str) -> Callable[[Path, DatasetInfo], TrafficDataset]:
    def read(folder: Path, info: DatasetInfo) -> TrafficDataset:
        data = _read_npz(folder / f"PEMS{number}.npz")
        edges = folder / f"PEMS{number}.csv"
        if number == "03":
            ids_path = folder / "PEMS03.txt"
            if not ids_path.is_file():
                raise FileNotFoundError(f"{ids_path}: file not found")
            node_ids = ids_path.read_text().split()
            if len(node_ids) != data.shape[1]:
                raise ValueError(
                    f"{ids_path}: lists {len(node_ids)} sensors but {folder / 'PEMS03.npz'} has {data.shape[1]}"
                )
            graph = SensorGraph.from_edge_list(edges, node_ids, weight="binary", symmetric=True)
        else:
            graph = SensorGraph.from_edge_list(
                edges, None, num_nodes=data.shape[1], weight="binary", symmetric=True
            )
        return _finish(info, data, graph, None, folder / f"PEMS{number}.npz")

    return read


def _read_pemsd7m(folder: Path, info: DatasetInfo) -> TrafficDataset:
    speeds = read_dense_csv(folder / "PeMSD7_V_228.csv")
    distances = read_dense_csv(folder / "PeMSD7_W_228.csv")
    if speeds.shape[1] != distances.shape[0]:
        raise ValueError(
            f"{folder}: PeMSD7_V_228.csv has {speeds.shape[1]} stations, PeMSD7_W_228.csv {distances.shape[0]}"
        )
    node_ids: list[str] | None = None
    stations = folder / "PeMSD7_M_Station_Info.csv"
    if stations.is_file():
        node_ids = [str(i) for i in pd.read_csv(stations)["ID"]]
    graph = SensorGraph.from_distance_matrix(distances, node_ids, kernel="stgcn")
    return _finish(info, speeds[:, :, None], graph, None, folder / "PeMSD7_V_228.csv")


def _tgcn_reader(speed_file: str, adj_file: str) -> Callable[[Path, DatasetInfo], TrafficDataset]:
    """The T-GCN release's layout (Los-loop, SZ-taxi): a speed table whose header holds the sensor
    ids, no timestamp column, and a headerless dense adjacency in the same sensor order."""

    def read(folder: Path, info: DatasetInfo) -> TrafficDataset:
        path = folder / speed_file
        frame = read_table(path)  # header = sensor ids: repeated ones are named, not renamed
        try:
            values = frame.to_numpy(dtype=np.float64)
        except ValueError as exc:
            raise ValueError(f"{path}: readings must be numeric ({exc})") from exc
        graph = SensorGraph.from_dense(read_dense_csv(folder / adj_file), list(frame.columns.astype(str)),
                                       source=str(folder / adj_file))
        return _finish(info, values[:, :, None], graph, None, path)

    return read


READERS: dict[str, Callable[[Path, DatasetInfo], TrafficDataset]] = {
    "metr-la": _read_metr_la,
    "pems-bay": _read_pems_bay,
    "pems03": _pems_reader("03"),
    "pems04": _pems_reader("04"),
    "pems07": _pems_reader("07"),
    "pems08": _pems_reader("08"),
    "pemsd7m": _read_pemsd7m,
    "los-loop": _tgcn_reader("los_speed.csv", "los_adj.csv"),
    "sz-taxi": _tgcn_reader("sz_speed.csv", "sz_adj.csv"),
}


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
) -> TrafficDataset:
    """Load a benchmark dataset from its canonical files.

    Args:
        name: One of ``metr-la, pems-bay, pems03, pems04, pems07, pems08, pemsd7m, los-loop, sz-taxi``.
        root: Data root holding one folder per dataset.  Default: ``$STGNN_DATA``, else
            ``./datasets`` (resolved at call time).
        download: When required files are missing and all of them have a direct download
            address, fetch them first (pooch: progress bar, sha256 check, bounded time; see
            :func:`stgnn.data.download.ensure_dataset`). Default ``False``: a missing file is
            an error that lists it with its folder and source.
        verify: Check sha256 digests where they are known (files up to 256 MiB are re-hashed
            on every load; larger ones may use the verification cache, with a warning).

    Returns:
        The dataset, with ``.series [T, N, F]``, ``.mask [T, N]``, ``.timestamps`` and ``.graph``.

    Raises:
        KeyError: unknown dataset name.
        MissingFilesError: required files are absent (the message lists each one and its folder).
        ChecksumError: a file's digest differs from the published one.
        ValueError: a file is malformed (the message names the file and the problem).

    Example:
        >>> ds = load_dataset("los-loop")  # root argument, else $STGNN_DATA, else ./datasets; doctest: +SKIP
        >>> ds.series.shape
        torch.Size([2016, 207, 1])
    """
    info = get_info(name)
    folder = ensure_dataset(info.name, root, download=download, verify=verify)
    return READERS[info.name](folder, info)
