"""The data fingerprint a checkpoint records, and the checks that use it.

A checkpoint remembers which data it was trained on: the sensor ids in node order, the
sampling interval, the series length and first/last timestamps, the window counts of each
split and the sha256 of every input file.  With it, evaluation and prediction

* map the sensors of today's files to the model's nodes **by id** (a readings file whose
  columns were reordered gives every sensor its own forecast),
* refuse data whose sensors differ from the trained ones, naming the missing and the extra
  ids, or whose sampling interval differs, and
* say when the files changed since training (a longer series, other digests), because the
  splits and hence the metrics then cover other windows.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from stgnn.data.dataset import TrafficDataset
from stgnn.data.integrity import dataset_folder, sha256_file
from stgnn.data.ondisk import converted_files
from stgnn.data.preview import preview
from stgnn.data.registry import DATASETS, get_info
from stgnn.data.windows import WindowData
from stgnn.training.config import COVARIATE_KEYS, CUSTOM_GRAPH_KEYS

__all__ = [
    "align_sensors",
    "data_files",
    "data_fingerprint",
    "file_digests",
    "fingerprint_changes",
]

_CUSTOM_FILES = ("series", *CUSTOM_GRAPH_KEYS, *COVARIATE_KEYS)
def data_files(
    dataset: str, custom: Mapping[str, Any], root: str | os.PathLike[str] | None = None
) -> list[Path]:
    """The input files a run reads: the ``custom`` files, or the registry dataset's files present under
    ``root`` / a converted folder's header and small files (the header holds the series' sha256), with
    the ``custom`` covariate files, if any."""
    if dataset == "custom":
        return [Path(custom[k]) for k in _CUSTOM_FILES if custom.get(k)]
    covariates = [Path(custom[k]) for k in COVARIATE_KEYS if custom.get(k)]
    if dataset not in DATASETS:
        return converted_files(dataset) + covariates
    info = get_info(dataset)
    folder = dataset_folder(info, root)
    return [folder / f.name for f in info.files if (folder / f.name).is_file()] + covariates


def file_digests(paths: Sequence[Path]) -> dict[str, str]:
    """``{file name: sha256 hex}`` of existing files (keyed by name: a moved folder still matches)."""
    out: dict[str, str] = {}
    for path in paths:
        if path.is_file():
            out[path.name] = sha256_file(path)
    return out


def data_fingerprint(dataset: TrafficDataset, data: WindowData, files: Sequence[Path]) -> dict[str, Any]:
    """What a checkpoint records about its training data (JSON-friendly).

    Args:
        dataset: The dataset as trained on.
        data: Its windows (for the per-split counts).
        files: The input files (see :func:`data_files`).
    """
    return {
        "name": dataset.name,
        "sensor_ids": list(dataset.node_ids),
        "interval_minutes": int(dataset.interval_minutes),
        "num_steps": dataset.num_steps,
        "first_timestamp": str(dataset.timestamps[0]),
        "last_timestamp": str(dataset.timestamps[-1]),
        "windows": {k: data.num_windows(k) for k in ("train", "val", "test")},
        "files": file_digests(files),
    }


def align_sensors(dataset: TrafficDataset, sensor_ids: Sequence[str], source: str) -> TrafficDataset:
    """``dataset`` with its sensors in the order ``sensor_ids`` (the order a model was trained in).

    Args:
        dataset: Data loaded today.
        sensor_ids: The trained node order (from the checkpoint's fingerprint).
        source: What ``sensor_ids`` come from (the checkpoint path), for messages.

    Raises:
        ValueError: The sensor sets differ: the message names the trained sensors missing
            from the data and the data's sensors the model was not trained on.
    """
    have = list(dataset.node_ids)
    wanted = [str(s) for s in sensor_ids]
    missing = [s for s in wanted if s not in set(have)]
    extra = [s for s in have if s not in set(wanted)]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{len(missing)} trained sensors are missing from the data: {preview(missing)}")
        if extra:
            problems.append(f"{len(extra)} sensors were not in the training data: {preview(extra)}")
        raise ValueError(
            f"{dataset.source}: sensors differ from those {source} was trained on ("
            + "; ".join(problems) + "); the model has one node per trained sensor, so give it "
            "readings for exactly those sensors, or train a new model on this data"
        )
    if have == wanted:
        return dataset
    position = {s: i for i, s in enumerate(have)}
    order = torch.tensor([position[s] for s in wanted], dtype=torch.long)
    return dataclasses.replace(
        dataset,
        series=dataset.series[:, order].contiguous(),
        mask=dataset.mask[:, order].contiguous(),
        graph=dataset.graph.reorder(wanted),
        user_covariates=None if dataset.user_covariates is None else dataset.user_covariates.reorder(order),
    )


def fingerprint_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints other than the sensor order.

    Sensor sets are compared by :func:`align_sensors`; here: interval, length, time range,
    window counts and file digests.  Empty when the data is the one trained on.
    """
    changes: list[str] = []
    for key, what in (("interval_minutes", "sampling interval (minutes)"), ("num_steps", "series length"),
                      ("first_timestamp", "first timestamp"), ("last_timestamp", "last timestamp")):
        if saved.get(key) != current.get(key):
            changes.append(f"{what} {saved.get(key)} -> {current.get(key)}")
    if saved.get("windows") != current.get("windows"):
        changes.append(f"windows per split {saved.get('windows')} -> {current.get('windows')}")
    old, new = saved.get("files", {}), current.get("files", {})
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            before = old.get(name, "absent")[:12]
            after = new.get(name, "absent")[:12]
            changes.append(f"{name} sha256 {before}... -> {after}...")
    return changes
