"""Accuracy of sampled-subgraph training vs full-graph training on Los-loop (short runs, same epochs).

For each model, two ``stgnn train`` runs with the model's Los-loop config, the same seed and the
same number of epochs: ``--sampling full`` and ``--sampling partition --partitions P --halo-hops K``;
both are evaluated on the full graph (test split, masked MAE / RMSE / MAPE, 12-step average and
horizons 3 / 6 / 12).  The table goes to ``--markdown`` with the exact command.

    python experiments/large/compare_sampling.py --data-dir /work/shared/data --epochs 3 \\
        --models stgcn gwnet dcrnn --markdown experiments/results/SAMPLING.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def train(model: str, sampling: list[str], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    if not (out / "metrics.json").is_file():
        cmd = [sys.executable, "-m", "stgnn", "train", "--model", model, "--dataset", "los-loop",
               "--data-dir", args.data_dir, "--epochs", str(args.epochs_for.get(model, args.epochs)),
               "--device", "cpu", "--seed", str(args.seed), "--no-download", "--quiet", "--output", str(out),
               *sampling]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("STGNN_DATA", "datasets"))
    p.add_argument("--models", nargs="+", default=["stgcn", "gwnet", "dcrnn"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--epochs-for", type=json.loads, default={}, help='JSON {"model": epochs} overrides')
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--halo-hops", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default="runs/compare-sampling")
    p.add_argument("--markdown")
    args = p.parse_args()
    runs = Path(args.runs_dir)
    sampled = ["--sampling", "partition", "--partitions", str(args.partitions), "--halo-hops", str(args.halo_hops)]
    lines = ["| model | epochs | training | MAE avg | RMSE avg | MAPE avg % | MAE @3 / @6 / @12 | train s |",
             "|---|---:|---|---:|---:|---:|---|---:|"]
    for model in args.models:
        for label, extra in (("full graph", ["--sampling", "full"]),
                             (f"{args.partitions} parts, halo {args.halo_hops}", sampled)):
            m = train(model, extra, args, runs / f"{model}-{extra[1]}")
            h, avg = m["horizons"], m["horizons"]["average"]
            lines.append(f"| {model} | {m['epochs_run']} | {label} | {avg['mae']:.3f} | {avg['rmse']:.3f} | "
                         f"{avg['mape']:.2f} | {h['3']['mae']:.3f} / {h['6']['mae']:.3f} / {h['12']['mae']:.3f} | "
                         f"{m['train_seconds']:.0f} |")
    table = f"Command: `python experiments/large/compare_sampling.py {' '.join(sys.argv[1:])}`\n\n" + "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
