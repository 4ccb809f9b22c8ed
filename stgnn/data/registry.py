"""The benchmark datasets this package knows, with their canonical files.

One explicit table (``DATASETS``) holds, for every dataset, the files as
published (name, size, sha256 where known, and a direct download address where
one exists), the shape of its series, the sampling interval, the default split
and where it comes from.  Readers (:mod:`stgnn.data.readers`), the downloader
(:mod:`stgnn.data.download`) and the CLI all read this table; nothing else
hard-codes a file name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DATASETS", "DatasetInfo", "FileInfo", "dataset_present", "get_info", "resolve_root"]

_RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class FileInfo:
    """One canonical file of a dataset.

    Attributes:
        name: File name inside the dataset folder, exactly as published.
        sha256: Expected sha256 hex digest, or ``None`` where no trusted digest is known.
        url: Direct download address, or ``None`` where the publishers offer none
            (e.g. a cloud-drive folder); then the user places the file by hand.
        size: Expected size in bytes, where known.
        required: Whether :func:`stgnn.data.load_dataset` needs the file.
        note: Where to get the file when there is no direct link.
    """

    name: str
    sha256: str | None = None
    url: str | None = None
    size: int | None = None
    required: bool = True
    note: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about one benchmark dataset.

    Attributes:
        name: Registry name (``metr-la``, ``pems-bay``, ...), also the folder name.
        title: Human readable title.
        files: The canonical files.
        shape: ``(T, N, F)`` of the full series as published.
        interval_minutes: Sampling interval.
        units: Units of the readings.
        feature_names: Names of the ``F`` features.
        split: Default chronological (train, val, test) fractions.
        source: Original release.
        licence: Licence / terms of the data.
        start: First timestamp (ISO) where documented; used to derive timestamps for
            files that carry none.
        weekdays_only: The series skips weekends (PeMSD7(M)).
        missing_zero: A reading of exactly 0 means "missing".
    """

    name: str
    title: str
    files: tuple[FileInfo, ...]
    shape: tuple[int, int, int]
    interval_minutes: int
    units: str
    feature_names: tuple[str, ...]
    split: tuple[float, float, float]
    source: str
    licence: str
    start: str | None = None
    weekdays_only: bool = False
    missing_zero: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)

    def file(self, name: str) -> FileInfo:
        """Return the :class:`FileInfo` called ``name``."""
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"dataset {self.name!r} has no file {name!r}")


_DCRNN = f"{_RAW}/liyaguang/DCRNN/master/data/sensor_graph"
_ASTGNN = f"{_RAW}/guoshnBJTU/ASTGNN/main/data"
_DCRNN_DRIVE = (
    "not directly downloadable: get it from the DCRNN release (Google Drive / Baidu links in "
    "the README of github.com/liyaguang/DCRNN)"
)

