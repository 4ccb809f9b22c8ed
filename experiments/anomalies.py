"""Precision and recall of ``stgnn anomalies`` on real Los-loop readings with planted anomalies.

The test period of Los-loop (its last 20 % of steps, 207 sensors) gets
planted spikes, drops, stuck runs and dropouts at known places
(:func:`stgnn.ops.anomalies.inject_anomalies`, seed 0); each checkpoint (trained on Los-loop's
training period) scans it at several thresholds.  Constant runs already in the released
readings (>= ``--stuck-steps``) are counted as true stuck readings.  Precision is also given
excluding the alerts the unchanged file raises as well (real congestion onsets and incidents
the statistics of the training period do not cover, which no label marks).  Writes
experiments/results/ANOMALIES.md.  Example:

    python experiments/anomalies.py --data-dir ../shared/data --checkpoints runs/last/checkpoint.pt \\
        runs/stgcn/checkpoint.pt --thresholds 4 6 8
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stgnn.ops.anomalies import (
    AnomalySettings,
    detect_anomalies,
    inject_anomalies,
    read_series,
    residual_statistics,
    run_lengths,
    score_alerts,
)
from stgnn.training.trainer import experiment_from_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--checkpoints", nargs="+", required=True, help="checkpoints trained on los-loop")
    p.add_argument("--thresholds", nargs="+", type=float, default=[4.0, 6.0, 8.0])
    p.add_argument("--size", type=float, default=0.5, help="relative size of planted spikes and drops")
    p.add_argument("--stuck-steps", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, default=Path("runs/anomalies"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", type=Path, default=RESULTS / "ANOMALIES.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # Los-loop's isolated node
    command = "python experiments/anomalies.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.work_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    planted_counts, period = "", ""
    for ckpt in args.checkpoints:
        exp, _ = experiment_from_checkpoint(ckpt, args.data_dir, "cpu")
        first = int(exp.dataset.num_steps * 0.8)
        clean = exp.dataset.series[first:, :, 0].numpy().astype(np.float64)
        stamps = exp.dataset.timestamps[first:]
        period = f"{stamps[0]} to {stamps[-1]}, {len(stamps)} steps x {exp.dataset.num_nodes} sensors"
        planted, truth = inject_anomalies(clean, np.random.default_rng(args.seed), size=args.size,
                                          skip=exp.spec.input_len + 12)
        truth[(truth == "") & (run_lengths(clean, np.isfinite(clean)) >= args.stuck_steps)] = "stuck (in the data)"
        kinds, counts = np.unique(truth[truth != ""], return_counts=True)
        planted_counts = ", ".join(f"{k}: {c}" for k, c in zip(kinds, counts, strict=True))
        files = {}
        for name, values in (("planted", planted), ("unchanged", clean)):
            files[name] = args.work_dir / f"{name}.csv"
            pd.DataFrame(values, index=pd.Index(stamps, name="timestamp"), columns=exp.dataset.node_ids).to_csv(
                files[name])
        stats = residual_statistics(exp, AnomalySettings())
        test_mae = exp.evaluate("test").compute()["average"]["mae"]
        for threshold in args.thresholds:
            settings = AnomalySettings(threshold=threshold, stuck_steps=args.stuck_steps)
            start = time.perf_counter()
            found = detect_anomalies(exp, read_series(files["planted"], exp), settings, stats)
            seconds = time.perf_counter() - start
            base = detect_anomalies(exp, read_series(files["unchanged"], exp), settings, stats)
            score = score_alerts(found, truth)
            flagged, labelled = found.kind != "", truth != ""
            new_false = flagged & ~labelled & (base.kind == "")
            excess = score["hits"] / (score["hits"] + int(new_false.sum()))
            by_kind = score["recall_by_kind"]
            rows.append(
                f"| {exp.config.model} ({Path(ckpt).parent.name}, test MAE {test_mae:.2f}) | {threshold:g} | "
                f"{score['alerts']} | {int((base.kind != '').sum())} | {score['precision']:.3f} | {excess:.3f} | "
                f"{score['recall']:.3f} | " + " | ".join(f"{by_kind.get(k, float('nan')):.2f}" for k in
                                                          ("spike", "drop", "stuck", "dropout", "stuck (in the data)"))
                + f" | {seconds:.0f} |")
            print(rows[-1], flush=True)
    text = (
        "# Anomaly alerts on Los-loop with planted anomalies\n\n"
        f"Scanned file: Los-loop's test period (last 20 %: {period}) with planted anomalies (seed {args.seed}; "
        f"spikes x{1 + args.size:g} for one step, drops "
        f"x{1 - args.size:g} for 3 steps, stuck runs of 18 steps, dropouts of 6 steps). Labelled points: "
        f"{planted_counts}. Point-level scores: precision = alerts on labelled points / alerts; recall = "
        "labelled points alerted / labelled points. \"precision (excl. unchanged)\" leaves out the alerts the "
        "unchanged file raises as well (real congestion onsets and incidents; no label marks them). "
        "Residual statistics per sensor and 60-minute slot from each model's training period; "
        f"stuck = >= {args.stuck_steps} identical readings; dropout = >= 1 missing reading; horizon 1. "
        "Checkpoints: shortened runs on CPU (the STGCN one: 3 epochs).\n\n"
        "| checkpoint | threshold | alerts | alerts on unchanged file | precision | precision (excl. unchanged) "
        "| recall | recall spike | recall drop | recall stuck | recall dropout | recall stuck (in the data) | "
        "scan s |\n|" + "---|" * 13 + "\n" + "\n".join(rows) + "\n\n"
        f"Produced by `{command}` ({platform.processor() or platform.machine()}, torch {torch.__version__}).\n"
    )
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
