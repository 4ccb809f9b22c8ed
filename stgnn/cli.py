"""The ``stgnn`` console script.

Commands::

    stgnn datasets list|verify NAME|download NAME
    stgnn train    [--model NAME] [--dataset NAME | --series FILE (--locations|--distances|--edges|--adjacency) FILE]
                   [--config FILE] [--epochs N] [--output DIR] [--data-dir DIR] [--resume]
    stgnn evaluate --checkpoint FILE
    stgnn predict  --checkpoint FILE --at TIMESTAMP [--at ...] --output FILE.csv|.parquet
    stgnn plot     --checkpoint FILE [--sensors 0,5] [--horizon 3] --output DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stgnn.allocator import tune_malloc
from stgnn.data.download import MissingFilesError, download_dataset, verify_dataset
from stgnn.data.registry import DATASETS, resolve_root
from stgnn.metrics import MaskedMetrics
from stgnn.models import MODELS
from stgnn.published import published_for
from stgnn.report import horizon_table
from stgnn.reproduce import CONFIG_DIR, available_configs, dataset_present, reproduce
from stgnn.training.checkpoint import write_json
from stgnn.training.config import RunConfig, load_config
from stgnn.training.trainer import Experiment, Trainer, experiment_from_checkpoint

__all__ = ["main"]

DEFAULT_MODEL = "stgcn"


def default_dataset(root: Path) -> str:
    """METR-LA when its files are under ``root``, else Los-loop (a real METR-LA week)."""
    return "metr-la" if dataset_present("metr-la", root) else "los-loop"


# --------------------------------------------------------------------------- datasets
def _cmd_datasets(args: argparse.Namespace) -> int:
    root = resolve_root(args.data_dir)
    if args.action == "list":
        print(f"data root: {root.resolve()}")
        print(f"{'name':<10} {'T x N x F':<18} {'present':<8} where to get it")
        for name, info in DATASETS.items():
            t, n, f = info.shape
            where = "; ".join(
                f"{x.name}: {x.url or x.note}" for x in info.files if x.required and
                not (root / name / x.name).is_file()
            ) or "-"
            print(f"{name:<10} {f'{t} x {n} x {f}':<18} {'yes' if dataset_present(name, root) else 'no':<8} {where}")
        return 0
    if args.name is None:
        raise SystemExit(f"stgnn datasets {args.action}: give a dataset name ({', '.join(DATASETS)})")
    if args.action == "verify":
        bad = 0
        for st in verify_dataset(args.name, root):
            if not st.present:
                state = "MISSING" if st.required else "absent (optional)"
                bad += st.required
            elif st.sha256_ok is None:
                state = "present (no published digest)"
            elif st.sha256_ok:
                state = "ok"
            else:
                state = f"CHECKSUM MISMATCH expected {st.expected} got {st.actual}"
                bad += 1
            print(f"{st.name:<32} {state}")
        return 1 if bad else 0
    try:
        paths = download_dataset(args.name, root, progress=not args.quiet)
    except MissingFilesError as exc:
        print(exc, file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


# --------------------------------------------------------------------------- train
def _resolve_config(args: argparse.Namespace) -> RunConfig:
    custom = {k: getattr(args, k) for k in ("locations", "distances", "edges", "adjacency") if getattr(args, k)}
    if custom and not args.series:
        raise SystemExit("--locations/--distances/--edges/--adjacency need --series")
    if args.series and len(custom) != 1:
        raise SystemExit("--series needs exactly one of --locations, --distances, --edges, --adjacency")
    root = resolve_root(args.data_dir)
    model = args.model or DEFAULT_MODEL
    dataset = "custom" if args.series else (args.dataset or default_dataset(root))
    cfg = RunConfig(model=model, dataset=dataset)
    config_path = Path(args.config) if args.config else CONFIG_DIR / model / f"{dataset}.toml"
    if args.config or config_path.is_file():
        cfg = load_config(config_path, cfg)
        cfg.model = args.model or cfg.model
        cfg.dataset = "custom" if args.series else (args.dataset or cfg.dataset)
    if args.series:
        cfg.custom = {"series": str(Path(args.series).resolve()),
                      **{k: str(Path(v).resolve()) for k, v in custom.items()}}
        if args.zero_is_missing:
            cfg.custom["zero_is_missing"] = True
    if cfg.model not in MODELS:
        raise SystemExit(f"unknown model {cfg.model!r}; registered: {', '.join(sorted(MODELS))}")
    for key in ("epochs", "batch_size", "seed", "device", "lr", "max_batches"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg.train, key, value)
    return cfg


def _print_table(result: dict, dataset: str, model: str, interval: int) -> None:
    print(f"\n{model} on {dataset} (test split, masked metrics, MAPE in %):\n")
    print(horizon_table(result["horizons"], published_for(dataset, model), interval))


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = _resolve_config(args)
    output = Path(args.output or Path("runs") / f"{cfg.model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    exp = Experiment.build(cfg, args.data_dir)
    n_params = sum(p.numel() for p in exp.model.parameters())
    print(f"{exp.dataset!r}\nmodel {cfg.model}: {n_params:,} parameters on {exp.device}; "
          f"windows train/val/test = {exp.data.num_windows('train')}/{exp.data.num_windows('val')}/"
          f"{exp.data.num_windows('test')}; output {output}")
    result = Trainer(exp, output, progress=not args.quiet).fit(resume=args.resume)
    _print_table(result, exp.dataset.name, cfg.model, exp.dataset.interval_minutes)
    print(f"\nwrote {output / 'metrics.json'}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    root = resolve_root(args.data_dir)
    if args.all:
        jobs = [(m, d) for m, d in available_configs() if dataset_present(d, root)]
        if not jobs:
            raise SystemExit(f"no dataset with a config is present under {root}")
        print("will run: " + ", ".join(f"{m}/{d}" for m, d in jobs))
    elif args.model and args.dataset:
        if not (CONFIG_DIR / args.model / f"{args.dataset}.toml").is_file():
            known = ", ".join(f"{m}/{d}" for m, d in available_configs())
            raise SystemExit(f"no config experiments/configs/{args.model}/{args.dataset}.toml; have: {known}")
        jobs = [(args.model, args.dataset)]
    else:
        raise SystemExit("stgnn reproduce: give MODEL DATASET, or --all")
    for model, dataset in jobs:
        record = reproduce(model, dataset, root=root, progress=not args.quiet, runs_dir=args.runs_dir,
                           train_overrides={"epochs": args.epochs, "device": args.device})
        published = published_for(dataset, model)
        print(f"\n{model} on {dataset}: {record['wall_seconds'] / 60:.1f} min on {record['device']}\n")
        print(horizon_table(record["horizons"], published))
    print("\nupdated experiments/results/RESULTS.md")
    return 0


# --------------------------------------------------------------------------- evaluate / predict / plot
def _cmd_evaluate(args: argparse.Namespace) -> int:
    exp, _ = experiment_from_checkpoint(args.checkpoint, args.data_dir, args.device)
    metrics = exp.evaluate(args.split, exp.config.train.eval_batch_size, progress=not args.quiet)
    result = {"horizons": metrics.compute(), "per_step": metrics.per_step(), "split": args.split,
              "checkpoint": str(args.checkpoint), "model": exp.config.model, "dataset": exp.dataset.name}
    _print_table(result, exp.dataset.name, exp.config.model, exp.dataset.interval_minutes)
    if args.output:
        write_json(args.output, result)
        print(f"\nwrote {args.output}")
    return 0


def _window_starts_for(exp: Experiment, stamps: Sequence[str]) -> tuple[list[pd.Timestamp], torch.Tensor]:
    index = exp.dataset.timestamps
    starts, origins = [], []
    for text in stamps:
        ts = pd.Timestamp(text)
        pos = index.get_indexer([ts])[0]
        if pos < 0:
            raise SystemExit(f"--at {text}: not a timestamp of {exp.dataset.name} "
                             f"({index[0]} .. {index[-1]}, every {exp.dataset.interval_minutes} min)")
        start = pos - exp.spec.input_len + 1
        if start < 0:
            raise SystemExit(f"--at {text}: needs {exp.spec.input_len} steps of history; "
                             f"earliest is {index[exp.spec.input_len - 1]}")
        starts.append(start)
        origins.append(ts)
    return origins, torch.tensor(starts, dtype=torch.long)


def _cmd_predict(args: argparse.Namespace) -> int:
    exp, _ = experiment_from_checkpoint(args.checkpoint, args.data_dir, args.device)
    origins, starts = _window_starts_for(exp, args.at)
    pred = exp.predict(exp.data.batch(starts))[..., 0].numpy()  # [B, H, N]
    step = pd.Timedelta(minutes=exp.dataset.interval_minutes)
    T = exp.dataset.num_steps
    rows = []
    for b, origin in enumerate(origins):
        for h in range(exp.spec.horizon):
            t = int(starts[b]) + exp.spec.input_len + h
            if t < T:  # the truth is known: report it where it was observed
                observed = exp.dataset.mask[t].numpy()
                truth = np.where(observed, exp.dataset.series[t, :, exp.data.target_features[0]].numpy(), np.nan)
            else:
                truth = np.full(exp.dataset.num_nodes, np.nan)
            for n, sensor in enumerate(exp.dataset.node_ids):
                rows.append((origin, origin + (h + 1) * step, h + 1, sensor, float(pred[b, h, n]), float(truth[n])))
    frame = pd.DataFrame(rows, columns=["origin", "timestamp", "horizon", "sensor", "prediction", "truth"])
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} forecasts ({len(origins)} origins x {exp.spec.horizon} steps x "
          f"{exp.dataset.num_nodes} sensors) to {out}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("stgnn plot needs matplotlib: pip install 'stgnn[plot]'") from exc
    exp, _ = experiment_from_checkpoint(args.checkpoint, args.data_dir, args.device)
    sensors = [int(s) for s in args.sensors.split(",")]
    bad = [s for s in sensors if not 0 <= s < exp.dataset.num_nodes]
    if bad:
        raise SystemExit(f"--sensors {bad}: node indices must be in 0..{exp.dataset.num_nodes - 1}")
    if not 1 <= args.horizon <= exp.spec.horizon:
        raise SystemExit(f"--horizon must be in 1..{exp.spec.horizon}")
    starts = exp.data.splits[args.split]
    metrics = MaskedMetrics(horizons=[exp.spec.horizon], null_value=exp.config.data.null_value)
    preds, truths, masks = [], [], []
    for i in range(0, starts.numel(), 256):
        chunk = starts[i : i + 256]
        batch = exp.data.batch(chunk)
        pred = exp.predict(batch)
        metrics.update(pred, batch.y, batch.mask)
        h = args.horizon - 1
        preds.append(pred[:, h, sensors, 0])
        truths.append(batch.y[:, h, sensors, 0])
        masks.append(batch.mask[:, h, sensors])
    pred_t, truth_t, mask_t = torch.cat(preds), torch.cat(truths), torch.cat(masks)
    times = exp.dataset.timestamps[(starts + exp.spec.input_len + args.horizon - 1).numpy()]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(sensors), 1, figsize=(11, 2.6 * len(sensors)), squeeze=False)
    for i, s in enumerate(sensors):
        ax = axes[i, 0]
        truth = np.where(mask_t[:, i].numpy(), truth_t[:, i].numpy(), np.nan)
        ax.plot(times, truth, lw=0.8, label="truth", color="black")
        ax.plot(times, pred_t[:, i].numpy(), lw=0.8, label=f"forecast @{args.horizon}", color="tab:red")
        ax.set_ylabel(f"{exp.dataset.node_ids[s]}\n[{exp.dataset.units}]")
        ax.legend(loc="lower left", fontsize=8)
    axes[0, 0].set_title(f"{exp.config.model} on {exp.dataset.name}, {args.split} split, horizon {args.horizon}")
    fig.tight_layout()
    fig.savefig(out / "forecast.png", dpi=110)
    plt.close(fig)
    steps = metrics.per_step()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    hs = np.arange(1, len(steps) + 1) * exp.dataset.interval_minutes
    for key in ("mae", "rmse"):
        values = np.array([np.nan if s[key] is None else s[key] for s in steps], dtype=float)
        ax.plot(hs, values, marker="o", label=key.upper())
    ax.set_xlabel("horizon [min]")
    ax.set_ylabel(f"error [{exp.dataset.units}]")
    ax.set_title(f"{exp.config.model} on {exp.dataset.name}: error by horizon ({args.split})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "error_by_horizon.png", dpi=110)
    plt.close(fig)
    print(f"wrote {out / 'forecast.png'} and {out / 'error_by_horizon.png'}")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``stgnn``."""
    p = argparse.ArgumentParser(prog="stgnn", description="Spatio-temporal GNNs for traffic forecasting.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", default=None, help="data root (default: $STGNN_DATA or ./datasets)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    d = sub.add_parser("datasets", help="list, verify or download benchmark datasets")
    d.add_argument("action", choices=["list", "verify", "download"])
    d.add_argument("name", nargs="?", choices=list(DATASETS))
    common(d)
    d.set_defaults(func=_cmd_datasets)

    t = sub.add_parser("train", help="train and evaluate a model")
    t.add_argument("--model", choices=sorted(MODELS), help=f"model (default {DEFAULT_MODEL})")
    t.add_argument("--dataset", choices=list(DATASETS),
                   help="benchmark dataset (default: metr-la if present under the data root, else los-loop)")
    t.add_argument("--config", help="TOML config (default: experiments/configs/MODEL/DATASET.toml if it exists)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    t.add_argument("--max-batches", type=int, help="cap training batches per epoch (quick runs)")
    t.add_argument("--output", help="output directory (default runs/MODEL-DATASET-TIME)")
    t.add_argument("--resume", action="store_true", help="continue the run in --output from its checkpoint")
    g = t.add_argument_group("your own data (instead of --dataset)")
    g.add_argument("--series", help="CSV/Parquet: a timestamp column, then one column per sensor")
    g.add_argument("--locations", help="CSV: sensor_id, latitude, longitude (k-nearest-neighbour graph)")
    g.add_argument("--distances", help="CSV: from, to, cost (road distances; Gaussian kernel)")
    g.add_argument("--edges", help="CSV: from, to[, weight] sensor-id pairs")
    g.add_argument("--adjacency", help="headerless dense N x N CSV in the series' column order")
    g.add_argument("--zero-is-missing", action="store_true", help="treat zeros in --series as missing")
    common(t)
    t.set_defaults(func=_cmd_train)

    r = sub.add_parser("reproduce", help="run a paper config and record ours vs published")
    r.add_argument("model", nargs="?", choices=sorted(MODELS))
    r.add_argument("dataset", nargs="?", choices=list(DATASETS))
    r.add_argument("--all", action="store_true", help="every config whose dataset is present")
    r.add_argument("--epochs", type=int, help="override the paper's epochs (recorded in the results)")
    r.add_argument("--device", default=None)
    r.add_argument("--runs-dir", default="runs/reproduce", help="where run directories go")
    common(r)
    r.set_defaults(func=_cmd_reproduce)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--output", help="write the metrics JSON here")
    e.add_argument("--device", default=None)
    common(e)
    e.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser("predict", help="forecast from given timestamps (the last observed step)")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--at", action="append", required=True, help="forecast origin timestamp (repeatable)")
    pr.add_argument("--output", required=True, help=".csv or .parquet")
    pr.add_argument("--device", default=None)
    common(pr)
    pr.set_defaults(func=_cmd_predict)

    pl = sub.add_parser("plot", help="forecast vs truth and error by horizon, as PNG")
    pl.add_argument("--checkpoint", required=True)
    pl.add_argument("--sensors", default="0", help="comma-separated node indices (default 0)")
    pl.add_argument("--horizon", type=int, default=3)
    pl.add_argument("--split", default="test", choices=["train", "val", "test"])
    pl.add_argument("--output", required=True, help="output directory")
    pl.add_argument("--device", default=None)
    common(pl)
    pl.set_defaults(func=_cmd_plot)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stgnn`` console script."""
    # keep freed activation memory for reuse instead of returning it to the OS every step
    # (see stgnn.allocator and experiments/results/BENCHMARKS.md; STGNN_MALLOC=default opts out)
    tune_malloc()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"stgnn {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