DATASETS: dict[str, DatasetInfo] = {
    "metr-la": DatasetInfo(
        name="metr-la",
        title="METR-LA (Los Angeles loop detectors)",
        files=(
            FileInfo("metr-la.h5", "64784b76d6fb8ec9bff4b6decafb354da2bb37840468fdccee5044e511277c05",
                     None, 57038056, note=_DCRNN_DRIVE),
            FileInfo("adj_mx.pkl", "a35687c6e15aa228dc45027b0ed2a0ea0f4ec78f573deb992c595092d12f61b3",
                     f"{_DCRNN}/adj_mx.pkl", 680459),
            FileInfo("graph_sensor_ids.txt",
                     "3ba026caa2e6263ab0ea54b0fa1b125dbfa7216544cd05313b555e826292b990",
                     f"{_DCRNN}/graph_sensor_ids.txt", 1448, required=False),
            FileInfo("graph_sensor_locations.csv",
                     "eb8ea96e07358b45d0e4ba3b89c2673fa20c54af50150249e627389e749ade6f",
                     f"{_DCRNN}/graph_sensor_locations.csv", 6341, required=False),
        ),
        shape=(34272, 207, 1),
        interval_minutes=5,
        units="mph",
        feature_names=("speed",),
        split=(0.7, 0.1, 0.2),
        source="DCRNN (Li et al., ICLR 2018), github.com/liyaguang/DCRNN",
        licence="MIT (DCRNN repository); data from the METR-LA project",
        start="2012-03-01T00:00:00",
    ),
    "pems-bay": DatasetInfo(
        name="pems-bay",
        title="PEMS-BAY (San Francisco Bay Area, Caltrans PeMS)",
        files=(
            FileInfo("pems-bay.h5", "65d69fb0a2323dba9867179eb7af47c8b814186bc459ff0a4937d21614153c8f",
                     None, 135930936, note=_DCRNN_DRIVE),
            FileInfo("adj_mx_bay.pkl",
                     "116275f5704d0d492018e14c047f7ae5004385b450aa907f88424055a4a97370",
                     f"{_DCRNN}/adj_mx_bay.pkl", 1681480),
            FileInfo("distances_bay_2017.csv",
                     "e5feed06bfa1ba4c554a946d0e03d99f2018365eec5a8f28fd8504dea9d082b5",
                     f"{_DCRNN}/distances_bay_2017.csv", 175771, required=False),
            FileInfo("graph_sensor_locations_bay.csv",
                     "276ee01059610774d4e59572507f7e32eaac21f1f5882fcd9e3d7d426a4b7a6c",
                     f"{_DCRNN}/graph_sensor_locations_bay.csv", 9750, required=False),
        ),
        shape=(52116, 325, 1),
        interval_minutes=5,
        units="mph",
        feature_names=("speed",),
        split=(0.7, 0.1, 0.2),
        source="DCRNN (Li et al., ICLR 2018), github.com/liyaguang/DCRNN; data from Caltrans PeMS",
        licence="MIT (DCRNN repository); Caltrans PeMS data is public",
        start="2017-01-01T00:00:00",
    ),
    "pems03": DatasetInfo(
        name="pems03",
        title="PEMS03 (Caltrans District 3, flow)",
        files=(
            FileInfo("PEMS03.npz", None, f"{_ASTGNN}/PEMS03/PEMS03.npz"),
            FileInfo("PEMS03.csv", "b978bc1fee8172ac0bb02e6478f0376b68d172ee88c0c3121c60241e42c89fc6",
                     f"{_ASTGNN}/PEMS03/PEMS03.csv", 11994),
            FileInfo("PEMS03.txt", "553bd79618c1e7eb195b467b5a3114d44c5adb43f7ab8b19789fd9dfaa43c439",
                     f"{_ASTGNN}/PEMS03/PEMS03.txt", 2862),
        ),
        shape=(26208, 358, 1),
        interval_minutes=5,
        units="vehicles / 5 min",
        feature_names=("flow",),
        split=(0.6, 0.2, 0.2),
        source="STSGCN (Song et al., AAAI 2020) / ASTGNN release, github.com/guoshnBJTU/ASTGNN",
        licence="as published by the ASTGNN authors; Caltrans PeMS data is public",
        start="2018-09-01T00:00:00",
    ),
    "pems04": DatasetInfo(
        name="pems04",
        title="PEMS04 (Caltrans District 4, flow / occupancy / speed)",
        files=(
            FileInfo("PEMS04.npz", None, f"{_ASTGNN}/PEMS04/PEMS04.npz"),
            FileInfo("PEMS04.csv", "68ffaa80447eb34428a9999dc28363c61406ec0fd714686d0582d2386ac6f5f7",
                     f"{_ASTGNN}/PEMS04/PEMS04.csv", 4852),
        ),
        shape=(16992, 307, 3),
        interval_minutes=5,
        units="flow (veh/5 min), occupancy, speed (mph)",
        feature_names=("flow", "occupancy", "speed"),
        split=(0.6, 0.2, 0.2),
        source="ASTGCN (Guo et al., AAAI 2019), github.com/guoshnBJTU/ASTGNN",
        licence="as published by the ASTGCN authors; Caltrans PeMS data is public",
        start="2018-01-01T00:00:00",
    ),
    "pems07": DatasetInfo(
        name="pems07",
        title="PEMS07 (Caltrans District 7, flow)",
        files=(
            FileInfo("PEMS07.npz", None, f"{_ASTGNN}/PEMS07/PEMS07.npz"),
            FileInfo("PEMS07.csv", "f7d127ebf976f1e2d93dc7d7275cef6d8c4c1828c7c8bfbaf3ee1254491314f1",
                     f"{_ASTGNN}/PEMS07/PEMS07.csv", 15016),
        ),
        shape=(28224, 883, 1),
        interval_minutes=5,
        units="vehicles / 5 min",
        feature_names=("flow",),
        split=(0.6, 0.2, 0.2),
        source="STSGCN (Song et al., AAAI 2020) / ASTGNN release, github.com/guoshnBJTU/ASTGNN",
        licence="as published by the ASTGNN authors; Caltrans PeMS data is public",
        start="2017-05-01T00:00:00",
    ),
    "pems08": DatasetInfo(
        name="pems08",
        title="PEMS08 (Caltrans District 8, flow / occupancy / speed)",
        files=(
            FileInfo("PEMS08.npz", None, f"{_ASTGNN}/PEMS08/PEMS08.npz"),
            FileInfo("PEMS08.csv", "859d68e7583ed4e6016588eaaca494d3ece286dae361614c5c1833017f87eaa7",
                     f"{_ASTGNN}/PEMS08/PEMS08.csv", 4032),
        ),
        shape=(17856, 170, 3),
        interval_minutes=5,
        units="flow (veh/5 min), occupancy, speed (mph)",
        feature_names=("flow", "occupancy", "speed"),
        split=(0.6, 0.2, 0.2),
        source="ASTGCN (Guo et al., AAAI 2019), github.com/guoshnBJTU/ASTGNN",
        licence="as published by the ASTGCN authors; Caltrans PeMS data is public",
        start="2016-07-01T00:00:00",
    ),
    "pemsd7m": DatasetInfo(
        name="pemsd7m",
        title="PeMSD7(M) (Caltrans District 7, 228 stations, weekdays)",
        files=(
            FileInfo("PeMSD7_V_228.csv",
                     "9731c9874a05b5ca88f482062760efb0cbf38816721969a072907fe381d6adb7",
                     f"{_RAW}/hazdzz/STGCN/main/data/pemsd7-m/vel.csv", 72230400),
            FileInfo("PeMSD7_W_228.csv",
                     "c558c602b7937fb3ecb3835938fe8f61a34efa4c51e0ae3f61ed93ecc680060e",
                     None, 1299600,
                     note="inside dataset/PeMSD7_Full.zip of github.com/VeritasYin/STGCN_IJCAI-18"),
            FileInfo("PeMSD7_M_Station_Info.csv",
                     "5a9744215880f2ec1a5b3efdbd6ee662eb1533b9b3d68924d85f5e45c28a02fe",
                     f"{_RAW}/VeritasYin/STGCN_IJCAI-18/master/dataset/PeMSD7_M_Station_Info.csv",
                     9118, required=False),
        ),
        shape=(12672, 228, 1),
        interval_minutes=5,
        units="mph",
        feature_names=("speed",),
        split=(0.7, 0.1, 0.2),
        source="STGCN (Yu, Yin & Zhu, IJCAI 2018), github.com/VeritasYin/STGCN_IJCAI-18",
        licence="as published by the STGCN authors; Caltrans PeMS data is public",
        start="2012-05-01T00:00:00",
        weekdays_only=True,
        notes=("44 weekdays of May-June 2012; the file has no timestamps, they are derived.",),
    ),
    "los-loop": DatasetInfo(
        name="los-loop",
        title="Los-loop (first week of METR-LA, imputed; T-GCN release)",
        files=(
            FileInfo("los_speed.csv", "7b732d86ae32b2930595becba28aff39dacbfb2197e250fc0332e1744ce2cbf4",
                     f"{_RAW}/lehaifeng/T-GCN/master/data/los_speed.csv", 3402125),
            FileInfo("los_adj.csv", "7a6eb41e10677992b5af50f5ab187c6c05c5c3a92cb973950cfddbf857361e76",
                     f"{_RAW}/lehaifeng/T-GCN/master/data/los_adj.csv", 111686),
        ),
        shape=(2016, 207, 1),
        interval_minutes=5,
        units="mph",
        feature_names=("speed",),
        split=(0.7, 0.1, 0.2),
        source="T-GCN (Zhao et al., IEEE T-ITS 2019), github.com/lehaifeng/T-GCN",
        licence="MIT (T-GCN repository); data from the METR-LA project",
        start="2012-03-01T00:00:00",
        missing_zero=False,
        notes=("Missing readings were imputed by the T-GCN authors; zeros are not masked.",),
    ),
    "sz-taxi": DatasetInfo(
        name="sz-taxi",
        title="SZ-taxi (Shenzhen Luohu district taxi speeds, 156 roads; T-GCN release)",
        files=(
            # sz_speed.csv: git blob 9f6331326e34f1e323b84fb91b781250c77a232c in lehaifeng/T-GCN
            # (no sha256 known: no copy was available to hash)
            FileInfo("sz_speed.csv", None, f"{_RAW}/lehaifeng/T-GCN/master/data/sz_speed.csv"),
            FileInfo("sz_adj.csv", "4e40e865b29d73df8404f6cc4c1a0c5ba55aa575aef97a4e9ce4fcd30aad16d6",
                     f"{_RAW}/lehaifeng/T-GCN/master/data/sz_adj.csv", 48672),
        ),
        shape=(2976, 156, 1),
        interval_minutes=15,
        units="km/h",
        feature_names=("speed",),
        split=(0.7, 0.1, 0.2),
        source="T-GCN (Zhao et al., IEEE T-ITS 2020), github.com/lehaifeng/T-GCN",
        licence="MIT (T-GCN repository); taxi trajectories of Shenzhen, January 2015",
        start="2015-01-01T00:00:00",
        missing_zero=False,
        notes=("Read as published: zeros (no taxi on the road in that interval) are kept as readings, "
               "as the T-GCN protocol scores them.",),
    ),
}


def get_info(name: str) -> DatasetInfo:
    """Return the registry entry for ``name`` or raise a ``KeyError`` listing the known names."""
    key = name.lower()
    if key not in DATASETS:
        known = ", ".join(DATASETS)
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}")
    return DATASETS[key]


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data root: ``root`` > ``$STGNN_DATA`` > ``./datasets`` (at call time)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("STGNN_DATA")
    if env:
        return Path(env).expanduser()
    return Path("datasets")


def dataset_present(name: str, root: str | os.PathLike[str] | None = None) -> bool:
    """Whether every required file of ``name`` is in its folder under the data root (no hashing)."""
    info = get_info(name)
    folder = resolve_root(root) / info.name
    return all((folder / f.name).is_file() for f in info.files if f.required)
