"""Run models under the T-GCN protocol and rebuild experiments/results/TGCN_PROTOCOL.md.

A thin command line over :func:`stgnn.protocols.reproduce.reproduce_tgcn`.  Example (the paper
trains 5000 epochs per neural run; ``--epochs`` shortens it):

    python experiments/tgcn_protocol.py --data-dir ../shared/data --models ha arima tgcn \\
        --pre-lens 3 6 9 12 --selections test val --epochs 5 --seeds 0
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from stgnn.protocols.reproduce import TABLE_MODELS, reproduce_tgcn
from stgnn.protocols.tgcn import PROTOCOL_SETTINGS

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--dataset", default="los-loop", choices=sorted(PROTOCOL_SETTINGS))
    p.add_argument("--models", nargs="+", default=list(TABLE_MODELS))
    p.add_argument("--pre-lens", nargs="+", type=int, default=None)
    p.add_argument("--selections", nargs="+", default=["test", "val"], choices=["test", "val"])
    p.add_argument("--epochs", type=int, default=None, help="default: the authors' 5000")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python experiments/tgcn_protocol.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    reproduce_tgcn(args.models, args.dataset, root=args.data_dir, results_dir=args.results_dir, command=command,
                   pre_lens=args.pre_lens, selections=args.selections, seeds=args.seeds, epochs=args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
