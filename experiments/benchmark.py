# mypy: disable-error-code="misc"
"""Training throughput, inference latency and memory scaling: stgnn vs the reference code.

The command behind ``experiments/results/BENCHMARKS.md`` (reference checkouts as for parity.py;
nothing from them is copied into stgnn)::

    python experiments/benchmark.py \\
        --ref-dir stgcn=/path/to/hazdzz/STGCN \\
        --ref-dir dcrnn=/path/to/chnsh/DCRNN_PyTorch \\
        --ref-dir gwnet=/path/to/nnzhan/Graph-WaveNet \\
        --adj datasets/metr-la/adj_mx.pkl --threads 2 \\
        --out experiments/results/benchmark.json --markdown experiments/results/benchmark_tables.md

``--part metr`` / ``--part scaling`` / ``--part compile`` runs one part; ``--quick`` runs tiny
sizes (a smoke test).

METR-LA size (batch 64, 12 input steps, 207 nodes of the real METR-LA graph, 12 horizons): for
each model, stgnn ("ours") and the reference side by side, the training step (forward + masked
MAE + backward + Adam step, training mode) in samples/s and the inference latency per batch
(eval mode, ``torch.inference_mode``).  Models:

* ``stgcn-ref``: STGCN at hazdzz/STGCN's configuration (1 input feature, one-step output, its
  unused align convolutions registered) vs ``STGCNChebGraphConv`` -- the like-for-like pair.
* ``stgcn``: stgnn's default multi-step STGCN (2 input features, all 12 horizons in one pass),
  beside the same hazdzz model (which forecasts one step: not the same task).
* ``dcrnn``: ``DCRNN(reference_compat=True)`` vs chnsh/DCRNN_PyTorch (curriculum learning on,
  ``batches_seen = 1``: both feed the ground truth with probability 0.9995).
* ``gwnet``: ``GraphWaveNet()`` vs nnzhan/Graph-WaveNet (adaptive adjacency, dropout 0.3).
* ``pygt-dcrnn`` / ``pygt-stconv`` (extra rows, no "ours"): models assembled from
  torch-geometric-temporal layers -- two ``BatchedDCRNN`` layers (2 -> 64 -> 64, K = 2) and a
  linear head on the last step; two ``STConv`` blocks (1 -> 16 -> 64, Kt = Ks = 3) and a
  two-layer head -- to place that library; they are not the papers' models.

* ``lstm``, ``gru``, ``gcn``, ``tgcn``, ``fusion``, ``transformer``, ``stpatch`` (on request
  with ``--models``): the other registered models at their registry defaults (2 input features,
  12 horizons), called through ``forecast`` as the trainer does; no reference.

``--baseline CHECKOUT``: each of our METR-LA jobs is followed by the same job with ``stgnn``
imported from another checkout (e.g. ``git worktree add /tmp/old <commit>``), and a table gives
this checkout's speed relative to it -- a before/after comparison measured interleaved in one run.

Every measurement runs in a fresh subprocess (``--child``), so each sees its own allocator
environment and its own peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the whole
process: Python, torch, model, data).  Allocator settings:

* ``default``: glibc's defaults.
* ``env``: ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736`` set for the child.
* ``mallopt`` (ours only): no variable set; the child calls :func:`stgnn.allocator.tune_malloc`
  (what the ``stgnn`` command does) before building anything.

*Ratio as run* compares each side as its users run it: the ``stgnn`` command (which tunes malloc,
i.e. the ``mallopt`` column) against the reference script under glibc's defaults.

Each run does ``--warmup`` untimed steps, then timed steps until ``--min-steps`` are done and
``--min-time`` seconds have passed (at most ``--max-steps``), and reports the median.

Compiled vs eager (``--part compile``): METR-LA size, training step, tuned allocator, for
each model of ``--models`` but the ``pygt`` rows: the eager model, the model compiled as
``stgnn train --compile`` does (:func:`stgnn.training.accelerate.compile_model`: one eager
forward builds the cached graph operators, then ``model.compile()``, default mode, graph breaks
allowed) and the reference, measured back to back in the same run, so that compiled/eager and
compiled/reference are ratios of neighbouring measurements.  The compiled child reports its
first compiled step (compilation) separately; inside the compiled region the sparse products
are gather + ``index_add`` (Dynamo cannot trace sparse tensors).  Compiled jobs get five times
``--timeout`` (compiling STGCN took 99 s on the shared 2-core CPU).

``--device cuda``: models, graphs and batches on the GPU (references moved there with
``references.to_device``), each timed step ends with ``torch.cuda.synchronize``, peak GPU memory
is reported, and only the ``env`` allocator setting is run (the host allocator does not matter
for GPU work).  Train tables give the METR-LA epoch time (23,974 windows / samples per second).

Scaling: random directed graphs (``deg`` = 8 out-edges per node plus self-loops, the generator
of parity.py) with 207 ... 10,000 nodes, batch ``--scale-batch`` (16): time per training step
and peak RSS of ours (STGCN, DCRNN, Graph WaveNet dense, Graph WaveNet with
``adaptive_top_k``) and of the references up to ``--ref-max-nodes`` (2,000), each under a
wall-clock ``--timeout`` and an RSS limit (``--mem-limit-gb``), with glibc's default allocator
(``--scale-alloc``; the tuned one keeps freed memory, so its peak RSS includes fragmentation).
``dcrnn-ckpt`` is ``DCRNN(checkpoint=True)`` (gradient checkpointing per recurrent step); plain
DCRNN runs up to ``--dcrnn-max-nodes`` (2,000: above, batch 16 needs more than this machine's
24 GB).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

TUNED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
ALLOCS = ("default", "env", "mallopt")
METR_MODELS = ("stgcn-ref", "stgcn", "dcrnn", "gwnet", "pygt-dcrnn", "pygt-stconv")
# the other registered neural models, at their registry defaults (no reference implementation)
REGISTRY_MODELS = ("lstm", "gru", "gcn", "tgcn", "fusion", "transformer", "stpatch")
METR_TRAIN_WINDOWS = 23974  # METR-LA's training windows (12 + 12 steps, 70/10/20)
SCALE_MODELS = ("stgcn", "dcrnn", "dcrnn-ckpt", "gwnet", "gwnet-topk")
REF_OF = {
    "stgcn-ref": "stgcn",
    "stgcn": "stgcn",
    "dcrnn": "dcrnn",
    "dcrnn-ckpt": "dcrnn",
    "gwnet": "gwnet",
    "gwnet-topk": "gwnet",
}


# ------------------------------------------------------------------------------- the child
def _graph(spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    """``(edge_index, edge_weight, dense adjacency or None)`` of the job's graph."""
    import numpy as np
    import torch

    device = spec.get("device", "cpu")
    if spec["graph"] == "metr-la":
        from stgnn.data.graph import SensorGraph

        g = SensorGraph.from_adj_pickle(spec["adj"])
        dense = g.to_dense() if spec["impl"] not in ("ours", "base") else None
        return g.edge_index.to(device), g.edge_weight.to(device), dense
    from references import random_edges

    n = spec["nodes"]
    src, dst, w = random_edges(n, 8, np.random.default_rng(0))
    ei = torch.from_numpy(np.stack([src, dst]).astype(np.int64)).to(device)
    ew = torch.from_numpy(w.astype(np.float32)).to(device)
    dense = None
    if spec["impl"] not in ("ours", "base"):
        dense = np.zeros((n, n), dtype=np.float32)
        dense[src, dst] = w
    return ei, ew, dense


