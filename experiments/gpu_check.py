"""The GPU check behind ``experiments/gpu_check.sh``: one call, under 10 minutes on one GPU.

1. the tests marked ``cuda`` (every test file that uses the marker);
2. one short epoch with mixed precision (``train.amp``: bfloat16, or float16 with loss scaling) of
   every registered model on Los-loop, on the GPU: epoch time, training windows/s, validation and
   test MAE;
3. ``experiments/benchmark.py --part metr --device cuda``: ours and the reference implementations
   (where ``--ref-root`` holds their checkouts), training samples/s, METR-LA epoch time, inference
   latency and peak GPU memory at METR-LA size (the METR-LA graph, batch 64);

and writes all tables into one Markdown file (default ``experiments/results/GPU_CHECK.md``) with
the machine, torch and commit.  The exit status is 1 when a part failed (the file says which).

``--dry-run`` runs the same steps on the CPU at tiny sizes (generated own data instead of
Los-loop, one batch per epoch, ``benchmark.py --quick`` with STGCN only, on the METR-LA graph
when it is under the data root, else a generated 207-sensor graph in its format), so that the
script is exercised wherever the test suite runs.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # standins: the generated data of --dry-run


def _run(cmd: list[str], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return 124, out + f"\n(timed out after {timeout:g} s)"
    return proc.returncode, proc.stdout + proc.stderr


def cuda_tests(timeout: float) -> tuple[bool, list[str]]:
    """``pytest -m cuda`` over the test files that use the marker."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                   if "mark.cuda" in p.read_text())
    code, out = _run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files], timeout)
    summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed|skipped|error|deselected)", line)]
    ok = code in (0, 5)  # 5: nothing collected
    lines = [f"`pytest -m cuda` over {len(files)} files: exit {code}; {summary[-1] if summary else 'no summary'}", ""]
    if not ok:
        lines += ["```", *out.splitlines()[-40:], "```", ""]
    return ok, lines


def model_epochs(dry_run: bool, data_dir: str | None, device: str) -> tuple[bool, list[str]]:
    """One AMP epoch of every registered model; one row each."""
    import torch

    from stgnn.configs import paper_config_raw
    from stgnn.models import MODELS
    from stgnn.training.config import RunConfig, merge
    from stgnn.training.trainer import Experiment, Trainer

    custom: dict[str, Any] = {}
    if dry_run:
        import standins

        folder = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        series, locations = standins.write_custom(folder, t=300, n=5)
        custom = {"series": str(series), "locations": str(locations)}
    rows = ["| model | device | precision | epoch (s) | train windows/s | val MAE | test MAE (avg) | note |",
            "|---|---|---|---:|---:|---:|---:|---|"]
    ok = True
    for name in MODELS:
        raw = {} if dry_run else (paper_config_raw(name, "los-loop") or {})
        merged = merge(RunConfig(), raw)
        merged.update(model=name, dataset="custom" if dry_run else "los-loop")
        merged["train"].update(epochs=1, amp=True, device=device, patience=0, max_batches=1 if dry_run else 0)
        if dry_run:
            merged["custom"] = custom
        try:
            cfg = RunConfig.from_dict(merged, source=f"gpu check {name}")
            exp = Experiment.build(cfg, data_dir)
            with tempfile.TemporaryDirectory() as out:
                trainer = Trainer(exp, out, progress=False, log=lambda line: None)
                start = time.perf_counter()
                result = trainer.fit()
                wall = time.perf_counter() - start
            seconds = sum(r["seconds"] for r in trainer.history) or wall
            windows = exp.data.num_windows("train") if not cfg.train.max_batches else min(
                exp.data.num_windows("train"), cfg.train.max_batches * cfg.train.batch_size)
            dtype = trainer.amp_dtype
            precision = "float32" if dtype is None else str(dtype).removeprefix("torch.")
            if trainer.scaler.is_enabled():
                precision += " + GradScaler"
            val = result["val"]["average"]["mae"]
            test = result["horizons"]["average"]["mae"]
            finite = all(v is not None and math.isfinite(v) for v in (val, test))
            ok &= finite
            rate = f"{windows / seconds:.0f}" if exp.model.trainable and trainer.history else "-"
            rows.append(f"| {name} | {exp.device} | {precision} | {seconds:.1f} | {rate} | {val:.3f} | {test:.3f} "
                        f"| {'' if finite else 'non-finite metrics'} |")
        except Exception as exc:  # record and go on with the other models
            ok = False
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            rows.append(f"| {name} | {device} | - | - | - | - | - | FAILED: {detail} |")
            traceback.print_exc()
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return ok, rows


