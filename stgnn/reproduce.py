"""Reproduce published results: run a model × dataset config and record ours vs published.

``stgnn reproduce MODEL DATASET`` trains with the paper config ``stgnn/configs/MODEL/DATASET.toml``
(package data) and writes ``RESULTS_DIR/DATASET/MODEL.md`` (the horizon table, the command,
device and wall time) plus a ``.json`` twin; ``RESULTS_DIR/RESULTS.md`` is then regenerated
from every ``.json`` there, so the summary always matches the runs behind it.  The results
folder is ``./results`` under the current directory unless given (``--results-dir``); this
repository keeps its own under ``experiments/results``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from stgnn.configs import available_configs, paper_config, paper_config_name
from stgnn.data.download import ensure_dataset
from stgnn.published import published_for
from stgnn.report import horizon_table
from stgnn.training.checkpoint import atomic_write_text, write_json
from stgnn.training.config import RunConfig, merge
from stgnn.training.trainer import Experiment, Trainer

__all__ = ["RESULTS_DIR", "available_configs", "reproduce", "write_summary"]

RESULTS_DIR = Path("results")
"""Default results folder, relative to the current directory (never inside the package)."""


def reproduce(
    model: str,
    dataset: str,
    *,
    root: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] = "runs/reproduce",
    results_dir: str | os.PathLike[str] = RESULTS_DIR,
    train_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    command: str | None = None,
    download: bool = False,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` with its paper config and record the comparison.

    Args:
        model: Registered model name.
        dataset: Registered dataset name.
        root: Data root.
        runs_dir: Where the run directory (checkpoint, logs) goes.
        results_dir: Where the Markdown / JSON results go (default ``./results``).
        train_overrides: ``[train]`` values that replace the config's (e.g. ``epochs``,
            ``device``); recorded in the results as deviations from the paper config.
        progress: Progress bars.
        command: The command line to record (default: this process's argv).
        download: Fetch the dataset's missing files that have a direct link (checksummed).

    Returns:
        The JSON record written next to the Markdown table.

    Raises:
        ValueError: No paper config for ``model`` on ``dataset``.
        ConfigError: An override does not fit the schema.
    """
    cfg = paper_config(model, dataset)
    if cfg is None:
        known = ", ".join(f"{m}/{d}" for m, d in available_configs())
        raise ValueError(f"no paper config {paper_config_name(model, dataset)}; have: {known}")
    overrides = {k: v for k, v in (train_overrides or {}).items() if v is not None}
    if overrides:
        labels: dict[tuple[str, ...], str] = {("train", k): f"--{k.replace('_', '-')}" for k in overrides}
        cfg = RunConfig.from_dict(merge(cfg, {"train": overrides}), source="overrides", labels=labels)
    run_dir = Path(runs_dir) / f"{model}-{dataset}"
    start = time.perf_counter()
    ensure_dataset(dataset, root, download=download, progress=progress)
    exp = Experiment.build(cfg, root)
    result = Trainer(exp, run_dir, progress=progress).fit(resume=(run_dir / "checkpoint.pt").exists())
    wall = time.perf_counter() - start
    published = published_for(dataset, model)
    env = json.loads((run_dir / "environment.json").read_text())
    record = {
        "model": model,
        "dataset": dataset,
        "command": command or shlex.join(["stgnn", *sys.argv[1:]]),
        "config": paper_config_name(model, dataset),
        "overrides": overrides,
        "device": env.get("cuda_device") or env["device"],
        "torch": env["packages"].get("torch"),
        "threads": env.get("torch_threads"),
        "git_commit": env.get("git_commit"),
        "wall_seconds": round(wall, 1),
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "num_parameters": result["num_parameters"],
        "horizons": result["horizons"],
        "published": None if published is None else {"horizons": published.horizons, "source": published.source},
    }
    out = Path(results_dir) / dataset
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{model}.json", record)
    lines = [
        f"# {model} on {dataset}",
        "",
        f"- Command: `{record['command']}`",
        f"- Config: `{record['config']}`" + (f" with overrides {overrides}" if overrides else ""),
        f"- Device: {record['device']} ({record['threads']} threads), torch {record['torch']}",
        f"- Wall time: {wall / 60:.1f} min; epochs run {result['epochs_run']} (best {result['best_epoch']})",
        f"- Parameters: {result['num_parameters']:,}",
        f"- Commit: {record['git_commit']}",
        "",
        horizon_table(result["horizons"], published, exp.dataset.interval_minutes),
        "",
    ]
    atomic_write_text(out / f"{model}.md", "\n".join(lines))
    write_summary(Path(results_dir))
    return record


def _cell(row: dict[str, Any] | None) -> str:
    if not row or row.get("mae") is None:
        return "-"
    mape = row.get("mape")
    return f"{row['mae']:.2f} / {row['rmse']:.2f} / {'-' if mape is None else f'{mape:.2f}'}"


def _pub_cell(cell: list[float | None] | None) -> str:
    if not cell:
        return "-"
    return " / ".join("-" if v is None else f"{v:.2f}" for v in cell)


def write_summary(results_dir: Path = RESULTS_DIR) -> Path:
    """Regenerate ``RESULTS.md`` from every ``DATASET/MODEL.json`` under ``results_dir``."""
    records = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*/*.json"))]
    lines = [
        "# Results",
        "",
        "Generated by `stgnn reproduce` from the `.json` files beside this one; each row links the",
        "command that produced it. Cells are MAE / RMSE / MAPE % on the test split, masked: readings",
        "the dataset marks as missing are left out (each run's `null_value`, if set, too).",
        "",
    ]
    for dataset in sorted({r["dataset"] for r in records}):
        lines += [
            f"## {dataset}",
            "",
            "| model | @3 ours | @6 ours | @12 ours | avg ours | @3 published | @6 published | @12 published "
            "| avg published | epochs | wall | device | command |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted((r for r in records if r["dataset"] == dataset), key=lambda r: r["model"]):
            pub = (r.get("published") or {}).get("horizons", {})
            h = r["horizons"]
            lines.append(
                f"| [{r['model']}]({dataset}/{r['model']}.md) | {_cell(h.get('3'))} | {_cell(h.get('6'))} | "
                f"{_cell(h.get('12'))} | {_cell(h.get('average'))} | {_pub_cell(pub.get('3'))} | "
                f"{_pub_cell(pub.get('6'))} | {_pub_cell(pub.get('12'))} | {_pub_cell(pub.get('average'))} | "
                f"{r['epochs_run']} | {r['wall_seconds'] / 60:.1f} min | {r['device']} | `{r['command']}` |"
            )
        lines.append("")
    notes = results_dir / "NOTES.md"
    if notes.is_file():  # hand-written analysis of the numbers above
        lines += [notes.read_text().rstrip(), ""]
    path = results_dir / "RESULTS.md"
    atomic_write_text(path, "\n".join(lines))
    return path