def _build(spec: dict[str, Any]) -> tuple[Any, Any, int, int, int]:
    """``(model, forward(x, y, train) -> prediction, input features, output steps, edges)``."""
    from torch import nn

    from stgnn.models import ModelSpec

    model_name, impl, n = spec["model"], spec["impl"], spec["nodes"]
    ei, ew, dense = _graph(spec)
    refs = spec.get("refs", {})
    if impl in ("ours", "base"):  # "base": the same model from the --baseline checkout
        from stgnn.models.dcrnn import DCRNN
        from stgnn.models.gwnet import GraphWaveNet
        from stgnn.models.stgcn import STGCN

        if model_name == "stgcn-ref":
            m: nn.Module = STGCN(ModelSpec(n, 1, 1, 12, 1), single_step=True, reference_compat=True)
            return m, lambda x, y, train: m(x, ei, ew), 1, 1, int(ei.size(1))
        if model_name == "stgcn":
            m = STGCN(ModelSpec(n, 2, 1, 12, 12))
            return m, lambda x, y, train: m(x, ei, ew), 2, 12, int(ei.size(1))
        if model_name in ("dcrnn", "dcrnn-ckpt"):
            m = DCRNN(ModelSpec(n, 2, 1, 12, 12), reference_compat=True, checkpoint=model_name == "dcrnn-ckpt")
            tf = spec["teacher_forcing"]  # set by the parent (a baseline checkout may predate the schedule)

            def dcrnn_fwd(x: Any, y: Any, train: bool) -> Any:
                return m(x, ei, ew, targets=y, teacher_forcing=tf) if train else m(x, ei, ew)

            return m, dcrnn_fwd, 2, 12, int(ei.size(1))
        if model_name in ("gwnet", "gwnet-topk"):
            top_k = spec.get("top_k") if model_name == "gwnet-topk" else None
            m = GraphWaveNet(ModelSpec(n, 2, 1, 12, 12), adaptive_top_k=top_k)
            return m, lambda x, y, train: m(x, ei, ew), 2, 12, int(ei.size(1))
        if model_name in REGISTRY_MODELS:
            import torch

            from stgnn.models import build_model
            from stgnn.models.base import Batch

            m = build_model(model_name, ModelSpec(n, 2, 1, 12, 12))

            def registry_fwd(x: Any, y: Any, train: bool) -> Any:
                b = x.size(0)
                start = torch.zeros(b, dtype=torch.long, device=x.device)  # time slots for models that read them
                slot = torch.arange(12, device=x.device).expand(b, 12)
                batch = Batch(x, y, y, torch.ones(y.shape[:3], dtype=torch.bool, device=x.device), start, slot)
                return m.forecast(batch, ei, ew)

            return m, registry_fwd, 2, 12, int(ei.size(1))
    if impl == "ref":
        import references as R

        which = REF_OF[model_name]
        device = spec.get("device", "cpu")
        if which == "stgcn":
            m = R.to_device(R.stgcn_reference(refs["stgcn"], dense), device)
            return m, lambda x, y, train: R.stgcn_call(m, x[..., :1]), 1, 1, int(ei.size(1))
        if which == "dcrnn":
            m, _ = R.dcrnn_reference(refs["dcrnn"], dense)
            m = R.to_device(m, device)

            def ref_dcrnn_fwd(x: Any, y: Any, train: bool) -> Any:
                return R.dcrnn_call(m, x, y, 1) if train else R.dcrnn_call(m, x)

            return m, ref_dcrnn_fwd, 2, 12, int(ei.size(1))
        if which == "gwnet":
            m = R.to_device(R.gwnet_reference(refs["gwnet"], dense), device)
            return m, lambda x, y, train: R.gwnet_call(m, x), 2, 12, int(ei.size(1))
    if impl == "pygt":
        m = _pygt_model(model_name, n)
        f_in, steps = (2, 12) if model_name == "pygt-dcrnn" else (1, 1)
        return m, lambda x, y, train: m(x, ei, ew), f_in, steps, int(ei.size(1))
    raise ValueError(f"unknown job {model_name}/{impl}")


