"""Reproduce T-GCN's Table I: run models under the T-GCN protocol and rebuild the results table.

:func:`reproduce_tgcn` runs every requested (model, ``pre_len``, selection, seed) cell, saves one
JSON record per run under ``results_dir/tgcn-protocol/<dataset>/`` and regenerates
``results_dir/TGCN_PROTOCOL[_<dataset>].md`` from all records there (the text above its
``<!-- table -->`` marker is kept).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stgnn.data import load_dataset
from stgnn.protocols.baselines import STATISTICAL_BASELINES
from stgnn.protocols.runner import Selection, default_settings, run_protocol
from stgnn.protocols.table import load_records, record, render_runs, render_table, save_record
from stgnn.protocols.tgcn import PROTOCOL_SETTINGS
from stgnn.published import TGCN_TABLE

__all__ = ["TABLE_MODELS", "reproduce_tgcn", "table_path"]

TABLE_MODELS = ("ha", "arima", "svr", "gcn", "gru", "tgcn", "stgcn", "dcrnn", "gwnet")
"""The rows of the table, in order: the paper's six, then this package's graph models."""


def table_path(results_dir: Path, dataset: str) -> Path:
    """``TGCN_PROTOCOL.md`` for Los-loop, ``TGCN_PROTOCOL_<dataset>.md`` for other datasets."""
    suffix = "" if dataset == "los-loop" else f"_{dataset}"
    return Path(results_dir) / f"TGCN_PROTOCOL{suffix}.md"


def reproduce_tgcn(
    models: Sequence[str],
    dataset: str,
    *,
    root: str | os.PathLike[str] | None = None,
    results_dir: str | os.PathLike[str],
    command: str,
    pre_lens: Sequence[int] | None = None,
    selections: Sequence[Selection] = ("test", "val"),
    seeds: Sequence[int] = (0,),
    epochs: int | None = None,
    device: str = "cpu",
    verify: bool = True,
    log: Callable[[str], Any] | None = print,
) -> str:
    """Run ``models`` on ``dataset`` under the T-GCN protocol and rebuild the results table.

    Args:
        models: Statistical baselines (``ha``, ``arima``, ``svr``) and/or registered models.
        dataset: A dataset with protocol settings (``los-loop``, ``sz-taxi``).
        root: Data root.
        results_dir: Folder of the table and of the ``tgcn-protocol`` records.
        command: The command line recorded with every run.
        pre_lens: Forecast lengths (default: the paper's for the dataset).
        selections: Selection variants for trained models (statistical baselines have none).
        seeds: Seeds for trained models.
        epochs: Training epochs (default: the authors' 5000).
        device: Torch device.
        verify: Check the files' sha256 digests where known (see :func:`stgnn.data.load_dataset`).
        log: Progress output (``None``: silent).

    Returns:
        The Markdown table of ``models`` alone (paper rows beside ours); the file holds every
        model with a record or published numbers.

    Raises:
        KeyError: a dataset without protocol settings, or an unknown model.
    """
    if dataset not in PROTOCOL_SETTINGS:
        raise KeyError(f"the T-GCN protocol is defined for {', '.join(PROTOCOL_SETTINGS)}, not {dataset!r}")
    ps = PROTOCOL_SETTINGS[dataset]
    ds = load_dataset(dataset, root, verify=verify)
    out_dir = Path(results_dir)
    records_dir = out_dir / "tgcn-protocol"
    for pre_len in pre_lens or ps.pre_lens:
        for model in models:
            statistical = model in STATISTICAL_BASELINES
            for selection in ("test",) if statistical else selections:
                for seed in (0,) if statistical else seeds:
                    settings = None if statistical else default_settings(model, dataset, epochs)
                    res = run_protocol(model, ds.series, ds.graph.edge_index, ds.graph.edge_weight,
                                       seq_len=ps.seq_len, pre_len=pre_len, selection=selection,
                                       settings=settings, seed=seed, steps_per_day=ds.steps_per_day,
                                       device=device)
                    path = save_record(record(res, dataset, command, device), records_dir)
                    if log is not None:
                        log(f"{model} pre_len={pre_len} selection={selection if not statistical else '-'} "
                            f"seed={seed}: rmse={res.metrics['rmse']:.4f} mae={res.metrics['mae']:.4f} "
                            f"best epoch={res.best_epoch} ({res.seconds:.0f} s) -> {path}")
    records = load_records(records_dir, dataset)
    present = {r["model"] for r in records} | {m for (d, m) in TGCN_TABLE if d == dataset}
    table = render_table(records, dataset, [m for m in TABLE_MODELS if m in present])
    out = table_path(out_dir, dataset)
    header = out.read_text().split("<!-- table -->")[0] if out.is_file() else f"# T-GCN protocol on {dataset}\n\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + "<!-- table -->\n\n" + table + "\n### Runs\n\n" + render_runs(records))
    return render_table(records, dataset, list(models))
