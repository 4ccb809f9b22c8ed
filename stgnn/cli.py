"""The ``stgnn`` console script.

Commands::

    stgnn datasets list|verify NAME|download NAME
    stgnn datasets convert NAME|READINGS [--locations|--distances|--edges|--adjacency FILE] --output DIR
    stgnn train    [--model NAME] [--dataset NAME|DIR | --series FILE (--locations|--distances|--edges|--adjacency) F]
                   [--config FILE] [--epochs N] [--output DIR] [--data-dir DIR] [--resume] [--no-download]
                   [--init-from CHECKPOINT [--freeze PATTERN ...]]
                   [--compile]        (torchrun --nproc-per-node K -m stgnn train ...: data-parallel)
    stgnn reproduce MODEL DATASET | --all  [--results-dir DIR] [--runs-dir DIR] [--no-download]
    stgnn reproduce [MODEL] [DATASET] --protocol tgcn [--all] [--epochs N] [--seeds 0 1 2] [--selection test val]
    stgnn score    --dataset NAME --protocol tgcn|dcrnn --predictions FILE [--pre-len P]
    stgnn evaluate --checkpoint FILE
    stgnn predict  --checkpoint FILE --at TIMESTAMP [--at ...] --output FILE.csv|.parquet
    stgnn plot     --checkpoint FILE [--sensors 0,5 | --sensors ID,...] [--horizon 3] --output DIR
    stgnn explain  --checkpoint FILE --sensor ID --time T [--horizon 1] --output DIR
    stgnn anomalies --checkpoint FILE --series FILE [--threshold Z] --output DIR
    stgnn ensemble --checkpoints A B [C ...] [--method mean|weighted|mixture] --output DIR
    stgnn serve    --checkpoint FILE [--onnx FILE] [--host 127.0.0.1] [--port 8000] [--max-batch N] [--max-wait-ms MS]
    stgnn export   --checkpoint FILE --format onnx|torchscript [--quantize dynamic] --output FILE
    stgnn federated [--model NAME] [--dataset NAME | --config FILE] --clients K --rounds R [--local-epochs E]
                   [--no-baselines] [--output DIR]

A user error (a bad argument, config value, file or device) ends the command with one line
per problem, ``stgnn: error: <argument or file>: <problem>``, on stderr and exit status 2;
``--debug`` shows the traceback instead.  A closed stdout (``stgnn ... | head``) does not stop
a run: further output is dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import shlex
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch

from stgnn import __version__
from stgnn.allocator import tune_malloc
from stgnn.configs import available_configs, paper_config_name, paper_config_raw
from stgnn.data.convert import convert
from stgnn.data.download import download_dataset, ensure_dataset, verify_dataset
from stgnn.data.ondisk import is_converted, open_converted
from stgnn.data.readers import load_dataset
from stgnn.data.registry import DATASETS, dataset_present, resolve_root
from stgnn.distributions import ForecastDistribution
from stgnn.explain.report import explain_forecast
from stgnn.metrics import INTERVAL_LEVELS, MaskedMetrics
from stgnn.models import MODELS
from stgnn.protocols.baselines import STATISTICAL_BASELINES
from stgnn.protocols.reproduce import TABLE_MODELS, reproduce_tgcn
from stgnn.protocols.score import infer_pre_len, score_dcrnn_predictions, score_predictions
from stgnn.protocols.tgcn import PROTOCOL_SETTINGS
from stgnn.published import published_for
from stgnn.report import horizon_table, interval_table
from stgnn.reproduce import RESULTS_DIR, reproduce
from stgnn.training.checkpoint import environment, load_checkpoint, write_json
from stgnn.training.config import (
    COVARIATE_KEYS,
    CUSTOM_GRAPH_KEYS,
    RunConfig,
    check_device_name,
    merge,
    read_config_file,
)
from stgnn.training.distributed import Distributed
from stgnn.training.trainer import Experiment, Trainer, experiment_from_checkpoint, load_data, select_device

__all__ = ["UsageError", "main"]

DEFAULT_MODEL = "stgcn"


class UsageError(Exception):
    """A mistake in the command line; the message starts with the argument it names."""


def default_dataset(root: Path) -> str:
    """METR-LA when its files are under ``root``, else Los-loop (a real METR-LA week)."""
    return "metr-la" if dataset_present("metr-la", root) else "los-loop"


def _check_writable(path: Path, option: str) -> None:
    """``path`` (a folder, created later) can be made and written: check its nearest existing ancestor."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"{option} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {probe} is not writable")


def _check_device(name: str, option: str) -> None:
    try:
        check_device_name(name)
        select_device(name)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from exc


def _ensure_data(cfg: RunConfig, args: argparse.Namespace) -> None:
    """A benchmark dataset's files are present (downloaded when missing, unless ``--no-download``)."""
    if cfg.dataset in DATASETS:  # not custom files, not a converted folder
        ensure_dataset(cfg.dataset, args.data_dir, download=not args.no_download, progress=not args.quiet)