def _pygt_model(name: str, n: int) -> Any:
    import torch
    from torch import nn
    from torch_geometric_temporal.nn.attention.stgcn import STConv
    from torch_geometric_temporal.nn.recurrent.dcrnn import BatchedDCRNN

    if name == "pygt-dcrnn":

        class PygtDCRNN(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.l1 = BatchedDCRNN(2, 64, 2)
                self.l2 = BatchedDCRNN(64, 64, 2)
                self.head = nn.Linear(64, 12)

            def forward(self, x: torch.Tensor, ei: torch.Tensor, ew: torch.Tensor) -> torch.Tensor:
                h = self.l2(self.l1(x, ei, ew), ei, ew)  # [B, T, N, 64]
                return self.head(h[:, -1]).permute(0, 2, 1).unsqueeze(-1)  # [B, 12, N, 1]

        return PygtDCRNN()

    class PygtSTGCN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b1 = STConv(n, 1, 16, 64, 3, 3)
            self.b2 = STConv(n, 64, 16, 64, 3, 3)
            self.fc1 = nn.Linear(4 * 64, 128)
            self.fc2 = nn.Linear(128, 1)

        def forward(self, x: torch.Tensor, ei: torch.Tensor, ew: torch.Tensor) -> torch.Tensor:
            h = self.b2(self.b1(x, ei, ew), ei, ew)  # [B, 4, N, 64]
            h = h.permute(0, 2, 1, 3).flatten(2)  # [B, N, 256]
            return self.fc2(torch.relu(self.fc1(h))).unsqueeze(1)  # [B, 1, N, 1]

    return PygtSTGCN()


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this (fresh) process; returns the result record."""
    applied = None
    if spec["alloc"] == "mallopt":
        from stgnn.allocator import tune_malloc

        applied = tune_malloc()
    import torch

    from stgnn.metrics import masked_mae_loss

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    device = torch.device(spec.get("device", "cpu"))
    cuda = device.type == "cuda"
    t0 = time.perf_counter()
    model, fwd, f_in, steps, edges = _build(spec)
    model.to(device)
    b, n = spec["batch"], spec["nodes"]
    x = torch.randn(b, 12, n, f_in, device=device)
    y = torch.randn(b, steps, n, 1, device=device).abs_() + 0.1
    y[torch.rand_like(y) < 0.05] = 0.0  # a few missing readings (null value 0)
    build_s = time.perf_counter() - t0
    rss_built = _maxrss_mb()
    times: list[float] = []
    if spec["mode"] == "train":
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss = masked_mae_loss(fwd(x, y, True), y)
            loss.backward()
            opt.step()

    else:
        model.eval()

        def step() -> None:
            with torch.inference_mode():
                fwd(x, y, False)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    compile_s = None
    if spec.get("compile"):
        from stgnn.training.accelerate import compile_model

        compile_model(model, lambda: fwd(x, y, False))  # what `stgnn train --compile` does
        t = time.perf_counter()
        step()  # compiles
        sync()
        compile_s = time.perf_counter() - t
    for _ in range(spec["warmup"]):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    while len(times) < spec["max_steps"] and (
        len(times) < spec["min_steps"] or time.perf_counter() - start < spec["min_time"]
    ):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {
        **{k: v for k, v in spec.items() if k != "refs"},
        "ok": True,
        "median_s": med,
        "times_s": times,
        "samples_per_s": b / med,
        "peak_rss_mb": _maxrss_mb(),
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        "rss_after_build_mb": rss_built,
        "build_s": build_s,
        "compile_s": compile_s,
        "tune_malloc": applied,
        "torch_threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        "edges": edges,
        "stgnn_file": sys.modules["stgnn"].__file__,
    }


# ------------------------------------------------------------------------------ the parent
def run_job(spec: dict[str, Any], timeout: float, mem_limit_gb: float, script: Path | None = None) -> dict[str, Any]:
    """Run ``spec`` in a fresh subprocess with its allocator environment, timeout and RSS limit
    (``script --child SPEC``; default this file, another script with the same ``--child`` protocol)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update({"OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])})
    if spec["alloc"] == "env":
        env.update(TUNED_ENV)
    elif spec["alloc"] == "default":
        env["STGNN_MALLOC"] = "default"  # in case anything imported calls tune_malloc
    if spec.get("stgnn_path"):  # a --baseline job: import stgnn from that checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [spec["stgnn_path"], env.get("PYTHONPATH")]))
    cmd = [sys.executable, str((script or Path(__file__)).resolve()), "--child", json.dumps(spec)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak: dict[str, Any] = {"rss": 0.0, "killed": ""}

    def watch() -> None:
        start = time.monotonic()
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as fh:
                    rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 2**20
                peak["rss"] = max(peak["rss"], rss)
                if rss > mem_limit_gb:
                    peak["killed"] = f"RSS above {mem_limit_gb:g} GB"
                    proc.kill()
            except (OSError, StopIteration, ValueError):
                pass
            if time.monotonic() - start > timeout:
                peak["killed"] = f"timeout {timeout:g} s"
                proc.kill()
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    base = {k: v for k, v in spec.items() if k != "refs"}
    if proc.returncode == 0:
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            pass
    reason = peak["killed"] or f"exit {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}"
    return {**base, "ok": False, "error": reason, "peak_rss_seen_gb": round(peak["rss"], 2)}


def machine_facts(threads: int) -> dict[str, Any]:
    import torch

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "glibc": " ".join(platform.libc_ver()),
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_avg_at_start": os.getloadavg(),
    }


def metr_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per model and mode, ours and the reference alternate (ours default, ref default, ours env,
    ref env, ours mallopt) so that both sides of a ratio are measured close together in time.
    With ``--baseline``, each of ours is followed by the same job on the baseline checkout."""
    jobs = []
    base = dict(graph="metr-la", adj=str(args.adj), nodes=207, batch=args.batch, threads=args.threads, refs=args.refs,
                device=args.device)
    for mode in args.modes:
        for model in args.models:
            if model.startswith("pygt"):
                impls = [("pygt", "default"), ("pygt", "env")]
            else:
                has_ref = REF_OF.get(model) in args.refs and model != "stgcn"  # stgcn shares stgcn-ref's run
                impls = [("ours", "default"), ("ref", "default"), ("ours", "env"), ("ref", "env"), ("ours", "mallopt")]
                impls = [(i, a) for i, a in impls if i == "ours" or has_ref]
                # the host allocator does not matter for GPU work: one setting there
                allowed = args.allocs or (ALLOCS if args.device == "cpu" else ("env",))
                impls = [(i, a) for i, a in impls if a in allowed]
            if args.baseline and not model.startswith("pygt"):
                impls = [p for i, a in impls for p in ([(i, a), ("base", a)] if i == "ours" else [(i, a)])]
            for impl, alloc in impls:
                slow = impl not in ("ours", "base") or model == "dcrnn"
                extra = {"stgnn_path": str(args.baseline)} if impl == "base" else {}
                jobs.append(
                    dict(
                        base, model=model, impl=impl, alloc=alloc, mode=mode,
                        warmup=1 if slow and mode == "train" else args.warmup,
                        min_steps=args.min_steps, min_time=args.min_time,
                        max_steps=args.max_steps if not slow else max(args.min_steps, args.max_steps // 2),
                        **extra,
                    )  # fmt: skip
                )
    return jobs


def compile_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Eager and compiled training of each graph model and its reference, back to back (tuned allocator)."""
    base = dict(graph="metr-la", adj=str(args.adj), nodes=207, batch=args.batch, threads=args.threads,
                refs=args.refs, device=args.device)
    timing = dict(warmup=args.warmup, min_steps=args.min_steps, min_time=args.min_time, max_steps=args.max_steps)
    jobs = []
    for model in (m for m in args.models if not m.startswith("pygt")):
        for compiled in (False, True):
            jobs.append(dict(base, part="compile", model=model, impl="ours", alloc="env", mode="train",
                             compile=compiled, **timing))
        if REF_OF.get(model) in args.refs and model != "stgcn":  # stgcn shares stgcn-ref's reference
            ref_timing = dict(timing, warmup=1, max_steps=max(args.min_steps, args.max_steps // 2))
            jobs.append(dict(base, part="compile", model=model, impl="ref", alloc="env", mode="train",
                             compile=False, **ref_timing))
    return jobs


def scaling_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Ours at every size, the references up to ``--ref-max-nodes``, dense Graph WaveNet up to
    ``--dense-max-nodes``.  Steps: 1 warm-up + 2 timed; 1 + 1 where a step takes long (graphs of
    >= 5,000 nodes, references from 1,000 nodes); a dense Graph WaveNet above 2,000 nodes gets a
    single (cold) step."""
    jobs = []
    for n in args.nodes:
        for model in SCALE_MODELS:
            if model == "gwnet" and n > args.dense_max_nodes:
                continue
            if model == "dcrnn" and n > args.dcrnn_max_nodes:
                continue
            impls = ["ours"]
            if model not in ("gwnet-topk", "dcrnn-ckpt") and REF_OF[model] in args.refs and n <= args.ref_max_nodes:
                impls.append("ref")
            for impl in impls:
                warmup, steps = 1, 2
                if n >= 5000 or (impl == "ref" and n >= 1000):
                    steps = 1
                if model == "gwnet" and n > 2000:
                    warmup = 0
                if args.quick:
                    warmup, steps = 1, 1
                jobs.append(
                    dict(
                        graph="random", nodes=n, batch=args.scale_batch, threads=args.threads, refs=args.refs,
                        model=model if impl == "ours" or model != "stgcn" else "stgcn-ref", impl=impl,
                        alloc=args.scale_alloc, mode="train", warmup=warmup, min_steps=steps, min_time=0.0,
                        max_steps=steps, top_k=args.top_k, part="scaling",
                    )  # fmt: skip
                )
    return jobs


# ---------------------------------------------------------------------------- reporting
def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _value(r: dict[str, Any] | None, mode: str) -> float | None:
    """samples/s (train) or ms per batch (infer)."""
    if r is None:
        return None
    return r["samples_per_s"] if mode == "train" else r["median_s"] * 1e3


def _ratio(ours: dict[str, Any] | None, ref: dict[str, Any] | None, mode: str) -> str:
    """ours/ref throughput (train) or ref/ours latency (infer): > 1 means ours is faster."""
    ov, rv = _value(ours, mode), _value(ref, mode)
    if ov is None or rv is None:
        return "-"
    return f"{ov / rv:.2f}x" if mode == "train" else f"{rv / ov:.2f}x"


def _epoch_s(r: dict[str, Any] | None) -> float | None:
    """Seconds per METR-LA training epoch at this throughput (23,974 windows)."""
    return None if r is None else METR_TRAIN_WINDOWS / r["samples_per_s"]


def markdown(results: list[dict[str, Any]], facts: dict[str, Any], args: argparse.Namespace) -> str:
    out = [
        f"Machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gb']} GB; torch {facts['torch']}, "
        f"{facts['threads']} threads; {facts['date_utc']}; load average at start {facts['load_avg_at_start']}; "
        f"device {args.device}" + (f" ({facts['gpu']})" if facts.get("gpu") else ""),
        "",
    ]
    metr = [r for r in results if r.get("graph") == "metr-la" and r.get("part") != "compile"]

    def get(model: str, impl: str, alloc: str, mode: str) -> dict[str, Any] | None:
        """The measurement; with ``--repeats``, the one of median speed."""
        found = [r for r in metr if (r["model"], r["impl"], r["alloc"], r["mode"]) == (model, impl, alloc, mode)
                 and r.get("ok")]  # fmt: skip
        return sorted(found, key=lambda r: r["median_s"])[(len(found) - 1) // 2] if found else None

    titles = {
        "train": "Training throughput (samples/s, higher is better; ratio = ours/ref)",
        "infer": f"Inference latency per batch of {args.batch} (ms, lower is better; ratio = ref/ours)",
    }
    for mode, title in titles.items():
        if not any(r["mode"] == mode for r in metr):
            continue
        out += [f"### {title}", ""]
        head = ("| model | ours default | ours env | ours mallopt | ref default | ref env "
                "| ratio default | ratio env | ratio as run (ours mallopt / ref default) "
                "| peak RSS ours / ref, env (MB) |")
        head += " peak GPU memory ours / ref (MB) |" if args.device != "cpu" else ""
        head += f" METR-LA epoch ours / ref, env (s, {METR_TRAIN_WINDOWS:,} windows) |" if mode == "train" else ""
        out.append(head)
        out.append("|---" * (head.count("|") - 1) + "|")
        for model in args.models:
            ours_impl = "pygt" if model.startswith("pygt") else "ours"
            o = {a: get(model, ours_impl, a, mode) for a in ALLOCS}
            rm = "stgcn-ref" if model == "stgcn" else model
            rf = {a: get(rm, "ref", a, mode) for a in ("default", "env")}
            cells = [_fmt(_value(o[a], mode)) for a in ALLOCS] + [_fmt(_value(rf[a], mode)) for a in rf]
            cells += [_ratio(o[a], rf[a], mode) for a in ("default", "env")]
            cells.append(_ratio(o["mallopt"], rf["default"], mode))
            cells.append("/".join(_fmt(r["peak_rss_mb"] if r else None, ".0f") for r in (o["env"], rf["env"])))
            if args.device != "cpu":
                cells.append("/".join(_fmt(r.get("peak_gpu_mb") if r else None, ".0f") for r in (o["env"], rf["env"])))
            if mode == "train":
                cells.append("/".join(_fmt(_epoch_s(r)) for r in (o["env"], rf["env"])))
            out.append(f"| {model} | " + " | ".join(cells) + " |")
        out.append("")
    if args.baseline and any(r["impl"] == "base" for r in metr):
        out += [f"### This checkout vs the baseline checkout {args.baseline} (same run, interleaved)", ""]
        out.append("| model | mode | " + " | ".join(f"ours / base {a}" for a in ALLOCS) + " | geometric mean |")
        out.append("|---|---|" + "---:|" * (len(ALLOCS) + 1))
        for mode in ("train", "infer"):
            for model in (m for m in args.models if not m.startswith("pygt")):
                pairs = [(get(model, "ours", a, mode), get(model, "base", a, mode)) for a in ALLOCS]
                speed = [(_value(o, "train") / _value(b, "train")) if mode == "train" else
                         (_value(b, "infer") / _value(o, "infer")) for o, b in pairs if o and b]  # fmt: skip
                gm = statistics.geometric_mean(speed) if speed else None
                cells = [_ratio(o, b, mode) for o, b in pairs] + [_fmt(gm, ".3f")]
                out.append(f"| {model} | {mode} | " + " | ".join(cells) + " |")
        out += ["", "(> 1: this checkout is faster" + (f"; each cell compares the medians of {args.repeats} "
                "interleaved repetitions)" if args.repeats > 1 else ")"), ""]
    comp = [r for r in results if r.get("part") == "compile"]
    if comp:
        out += [f"### Compiled vs eager (training samples/s, batch {args.batch}, {args.device}, same run)", ""]
        out.append("| model | ours eager | ours compiled | ref | compiled/eager | eager/ref | compiled/ref "
                   f"| first compiled step (s) | METR-LA epoch ({METR_TRAIN_WINDOWS:,} windows) "
                   "eager / compiled / ref (s) |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for model in dict.fromkeys(r["model"] for r in comp):
            by_mode = {r["compile"]: r for r in comp if r["model"] == model and r["impl"] == "ours" and r.get("ok")}
            e, c = by_mode.get(False), by_mode.get(True)
            ref_name = "stgcn-ref" if model == "stgcn" else model
            rf = next((r for r in comp if r["model"] == ref_name and r["impl"] == "ref" and r.get("ok")), None)
            first = _fmt(c.get("compile_s") if c else None)
            cells = [_fmt(_value(e, "train")), _fmt(_value(c, "train")), _fmt(_value(rf, "train")),
                     _ratio(c, e, "train"), _ratio(e, rf, "train"), _ratio(c, rf, "train"), first,
                     " / ".join(_fmt(_epoch_s(r)) for r in (e, c, rf))]
            out.append(f"| {model} | " + " | ".join(cells) + " |")
        failed = [r for r in comp if not r.get("ok")]
        out += [f"- {r['model']} {r['impl']} compile={r['compile']}: failed ({r['error']})" for r in failed]
        out.append("")
    scale = [r for r in results if r.get("part") == "scaling"]
    if scale:
        out += [f"### Scaling (batch {args.scale_batch}, training step, allocator: {args.scale_alloc})", ""]
        out.append("| nodes | edges | model | impl | s/step | peak RSS (MB) | note |")
        out.append("|---:|---:|---|---|---:|---:|---|")
        for r in scale:
            head = f"| {r['nodes']:,} | {r.get('edges', '-')} | {r['model']} | {r['impl']} |"
            if r.get("ok"):
                out.append(f"{head} {r['median_s']:.2f} | {r['peak_rss_mb']:.0f} | |")
            else:
                out.append(f"{head} - | - | {r['error']} (RSS seen {r['peak_rss_seen_gb']} GB) |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ref-dir", action="append", default=[], metavar="NAME=PATH",
                        help="stgcn=..., dcrnn=..., gwnet=... (repeat); models without one run ours only")  # fmt: skip
    parser.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                        help="another stgnn checkout (e.g. a git worktree of an older commit): each of our METR-LA "
                        "jobs is repeated with stgnn imported from it, right after ours")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=1,
                        help="run the METR-LA jobs this many times in cycles (ours and the baseline swap order "
                        "every other cycle); tables report the median-speed measurement")  # fmt: skip
    parser.add_argument("--modes", nargs="+", choices=["train", "infer"], default=["train", "infer"],
                        help="what the METR-LA part measures: the training step, inference, or both (default)")
    parser.add_argument("--adj", type=Path, default=Path("datasets/metr-la/adj_mx.pkl"))
    parser.add_argument("--part", choices=["all", "metr", "scaling", "compile"], default="all")
    parser.add_argument("--models", nargs="+", default=list(METR_MODELS), choices=METR_MODELS + REGISTRY_MODELS,
                        help=f"default: {' '.join(METR_MODELS)} (the registry models {', '.join(REGISTRY_MODELS)} "
                        "run at their defaults, ours only)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: where models and batches live")
    parser.add_argument("--allocs", nargs="+", choices=ALLOCS, default=None,
                        help="allocator settings of the METR-LA part (default: all on cpu, env on cuda)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--min-time", type=float, default=15.0, help="seconds of timed steps (after min-steps)")
    parser.add_argument("--nodes", type=int, nargs="+", default=[207, 1000, 2000, 5000, 10000])
    parser.add_argument("--scale-batch", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=16, help="adaptive_top_k of the gwnet-topk rows")
    parser.add_argument("--ref-max-nodes", type=int, default=2000)
    parser.add_argument("--dense-max-nodes", type=int, default=5000, help="largest dense Graph WaveNet run")
    parser.add_argument(
        "--dcrnn-max-nodes", type=int, default=2000, help="largest DCRNN run without checkpointing (memory)"
    )
    parser.add_argument(
        "--scale-alloc",
        choices=ALLOCS,
        default="default",
        help="allocator of the scaling runs (default: glibc's, whose RSS tracks live memory)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per measurement, seconds")
    parser.add_argument("--mem-limit-gb", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", type=Path, default=None, help="JSON results")
    parser.add_argument("--markdown", type=Path, default=None, help="markdown tables")
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    args.refs = dict(item.split("=", 1) for item in args.ref_dir)
    if args.quick:
        args.batch, args.warmup, args.min_steps, args.max_steps, args.min_time = 2, 1, 1, 1, 0.0
        args.nodes, args.scale_batch, args.timeout = [50, 120], 2, 120.0
    facts = machine_facts(args.threads)
    print(json.dumps(facts), flush=True)
    metr = metr_jobs(args) if args.part in ("all", "metr") else []
    for cycle in range(1, args.repeats if metr else 1):
        again = [dict(spec, repeat=cycle) for spec in metr_jobs(args)]
        if cycle % 2:  # swap each ours/base pair, so neither always runs first
            for i in range(len(again) - 1):
                if again[i]["impl"] == "ours" and again[i + 1]["impl"] == "base":
                    again[i], again[i + 1] = again[i + 1], again[i]
        metr += again
    jobs = (
        metr
        + (compile_jobs(args) if args.part in ("all", "compile") else [])
        + (scaling_jobs(args) if args.part in ("all", "scaling") else [])
    )
    from stgnn.training.schedules import inverse_sigmoid_teacher_forcing

    results = []
    t_all = time.perf_counter()
    for i, spec in enumerate(jobs, 1):
        spec["teacher_forcing"] = inverse_sigmoid_teacher_forcing(1)  # both sides feed the truth w.p. 0.9995
        t = time.perf_counter()
        r = run_job(spec, args.timeout * (5 if spec.get("compile") else 1), args.mem_limit_gb)
        results.append(r)
        what = (
            f"{r['median_s'] * 1e3:8.1f} ms/step {r['samples_per_s']:7.1f} samples/s peak {r['peak_rss_mb']:7.0f} MB"
            if r.get("ok")
            else f"FAILED: {r['error']}"
        )
        print(
            f"[{i}/{len(jobs)} {time.perf_counter() - t:5.1f}s] {spec['graph']:8s} N={spec['nodes']:<6d} "
            f"{spec['model']:11s} {spec['impl']:4s} {spec['alloc']:7s} {spec['mode']:5s} {what}",
            flush=True,
        )
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"facts": facts, "args": sys.argv[1:], "results": results}, indent=1))
    facts["total_s"] = round(time.perf_counter() - t_all, 1)
    text = markdown(results, facts, args)
    print(text)
    if args.out:
        args.out.write_text(json.dumps({"facts": facts, "args": sys.argv[1:], "results": results}, indent=1))
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
