"""Scaling of the model-zoo models (fusion, transformer, stpatch) to large generated graphs.

The command behind the "Model zoo scaling" section of ``experiments/results/BENCHMARKS.md``::

    python experiments/zoo_scaling.py --models stpatch --graphs random knn --nodes 1000 5000 10000 \\
        --threads 1 --out experiments/results/zoo_scaling.json

Each measurement runs in a fresh subprocess (``benchmark.run_job``: peak RSS of the whole
process sampled from ``/proc``, a timeout and an RSS limit), with glibc's default allocator, on
one of two generated graphs with 8 out-edges per node plus self-loops:

* ``random``: the graphs of ``benchmark.py``'s scaling part (``references.random_edges``), no
  locality at all -- the worst case for neighbourhood patches;
* ``knn``: road-network-like locality: ``N`` points uniform in the unit square (seed 0), each
  joined to its 8 nearest neighbours (``scipy.spatial.cKDTree``), weights ``exp(-d^2 / s^2)`` with
  ``s`` the mean neighbour distance.  One training step = forward + masked MAE +
backward + Adam step at batch ``--batch`` (16), 12 input steps x 2 features, 12 horizons, the
models' default hyper-parameters; ``--warmup`` untimed steps (the first builds the graph
operators and, for ``stpatch``, the partition), then ``--steps`` timed steps (median reported).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

ZOO_MODELS = ("fusion", "transformer", "stpatch")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import numpy as np
    import torch
    from references import random_edges

    from stgnn.metrics import masked_mae_loss
    from stgnn.models import ModelSpec, build_model

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    n, b = spec["nodes"], spec["batch"]
    if spec["graph"] == "random":
        src, dst, w = random_edges(n, 8, np.random.default_rng(0))
    else:
        from scipy.spatial import cKDTree

        pts = np.random.default_rng(0).random((n, 2))
        dist, nbr = cKDTree(pts).query(pts, k=9)  # itself first
        src, dst = np.repeat(np.arange(n), 9), nbr.reshape(-1)
        w = np.exp(-((dist / dist[:, 1:].mean()) ** 2)).reshape(-1)
    ei = torch.from_numpy(np.stack([src, dst]).astype(np.int64))
    ew = torch.from_numpy(w.astype(np.float32))
    model = build_model(spec["model"], ModelSpec(n, 2, 1, 12, 12))
    x = torch.randn(b, 12, n, 2)
    y = torch.randn(b, 12, n, 1).abs_() + 0.1
    kw: dict[str, Any] = {}
    if spec["model"] == "transformer":
        kw["time_slot"] = torch.randint(0, 2016, (b, 1)) + torch.arange(12)
        kw["time_slot"] %= 2016
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        masked_mae_loss(model(x, ei, ew, **kw), y).backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(spec["warmup"]):
        step()
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(spec["steps"]):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    extra = {}
    if spec["model"] == "stpatch":
        clusters, cedges = model.partition(ei, n)
        extra = {"clusters": int(clusters.max()) + 1, "cluster_edges": int(cedges.size(1))}
    return {**spec, "ok": True, "median_s": statistics.median(times), "times_s": times, "warmup_s": first_s,
            "samples_per_s": b / statistics.median(times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "params": sum(p.numel() for p in model.parameters()), "edges": int(ei.size(1)), **extra}


def markdown(results: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    lines = [
        f"Training step, batch {results[0]['batch'] if results else '-'}, {facts['threads']} thread(s), "
        f"{facts['cpu']}, torch {facts['torch']}, {facts['date_utc']} (load average at start "
        f"{', '.join(f'{v:.1f}' for v in facts['load_avg_at_start'])}).",
        "",
        "| model | graph | nodes | edges | s / step | samples / s | peak RSS (MB) | parameters | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r.get("ok"):
            failed = f"failed: {r.get('error')}"
            lines.append(f"| {r['model']} | {r['graph']} | {r['nodes']} | - | - | - | - | - | {failed} |")
            continue
        note = f"{r['clusters']} patches, {r['cluster_edges']} patch edges" if "clusters" in r else ""
        lines.append(f"| {r['model']} | {r['graph']} | {r['nodes']:,} | {r['edges']:,} | {r['median_s']:.2f} | "
                     f"{r['samples_per_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['params']:,} | {note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=list(ZOO_MODELS), choices=ZOO_MODELS)
    parser.add_argument("--graphs", nargs="+", default=["random"], choices=["random", "knn"])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0, help="per measurement, seconds")
    parser.add_argument("--mem-limit-gb", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=None, help="JSON results")
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    from benchmark import machine_facts, run_job

    facts = machine_facts(args.threads)
    results = []
    jobs = [(g, n, m) for g in args.graphs for n in args.nodes for m in args.models]
    for graph, n, model in jobs:
        spec = dict(model=model, graph=graph, nodes=n, batch=args.batch, threads=args.threads, alloc="default",
                    warmup=args.warmup, steps=args.steps)
        r = run_job(spec, args.timeout, args.mem_limit_gb, script=Path(__file__))
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "times_s"}), flush=True)
        if args.out:
            args.out.write_text(json.dumps({"facts": facts, "args": sys.argv[1:], "results": results}, indent=1))
    print(markdown(results, facts))


if __name__ == "__main__":
    main()