# --------------------------------------------------------------------------- datasets
def _cmd_convert(args: argparse.Namespace) -> int:
    if args.name is None or args.output is None:
        raise UsageError("datasets convert: give a source (a registered dataset or a readings table) and --output")
    graph = {k: getattr(args, k) for k in CUSTOM_GRAPH_KEYS if getattr(args, k)}
    out = convert(args.name, args.output, root=args.data_dir, zero_is_missing=args.zero_is_missing,
                  steps_per_chunk=args.chunk_steps, **graph)
    ds = open_converted(out)
    print(f"wrote {out}: {ds.num_steps} x {ds.num_nodes} x {ds.num_features} float32, memory-mapped; "
          f"train with --dataset {out}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    if args.action == "convert":
        return _cmd_convert(args)
    if (args.output or args.chunk_steps or args.zero_is_missing
                                     or any(getattr(args, k) for k in CUSTOM_GRAPH_KEYS)):
        raise UsageError(f"datasets {args.action}: --output, --chunk-steps and the graph options are for convert")
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
    if args.name is None or args.name not in DATASETS:
        given = "" if args.name is None else f"{args.name!r} is not a registered dataset; "
        raise UsageError(f"datasets {args.action}: {given}give a dataset name ({', '.join(DATASETS)})")
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
    paths = download_dataset(args.name, root, progress=not args.quiet)
    for p in paths:
        print(p)
    return 0


# --------------------------------------------------------------------------- train
_TRAIN_OPTIONS = (
    "epochs", "batch_size", "seed", "device", "lr", "max_batches", "compile", "init_from", "freeze",
    "sampling", "partitions", "halo_hops",
)


def _resolve_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < paper config (or ``--config``) < command line, validated once, before any data is read.

    A graph file given on the command line replaces the config's ``[custom]`` graph file (a
    run has one graph); the other ``[custom]`` keys (``k_neighbors``, ...) are kept.
    """
    cli_custom = {k: getattr(args, k) for k in ("series", *CUSTOM_GRAPH_KEYS, *COVARIATE_KEYS) if getattr(args, k)}
    if args.zero_is_missing:
        cli_custom["zero_is_missing"] = True
    if args.sigma is not None:
        cli_custom["sigma"] = args.sigma
    file_raw: dict[str, Any] = read_config_file(args.config) if args.config else {}
    source = args.config or "command line"
    file_custom = file_raw.get("custom") if isinstance(file_raw.get("custom"), dict) else {}
    custom_run = bool(args.series) or bool(file_custom and file_custom.get("series"))
    if args.dataset and custom_run:
        raise UsageError("--dataset: not with own data (--series or a config's [custom] series)")
    model = args.model or file_raw.get("model") or DEFAULT_MODEL
    dataset = "custom" if custom_run else (args.dataset or file_raw.get("dataset") or default_dataset(
        resolve_root(args.data_dir)))
    if not args.config and isinstance(model, str) and dataset in DATASETS:
        file_raw = paper_config_raw(model, dataset) or {}
        source = paper_config_name(model, dataset) if file_raw else "command line"
    merged = merge(RunConfig(), file_raw)
    merged["model"], merged["dataset"] = model, dataset
    labels: dict[tuple[str, ...], str] = {("model",): "--model", ("dataset",): "--dataset"} if not args.config else {}
    if cli_custom:
        if any(k in cli_custom for k in CUSTOM_GRAPH_KEYS):
            merged["custom"] = {k: v for k, v in merged["custom"].items() if k not in CUSTOM_GRAPH_KEYS}
        for key, value in cli_custom.items():
            merged["custom"][key] = str(Path(value).resolve()) if isinstance(value, str) else value
            labels[("custom", key)] = f"--{key.replace('_', '-')}"
        labels[("custom",)] = "--series" if args.series else f"--{next(iter(cli_custom)).replace('_', '-')}"
    for key in _TRAIN_OPTIONS:
        value = getattr(args, key)
        if value is not None:
            merged["train"][key] = value
            labels[("train", key)] = f"--{key.replace('_', '-')}"
    if args.head is not None and args.head != merged["head"].get("kind"):
        merged["head"] = {"kind": args.head}  # another kind does not inherit the config's levels
        labels[("head",)] = labels[("head", "kind")] = "--head"
    if args.quantiles is not None:
        merged["head"]["quantiles"] = args.quantiles
        labels[("head",)] = labels[("head", "quantiles")] = "--quantiles"
    return RunConfig.from_dict(merged, source=source, labels=labels)


def _default_output(cfg: RunConfig) -> Path:
    """``runs/MODEL-DATASET-TIME``, with ``-2``, ``-3`` ... when that folder exists already."""
    base = Path("runs") / f"{cfg.model}-{Path(cfg.dataset).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    output, n = base, 1
    while output.exists():
        n += 1
        output = base.with_name(f"{base.name}-{n}")
    return output


def _print_table(result: dict, dataset: str, model: str, interval: int) -> None:
    print(f"\n{model} on {dataset} (test split, masked metrics, MAPE in %):\n")
    print(horizon_table(result["horizons"], published_for(dataset, model), interval))
    if "crps" in result["horizons"].get("average", {}):
        print(f"\nprobabilistic forecast ({dataset}, test split):\n")
        print(interval_table(result["horizons"], interval))


def _cmd_train(args: argparse.Namespace) -> int:
    if args.resume and not args.output:
        raise UsageError("--resume: needs --output, the run folder to continue")
    if args.init_from:
        if not Path(args.init_from).is_file():
            raise UsageError(f"--init-from {args.init_from}: file not found")
        args.init_from = str(Path(args.init_from).resolve())
    cfg = _resolve_config(args)
    _check_device(cfg.train.device, "--device" if args.device else "[train] device")
    dist = Distributed.from_env()  # launched by torchrun with several processes
    if dist is None:
        return _train(args, cfg, None)
    device = dist.setup(cfg.train.device)
    try:
        if dist.is_main:
            print(f"data-parallel training: {dist.world_size} processes ({device} on rank 0), global batch "
                  f"{cfg.train.batch_size} split across them")
        with contextlib.ExitStack() as quiet:
            if not dist.is_main:  # one process reports
                quiet.enter_context(contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w"))))
            return _train(args, cfg, dist)
    finally:
        dist.close()


def _train(args: argparse.Namespace, cfg: RunConfig, dist: Distributed | None) -> int:
    """Train in this process (one of several when ``dist`` is given; rank 0 writes)."""
    output = Path(args.output) if args.output else _default_output(cfg)
    if dist is not None:
        output = dist.broadcast(output)  # a default folder is named after rank 0's clock
        dist.on_main(lambda: _check_writable(output, "--output"))
        dist.on_main(lambda: _ensure_data(cfg, args))  # one download, then the other ranks find the files
    else:
        _check_writable(output, "--output")
    _ensure_data(cfg, args)
    exp = Experiment.build(cfg, args.data_dir)
    n_params = sum(p.numel() for p in exp.model.parameters())
    print(f"{exp.dataset!r}\nmodel {cfg.model}: {n_params:,} parameters on {exp.device}; "
          f"windows train/val/test = {exp.data.num_windows('train')}/{exp.data.num_windows('val')}/"
          f"{exp.data.num_windows('test')}; output {output}")
    result = Trainer(exp, output, progress=not args.quiet, dist=dist).fit(resume=args.resume)
    _print_table(result, exp.dataset.name, cfg.model, exp.dataset.interval_minutes)
    print(f"\nwrote {output / 'metrics.json'}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    root = resolve_root(args.data_dir)
    if args.protocol == "tgcn":
        return _reproduce_tgcn(args, root)
    if args.model in STATISTICAL_BASELINES and args.model not in MODELS:
        raise UsageError(f"{args.model}: a baseline of the T-GCN protocol only (add --protocol tgcn)")
    if args.all:
        if args.model or args.dataset:
            raise UsageError("--all: not with MODEL DATASET")
        jobs = [(m, d) for m, d in available_configs() if dataset_present(d, root)]
        if not jobs:
            raise UsageError(f"--all: no dataset with a paper config is present under {root}")
        print("will run: " + ", ".join(f"{m}/{d}" for m, d in jobs))
    elif args.model and args.dataset:
        if (args.model, args.dataset) not in available_configs():
            known = ", ".join(f"{m}/{d}" for m, d in available_configs())
            name = paper_config_name(args.model, args.dataset)
            raise UsageError(f"{args.model} {args.dataset}: no paper config {name}; have: {known}")
        jobs = [(args.model, args.dataset)]
    else:
        raise UsageError("reproduce: give MODEL DATASET, or --all")
    if args.device:
        _check_device(args.device, "--device")
    _check_writable(Path(args.runs_dir), "--runs-dir")
    _check_writable(Path(args.results_dir), "--results-dir")
    for model, dataset in jobs:
        record = reproduce(model, dataset, root=root, progress=not args.quiet, runs_dir=args.runs_dir,
                           results_dir=args.results_dir, download=not args.no_download,
                           train_overrides={"epochs": args.epochs, "max_batches": args.max_batches,
                                            "device": args.device})
        published = published_for(dataset, model)
        print(f"\n{model} on {dataset}: {record['wall_seconds'] / 60:.1f} min on {record['device']}\n")
        print(horizon_table(record["horizons"], published))
    print(f"\nupdated {Path(args.results_dir) / 'RESULTS.md'}")
    return 0


# --------------------------------------------------------------------------- T-GCN protocol / score
def _reproduce_tgcn(args: argparse.Namespace, root: Path) -> int:
    """``stgnn reproduce [MODEL [DATASET]] --protocol tgcn [--all]``: T-GCN's Table I protocol."""
    dataset = args.dataset or "los-loop"
    if dataset not in PROTOCOL_SETTINGS:
        raise UsageError(f"{dataset}: the T-GCN protocol is defined for {', '.join(PROTOCOL_SETTINGS)}")
    if args.all == bool(args.model):
        raise UsageError("reproduce --protocol tgcn: give MODEL [DATASET], or --all")
    if args.max_batches is not None:
        raise UsageError("--max-batches: the T-GCN protocol trains on every full batch, as the authors' loop")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs: must be >= 1, got {args.epochs}")
    if args.device:
        _check_device(args.device, "--device")
    _check_writable(Path(args.results_dir), "--results-dir")
    ensure_dataset(dataset, root, download=not args.no_download, progress=not args.quiet)
    models = list(TABLE_MODELS) if args.all else [args.model]
    table = reproduce_tgcn(
        models, dataset, root=root, results_dir=args.results_dir, command=shlex.join(["stgnn", *args.argv]),
        selections=args.selection, seeds=args.seeds, epochs=args.epochs, device=args.device or "cpu",
        log=None if args.quiet else print,
    )
    print(table)
    print(f"updated {Path(args.results_dir) / 'TGCN_PROTOCOL.md'}" if dataset == "los-loop" else
          f"updated {Path(args.results_dir) / f'TGCN_PROTOCOL_{dataset}.md'}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    root = resolve_root(args.data_dir)
    if args.pre_len is not None and args.pre_len < 1:
        raise UsageError(f"--pre-len: must be >= 1, got {args.pre_len}")
    path = Path(args.predictions)
    if not path.is_file():
        raise UsageError(f"--predictions: {path}: file not found")
    ds = load_dataset(args.dataset, root, download=not args.no_download)
    out: dict[str, Any]
    if args.protocol == "dcrnn":
        out = score_dcrnn_predictions(path, ds, input_len=12, horizon=args.pre_len or 12)
        print(f"{args.dataset}, DCRNN-style protocol (masked; test = last {ds.split[2]:.0%} of the windows), "
              f"{out['windows']} test windows, {out['layout']} layout")
        print(horizon_table({k: v for k, v in out.items() if isinstance(v, dict)}, None, ds.interval_minutes))
    else:
        if ds.num_features != 1:
            raise UsageError(f"--dataset: {args.dataset} has {ds.num_features} features; the T-GCN protocol "
                             "scores one")
        seq_len = PROTOCOL_SETTINGS[args.dataset].seq_len if args.dataset in PROTOCOL_SETTINGS else 12
        pre_len = args.pre_len or infer_pre_len(path, ds.num_steps, seq_len)
        out = score_predictions(path, ds.series[..., 0].numpy(), ds.timestamps, ds.node_ids,
                                seq_len=seq_len, pre_len=pre_len)
        print(f"{args.dataset}, T-GCN protocol, seq_len {seq_len}, pre_len {pre_len} "
              f"({pre_len * ds.interval_minutes} min), {out['windows']} test windows, {out['layout']} layout")
        for key, label in (("rmse", "RMSE"), ("mae", "MAE"), ("accuracy", "Accuracy"), ("r2", "R2"),
                           ("var", "var")):
            print(f"{label:<9} {out[key]:.4f}")
    if out["ignored_rows"]:
        print(f"({out['ignored_rows']} rows of {path} lie outside the protocol's test windows: not scored)")
    return 0


# --------------------------------------------------------------------------- evaluate / predict / plot
def _from_checkpoint(args: argparse.Namespace) -> Experiment:
    """The checkpoint's experiment; its dataset fetched first when missing (unless ``--no-download``)."""
    return _checkpoint_experiment(args, args.checkpoint)[0]


def _checkpoint_experiment(args: argparse.Namespace, path: str) -> tuple[Experiment, dict[str, Any]]:
    """The experiment of checkpoint ``path`` and its contents, read once."""
    state = load_checkpoint(path)
    cfg = RunConfig.from_dict(state["config"], source=str(path))
    if args.device:
        _check_device(args.device, "--device")
    else:
        _check_device(cfg.train.device, f"{path}: [train] device (pass --device)")
    _ensure_data(cfg, args)
    return experiment_from_checkpoint(path, args.data_dir, args.device, state=state)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.output:
        _check_writable(Path(args.output).parent, "--output")
    exp = _from_checkpoint(args)
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
        try:
            ts = pd.Timestamp(text)
        except ValueError as exc:
            raise UsageError(f"--at {text}: not a timestamp ({exc})") from exc
        pos = index.get_indexer([ts])[0]
        if pos < 0:
            raise UsageError(f"--at {text}: not a timestamp of {exp.dataset.name} "
                             f"({index[0]} .. {index[-1]}, every {exp.dataset.interval_minutes} min)")
        start = pos - exp.spec.input_len + 1
        if start < 0:
            raise UsageError(f"--at {text}: needs {exp.spec.input_len} steps of history; "
                             f"earliest is {index[exp.spec.input_len - 1]}")
        starts.append(start)
        origins.append(ts)
    return origins, torch.tensor(starts, dtype=torch.long)


def _forecast_intervals(forecast: ForecastDistribution) -> dict[str, np.ndarray]:
    """``lower_80``, ``upper_80``, ``lower_95``, ``upper_95`` ``[B, H, N]`` (first target feature) for
    each interval level of :data:`~stgnn.metrics.INTERVAL_LEVELS` the forecast gives; none for a
    point forecast."""
    out: dict[str, np.ndarray] = {}
    for level in INTERVAL_LEVELS:
        if forecast.covers(level):
            low, high = forecast.interval(level)
            out[f"lower_{100 * level:g}"] = low[..., 0].numpy()
            out[f"upper_{100 * level:g}"] = high[..., 0].numpy()
    return out


def _cmd_predict(args: argparse.Namespace) -> int:
    if Path(args.output).suffix.lower() not in {".csv", ".parquet", ".pq"}:
        raise UsageError(f"--output {args.output}: must end in .csv or .parquet")
    _check_writable(Path(args.output).parent, "--output")
    exp = _from_checkpoint(args)
    origins, starts = _window_starts_for(exp, args.at)
    forecast = exp.predict_distribution(exp.data.batch(starts))
    pred = forecast.point[..., 0].numpy()  # [B, H, N]
    bounds = _forecast_intervals(forecast)
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
                rows.append((origin, origin + (h + 1) * step, h + 1, sensor, float(pred[b, h, n]), float(truth[n]),
                             *(float(v[b, h, n]) for v in bounds.values())))
    frame = pd.DataFrame(rows, columns=["origin", "timestamp", "horizon", "sensor", "prediction", "truth", *bounds])
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} forecasts ({len(origins)} origins x {exp.spec.horizon} steps x "
          f"{exp.dataset.num_nodes} sensors) to {out}" + (f"; intervals {', '.join(bounds)}" if bounds else ""))
    return 0


