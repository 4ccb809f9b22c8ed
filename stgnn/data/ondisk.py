"""A memory-mapped on-disk series: data larger than memory, read window by window.

A converted dataset is a folder (written by ``stgnn datasets convert`` or :class:`SeriesWriter`):

``stgnn-series.json``
    The header: format version, ``shape [T, N, F]``, ``dtype`` (``float32``, little endian,
    C order), sensor ids in node order, feature names, units, sampling interval, first
    timestamp, default split, source, and the sha256 of every other file (computed while
    they were written).  It is written last: a folder without it is an unfinished conversion.
``series.f32``
    The readings ``[T, N, F]`` float32, raw bytes (missing readings hold 0).
``mask.u8``
    ``[T, N]`` one byte per reading, 1 where observed (numpy ``bool``).
``timestamps.i8``
    ``[T]`` int64 nanoseconds since the epoch: the source's wall-clock times when they carry no
    time zone, else UTC (the zone is in the header).
``graph.npz``
    ``edge_index [2, E]`` int64, ``edge_weight [E]`` float32 and, when known,
    ``coordinates [N, 2]`` float64 (an uncompressed ``np.savez`` archive, read without pickle).

Why raw files and not zarr: the series is one dense array read along its first axis only; a
window is ``T_in + H`` consecutive rows of ``N x F`` values, contiguous in a C-order file, so
``numpy`` views of an ``mmap`` give windows with no copy and no extra dependency.  zarr's
chunking and compression pay off for partial reads along other axes and for object stores,
neither of which training needs.

:func:`open_converted` maps the files and returns an ordinary
:class:`~stgnn.data.dataset.TrafficDataset` whose ``series`` and ``mask`` tensors are views of
the mapped files (nothing is read until used).  Pages touched through a mapping count towards
the process's resident memory until dropped; the dataset's ``release_pages`` drops them (they
stay in the operating system's page cache), and :class:`~stgnn.data.windows.WindowData` calls it
after every batch and every chunk of the scaler statistics, so the resident memory of training
does not grow with the series length.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stgnn.data.dataset import TrafficDataset
from stgnn.data.graph import SensorGraph
from stgnn.data.integrity import sha256_file

__all__ = [
    "FORMAT",
    "HEADER",
    "SeriesWriter",
    "chunk_steps",
    "converted_files",
    "is_converted",
    "open_converted",
    "write_converted",
]

HEADER = "stgnn-series.json"
FORMAT = 1
_FILES = {"series": "series.f32", "mask": "mask.u8", "timestamps": "timestamps.i8", "graph": "graph.npz"}
_CHUNK_VALUES = 1 << 24  # about 64 MiB of float32 per chunk


def chunk_steps(num_nodes: int, num_features: int = 1, values: int = _CHUNK_VALUES) -> int:
    """Time steps per chunk so that a chunk holds about ``values`` readings (at least one step)."""
    return max(1, values // max(1, num_nodes * num_features))


def is_converted(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding a finished conversion (its header)."""
    return (Path(path) / HEADER).is_file()


def converted_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of a converted folder that identify its data: the header (which records the sha256
    of the series, mask, timestamps and graph as written) and the small files.

    The series file itself is left out: its digest is in the header, and re-hashing gigabytes at
    every run would cost more than the check is worth; ``open_converted(..., verify=True)`` re-hashes.
    """
    folder = Path(path)
    return [folder / HEADER, folder / _FILES["mask"], folder / _FILES["timestamps"], folder / _FILES["graph"]]


class _HashingFile:
    """A file opened for writing that hashes what goes through it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "xb")  # noqa: SIM115 -- closed in close()
        self.digest = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes | memoryview) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.bytes += len(data)

    def close(self) -> str:
        self.handle.close()
        return self.digest.hexdigest()


