"""Transfer to a new network: pretrain on one part of Los-loop, fine-tune on a day of the other part.

Los-loop's sensor graph is cut in two by a Kernighan-Lin bisection (networkx; minimum weighted
cut between two halves of equal size).  Part A's first four days (Thu-Sun) pretrain a model;
part B's last three days (Mon-Wed) are split into a small training slice (the first day),
validation and test.  On part B the same model is then trained

* from scratch,
* from A's weights (``stgnn train --init-from``; per-node tensors re-initialised), and
* from A's weights with the graph blocks frozen (``--freeze 'blocks.*'``; only the output
  layer trains),

with the same epochs, seed and data, and scored on B's test period.  Writes
experiments/results/TRANSFER.md.  Example:

    python experiments/transfer.py --data-dir ../shared/data --model stgcn --pretrain-epochs 3 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from networkx.algorithms.community import kernighan_lin_bisection

from stgnn.cli import main as stgnn
from stgnn.data import TrafficDataset, load_dataset

RESULTS = Path(__file__).resolve().parent / "results"
DAY = 288  # 5-minute steps


def write_part(folder: Path, ds: TrafficDataset, ids: list[str], steps: slice) -> tuple[Path, Path]:
    """Readings CSV and dense adjacency CSV of the sensors ``ids`` over ``steps``."""
    folder.mkdir(parents=True, exist_ok=True)
    position = {s: i for i, s in enumerate(ds.node_ids)}
    cols = [position[s] for s in ids]
    frame = pd.DataFrame(ds.series[steps, cols, 0].numpy(), columns=ids)
    frame.insert(0, "timestamp", ds.timestamps[steps])
    frame.to_csv(folder / "readings.csv", index=False)
    np.savetxt(folder / "adjacency.csv", ds.graph.reorder(ids).to_dense(), delimiter=",", fmt="%.6g")
    return folder / "readings.csv", folder / "adjacency.csv"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--model", default="stgcn")
    p.add_argument("--pretrain-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5, help="epochs on part B's slice (each variant)")
    p.add_argument("--slice-days", type=float, nargs="+", default=[1.0],
                   help="training days of part B, one set of runs each (default 1; at most 1.5)")
    p.add_argument("--freeze", default="blocks.*", help="pattern frozen in the third variant")
    p.add_argument("--work-dir", type=Path, default=Path("runs/transfer"),
                   help="data files and run folders; a run whose metrics.json exists there is reused")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", type=Path, default=RESULTS / "TRANSFER.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python experiments/transfer.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    ds = load_dataset("los-loop", args.data_dir)
    undirected = ds.graph.to_networkx().to_undirected()
    part_a, part_b = (sorted(part) for part in kernighan_lin_bisection(undirected, weight="weight", seed=0))
    ids_a, ids_b = [ds.node_ids[i] for i in part_a], [ds.node_ids[i] for i in part_b]
    cut = sum(1 for u, v in undirected.edges() if (u in set(part_a)) != (v in set(part_a)))
    work = args.work_dir
    series_a, adj_a = write_part(work / "part-a", ds, ids_a, slice(0, 4 * DAY))
    series_b, adj_b = write_part(work / "part-b", ds, ids_b, slice(4 * DAY, 7 * DAY))
    (work / "a.toml").write_text("[data]\nsplit = [0.7, 0.15, 0.15]\n")
    common = ["--model", args.model, "--device", "cpu", "--seed", "0", "--quiet", "--no-download"]
    commands = []

    def train(name: str, series: Path, adjacency: Path, config: str, epochs: int, *extra: str) -> dict:
        out = work / name
        argv_train = ["train", "--config", str(work / config), "--series", str(series), "--adjacency",
                      str(adjacency), "--epochs", str(epochs), "--output", str(out), *common, *extra]
        commands.append("stgnn " + shlex.join(argv_train))
        if not (out / "metrics.json").is_file() and stgnn(argv_train) != 0:
            raise SystemExit(f"failed: {commands[-1]}")
        return json.loads((out / "metrics.json").read_text())

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    pre_dir = f"pretrain-a-{args.pretrain_epochs}ep"
    pre = train(pre_dir, series_a, adj_a, "a.toml", args.pretrain_epochs)
    ckpt = str(work / pre_dir / "checkpoint.pt")
    lines = ["| B training days | train/val/test windows | part B, trained | MAE @3 | MAE @6 | MAE @12 | "
             "average MAE / RMSE / MAPE % | best epoch |", "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for days in args.slice_days:
        train_b = days / 3
        config = f"b-{days:g}d.toml"
        (work / config).write_text(f"[data]\nsplit = [{train_b:.6f}, {0.5 - train_b:.6f}, 0.5]\n")
        tag = f"b-{days:g}d-{args.epochs}ep-from-{args.pretrain_epochs}ep"
        rows = [("from scratch", train(f"{tag}-scratch", series_b, adj_b, config, args.epochs)),
                ("--init-from A", train(f"{tag}-init", series_b, adj_b, config, args.epochs, "--init-from", ckpt)),
                (f"--init-from A --freeze '{args.freeze}'",
                 train(f"{tag}-frozen", series_b, adj_b, config, args.epochs, "--init-from", ckpt, "--freeze",
                       args.freeze))]
        w = rows[0][1]["windows"]
        for name, m in rows:
            h = m["horizons"]
            avg = h["average"]
            lines.append(f"| {days:g} | {w['train']}/{w['val']}/{w['test']} | {name} | {f(h['3']['mae'])} | "
                         f"{f(h['6']['mae'])} | {f(h['12']['mae'])} | {f(avg['mae'])} / {f(avg['rmse'])} / "
                         f"{f(avg['mape'])} | {m['best_epoch']} |")
        scratch, init = (r[1]["horizons"]["average"]["mae"] for r in rows[:2])
        verdicts.append(f"with {days:g} day(s) of B, starting from A's weights changes the average test MAE by "
                        f"{init - scratch:+.2f} ({init:.2f} vs {scratch:.2f} from scratch)")
    first = f"b-{args.slice_days[0]:g}d-{args.epochs}ep-from-{args.pretrain_epochs}ep"
    record = json.loads((work / f"{first}-init" / "init_from.json").read_text())
    frozen = json.loads((work / f"{first}-frozen" / "init_from.json").read_text())
    text = (
        "# Transfer to a new network (Los-loop cut in two)\n\n"
        f"Shortened runs, CPU, {args.threads} thread(s), seed 0, model `{args.model}`: pretraining "
        f"{args.pretrain_epochs} epochs, each part-B variant {args.epochs} epochs.\n\n"
        f"- Graph cut: Kernighan-Lin bisection of Los-loop's 207 sensors (networkx, seed 0) into A = "
        f"{len(ids_a)} and B = {len(ids_b)} sensors, {cut} undirected edges cut.\n"
        f"- A: 2012-03-01 to 03-04 (Thu-Sun), split 70/15/15; its own test MAE "
        f"{f(pre['horizons']['average']['mae'])} after pretraining.\n"
        "- B: 2012-03-05 to 03-07 (Mon-Wed): the first day(s) given below train, then validation up to the "
        "middle, test = the last half (1.5 days, the same windows in every row). A's data ends before B's "
        "begins, so nothing of B's test period is seen in pretraining.\n"
        f"- Carried over from A: {len(record['loaded'])} tensors; re-initialised: "
        f"{', '.join(record['reinitialised']) or 'none'} (per-node); frozen in the `--freeze` rows: "
        f"{len(frozen['frozen'])} parameters.\n\n"
        "Part B's test split, masked metrics, MAPE in %:\n\n" + "\n".join(lines) + "\n\n"
        "At these run lengths, " + "; ".join(verdicts) + ".\n\n"
        f"Produced by `{command}` ({platform.processor() or platform.machine()}, torch {torch.__version__}), "
        "which ran:\n\n" + "".join(f"    {c}\n" for c in commands)
    )
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