def _sensor_nodes(spec: str, node_ids: Sequence[str]) -> list[int]:
    """Node indices of ``--sensors``: comma-separated sensor ids or node indices.

    ``id:X`` is always the sensor id ``X`` and ``#K`` always node index ``K``; a bare token is the
    sensor id if there is one, else a node index.  A bare token that is both a sensor id and the
    index of another node is refused as ambiguous.
    """
    where = {sid: i for i, sid in enumerate(node_ids)}
    n = len(node_ids)
    nodes = []
    for token in (t.strip() for t in spec.split(",")):
        if token.startswith("id:"):
            if token[3:] not in where:
                raise UsageError(f"--sensors {spec}: no sensor with id {token[3:]!r}")
            nodes.append(where[token[3:]])
            continue
        explicit = token.startswith("#")
        digits = token[1:] if explicit else token
        index = int(digits) if digits.isdigit() else None
        if index is not None and not 0 <= index < n:
            index = None
        if explicit or token not in where:
            if index is None:
                raise UsageError(
                    f"--sensors {spec}: {token!r} is neither a sensor id nor a node index in 0..{n - 1} "
                    "(e.g. --sensors 0,5 or --sensors id:773869)"
                )
            nodes.append(index)
        elif index is not None and index != where[token]:
            raise UsageError(
                f"--sensors {spec}: {token!r} is the id of node {where[token]} and also a node index; "
                f"write id:{token} or #{token}"
            )
        else:
            nodes.append(where[token])
    return nodes


