"""Missing-data robustness: hide test-time input readings, score each model with each imputation.

Each model is trained once (its paper config where there is one, shortened to ``--epochs``), or
taken from ``RUNS_DIR/<model>`` when that run already finished.  Then, on the test windows, input
readings are hidden

* at random: 10 / 30 / 50 % of all readings of the test period (``--rates``), or
* whole sensors for a day: ``--sensor-fraction`` of the sensors, for one day from the start of the
  test period,

and the model is scored with every imputation method of ``data.impute`` (statistics fitted on the
training period, as in training).  Hidden readings are hidden from the *inputs* only: the targets
and the metrics are those of the clean run, so every number below scores the same readings.
Writes a Markdown table of masked test MAE (12-step average) and its change from the clean inputs.

    python experiments/robustness.py --data-dir ../shared/data --models ha lstm stgcn gwnet --epochs 5
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from stgnn.configs import paper_config
from stgnn.data.impute import IMPUTE_METHODS
from stgnn.training.config import RunConfig
from stgnn.training.trainer import Experiment, Trainer, experiment_from_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"


def drop_masks(exp: Experiment, rates: list[float], sensor_fraction: float, seed: int) -> dict[str, torch.Tensor]:
    """``scenario -> [T, N]`` bool, True where an input reading is hidden (test period only)."""
    t, n = exp.dataset.mask.shape
    start = int(exp.data.splits["test"][0])
    gen = torch.Generator().manual_seed(seed)
    masks = {"clean": torch.zeros(t, n, dtype=torch.bool)}
    for rate in rates:
        drop = torch.zeros(t, n, dtype=torch.bool)
        drop[start:] = torch.rand(t - start, n, generator=gen) < rate
        masks[f"random {rate:.0%}"] = drop
    count = max(1, round(sensor_fraction * n))
    sensors = torch.randperm(n, generator=gen)[:count]
    drop = torch.zeros(t, n, dtype=torch.bool)
    drop[start : start + exp.dataset.steps_per_day, sensors] = True
    masks[f"{count} sensors x 1 day"] = drop
    return masks


def trained(model: str, args: argparse.Namespace) -> Experiment:
    """The model's experiment with its best weights: from ``runs_dir/model`` if finished, else trained now."""
    run = args.runs_dir / model
    if (run / "metrics.json").is_file():
        exp, _ = experiment_from_checkpoint(run / "checkpoint.pt", args.data_dir, "cpu")
        return exp
    base = RunConfig(model=model, dataset=args.dataset)
    cfg = paper_config(model, args.dataset, base) or base
    cfg.train.epochs, cfg.train.device, cfg.train.seed = args.epochs, "cpu", args.seed
    exp = Experiment.build(cfg, args.data_dir)
    Trainer(exp, run, progress=False, log=print).fit()  # leaves the best weights in exp.model
    return exp


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--dataset", default="los-loop")
    p.add_argument("--models", nargs="+", default=["ha", "lstm", "stgcn", "gwnet"])
    p.add_argument("--methods", nargs="+", default=list(IMPUTE_METHODS), choices=IMPUTE_METHODS)
    p.add_argument("--epochs", type=int, default=5, help="training epochs of a model not trained yet (default 5)")
    p.add_argument("--rates", nargs="+", type=float, default=[0.1, 0.3, 0.5])
    p.add_argument("--sensor-fraction", type=float, default=0.2, help="sensors hidden for a day (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs-dir", type=Path, default=Path("runs/robustness"))
    p.add_argument("--output", type=Path, default=RESULTS / "ROBUSTNESS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python experiments/robustness.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    start = time.perf_counter()
    rows: list[tuple[str, str, dict[str, float]]] = []
    scenarios: list[str] = []
    epochs: dict[str, int] = {}
    for model in args.models:
        exp = trained(model, args)
        epochs[model] = exp.config.train.epochs if exp.model.trainable else 0
        masks = drop_masks(exp, args.rates, args.sensor_fraction, args.seed)
        scenarios = list(masks)
        weights = exp.model.state_dict()
        # the historical average never reads its inputs: one row shows the level to beat
        for method in args.methods if model != "ha" else ["none"]:
            cfg = exp.config.model_copy(deep=True)
            cfg.data.impute = method
            maes = {}
            for scenario, drop in masks.items():
                hidden = Experiment.build(cfg, dataset=exp.dataset, scaler=exp.data.scaler,
                                          input_mask=exp.dataset.mask & ~drop)
                hidden.model.load_state_dict(weights)
                maes[scenario] = hidden.evaluate("test", cfg.train.eval_batch_size).compute()["average"]["mae"]
            rows.append((model, method, maes))
            print(model, method, {k: round(v, 3) for k, v in maes.items()}, flush=True)
    lines = [
        f"# Missing-data robustness on {args.dataset}",
        "",
        "Masked test MAE (12-step average) when input readings of the test period are hidden, and its change "
        "from the clean inputs of the same model. Hidden readings are hidden from the inputs only; targets and "
        "metrics are those of the clean run. Imputation statistics come from the training period. "
        f"Shortened runs: {', '.join(f'{m} {e} epochs' if e else f'{m} (no training)' for m, e in epochs.items())}"
        f", CPU. Wall time {(time.perf_counter() - start) / 60:.1f} min.",
        "",
        "| model | imputation | " + " | ".join(scenarios) + " |",
        "|---|---|" + "---|" * len(scenarios),
    ]
    for model, method, maes in rows:
        clean = maes["clean"]
        cells = [f"{maes['clean']:.2f}"] + [f"{maes[s]:.2f} ({(maes[s] / clean - 1):+.0%})" for s in scenarios[1:]]
        lines.append(f"| {model} | {method} | " + " | ".join(cells) + " |")
    lines += ["", "```bash", command, "```", ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
