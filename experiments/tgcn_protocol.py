"""Run models under the T-GCN protocol and rebuild experiments/results/TGCN_PROTOCOL.md.

Example (the full grid of the paper takes 5000 epochs per neural run; ``--epochs`` shortens it):

    python experiments/tgcn_protocol.py --data-dir ../shared/data --models ha arima tgcn \\
        --pre-lens 3 6 9 12 --selections test val --epochs 5 --seeds 0
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from stgnn.data import load_dataset
from stgnn.protocols.baselines import STATISTICAL_BASELINES
from stgnn.protocols.runner import default_settings, run_protocol
from stgnn.protocols.table import load_records, record, render_runs, render_table, save_record
from stgnn.protocols.tgcn import PROTOCOL_SETTINGS
from stgnn.published import TGCN_TABLE

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = ["ha", "arima", "svr", "gcn", "gru", "tgcn", "stgcn", "dcrnn", "gwnet"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--dataset", default="los-loop", choices=sorted(PROTOCOL_SETTINGS))
    p.add_argument("--models", nargs="+", default=ORDER)
    p.add_argument("--pre-lens", nargs="+", type=int, default=None)
    p.add_argument("--selections", nargs="+", default=["test", "val"], choices=["test", "val"])
    p.add_argument("--epochs", type=int, default=None, help="default: the authors' 5000")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results-dir", type=Path, default=RESULTS / "tgcn-protocol")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python experiments/tgcn_protocol.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    ds = load_dataset(args.dataset, args.data_dir)
    ps = PROTOCOL_SETTINGS[args.dataset]
    for pre_len in args.pre_lens or ps.pre_lens:
        for model in args.models:
            statistical = model in STATISTICAL_BASELINES
            for selection in ["test"] if statistical else args.selections:
                for seed in [0] if statistical else args.seeds:
                    settings = None if statistical else default_settings(model, args.dataset, args.epochs)
                    res = run_protocol(model, ds.series, ds.graph.edge_index, ds.graph.edge_weight,
                                       seq_len=ps.seq_len, pre_len=pre_len, selection=selection,
                                       settings=settings, seed=seed, steps_per_day=ds.steps_per_day)
                    path = save_record(record(res, args.dataset, command), args.results_dir)
                    print(f"{model} pre_len={pre_len} {selection} seed={seed}: "
                          f"rmse={res.metrics['rmse']:.4f} mae={res.metrics['mae']:.4f} "
                          f"epoch={res.best_epoch} ({res.seconds:.0f} s) -> {path}", flush=True)
    records = load_records(args.results_dir, args.dataset)
    present = {r["model"] for r in records} | {m for (d, m) in TGCN_TABLE if d == args.dataset}
    table = render_table(records, args.dataset, [m for m in ORDER if m in present])
    out = RESULTS / "TGCN_PROTOCOL.md"
    header = out.read_text().split("<!-- table -->")[0] if out.is_file() else "# T-GCN protocol\n\n"
    out.write_text(header + "<!-- table -->\n\n" + table + "\n### Runs\n\n" + render_runs(records))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
