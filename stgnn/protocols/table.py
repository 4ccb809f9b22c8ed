"""Results of the T-GCN protocol: one JSON record per run, and the Markdown table built from them.

Each record holds the model, dataset, ``pre_len`` (and the minutes it stands for), the selection
variant, the test metrics at the selected epoch, the epochs run, the seed, the exact command,
the device and the wall time.  :func:`render_table` puts the paper's Table I rows
(:data:`stgnn.published.TGCN_TABLE`) beside ours, horizon by horizon, for all five metrics.
"""

from __future__ import annotations

import json
import platform
import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from stgnn.protocols.baselines import STATISTICAL_BASELINES
from stgnn.protocols.runner import ProtocolResult
from stgnn.protocols.tgcn import PROTOCOL_SETTINGS
from stgnn.published import TGCN_TABLE

__all__ = ["load_records", "record", "render_runs", "render_table", "save_record"]

_METRICS = ("rmse", "mae", "accuracy", "r2", "var")
_LABELS = {"test": "best epoch on test (authors)", "val": "best epoch on validation (honest)", "-": "no selection"}


def record(result: ProtocolResult, dataset: str, command: str, device: str = "cpu") -> dict[str, Any]:
    """A JSON-ready record of ``result`` with the provenance a table row needs."""
    settings = PROTOCOL_SETTINGS[dataset]
    minutes = dict(zip(settings.pre_lens, settings.minutes, strict=True)).get(result.pre_len)
    return {
        **result.summary(),
        "dataset": dataset,
        "minutes": minutes,
        "command": command,
        "device": device if device != "cpu" else f"cpu ({platform.processor() or platform.machine()}, "
                                                  f"{torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save_record(rec: dict[str, Any], results_dir: Path) -> Path:
    """Write ``rec`` to ``results_dir/<dataset>/<model>-pre<P>-<selection>-seed<S>.json``."""
    folder = Path(results_dir) / rec["dataset"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rec['model']}-pre{rec['pre_len']}-{rec['selection']}-seed{rec['seed']}.json"
    path.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    return path


def load_records(results_dir: Path, dataset: str) -> list[dict[str, Any]]:
    """Every record saved for ``dataset`` under ``results_dir``."""
    folder = Path(results_dir) / dataset
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def _fmt(v: float | None, digits: int = 4) -> str:
    return "*" if v is None else f"{v:.{digits}f}"


def render_table(records: Iterable[dict[str, Any]], dataset: str, models: Iterable[str] | None = None) -> str:
    """Markdown: per horizon, the paper's row and ours (mean ± spread over seeds) for each model.

    Our rows say which selection variant they used, the epochs run and the seeds.
    """
    settings = PROTOCOL_SETTINGS[dataset]
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        sel = rec["selection"] if rec.get("best_epoch") is not None else "-"
        groups[(rec["model"], sel, rec["pre_len"])].append(rec)
    order = list(models) if models is not None else sorted({k[0] for k in groups} | {
        m for (d, m) in TGCN_TABLE if d == dataset})
    lines = []
    for pre_len, minutes in zip(settings.pre_lens, settings.minutes, strict=True):
        lines += [f"### {minutes} min (pre_len = {pre_len})", "",
                  "| model | numbers | selection | epochs | seeds | RMSE | MAE | Accuracy | R2 | var |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for model in order:
            pub = TGCN_TABLE.get((dataset, model))
            if pub is not None:
                cell = pub.horizons[str(minutes)]
                tag = "paper" + ("" if pub.verified else " (unverified)")
                trained = model not in STATISTICAL_BASELINES
                lines.append(f"| {model} | {tag} | {'test set' if trained else '-'} | {5000 if trained else '-'} | - | "
                             + " | ".join(_fmt(cell[m]) for m in _METRICS) + " |")
            for sel in ("-", "test", "val"):
                recs = groups.get((model, sel, pre_len))
                if not recs:
                    continue
                vals = []
                for m in _METRICS:
                    xs = [r["metrics"][m] for r in recs]
                    spread = f" ± {statistics.pstdev(xs):.4f}" if len(xs) > 1 else ""
                    vals.append(f"{statistics.fmean(xs):.4f}{spread}")
                epochs = sorted({r["epochs"] for r in recs}) if sel != "-" else ["-"]
                seeds = ",".join(str(r["seed"]) for r in recs)
                lines.append(f"| {model} | ours | {_LABELS[sel]} | {'/'.join(map(str, epochs))} | {seeds} | "
                             + " | ".join(vals) + " |")
        lines.append("")
    return "\n".join(lines)


def render_runs(records: Iterable[dict[str, Any]]) -> str:
    """Markdown list of every run behind the table: command, device, wall time, selected epoch."""
    lines = ["| model | pre_len | selection | epochs | best epoch | seed | wall time (s) | device | command |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["model"], r["pre_len"], r["selection"], r["seed"])):
        sel = r["selection"] if r.get("best_epoch") is not None else "-"
        lines.append(f"| {r['model']} | {r['pre_len']} | {sel} | {r['epochs']} | {r.get('best_epoch') or '-'} | "
                     f"{r['seed']} | {r['seconds']:.0f} | {r['device']} | `{r['command']}` |")
    return "\n".join(lines) + "\n"