def _cmd_plot(args: argparse.Namespace) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UsageError("plot: needs matplotlib: pip install 'stgnn[plot]'") from exc
    _check_writable(Path(args.output), "--output")
    exp = _from_checkpoint(args)
    sensors = _sensor_nodes(args.sensors, exp.dataset.node_ids)
    if not 1 <= args.horizon <= exp.spec.horizon:
        raise UsageError(f"--horizon {args.horizon}: must be in 1..{exp.spec.horizon}")
    starts = exp.data.splits[args.split]
    metrics = MaskedMetrics(horizons=[exp.spec.horizon], null_value=exp.config.data.null_value)
    preds, truths, masks = [], [], []
    bands: dict[str, list[np.ndarray]] = {}
    for i in range(0, starts.numel(), 256):
        chunk = starts[i : i + 256]
        batch = exp.data.batch(chunk)
        forecast = exp.predict_distribution(batch)
        metrics.update(forecast, batch.y, batch.mask)
        h = args.horizon - 1
        preds.append(forecast.point[:, h, sensors, 0])
        truths.append(batch.y[:, h, sensors, 0])
        masks.append(batch.mask[:, h, sensors])
        for name, values in _forecast_intervals(forecast).items():
            bands.setdefault(name, []).append(values[:, h, sensors])
    pred_t, truth_t, mask_t = torch.cat(preds), torch.cat(truths), torch.cat(masks)
    band_t = {name: np.concatenate(parts) for name, parts in bands.items()}
    times = exp.dataset.timestamps[(starts + exp.spec.input_len + args.horizon - 1).numpy()]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(sensors), 1, figsize=(11, 2.6 * len(sensors)), squeeze=False)
    for i, s in enumerate(sensors):
        ax = axes[i, 0]
        truth = np.where(mask_t[:, i].numpy(), truth_t[:, i].numpy(), np.nan)
        ax.plot(times, truth, lw=0.8, label="truth", color="black")
        ax.plot(times, pred_t[:, i].numpy(), lw=0.8, label=f"forecast @{args.horizon}", color="tab:red")
        for level, alpha in (("95", 0.15), ("80", 0.3)):
            if f"lower_{level}" in band_t:
                ax.fill_between(times, band_t[f"lower_{level}"][:, i], band_t[f"upper_{level}"][:, i],
                                color="tab:red", alpha=alpha, lw=0, label=f"{level} % interval")
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