def benchmark(dry_run: bool, device: str, ref_root: Path | None, adj: Path, timeout: float) -> tuple[bool, list[str]]:
    """benchmark.py's METR-LA part on ``device`` (ours and the references found under ``ref_root``)."""
    from references import REFERENCES

    refs = []
    for name, repo in REFERENCES.items():
        folder = None if ref_root is None else ref_root / repo.replace("/", "+")
        if folder is not None and folder.is_dir():
            refs += ["--ref-dir", f"{name}={folder}"]
    with tempfile.TemporaryDirectory() as tmp:
        md = Path(tmp) / "bench.md"
        cmd = [sys.executable, str(REPO / "experiments" / "benchmark.py"), "--part", "metr", "--device", device,
               "--adj", str(adj), "--markdown", str(md), *refs]
        if dry_run:
            cmd += ["--quick", "--models", "stgcn", "--allocs", "env", "--threads", "1"]
        else:
            cmd += ["--models", "stgcn-ref", "stgcn", "dcrnn", "gwnet", "--min-time", "3", "--max-steps", "20"]
        code, out = _run(cmd, timeout)
        text = md.read_text() if md.is_file() else ""
    shown = " ".join(c if not c.startswith("/") else Path(c).name for c in cmd[1:])
    lines = [f"`{shown}` (reference folders: {', '.join(refs[1::2]) or 'none found'}): exit {code}", "", text]
    if code != 0 or not text:
        lines += ["```", *out.splitlines()[-30:], "```"]
    return code == 0 and bool(text), lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at tiny sizes")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "GPU_CHECK.md")
    parser.add_argument("--data-dir", default=None, help="data root with los-loop/ and metr-la/adj_mx.pkl "
                        "(default $STGNN_DATA, else ./datasets)")
    parser.add_argument("--ref-root", type=Path, default=Path("/work/refs"),
                        help="folder of the reference checkouts (owner+name), as experiments/references.py")
    parser.add_argument("--adj", type=Path, default=None, help="METR-LA adj_mx.pkl (default: under the data root)")
    args = parser.parse_args()
    import torch

    from stgnn.data.registry import resolve_root
    from stgnn.training.checkpoint import git_state

    device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --dry-run to exercise the script on the CPU", file=sys.stderr)
        return 2
    adj = args.adj or resolve_root(args.data_dir) / "metr-la" / "adj_mx.pkl"
    if args.dry_run and args.adj is None and not adj.is_file():  # a 207-sensor ring in adj_mx.pkl's format
        import standins

        adj = Path(tempfile.mkdtemp(prefix="gpu-check-")) / "adj_mx.pkl"
        standins.write_adj_pickle(adj, [str(i) for i in range(207)], standins.ring_adj(207))
    if not adj.is_file():
        print(f"gpu_check: {adj}: METR-LA graph not found (give --adj or --data-dir)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    git = git_state(REPO)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    head = [
        "# GPU check" + (" (dry run on the CPU: tiny sizes, not measurements)" if args.dry_run else ""),
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {platform.node()}; GPU: {gpu}; torch "
        f"{torch.__version__}; commit {git['git_commit']}{' (dirty tree)' if git['git_dirty'] else ''}",
        f"Command: `experiments/gpu_check.sh {' '.join(sys.argv[1:])}`",
        "",
    ]
    parts: list[tuple[str, bool, list[str]]] = []
    ok, lines = cuda_tests(timeout=240)
    parts.append(("Tests marked cuda", ok, lines))
    ok, lines = model_epochs(args.dry_run, args.data_dir, device)
    parts.append(("One AMP epoch of every registered model" + (" (own tiny data)" if args.dry_run else
                  " on Los-loop"), ok, lines))
    ok, lines = benchmark(args.dry_run, device, args.ref_root, adj, timeout=420)
    parts.append(("Benchmark at METR-LA size, ours and the references", ok, lines))
    body = []
    for title, ok, lines in parts:
        body += [f"## {title}: {'ok' if ok else 'FAILED'}", "", *lines, ""]
    body.append(f"Total wall time {time.perf_counter() - started:.0f} s.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(head + body) + "\n")
    print("\n".join(head + body))
    return 0 if all(ok for _, ok, _ in parts) else 1


if __name__ == "__main__":
    sys.exit(main())
