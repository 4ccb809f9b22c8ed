"""Generate a LargeST-sized series on disk, chunk by chunk, in stgnn's memory-mapped format.

LargeST's California network (Liu et al., NeurIPS 2023 Datasets and Benchmarks) has 8,600
sensors; one year at 5 minutes is 105,120 steps, 8,600 x 105,120 float32 = 3.6 GB.  Its files are
not available here, so this writes a stand-in of the same size and layout: sensors scattered over a
square (jittered grid), a k-nearest-neighbour graph with Gaussian-kernel weights (both directions),
and speeds with a daily cycle, a weekday/weekend difference, a per-sensor level and phase, noise
and 2% missing readings.  Nothing is ever held whole: each chunk of ``--chunk-days`` days is
generated and appended through :class:`stgnn.data.ondisk.SeriesWriter`.

    python experiments/large/generate.py --sensors 8600 --days 365 --output /tmp/largest-365d
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.spatial import cKDTree

from stgnn.data.graph import SensorGraph
from stgnn.data.ondisk import SeriesWriter


def sensor_graph(n: int, k: int, seed: int) -> tuple[SensorGraph, np.ndarray]:
    """A k-nearest-neighbour graph of ``n`` sensors on a jittered grid (kernel width = mean kNN distance)."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n].astype(np.float64)
    xy = grid + rng.uniform(-0.35, 0.35, grid.shape)
    dist, idx = cKDTree(xy).query(xy, k=k + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]
    sigma = dist.mean()
    src = np.repeat(np.arange(n), k)
    dst = idx.reshape(-1)
    w = np.exp(-((dist.reshape(-1) / sigma) ** 2))
    pairs = {}
    for a, b, wt in zip(src.tolist(), dst.tolist(), w.tolist(), strict=True):
        pairs[(a, b)] = wt
        pairs.setdefault((b, a), wt)
    ei = np.array(list(pairs), dtype=np.int64).T
    ew = np.array(list(pairs.values()), dtype=np.float32)
    ids = [str(400000 + i) for i in range(n)]
    return SensorGraph(ids, torch.from_numpy(ei), torch.from_numpy(ew)), xy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sensors", type=int, default=8600)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--interval", type=int, default=5, help="minutes")
    p.add_argument("--k", type=int, default=8, help="neighbours per sensor")
    p.add_argument("--chunk-days", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True)
    args = p.parse_args()
    start = time.perf_counter()
    n = args.sensors
    per_day = 24 * 60 // args.interval
    steps = args.days * per_day
    graph, xy = sensor_graph(n, args.k, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    level = rng.uniform(45, 70, n).astype(np.float32)
    phase = (xy[:, 0] / max(xy[:, 0].max(), 1.0) * 0.1).astype(np.float32)  # rush hour drifts across space
    stamps = pd.date_range("2019-01-01", periods=steps, freq=f"{args.interval}min")
    with SeriesWriter(Path(args.output), graph, stamps, args.interval, ("speed",), name=Path(args.output).name,
                      units="mph", source="experiments/large/generate.py (synthetic, LargeST-sized)") as writer:
        chunk = args.chunk_days * per_day
        for s in range(0, steps, chunk):
            t = np.arange(s, min(s + chunk, steps))
            day = ((t % per_day) / per_day).astype(np.float32)[:, None]
            weekday = np.asarray(stamps[t].day_of_week < 5)[:, None]
            dip = np.exp(-(((day - 0.33 - phase) / 0.04) ** 2)) + np.exp(-(((day - 0.72 - phase) / 0.05) ** 2))
            speed = level - 20 * dip * np.where(weekday, 1.0, 0.3) + rng.normal(0, 2, (t.size, n)).astype(np.float32)
            speed[rng.random((t.size, n)) < 0.02] = np.nan
            writer.append(speed.astype(np.float32))
    size = (Path(args.output) / "series.f32").stat().st_size
    print(f"wrote {args.output}: {steps} x {n} float32 ({size / 1e9:.2f} GB), {graph.num_edges} edges, "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