# --------------------------------------------------------------------------- serve / export
def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from stgnn.serving.app import create_app
        from stgnn.serving.batching import BatchSettings
        from stgnn.serving.model import load_served_model
    except ImportError as exc:
        raise UsageError(f"serve: needs fastapi and uvicorn: pip install 'stgnn[serve]' ({exc})") from exc
    if args.onnx and not Path(args.onnx).is_file():
        raise UsageError(f"--onnx {args.onnx}: file not found")
    if args.max_body_bytes < 1:
        raise UsageError(f"--max-body-bytes: must be >= 1, got {args.max_body_bytes}")
    try:
        settings = BatchSettings(args.max_batch, args.max_wait_ms, args.max_queue)
    except ValueError as exc:
        raise UsageError(f"--max-batch / --max-wait-ms / --max-queue: {exc}") from exc
    if args.onnx:
        model = load_served_model(args.checkpoint, onnx=args.onnx)
    else:
        exp = _from_checkpoint(args)
        model = load_served_model(args.checkpoint, experiment=exp)
    app = create_app(model, batching=settings, max_body_bytes=args.max_body_bytes)
    print(f"serving {model.spec.model} ({model.backend}) trained on {model.spec.dataset} at "
          f"http://{args.host}:{args.port} (OpenAPI: /docs); Ctrl-C stops after the requests in flight", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, limit_concurrency=args.max_connections,
                timeout_graceful_shutdown=args.shutdown_timeout, log_level="warning" if args.quiet else "info")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    try:
        from stgnn.serving.export import export_model
    except ImportError as exc:
        raise UsageError(f"export: needs onnx, onnxruntime and onnxscript: pip install 'stgnn[export]' "
                         f"({exc})") from exc
    if args.quantize and args.format != "onnx":
        raise UsageError("--quantize: int8 dynamic quantization is done on the ONNX model; use --format onnx")
    if args.check_windows is not None and args.check_windows < 1:
        raise UsageError(f"--check-windows: must be >= 1, got {args.check_windows}")
    _check_writable(Path(args.output).parent, "--output")
    args.device = "cpu"
    exp = _from_checkpoint(args)
    report = export_model(exp, args.output, args.format, quantize=args.quantize, checkpoint=args.checkpoint,
                          check_windows=args.check_windows)
    for line in report.lines():
        print(line)
    if args.report:
        write_json(args.report, report.to_dict())
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise UsageError(f"--steps: must be >= 1, got {args.steps}")
    if args.top_k < 1:
        raise UsageError(f"--top-k: must be >= 1, got {args.top_k}")
    if args.windows < 1:
        raise UsageError(f"--windows: must be >= 1, got {args.windows}")
    _check_writable(Path(args.output), "--output")
    exp = _from_checkpoint(args)
    try:
        summary = explain_forecast(exp, args.output, sensor=args.sensor, time=args.time, horizon=args.horizon,
                                   steps=args.steps, top_k=args.top_k, split=args.split, max_windows=args.windows)
    except ImportError as exc:
        raise UsageError(str(exc)) from exc
    truth = "missing" if summary["truth"] is None else f"{summary['truth']:.3f}"
    ahead = f"{args.horizon} step{'s' if args.horizon != 1 else ''} ahead"
    print(f"{summary['model']} forecast of sensor {summary['sensor']} for {summary['time']} ({ahead}): "
          f"{summary['forecast']:.3f} (truth {truth}; baseline input gives {summary['baseline_forecast']:.3f}; "
          f"attribution completeness gap {summary['completeness_gap']:.2g})")
    print("sensors that drove it (integrated gradients, total |attribution|):")
    for row in summary["top_sensors"]:
        print(f"  {row['rank']:>3}  {row['sensor']:<12} {row['importance']:.4f}  ({row['share']:.1%})")
    print(f"wrote {', '.join(summary['files'])} to {args.output}")
    return 0


# --------------------------------------------------------------------------- anomalies
def _cmd_anomalies(args: argparse.Namespace) -> int:
    from stgnn.ops.anomalies import AnomalySettings, detect_anomalies, read_series, write_report

    if args.max_plots < 0:
        raise UsageError(f"--max-plots: must be >= 0, got {args.max_plots}")
    settings = AnomalySettings(threshold=args.threshold, horizon=args.horizon, slot_minutes=args.slot_minutes,
                               stuck_steps=args.stuck_steps, min_dropout=args.min_dropout, interval=args.interval)
    _check_writable(Path(args.output), "--output")
    exp = _from_checkpoint(args)
    settings.check(exp.spec.horizon)
    series = read_series(args.series, exp, zero_is_missing=args.zero_is_missing,
                         missing_values=exp.config.custom.missing_values)
    detection = detect_anomalies(exp, series, settings, progress=not args.quiet)
    summary = write_report(detection, args.output, settings, max_plots=args.max_plots, units=exp.dataset.units,
                           source={"checkpoint": str(args.checkpoint), "series": str(args.series),
                                   "command": shlex.join(["stgnn", *args.argv])})
    write_json(Path(args.output) / "environment.json", environment(exp.device))
    counts = ", ".join(f"{n} {k}" for k, n in summary["alerts"].items())
    print(f"{series.num_steps} steps x {series.num_nodes} sensors scanned: {counts} "
          f"({summary['flagged_sensors']} sensors flagged; spike/drop: {summary['spike_drop_test']})")
    print(f"wrote {Path(args.output) / 'alerts.csv'}, {Path(args.output) / 'summary.json'} and "
          f"{len(summary['plots'])} plots in {Path(args.output) / 'plots'}")
    if summary["not_plotted"]:
        print(f"{len(summary['not_plotted'])} more flagged sensors not plotted (--max-plots "
              f"{args.max_plots}); summary.json lists them")
    return 0


