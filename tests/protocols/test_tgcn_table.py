"""Results records and the Markdown table of the T-GCN protocol."""

from __future__ import annotations

import numpy as np

from stgnn.protocols.runner import ProtocolResult
from stgnn.protocols.table import load_records, record, render_runs, render_table, save_record


def result(model: str, rmse: float, seed: int, selection: str = "test", epoch: int | None = 3) -> ProtocolResult:
    metrics = {"rmse": rmse, "mae": rmse / 2, "accuracy": 0.9, "r2": 0.8, "var": 0.8}
    return ProtocolResult(model, 3, selection, metrics, epoch, 5, 1.5, seed, {"train": 10, "test": 4},  # type: ignore[arg-type]
                          np.zeros((4, 3, 2)))


def test_records_round_trip_and_table(tmp_path) -> None:
    for seed, rmse in ((0, 5.0), (1, 6.0)):
        save_record(record(result("tgcn", rmse, seed), "los-loop", "cmd --x"), tmp_path)
    save_record(record(result("tgcn", 7.0, 0, "val"), "los-loop", "cmd --y"), tmp_path)
    save_record(record(result("ha", 7.3, 0, epoch=None), "los-loop", "cmd --z"), tmp_path)
    recs = load_records(tmp_path, "los-loop")
    assert len(recs) == 4 and {r["minutes"] for r in recs} == {15}
    table = render_table(recs, "los-loop", ["ha", "tgcn"])
    block = table.split("### 30 min")[0]
    assert "| tgcn | paper (unverified) | test set | 5000 | - | 5.1264 |" in block
    assert "| tgcn | ours | best epoch on test (authors) | 5 | 0,1 | 5.5000 ± 0.5000 |" in block
    assert "| tgcn | ours | best epoch on validation (honest) | 5 | 0 | 7.0000 |" in block
    assert "| ha | ours | no selection | - | 0 | 7.3000 |" in block
    assert "| ha | paper (unverified) | - | - | - |" in block
    runs = render_runs(recs)
    assert runs.count("\n") == 2 + 4 and "`cmd --y`" in runs
