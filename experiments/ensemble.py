"""Does an ensemble beat its members on Los-loop?  Writes experiments/results/ENSEMBLE.md.

Trains the members with ``stgnn train`` (shortened runs; a member whose checkpoint already
exists under ``--runs-dir`` is reused), combines them with ``stgnn ensemble --method mean`` and
``--method weighted``, and tabulates the test metrics of members and ensembles.  The
``--mixture-members`` are trained with a Gaussian head (``--head gaussian``) and combined with
``--method mixture`` (scored as a distribution: CRPS and interval coverage too).  Example:

    python experiments/ensemble.py --data-dir ../shared/data --members stgcn:3:0 stgcn:2:1 gwnet:1:0 \
        --mixture-members stgcn:3:0 stgcn:2:1 gwnet:1:0
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

import torch

from stgnn.cli import main as stgnn
from stgnn.ops.ensemble import comparison_table

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--members", nargs="+", default=["stgcn:3:0", "stgcn:2:1", "gwnet:1:0"],
                   help="MODEL:EPOCHS:SEED per member (default stgcn:3:0 stgcn:2:1 gwnet:1:0)")
    p.add_argument("--mixture-members", nargs="*", default=["stgcn:3:0", "stgcn:2:1", "gwnet:1:0"],
                   help="MODEL:EPOCHS:SEED per member with a Gaussian head, for --method mixture (none: skipped)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs/ensemble"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", type=Path, default=RESULTS / "ENSEMBLE.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python experiments/ensemble.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    commands: list[str] = []

    def train(members: list[str], head: list[str]) -> list[str] | None:
        checkpoints = []
        for member in members:
            model, epochs, seed = member.split(":")
            out = args.runs_dir / (f"{model}-{epochs}ep-seed{seed}" + ("-gaussian" if head else ""))
            argv_train = ["train", "--model", model, "--dataset", "los-loop", "--data-dir", args.data_dir,
                          "--epochs", epochs, "--device", "cpu", "--seed", seed, *head, "--output", str(out),
                          "--quiet", "--no-download"]
            commands.append("stgnn " + shlex.join(argv_train))
            if not (out / "metrics.json").is_file() and stgnn(argv_train) != 0:
                return None
            checkpoints.append(str(out / "checkpoint.pt"))
        return checkpoints

    point = train(args.members, [])
    gaussian = train(args.mixture_members, ["--head", "gaussian"]) if args.mixture_members else []
    if point is None or gaussian is None:
        return 1
    runs = [("mean", point), ("weighted", point)] + ([("mixture", gaussian)] if gaussian else [])
    sections = []
    for method, checkpoints in runs:
        out = args.runs_dir / f"ensemble-{method}"
        argv_ens = ["ensemble", "--checkpoints", *checkpoints, "--method", method, "--output", str(out),
                    "--data-dir", args.data_dir, "--device", "cpu", "--quiet", "--no-download"]
        commands.append("stgnn " + shlex.join(argv_ens))
        if stgnn(argv_ens) != 0:
            return 1
        result = json.loads((out / "metrics.json").read_text())
        verdicts = []
        for key in ("mae", "rmse", "mape") + (("crps",) if method == "mixture" else ()):
            best = min(m["horizons"]["average"][key] for m in result["members"])
            ens = result["horizons"]["average"][key]
            verdicts.append(f"{key.upper()} {ens:.3f} vs {best:.3f} ({'beaten' if ens < best else 'not beaten'})")
        sections.append(f"### {method}: {result['weight_formula']}\n\n{comparison_table(result)}\n\n"
                        f"The {method} ensemble against the best member in each metric (average over the 12 "
                        f"horizons): {'; '.join(verdicts)}.\n")
    text = (
        "# Ensembles on Los-loop\n\n"
        f"Shortened runs (members: {', '.join(args.members)} as MODEL:EPOCHS:SEED"
        + (f"; mixture members, Gaussian heads: {', '.join(args.mixture_members)}" if gaussian else "")
        + f"; CPU, {args.threads} "
        "thread(s)), test split (last 20 % of the windows), masked metrics, MAPE in %. Weights come from each "
        "member's validation MAE, never the test split.\n\n"
        f"Produced by `{command}` ({platform.processor() or platform.machine()}, torch {torch.__version__}), "
        "which ran:\n\n" + "".join(f"    {c}\n" for c in commands) + "\n" + "\n".join(sections)
    )
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