class SeriesWriter:
    """Write a converted folder chunk by chunk, in time order (never the whole series at once).

    Args:
        folder: Output folder; created, and it must not hold files already (nothing is overwritten).
        graph: The sensor graph; its node order is the series' node order.
        timestamps: The ``T`` timestamps.
        interval_minutes: Sampling interval.
        feature_names: Names of the ``F`` features.
        name: Dataset name recorded in the header (default: the folder name).
        units: Units of the readings.
        source: Where the data comes from.
        split: Default chronological (train, val, test) fractions.
        timestamps_derived: The source carries no timestamps (derived from a documented start).
        notes: Free-form notes kept with the data.

    Raises:
        FileExistsError: ``folder`` holds files.

    Example:
        >>> import tempfile
        >>> g = SensorGraph(["a", "b"], torch.tensor([[0], [1]]))
        >>> out = Path(tempfile.mkdtemp()) / "tiny"
        >>> with SeriesWriter(out, g, pd.date_range("2024-01-01", periods=4, freq="5min"), 5, ("speed",)) as w:
        ...     w.append(np.ones((4, 2, 1), dtype=np.float32))
        >>> open_converted(out).series.shape
        torch.Size([4, 2, 1])
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        graph: SensorGraph,
        timestamps: pd.DatetimeIndex,
        interval_minutes: int,
        feature_names: Sequence[str],
        *,
        name: str | None = None,
        units: str = "",
        source: str = "",
        split: Sequence[float] = (0.7, 0.1, 0.2),
        timestamps_derived: bool = False,
        notes: Sequence[str] = (),
    ) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and (not self.folder.is_dir() or any(self.folder.iterdir())):
            raise FileExistsError(f"{self.folder}: exists and is not an empty folder; give a new --output")
        if not isinstance(timestamps, pd.DatetimeIndex) or len(timestamps) < 1:
            raise ValueError(f"{self.folder}: timestamps must be a non-empty pandas DatetimeIndex")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.graph = graph
        self.timestamps = timestamps
        self.num_steps = len(timestamps)
        self.num_nodes = graph.num_nodes
        self.num_features = len(feature_names)
        self.meta: dict[str, Any] = {
            "name": name or self.folder.name,
            "interval_minutes": int(interval_minutes),
            "feature_names": [str(f) for f in feature_names],
            "units": units,
            "source": source,
            "split": [float(s) for s in split],
            "timestamps_derived": bool(timestamps_derived),
            "notes": [str(n) for n in notes],
        }
        self._series = _HashingFile(self.folder / _FILES["series"])
        self._mask = _HashingFile(self.folder / _FILES["mask"])
        self.written = 0
        self._closed = False

    def __enter__(self) -> SeriesWriter:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if kind is None:
            self.close()
        else:  # leave no header: the folder is an unfinished conversion
            self._series.close()
            self._mask.close()

    def append(self, values: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Append the next steps.

        Args:
            values: ``[t, N, F]`` (or ``[t, N]`` when ``F = 1``) readings; NaN means missing.
            mask: Optional ``[t, N]`` bool, False where a reading is missing (on top of NaN in
                the first feature).  Missing readings are stored as 0.

        Raises:
            ValueError: Wrong shape, more steps than the timestamps hold, or a reading that is
                infinite or beyond float32's range (the step is named).
        """
        arr = np.asarray(values)
        if arr.ndim == 2 and self.num_features == 1:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[1:] != (self.num_nodes, self.num_features):
            raise ValueError(f"{self.folder}: chunk of shape {arr.shape}, expected [t, {self.num_nodes}, "
                             f"{self.num_features}]")
        t = arr.shape[0]
        if self.written + t > self.num_steps:
            raise ValueError(f"{self.folder}: {self.written + t} steps written, but there are {self.num_steps} "
                             "timestamps")
        with np.errstate(over="ignore", invalid="ignore"):
            arr32 = arr.astype(np.float32)
        bad = np.isinf(arr32) & ~np.isnan(arr)
        if bad.any():
            step = self.written + int(np.nonzero(bad)[0][0])
            raise ValueError(f"{self.folder}: {int(bad.sum())} readings in steps {self.written}.."
                             f"{self.written + t - 1} are infinite or beyond float32's range (first at "
                             f"{self.timestamps[step]})")
        observed = ~np.isnan(arr32[:, :, 0])
        if mask is not None:
            m = np.asarray(mask)
            if m.shape != (t, self.num_nodes) or m.dtype != np.bool_:
                raise ValueError(f"{self.folder}: mask of shape {m.shape} and dtype {m.dtype}, expected bool "
                                 f"[{t}, {self.num_nodes}]")
            observed &= m
        arr32 = np.where(np.isnan(arr32), np.float32(0.0), arr32)
        self._series.write(np.ascontiguousarray(arr32, dtype="<f4").tobytes())
        self._mask.write(np.ascontiguousarray(observed).tobytes())
        self.written += t

    def close(self) -> Path:
        """Check that every step was written, write the timestamps, the graph and (last) the header."""
        if self._closed:
            return self.folder
        digests = {_FILES["series"]: self._series.close(), _FILES["mask"]: self._mask.close()}
        if self.written != self.num_steps:
            raise ValueError(f"{self.folder}: {self.written} steps written out of {self.num_steps}; "
                             "the conversion is unfinished (no header written)")
        stamps = self.folder / _FILES["timestamps"]
        naive = self.timestamps.tz_convert(None) if self.timestamps.tz is not None else self.timestamps
        stamps.write_bytes(naive.as_unit("ns").asi8.astype("<i8").tobytes())
        graph_path = self.folder / _FILES["graph"]
        arrays: dict[str, np.ndarray] = {
            "edge_index": self.graph.edge_index.numpy().astype(np.int64),
            "edge_weight": self.graph.edge_weight.numpy().astype(np.float32),
        }
        if self.graph.coordinates is not None:
            arrays["coordinates"] = self.graph.coordinates.numpy()
        with open(graph_path, "xb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        for path in (stamps, graph_path):
            digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        header = {
            "format": "stgnn-series",
            "version": FORMAT,
            "shape": [self.num_steps, self.num_nodes, self.num_features],
            "dtype": "<f4",
            "sensor_ids": list(self.graph.node_ids),
            "first_timestamp": str(self.timestamps[0]),
            "timezone": None if self.timestamps.tz is None else str(self.timestamps.tz),
            **self.meta,
            "files": dict(_FILES),
            "sha256": digests,
        }
        tmp = self.folder / f".{HEADER}.tmp"
        tmp.write_text(json.dumps(header, indent=1))
        os.replace(tmp, self.folder / HEADER)
        self._closed = True
        return self.folder


def write_converted(dataset: TrafficDataset, folder: str | os.PathLike[str], *,
                    steps_per_chunk: int | None = None) -> Path:
    """Write a loaded dataset into a converted folder, ``steps_per_chunk`` steps at a time.

    Args:
        dataset: The dataset (a registry dataset or the user's own data).
        folder: The output folder (new or empty).
        steps_per_chunk: Steps per write (default :func:`chunk_steps`: about 64 MiB).

    Returns:
        The folder.
    """
    step = steps_per_chunk or chunk_steps(dataset.num_nodes, dataset.num_features)
    with SeriesWriter(
        folder, dataset.graph, dataset.timestamps, dataset.interval_minutes, dataset.feature_names,
        name=dataset.name, units=dataset.units, source=dataset.source, split=dataset.split,
        timestamps_derived=dataset.timestamps_derived, notes=dataset.notes,
    ) as writer:
        for start in range(0, dataset.num_steps, step):
            stop = min(start + step, dataset.num_steps)
            writer.append(dataset.series[start:stop].numpy(), dataset.mask[start:stop].numpy())
    return Path(folder)


def _read_header(folder: Path) -> dict[str, Any]:
    path = folder / HEADER
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not path.is_file():
        raise ValueError(f"{folder}: not a converted dataset (no {HEADER}; written last by `stgnn datasets "
                         "convert`, so an interrupted conversion has none)")
    try:
        header = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != "stgnn-series":
        raise ValueError(f"{path}: not a stgnn-series header")
    if header.get("version") != FORMAT:
        raise ValueError(f"{path}: format version {header.get('version')!r}; this stgnn reads version {FORMAT}")
    needed = ("shape", "dtype", "sensor_ids", "interval_minutes", "feature_names", "files", "sha256", "split")
    missing = [k for k in needed if k not in header]
    if missing:
        raise ValueError(f"{path}: missing keys {', '.join(missing)}")
    if header["dtype"] != "<f4":
        raise ValueError(f"{path}: dtype {header['dtype']!r}; only '<f4' (float32) is supported")
    shape = header["shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)):
        raise ValueError(f"{path}: shape {shape!r} is not three positive integers [T, N, F]")
    if len(header["sensor_ids"]) != shape[1] or len(header["feature_names"]) != shape[2]:
        raise ValueError(f"{path}: {len(header['sensor_ids'])} sensor ids and {len(header['feature_names'])} "
                         f"feature names for shape {shape}")
    return header


def _map(path: Path, nbytes: int) -> mmap.mmap:
    """A private (copy-on-write) read mapping of exactly ``nbytes`` bytes of ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    size = path.stat().st_size
    if size != nbytes:
        raise ValueError(f"{path}: {size} bytes, the header's shape needs {nbytes}")
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), nbytes, access=mmap.ACCESS_COPY)


def _releaser(maps: Sequence[mmap.mmap]) -> Callable[[], None]:
    advice = getattr(mmap, "MADV_DONTNEED", None)

    def release() -> None:
        if advice is None:  # not on this platform: the OS reclaims mapped pages under pressure
            return
        for m in maps:
            m.madvise(advice)

    return release


def open_converted(folder: str | os.PathLike[str], *, verify: bool = False) -> TrafficDataset:
    """Open a converted folder as a :class:`TrafficDataset` whose series and mask are memory-mapped.

    Args:
        folder: The folder :func:`write_converted` / ``stgnn datasets convert`` wrote.
        verify: Re-hash every file against the digests in the header (reads the whole series).

    Raises:
        FileNotFoundError: The folder or one of its files is missing.
        ValueError: The header is malformed, a file's size does not match the header's shape,
            or (``verify``) a digest differs; the message names the file.
    """
    path = Path(folder)
    header = _read_header(path)
    t, n, f = header["shape"]
    files = {k: path / v for k, v in header["files"].items()}
    if verify:
        for name, digest in header["sha256"].items():
            actual = sha256_file(path / name)
            if actual != digest:
                raise ValueError(f"{path / name}: sha256 {actual} differs from {digest} in {HEADER}")
    series_map = _map(files["series"], t * n * f * 4)
    mask_map = _map(files["mask"], t * n)
    stamps_path = files["timestamps"]
    if not stamps_path.is_file() or stamps_path.stat().st_size != 8 * t:
        raise ValueError(f"{stamps_path}: missing or not {t} int64 timestamps")
    timestamps = pd.DatetimeIndex(np.fromfile(stamps_path, dtype="<i8").astype("datetime64[ns]"))
    if header.get("timezone"):
        timestamps = timestamps.tz_localize("UTC").tz_convert(header["timezone"])
    try:
        with np.load(files["graph"], allow_pickle=False) as archive:
            coords = archive["coordinates"] if "coordinates" in archive.files else None
            graph = SensorGraph(header["sensor_ids"], archive["edge_index"], archive["edge_weight"],
                                coordinates=coords, source=str(files["graph"]))
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{files['graph']}: not a readable graph archive ({exc})") from exc
    series = torch.from_numpy(np.frombuffer(series_map, dtype="<f4").reshape(t, n, f))
    mask = torch.from_numpy(np.frombuffer(mask_map, dtype=np.bool_).reshape(t, n))
    split = header["split"]
    return TrafficDataset(
        name=str(header.get("name") or path.name),
        series=series,
        mask=mask,
        timestamps=timestamps,
        graph=graph,
        interval_minutes=int(header["interval_minutes"]),
        units=str(header.get("units", "")),
        feature_names=tuple(header["feature_names"]),
        source=str(path),
        split=(float(split[0]), float(split[1]), float(split[2])),
        timestamps_derived=bool(header.get("timestamps_derived", False)),
        notes=tuple(header.get("notes", ())),
        release_pages=_releaser([series_map, mask_map]),
    )
