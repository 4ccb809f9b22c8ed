"""Probabilistic forecasts on Los-loop: train point, Gaussian and quantile heads, write PROBABILISTIC.md.

Each run is an ordinary ``stgnn train`` (its command is printed in the table), one after
another; the table is rebuilt from the runs' ``metrics.json`` files, so ``--table-only``
rewrites it without training::

    OMP_NUM_THREADS=1 python experiments/probabilistic.py --models stgcn --heads gaussian quantile --epochs 8
    python experiments/probabilistic.py --models stgcn --epochs 8 --table-only
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

from stgnn.report import horizon_table, interval_table

HEADS = {
    "point": [],
    "gaussian": ["--head", "gaussian"],
    "quantile": ["--head", "quantile", "--quantiles", "0.025", "0.1", "0.5", "0.9", "0.975"],
}


def command(model: str, head: str, epochs: int, runs: Path) -> list[str]:
    """The ``stgnn train`` command of one run."""
    return ["stgnn", "train", "--model", model, "--dataset", "los-loop", *HEADS[head], "--epochs", str(epochs),
            "--device", "cpu", "--output", str(runs / f"{model}-{head}"), "--quiet"]


def table(models: list[str], epochs: int, runs: Path, walls: dict[str, float]) -> str:
    """PROBABILISTIC.md from the runs' metrics."""
    threads = os.environ.get("OMP_NUM_THREADS", "torch default")
    lines = [
        "# Probabilistic forecasts on Los-loop",
        "",
        f"Shortened runs: {epochs} epochs each, CPU (2 cores, OMP_NUM_THREADS={threads}), each model's paper "
        "config otherwise, the best epoch chosen by validation MAE; test split, masked metrics, MAPE in %. "
        "CRPS in mph (Gaussian: closed form; quantiles: twice the mean pinball loss over the levels "
        "0.025 / 0.1 / 0.5 / 0.9 / 0.975). Coverage is the share of observed test readings inside the "
        "central interval (nominal 80 % and 95 %), width its mean width in mph. Point metrics score the "
        "mean (Gaussian) or the median (quantile).",
        "",
        "Produced by `" + shlex.join(["python", "experiments/probabilistic.py",
                                      *(a for a in sys.argv[1:] if a != "--table-only")])
        + "` (with `STGNN_DATA` pointing at the Los-loop files), which runs the commands listed.",
        "",
    ]
    for model in models:
        for head in HEADS:
            folder = runs / f"{model}-{head}"
            path = folder / "metrics.json"
            if not path.is_file():
                continue
            metrics = json.loads(path.read_text())
            env_file = folder / "environment.json"
            env = json.loads(env_file.read_text()) if env_file.is_file() else {}
            wall = walls.get(f"{model}-{head}", metrics.get("train_seconds", 0.0))
            lines += [
                f"## {model}, {head} head",
                "",
                f"`{shlex.join(command(model, head, epochs, runs))}` — best epoch {metrics['best_epoch']} of "
                f"{metrics['epochs_run']}, {metrics['num_parameters']:,} parameters, {wall / 60:.1f} min, "
                f"commit {env.get('git_commit', '?')}{' (dirty tree)' if env.get('git_dirty') else ''}",
                "",
                horizon_table(metrics["horizons"]),
                "",
            ]
            if "crps" in metrics["horizons"]["average"]:
                lines += [interval_table(metrics["horizons"]), ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["stgcn"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--heads", nargs="+", choices=list(HEADS), default=list(HEADS))
    p.add_argument("--runs-dir", default="runs/probabilistic")
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "PROBABILISTIC.md"))
    p.add_argument("--table-only", action="store_true", help="rebuild the table from existing runs")
    args = p.parse_args()
    runs = Path(args.runs_dir)
    walls: dict[str, float] = {}
    walls_file = runs / "wall_seconds.json"
    if walls_file.is_file():
        walls = json.loads(walls_file.read_text())
    if not args.table_only:
        for model in args.models:
            for head in args.heads:
                cmd = command(model, head, args.epochs, runs)
                print(shlex.join(cmd), flush=True)
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "stgnn", *cmd[1:]], check=True)
                walls[f"{model}-{head}"] = time.perf_counter() - start
                runs.mkdir(parents=True, exist_ok=True)
                walls_file.write_text(json.dumps(walls, indent=1))
    Path(args.output).write_text(table(args.models, args.epochs, runs, walls) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