# --------------------------------------------------------------------------- ensemble
def _cmd_ensemble(args: argparse.Namespace) -> int:
    from stgnn.ops.ensemble import comparison_table, evaluate_ensemble

    _check_writable(Path(args.output), "--output")
    members = [(path, *_checkpoint_experiment(args, path)) for path in args.checkpoints]
    result = evaluate_ensemble(members, args.method, batch_size=members[0][1].config.train.eval_batch_size)
    result["command"] = shlex.join(["stgnn", *args.argv])
    out = Path(args.output)
    write_json(out / "metrics.json", result)
    write_json(out / "environment.json", environment(members[0][1].device))
    table = comparison_table(result)
    (out / "members.md").write_text(table + "\n")
    ref = members[0][1]
    _print_table(result, ref.dataset.name, f"ensemble ({args.method}) of {len(members)}", ref.dataset.interval_minutes)
    print(f"\ntest split, members and ensemble:\n\n{table}\n\nwrote {out / 'metrics.json'}, {out / 'members.md'} "
          f"and {out / 'environment.json'}")
    return 0


# --------------------------------------------------------------------------- federated
def _cmd_federated(args: argparse.Namespace) -> int:
    try:
        from stgnn.federated.compare import federated_table, run_comparison
    except ImportError as exc:
        raise UsageError(f"federated: needs Flower ({exc}); pip install 'stgnn[federated]'") from exc
    for option, value, low in (("--clients", args.clients, 2), ("--rounds", args.rounds, 1),
                               ("--local-epochs", args.local_epochs, 1)):
        if value < low:
            raise UsageError(f"{option}: must be >= {low}, got {value}")
    for key, value in vars(build_parser().parse_args(["train"])).items():  # train's options it lacks, unset
        if not hasattr(args, key):
            setattr(args, key, value)
    cfg = _resolve_config(args)
    _check_device(cfg.train.device, "--device" if args.device else "[train] device")
    output = Path(args.output or f"runs/federated-{cfg.model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_writable(output, "--output")
    if (output / "federated.json").exists():
        raise UsageError(f"--output {output}: holds a federated run already; give another folder")
    _ensure_data(cfg, args)
    dataset = load_data(cfg, args.data_dir)
    if not 2 <= args.clients <= dataset.num_nodes:
        raise UsageError(f"--clients: {args.clients} regions of a {dataset.num_nodes}-sensor network; give 2 .. "
                         f"{dataset.num_nodes}")
    record = run_comparison(cfg, dataset, output, parts=args.clients, rounds=args.rounds,
                            local_epochs=args.local_epochs, baselines=not args.no_baselines,
                            command=shlex.join(["stgnn", *args.argv]), log=(lambda _: None) if args.quiet else print,
                            verbose=args.debug)
    print("\n" + federated_table(record))
    print(f"wrote {output / 'federated.json'} and {output / 'comparison.md'}")
    return 0


# --------------------------------------------------------------------------- parser
def _dataset_argument(value: str) -> str:
    """A registered dataset name, or a converted folder (made absolute)."""
    if value in DATASETS:
        return value
    if is_converted(value):
        return str(Path(value).resolve())
    raise argparse.ArgumentTypeError(f"{value!r}: neither a registered dataset ({', '.join(DATASETS)}) nor the "
                                     "folder of a converted dataset (stgnn datasets convert SRC --output DIR)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``stgnn``."""
    p = argparse.ArgumentParser(prog="stgnn", description="Spatio-temporal GNNs for traffic forecasting.")
    p.add_argument("--version", action="version", version=f"stgnn {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, *, downloads: bool = True) -> None:
        sp.add_argument("--data-dir", default=None, help="data root (default: $STGNN_DATA, else ./datasets)")
        if downloads:
            sp.add_argument("--no-download", action="store_true",
                            help="do not fetch a missing benchmark dataset (default: fetch files with a direct "
                                 "link, checksummed)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.add_argument("--debug", action="store_true", help="show the traceback of an error")

    d = sub.add_parser("datasets", help="list, verify, download or convert datasets")
    d.add_argument("action", choices=["list", "verify", "download", "convert"])
    d.add_argument("name", nargs="?", metavar="NAME",
                   help=f"a registered dataset ({', '.join(DATASETS)}); for convert also a readings table")
    c = d.add_argument_group("convert (into the memory-mapped format that --dataset DIR trains from)")
    c.add_argument("--output", help="the new folder")
    c.add_argument("--chunk-steps", type=int, help="time steps written at a time (default: about 64 MiB)")
    for key in CUSTOM_GRAPH_KEYS:
        c.add_argument(f"--{key}", help=f"the graph of a readings table: {key} file (as for train)")
    c.add_argument("--zero-is-missing", action="store_true", help="treat zeros in a readings table as missing")
    common(d, downloads=False)
    d.set_defaults(func=_cmd_datasets)

    t = sub.add_parser("train", help="train and evaluate a model")
    t.add_argument("--model", choices=sorted(MODELS), help=f"model (default {DEFAULT_MODEL})")
    t.add_argument("--dataset", type=_dataset_argument, metavar="NAME|DIR",
                   help=f"benchmark dataset ({', '.join(DATASETS)}; default: metr-la if present under the data "
                        "root, else los-loop) or the folder of a converted dataset (stgnn datasets convert)")
    t.add_argument("--config",
                   help="TOML config (default: the paper config stgnn/configs/MODEL/DATASET.toml if there is one)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    t.add_argument("--max-batches", type=int, help="cap training batches per epoch (quick runs; 0 = no cap)")
    t.add_argument("--sampling", choices=["full", "partition"],
                   help="full (default): whole-graph steps; partition: one step per graph part with its halo, "
                        "for graphs too large for a full-graph step (evaluation stays full-graph)")
    t.add_argument("--partitions", type=int, help="graph parts for --sampling partition (default 8)")
    t.add_argument("--halo-hops", type=int, help="hops of neighbours around each part (default 2)")
    t.add_argument("--head", choices=["point", "gaussian", "quantile"],
                   help="forecast a point (default), a Gaussian (mean and scale) or quantiles ([head] kind)")
    t.add_argument("--quantiles", type=float, nargs="+", metavar="Q",
                   help="levels of --head quantile (default 0.1 0.5 0.9; [head] quantiles)")
    t.add_argument("--compile", action="store_true", default=None,
                   help="compile the model with torch.compile (config: [train] compile)")
    t.add_argument("--output", help="output directory (default: a new runs/MODEL-DATASET-TIME)")
    t.add_argument("--resume", action="store_true", help="continue the run in --output (required) from its checkpoint")
    t.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from this checkpoint's weights where names and shapes fit (per-node tensors are "
                        "re-initialised unless the sensors are the same); listed in the log and init_from.json")
    t.add_argument("--freeze", nargs="+", metavar="PATTERN",
                   help="with --init-from: parameter-name patterns (fnmatch, e.g. 'blocks.0.*') not to train")
    g = t.add_argument_group("your own data (instead of --dataset)")
    g.add_argument("--series", help="CSV/Parquet: a timestamp column, then one column per sensor")
    g.add_argument("--locations", help="CSV: sensor_id, latitude, longitude (k-nearest-neighbour graph)")
    g.add_argument("--distances", help="CSV: from, to, cost (road distances; Gaussian kernel)")
    g.add_argument("--edges", help="CSV: from, to[, weight] sensor-id pairs")
    g.add_argument("--adjacency", help="headerless dense N x N CSV in the series' column order")
    g.add_argument("--sigma", type=float,
                   help="Gaussian kernel width for --distances (cost units) or --locations (km); "
                        "default: the std of the distances")
    g.add_argument("--zero-is-missing", action="store_true", help="treat zeros in --series as missing")
    c = t.add_argument_group("covariates (own data or any --dataset)")
    c.add_argument("--time-covariates",
                   help="CSV/Parquet: timestamp, covariates (global) or timestamp, sensor_id, covariates (per sensor)")
    c.add_argument("--node-attributes", help="CSV/Parquet: sensor_id, attributes (text columns one-hot encoded)")
    common(t)
    t.set_defaults(func=_cmd_train)

    r = sub.add_parser("reproduce", help="run a paper config and record ours vs published")
    r.add_argument("model", nargs="?", choices=sorted({*MODELS, *STATISTICAL_BASELINES}))
    r.add_argument("dataset", nargs="?", choices=list(DATASETS))
    r.add_argument("--all", action="store_true", help="every config whose dataset is present")
    r.add_argument("--epochs", type=int, help="override the paper's epochs (recorded in the results)")
    r.add_argument("--max-batches", type=int, help="cap training batches per epoch (recorded; 0 = no cap)")
    r.add_argument("--device", default=None)
    r.add_argument("--runs-dir", default="runs/reproduce", help="where run directories go (default runs/reproduce)")
    r.add_argument("--results-dir", default=str(RESULTS_DIR),
                   help=f"where the result tables go (default {RESULTS_DIR}, under the current directory)")
    r.add_argument("--protocol", choices=["dcrnn", "tgcn"], default="dcrnn",
                   help="dcrnn: the paper config, masked 70/10/20 (default); tgcn: T-GCN's Table I protocol "
                        "(max-scaled, 80/20, unmasked; DATASET defaults to los-loop)")
    r.add_argument("--selection", nargs="+", choices=["test", "val"], default=["test", "val"],
                   help="--protocol tgcn: best epoch on the test set (the authors) and/or on a validation "
                        "period (honest); default both")
    r.add_argument("--seeds", nargs="+", type=int, default=[0], help="--protocol tgcn: seeds (default 0)")
    common(r)
    r.set_defaults(func=_cmd_reproduce)

    sc = sub.add_parser("score", help="score a predictions file under the T-GCN or the DCRNN-style protocol")
    sc.add_argument("--dataset", required=True, choices=list(DATASETS))
    sc.add_argument("--protocol", required=True, choices=["tgcn", "dcrnn"])
    sc.add_argument("--predictions", required=True,
                    help="our predict CSV, or the T-GCN authors' test_result.csv layout (no header, one row per "
                         "test window and step, one column per sensor)")
    sc.add_argument("--pre-len", type=int, help="forecast steps of the file (default: inferred from it)")
    common(sc)
    sc.set_defaults(func=_cmd_score)

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
    pl.add_argument("--sensors", default="0",
                    help="comma-separated sensor ids or node indices (default 0); id:X or #K to be explicit")
    pl.add_argument("--horizon", type=int, default=3)
    pl.add_argument("--split", default="test", choices=["train", "val", "test"])
    pl.add_argument("--output", required=True, help="output directory")
    pl.add_argument("--device", default=None)
    common(pl)
    pl.set_defaults(func=_cmd_plot)

    ex = sub.add_parser("explain", help="explain a checkpoint: attribution of one forecast, learned adjacency, "
                                        "attention maps (PNG + CSV)")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--sensor", required=True, help="sensor id of the forecast to explain")
    ex.add_argument("--time", required=True, help="the timestamp forecast")
    ex.add_argument("--horizon", type=int, default=1, help="steps ahead the forecast was made (default 1)")
    ex.add_argument("--steps", type=int, default=64, help="integrated-gradients integration steps (default 64)")
    ex.add_argument("--top-k", type=int, default=10, help="learned edges and sensors listed (default 10)")
    ex.add_argument("--split", default="test", choices=["train", "val", "test"],
                    help="period whose windows the attention maps are averaged over (default test)")
    ex.add_argument("--windows", type=int, default=512, help="at most this many windows of --split (default 512)")
    ex.add_argument("--output", required=True, help="output directory")
    ex.add_argument("--device", default=None)
    common(ex)
    ex.set_defaults(func=_cmd_explain)

    an = sub.add_parser("anomalies", help="alerts: readings far from the forecast, stuck sensors, dropouts")
    an.add_argument("--checkpoint", required=True)
    an.add_argument("--series", required=True,
                    help="CSV/Parquet readings to scan: a timestamp column, then one column per trained sensor")
    an.add_argument("--threshold", type=float, default=4.0,
                    help="|z| of the forecast residual (per sensor and time-of-day slot) above which a reading alerts "
                         "(default 4)")
    an.add_argument("--interval", type=float, metavar="LEVEL",
                    help="probabilistic models: alert outside this central forecast interval (default 0.99, or "
                         "the widest a quantile head holds); point models use --threshold")
    an.add_argument("--horizon", type=int, default=1, help="forecast step whose residual is scored (default 1)")
    an.add_argument("--slot-minutes", type=int, default=60,
                    help="time-of-day slot width of the residual statistics (default 60)")
    an.add_argument("--stuck-steps", type=int, default=12,
                    help="identical consecutive readings that make a stuck sensor (default 12)")
    an.add_argument("--min-dropout", type=int, default=1,
                    help="consecutive missing readings that make a dropout alert (default 1)")
    an.add_argument("--zero-is-missing", action="store_true", help="zeros in --series are missing readings")
    an.add_argument("--max-plots", type=int, default=20, help="most sensor plots to write (default 20)")
    an.add_argument("--output", required=True, help="output directory")
    an.add_argument("--device", default=None)
    common(an)
    an.set_defaults(func=_cmd_anomalies)

    en = sub.add_parser("ensemble", help="combine checkpoints of the same data and evaluate the ensemble")
    en.add_argument("--checkpoints", nargs="+", required=True, help="two or more checkpoints of the same data")
    en.add_argument("--method", choices=["mean", "weighted", "mixture"], default="mean",
                    help="mean; weighted: weights proportional to 1 / validation MAE; mixture: the mixture of "
                         "Gaussian-head members' distributions (default mean)")
    en.add_argument("--output", required=True, help="output directory (metrics.json, members.md)")
    en.add_argument("--device", default=None)
    common(en)
    en.set_defaults(func=_cmd_ensemble)

    sv = sub.add_parser("serve", help="HTTP JSON API: POST /predict, GET /health, GET /model (FastAPI + uvicorn)")
    sv.add_argument("--checkpoint", required=True)
    sv.add_argument("--onnx", help="serve this ONNX export of the checkpoint (stgnn export) instead of PyTorch")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-batch", type=int, default=32, help="most windows per forward pass; 1: no batching "
                    "(default 32)")
    sv.add_argument("--max-wait-ms", type=float, default=5.0,
                    help="longest a request waits for others to join its batch (default 5)")
    sv.add_argument("--max-queue", type=int, default=256, help="most waiting requests; more get 503 (default 256)")
    sv.add_argument("--max-connections", type=int, default=512,
                    help="most open connections and requests at once; more get 503 (default 512)")
    sv.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body; larger get 413 "
                    "(default 1 MiB)")
    sv.add_argument("--shutdown-timeout", type=float, default=30.0,
                    help="seconds to let requests in flight finish after Ctrl-C / SIGTERM (default 30)")
    sv.add_argument("--device", default=None)
    common(sv)
    sv.set_defaults(func=_cmd_serve)

    xp = sub.add_parser("export", help="export a checkpoint's model to ONNX or TorchScript (checked, measured)")
    xp.add_argument("--checkpoint", required=True)
    xp.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    xp.add_argument("--quantize", choices=["dynamic"], help="int8 dynamic quantization for CPU inference (ONNX)")
    xp.add_argument("--output", required=True, help="the file to write (.onnx / .pt)")
    xp.add_argument("--check-windows", type=int, help="check on the first N test windows (default: all)")
    xp.add_argument("--report", help="also write the measurements (size, difference, latency, metrics) as JSON here")
    common(xp)
    xp.set_defaults(func=_cmd_export)

    fd = sub.add_parser("federated", help="federated training across regions of a network (Flower FedAvg on loopback)")
    fd.add_argument("--model", choices=sorted(MODELS), help=f"model (default {DEFAULT_MODEL})")
    fd.add_argument("--dataset", choices=list(DATASETS), help="benchmark dataset (default as for train)")
    fd.add_argument("--config", help="TOML config (own data through its [custom] section)")
    fd.add_argument("--clients", type=int, default=3,
                    help="regions (one client each) the graph is cut into (default 3)")
    fd.add_argument("--rounds", type=int, default=10, help="federated rounds (default 10)")
    fd.add_argument("--local-epochs", type=int, default=1, help="training epochs per client and round (default 1)")
    fd.add_argument("--no-baselines", action="store_true",
                    help="skip the local-only and centralised runs (trained for rounds x local-epochs epochs)")
    fd.add_argument("--batch-size", type=int)
    fd.add_argument("--lr", type=float)
    fd.add_argument("--seed", type=int)
    fd.add_argument("--device", help="auto (default), cpu, cuda, ...")
    fd.add_argument("--max-batches", type=int, help="cap training batches per epoch (quick runs)")
    fd.add_argument("--output", help="output directory (default: a new runs/federated-MODEL-DATASET-TIME)")
    common(fd)
    fd.set_defaults(func=_cmd_federated)
    return p


class _TolerantStdout(io.TextIOBase):
    """stdout that survives its reader going away (``stgnn train ... | head``).

    On the first broken pipe the file descriptor is pointed at ``os.devnull`` and the
    rest of the output is dropped, so the run itself goes on and writes its files.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_by_reader = False

    def _drop(self) -> None:
        self.closed_by_reader = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
                self._drop()
        return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding


@contextmanager
def _tolerant_stdout() -> Iterator[None]:
    original = sys.stdout
    sys.stdout = _TolerantStdout(original)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = original


USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, ValueError, KeyError, OSError)
"""What ends a command with a one-line message and exit status 2: bad arguments, config values
(:class:`~stgnn.training.config.ConfigError` is a ``ValueError``), malformed or missing files
(``ValueError`` / ``FileNotFoundError`` naming the file), unknown names (``KeyError``), and
folders that cannot be written (``OSError``)."""


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = str(exc)
        return text if str(exc.filename) in text and not text.startswith("[Errno") else (
            f"{exc.filename}: {exc.strerror}")
    return str(exc)


@contextmanager
def _plain_warnings(debug: bool) -> Iterator[None]:
    """Warnings as ``stgnn: warning: <message>`` lines, without the source line that raised them.

    A warning is for the user (a sensor with no reading, data changed since training), so the
    stgnn code location Python prints with it is noise; ``--debug`` keeps Python's form.
    """
    def plain(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              line: str | None = None) -> str:
        kind = "" if issubclass(category, UserWarning) else f"{category.__name__}: "
        return f"stgnn: warning: {kind}{message}\n"

    original = warnings.formatwarning  # catch_warnings() does not restore formatwarning
    if not debug:
        warnings.formatwarning = plain
    try:
        yield
    finally:
        warnings.formatwarning = original


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stgnn`` console script; returns the exit status."""
    # keep freed activation memory for reuse instead of returning it to the OS every step
    # (see stgnn.allocator and experiments/results/BENCHMARKS.md; STGNN_MALLOC=default opts out)
    tune_malloc()
    args = build_parser().parse_args(argv)  # argparse reports its own errors (exit 2)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line results record
    with _tolerant_stdout(), _plain_warnings(args.debug):
        try:
            return int(args.func(args))
        except USER_ERRORS as exc:
            if args.debug:
                raise
            # one line per problem; indented lines continue the problem above them
            for line in (_message(exc) or type(exc).__name__).splitlines():
                print(line if line[:1].isspace() else f"stgnn: error: {line}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
