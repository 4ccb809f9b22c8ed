"""Export every model trained briefly on Los-loop to ONNX (float32 and int8) and TorchScript; write EXPORT.md.

For each model: ``stgnn train`` (shortened: ``--epochs``, ``--max-batches``; skipped when the run
folder already holds a finished checkpoint), then ``stgnn export`` as float32 ONNX, as int8
dynamic-quantized ONNX and as TorchScript, each in its own process under a time limit.  Every
command's measurements come from its ``--report`` JSON; a refused or failed export is listed with
the first line of its error.  Usage (from the repository root)::

    OMP_NUM_THREADS=1 python experiments/export_table.py --data-dir /work/shared/data \\
        --models lstm gru gcn tgcn stgcn gwnet dcrnn --epochs 2 --max-batches 20
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "EXPORT.md"


def run(cmd: list[str], timeout: float) -> tuple[int, str, float]:
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"stopped after {timeout:.0f} s", time.perf_counter() - start
    lines = proc.stderr.strip().splitlines()
    err = [line.removeprefix("stgnn: error: ") for line in lines if line.startswith("stgnn: error:")]
    return proc.returncode, err[0] if err else (lines[-1] if lines else ""), time.perf_counter() - start


def fmt_metric(m: dict[str, Any] | None) -> str:
    if not m or m.get("mae") is None:
        return "-"
    return f"{m['mae']:.3f} / {m['rmse']:.3f} / {m['mape']:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("STGNN_DATA"))
    ap.add_argument("--models", nargs="+", default=["lstm", "gru", "gcn", "tgcn", "stgcn", "gwnet", "dcrnn"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-batches", type=int, default=20)
    ap.add_argument("--runs-dir", default="runs/export")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per export command")
    ap.add_argument("--output", default=str(RESULTS))
    args = ap.parse_args()
    stgnn = [sys.executable, "-m", "stgnn"]
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    rows: list[dict[str, Any]] = []
    commands: list[str] = []
    for model in args.models:
        run_dir = Path(args.runs_dir) / model
        ckpt = run_dir / "checkpoint.pt"
        train = [*stgnn, "train", "--model", model, "--dataset", "los-loop", "--epochs", str(args.epochs),
                 "--max-batches", str(args.max_batches), "--device", "cpu", "--output", str(run_dir), "--quiet",
                 "--no-download", *data]
        if not (run_dir / "metrics.json").is_file():
            code, msg, secs = run(train, 3600)
            print(f"{model}: train exit {code} in {secs:.0f} s {msg}", flush=True)
            if code != 0:
                rows.append({"model": model, "variant": "train", "error": msg})
                continue
        commands.append(shlex.join(["stgnn", *train[3:]]))
        for variant, extra, suffix in (("onnx float32", ["--format", "onnx"], ".onnx"),
                                       ("onnx int8 dynamic", ["--format", "onnx", "--quantize", "dynamic"],
                                        ".int8.onnx"),
                                       ("torchscript float32", ["--format", "torchscript"], ".pt")):
            out = run_dir / f"model{suffix}"
            report = run_dir / f"report{suffix}.json"
            report.unlink(missing_ok=True)
            cmd = [*stgnn, "export", "--checkpoint", str(ckpt), *extra, "--output", str(out), "--report",
                   str(report), "--quiet", "--no-download", *data]
            code, msg, secs = run(cmd, args.timeout)
            print(f"{model} {variant}: exit {code} in {secs:.0f} s {msg}", flush=True)
            commands.append(shlex.join(["stgnn", *cmd[3:]]))
            row: dict[str, Any] = {"model": model, "variant": variant, "seconds": secs}
            if code == 0 and report.is_file():
                row.update(json.loads(report.read_text()))
            else:
                row["error"] = msg
            rows.append(row)
        write_table(rows, commands, args)  # after every model: an interrupted run keeps what it measured


def write_table(rows: list[dict[str, Any]], commands: list[str], args: argparse.Namespace) -> None:
    lines = [
        "# Export: ONNX / int8 / TorchScript on Los-loop",
        "",
        f"Shortened runs ({args.epochs} epochs x at most {args.max_batches} batches, CPU, one thread): the models "
        "are far from converged, so the metrics show the change export and quantization make, not model quality.",
        "Each export is checked against the PyTorch model on all Los-loop test windows (max |difference| of the "
        "scaled outputs; the float32 ONNX check must stay within 1e-4 or the export fails). Latency: median of 20 "
        "forward passes of one window, `OMP_NUM_THREADS=1` (onnxruntime with one intra-op thread), on a shared "
        "2-core machine under load from other processes: compare within a row, not across runs.",
        "Metrics: test MAE / RMSE / MAPE (%), 12-step average, masked.",
        "",
        "| model | export | size (MB) | max abs diff | latency exported / PyTorch (ms) | test metrics exported "
        "| test metrics PyTorch | export time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['variant']} | - | - | - | not exported: {r['error']} | - | "
                         f"{r.get('seconds', 0):.0f} |")
            continue
        metrics = r["metrics"]
        exported = next(v for k, v in metrics.items() if k.startswith("exported"))
        lat = r["latency_ms"]
        lines.append(f"| {r['model']} | {r['variant']} | {r['size_bytes'] / 1e6:.2f} | {r['max_abs_diff']:.1e} | "
                     f"{lat['exported']:.2f} / {lat['pytorch']:.2f} | {fmt_metric(exported)} | "
                     f"{fmt_metric(metrics['pytorch float32'])} | {r['seconds']:.0f} |")
    lines += ["", "Produced by:", "", "```bash",
              "OMP_NUM_THREADS=1 python experiments/export_table.py " + shlex.join(sys.argv[1:]), "```", "",
              "which ran:", "", "```bash", *commands, "```", ""]
    Path(args.output).write_text("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
