"""Scaled-down stand-ins for the large benchmark files, in their exact published formats.

The real ``metr-la.h5``, ``pems-bay.h5``, ``PEMS0X.npz`` and ``PeMSD7_V_228.csv`` are
not available offline; these writers produce files with the same container, key,
dtype, layout and header conventions (small T and N) so the readers are exercised
on the real formats.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd


def speeds(t: int, n: int, seed: int = 0, missing: float = 0.05) -> np.ndarray:
    """Daily-periodic speeds in mph with a fraction of zeros (missing)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(t)[:, None]
    base = 60 - 15 * np.exp(-(((steps % 288) - 100) ** 2) / 400.0) + rng.normal(0, 1.5, (t, n))
    base[rng.random((t, n)) < missing] = 0.0
    return base


def write_adj_pickle(path: Path, ids: list[str], adj: np.ndarray) -> None:
    """DCRNN's ``[sensor_ids, sensor_id_to_ind, adj_mx]`` as a protocol-0 pickle."""
    with open(path, "wb") as fh:
        pickle.dump([ids, {s: i for i, s in enumerate(ids)}, adj.astype(np.float32)], fh, protocol=0)


def ring_adj(n: int) -> np.ndarray:
    adj = np.eye(n, dtype=np.float32)
    for i in range(n):
        adj[i, (i + 1) % n] = 0.7
        adj[(i + 1) % n, i] = 0.4
    return adj


def write_dcrnn(folder: Path, h5: str, key: str, pkl: str, t: int = 600, n: int = 6,
                start: str = "2012-03-01") -> list[str]:
    """METR-LA (h5 key ``df``) / PEMS-BAY (key ``speed``) stand-in with its adj pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = [str(700000 + i) for i in range(n)]
    index = pd.date_range(start, periods=t, freq="5min")
    pd.DataFrame(speeds(t, n), index=index, columns=ids).to_hdf(folder / h5, key=key, format="fixed")
    write_adj_pickle(folder / pkl, ids, ring_adj(n))
    return ids


def write_pems(folder: Path, number: str, t: int = 600, n: int = 8, f: int = 3) -> None:
    """PEMS0X stand-in: ``PEMS0X.npz`` (key ``data``, float64 [T, N, F]) + edge list."""
    folder.mkdir(parents=True, exist_ok=True)
    data = np.abs(speeds(t, n))[:, :, None].repeat(f, axis=2) * np.arange(1, f + 1)
    np.savez(folder / f"PEMS{number}.npz", data=data.astype(np.float64))
    if number == "03":
        ids = [str(311900 + 7 * i) for i in range(n)]
        (folder / "PEMS03.txt").write_bytes("\r\n".join(ids).encode())
        rows = [f"{ids[i]},{ids[i + 1]},{1.5 + i}" for i in range(n - 1)]
        (folder / "PEMS03.csv").write_text("from,to,distance\n" + "\n".join(rows) + "\n")
    else:
        rows = [f"{i},{i + 1},{100.0 + i}" for i in range(n - 1)]
        (folder / f"PEMS{number}.csv").write_text("from,to,cost\n" + "\n".join(rows) + "\n")


def write_pemsd7m(folder: Path, t: int = 576, n: int = 5) -> None:
    """PeMSD7(M) stand-in: headerless ``%.18e`` V (speeds) and W (distances in metres)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "PeMSD7_V_228.csv", np.abs(speeds(t, n, missing=0.0)), delimiter=",", fmt="%.18e")
    pos = np.arange(n) * 1500.0
    np.savetxt(folder / "PeMSD7_W_228.csv", np.abs(pos[:, None] - pos[None, :]), delimiter=",", fmt="%.18e")


def write_custom(folder: Path, t: int = 400, n: int = 5) -> tuple[Path, Path]:
    """A user's own data: readings CSV (timestamp column + sensors) and a locations CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"S{i}" for i in range(n)]
    frame = pd.DataFrame(speeds(t, n, missing=0.0), columns=ids)
    frame.insert(0, "timestamp", pd.date_range("2024-01-01", periods=t, freq="5min"))
    series = folder / "readings.csv"
    frame.to_csv(series, index=False)
    loc = pd.DataFrame({"sensor_id": ids, "latitude": 34.0 + 0.01 * np.arange(n),
                        "longitude": -118.2 + 0.005 * np.arange(n)})
    locations = folder / "sensors.csv"
    loc.to_csv(locations, index=False)
    return series, locations


def write_sz_taxi(folder: Path, t: int = 2976, n: int = 156, seed: int = 0) -> list[str]:
    """T-GCN's SZ-taxi: ``sz_speed.csv`` (header of road ids, ``t`` rows, no timestamps, zeros kept)
    and ``sz_adj.csv`` (0/1 path graph, no header).  Returns the road ids."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [str(90000 + 7 * i) for i in range(n)]
    values = rng.uniform(0, 60, size=(t, n)).round(6)
    values[rng.random((t, n)) < 0.05] = 0.0
    pd.DataFrame(values, columns=ids).to_csv(folder / "sz_speed.csv", index=False)
    adj = np.zeros((n, n), dtype=int)
    i = np.arange(n - 1)
    adj[i, i + 1] = adj[i + 1, i] = 1
    np.savetxt(folder / "sz_adj.csv", adj, fmt="%d", delimiter=",")
    return ids
