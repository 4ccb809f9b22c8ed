"""Time per epoch and peak memory vs number of sensors and vs series length, full-graph and sampled.

Every point runs in a fresh subprocess (``--child``) that builds the experiment exactly as
``stgnn train --dataset DIR`` does (a converted, memory-mapped folder; the scaler fitted in
chunks over the training period), runs ``--steps`` training steps through the real
:class:`~stgnn.training.trainer.Trainer` (the first is a warm-up, the others are timed), then one
full-graph evaluation batch.  It reports:

* ``build``: seconds to open the folder, fit the scaler and build the model;
* ``step``: median seconds per training step; ``epoch``: ``step`` x the steps of one epoch
  (training windows / batch size, times the parts when sampled) -- an estimate from a few steps;
* ``eval_batch``: seconds for one full-graph evaluation batch (up to ``--eval-max-nodes``);
* ``rss_build`` / ``rss_train`` / ``rss_eval``: the process's peak resident memory (``VmHWM``,
  Python + torch + model + data, mapped pages included) after building, after the training steps
  and after the evaluation batch;
* ``nodes_step``: nodes in the largest training subgraph (all nodes when full-graph).

The child uses glibc's default allocator unless ``--alloc tuned`` (what the ``stgnn`` command
does: no trimming, no mmap for large blocks, so freed chunk buffers stay in the heap and peak RSS
includes their fragmentation).

    # the data: LargeST-sized series (8,600 sensors) of 30 / 120 / 365 days, and 14 days at each size
    python experiments/large/generate.py --sensors 8600 --days 365 --output /tmp/large/largest-365d
    python experiments/large/scale.py --part length --data /tmp/large/largest-30d /tmp/large/largest-120d \\
        /tmp/large/largest-365d --markdown experiments/results/large_length.md
    python experiments/large/scale.py --part sensors --workdir /tmp/large \\
        --markdown experiments/results/large_sensors.md

Full-graph points whose memory would not fit a shared 24 GB machine are not run; the table says
so, with the estimate that ruled them out (``--mem-budget-gb``, linear in the nodes from the
smaller full-graph points of the same model).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PAPER_BATCH = {"stgcn": 50, "dcrnn": 64, "gwnet": 64}
# nodes per part in sampled runs (each part then gets its halo): sized so a step stays a few GB
CORE_NODES = {"stgcn": 1024, "dcrnn": 32, "gwnet": 256}


def _hwm_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    raise RuntimeError("no VmHWM in /proc/self/status")


class _Enough(Exception):
    pass


def child(job: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    import torch

    from stgnn.allocator import tune_malloc
    from stgnn.training.config import RunConfig
    from stgnn.training.trainer import Experiment, Trainer

    if job.get("alloc", "default") == "tuned":
        tune_malloc()
    torch.set_num_threads(job["threads"])
    start = time.perf_counter()
    cfg = RunConfig.from_dict({
        "model": job["model"], "dataset": job["data"],
        "train": {"batch_size": job["batch"], "eval_batch_size": job["batch"], "device": "cpu",
                  "sampling": job["sampling"], "partitions": job["parts"], "halo_hops": job["halo"],
                  "epochs": 1},
    })
    exp = Experiment.build(cfg)
    build = time.perf_counter() - start
    rss_build = _hwm_gb()
    stamps: list[float] = []

    class Timed(Trainer):
        def on_step(self, epoch: int, step: int) -> None:
            stamps.append(time.perf_counter())
            if len(stamps) > job["steps"]:
                raise _Enough

    with tempfile.TemporaryDirectory() as out:
        tr = Timed(exp, out, progress=False, log=lambda _: None)
        nodes_step = tr.sampler.largest if tr.sampler is not None else exp.spec.num_nodes
        t0 = time.perf_counter()
        try:
            tr._train_epoch(1)
        except _Enough:
            pass
    times = [b - a for a, b in zip([t0, *stamps[:-1]], stamps, strict=True)][1:]  # drop the warm-up step
    rss_train = _hwm_gb()
    parts = len(tr.sampler) if tr.sampler is not None else 1
    steps_per_epoch = -(-exp.data.num_windows("train") // job["batch"]) * parts
    eval_batch = None
    if exp.spec.num_nodes <= job["eval_max_nodes"]:
        exp.model.eval()
        t1 = time.perf_counter()
        with torch.no_grad():
            batch = next(exp.data.batches("val", job["batch"])).to(exp.device)
            exp.model.forecast(batch, exp.edge_index, exp.edge_weight)
        eval_batch = time.perf_counter() - t1
    return {
        **job, "num_nodes": exp.spec.num_nodes, "num_steps": exp.dataset.num_steps, "nodes_step": nodes_step,
        "parts_run": parts, "build": build, "step": statistics.median(times), "timed_steps": len(times),
        "epoch": statistics.median(times) * steps_per_epoch, "steps_per_epoch": steps_per_epoch,
        "eval_batch": eval_batch, "rss_build": rss_build, "rss_train": rss_train, "rss_eval": _hwm_gb(),
        "series_gb": exp.dataset.num_steps * exp.dataset.num_nodes * exp.dataset.num_features * 4 / 1e9,
    }


def run_child(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(job["threads"])}
    cmd = [sys.executable, __file__, "--child", json.dumps(job)]
    print("running", json.dumps(job), flush=True)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timeout after {timeout:.0f} s"}
    if res.returncode != 0:
        return {**job, "error": (res.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print("  ", {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}, flush=True)
    return out


def _generate(workdir: Path, sensors: int, days: int) -> Path:
    folder = workdir / f"n{sensors}-{days}d"
    if not (folder / "stgnn-series.json").is_file():
        subprocess.run([sys.executable, str(REPO / "experiments/large/generate.py"), "--sensors", str(sensors),
                        "--days", str(days), "--output", str(folder)], check=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    return folder


def sensors_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for model in args.models:
        full_points: list[tuple[int, float]] = []
        for n in args.sensors:
            data = str(_generate(Path(args.workdir), n, args.days))
            base = {"model": model, "data": data, "batch": PAPER_BATCH[model], "steps": args.steps,
                    "threads": args.threads, "halo": args.halo, "eval_max_nodes": args.eval_max_nodes.get(model, 0),
                    "alloc": args.alloc}
            estimate = None
            if len(full_points) >= 2:  # linear in the nodes, from the two largest measured
                (n1, m1), (n2, m2) = full_points[-2:]
                estimate = m2 + (m2 - m1) / (n2 - n1) * (n - n2)
            if estimate is not None and estimate > args.mem_budget_gb or n > args.full_max_nodes.get(model, 10**9):
                rows.append({**base, "sampling": "full", "parts": 1, "num_nodes": n,
                             "skipped": f"not run: needs ~{estimate:.0f} GB" if estimate else "not run (memory)"})
            else:
                r = run_child({**base, "sampling": "full", "parts": 1}, args.timeout)
                rows.append(r)
                if "rss_train" in r:
                    full_points.append((n, r["rss_train"]))
            parts = max(1, -(-n // CORE_NODES[model]))
            rows.append(run_child({**base, "sampling": "partition", "parts": parts}, args.timeout))
    return rows


def length_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for data in args.data:
        for model in args.models:
            n_parts = args.length_parts
            rows.append(run_child({"model": model, "data": data, "batch": PAPER_BATCH[model], "steps": args.steps,
                                   "threads": args.threads, "halo": args.halo, "sampling": "partition",
                                   "eval_max_nodes": args.eval_max_nodes.get(model, 0), "alloc": args.alloc,
                                   "parts": n_parts}, args.timeout))
    return rows


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    head = ("| model | sensors | steps (T) | series | training | nodes per step | build s | s / step | "
            "epoch (est.) | eval batch s | peak RSS build / train / eval (GB) |\n"
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|\n")
    lines = []
    for r in rows:
        mode = "full graph" if r["sampling"] == "full" else f"{r['parts']} parts, halo {r['halo']}"
        if "skipped" in r or "error" in r:
            lines.append(f"| {r['model']} | {r.get('num_nodes', '')} | | | {mode} | | | | | | "
                         f"{r.get('skipped') or r.get('error')} |")
            continue
        epoch = r["epoch"]
        epoch_s = f"{epoch / 3600:.1f} h" if epoch >= 3600 else f"{epoch / 60:.1f} min"
        lines.append(
            f"| {r['model']} (batch {r['batch']}) | {r['num_nodes']:,} | {r['num_steps']:,} | "
            f"{r['series_gb']:.2f} GB | "
            f"{mode} | {r['nodes_step']:,} | {r['build']:.1f} | {r['step']:.2f} | {epoch_s} | "
            f"{'not run' if r['eval_batch'] is None else format(r['eval_batch'], '.1f')} | "
            f"{r['rss_build']:.2f} / {r['rss_train']:.2f} / "
            f"{'-' if r['eval_batch'] is None else format(r['rss_eval'], '.2f')} |")
    return f"Command: `{command}`\n\n" + head + "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child")
    p.add_argument("--part", choices=["sensors", "length"])
    p.add_argument("--models", nargs="+", default=["stgcn", "dcrnn", "gwnet"])
    p.add_argument("--sensors", nargs="+", type=int, default=[207, 1000, 2000, 4300, 8600])
    p.add_argument("--days", type=int, default=14, help="series length of the sensors part")
    p.add_argument("--data", nargs="+", default=[], help="converted folders of the length part")
    p.add_argument("--length-parts", type=int, default=16)
    p.add_argument("--workdir", default="/tmp/large")
    p.add_argument("--steps", type=int, default=3, help="training steps per point (the first untimed)")
    p.add_argument("--halo", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--mem-budget-gb", type=float, default=8.0,
                   help="skip full-graph points estimated above this (the machine is shared)")
    p.add_argument("--full-max-nodes", type=json.loads, default={"stgcn": 2000, "dcrnn": 207, "gwnet": 1000},
                   help='JSON {"model": nodes}: no full-graph point above this many nodes')
    p.add_argument("--eval-max-nodes", type=json.loads, default={"stgcn": 2000, "dcrnn": 2000, "gwnet": 2000},
                   help='JSON {"model": nodes}: time one full-graph evaluation batch only up to this many nodes; '
                        "a model not named gets none (CPU time; Graph WaveNet's dense adaptive adjacency makes "
                        "its cost grow as N^2)")
    p.add_argument("--alloc", choices=["default", "tuned"], default="default",
                   help="glibc's allocator (default: its RSS tracks live memory) or stgnn's mallopt tuning "
                        "(keeps freed memory: peak RSS then includes heap fragmentation)")
    p.add_argument("--json")
    p.add_argument("--markdown")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    rows = sensors_part(args) if args.part == "sensors" else length_part(args)
    command = "python " + " ".join([str(Path(sys.argv[0]).relative_to(REPO)) if Path(sys.argv[0]).is_absolute()
                                    else sys.argv[0], *sys.argv[1:]])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    table = markdown(rows, command)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)


if __name__ == "__main__":
    main()
