"""reproduce_tgcn end to end on a generated SZ-taxi file (tiny epochs)."""

from __future__ import annotations

import pytest
import standins

from stgnn.protocols.reproduce import reproduce_tgcn, table_path

pytestmark = pytest.mark.usefixtures("single_thread")


def test_reproduce_writes_records_and_table(tmp_path) -> None:
    standins.write_sz_taxi(tmp_path / "data" / "sz-taxi", t=400, n=5)
    lines: list[str] = []
    table = reproduce_tgcn(["ha", "gcn"], "sz-taxi", root=tmp_path / "data", results_dir=tmp_path / "res",
                           command="stgnn reproduce --protocol tgcn", pre_lens=[1], selections=["test", "val"],
                           epochs=1, verify=False, log=lines.append)
    assert len(lines) == 3  # ha once, gcn with both selections
    records = sorted(p.name for p in (tmp_path / "res" / "tgcn-protocol" / "sz-taxi").glob("*.json"))
    assert records == ["gcn-pre1-test-seed0.json", "gcn-pre1-val-seed0.json", "ha-pre1-test-seed0.json"]
    text = table_path(tmp_path / "res", "sz-taxi").read_text()
    assert "<!-- table -->" in text and "| gcn | ours | best epoch on validation (honest) | 1 |" in table
    assert "| tgcn | paper (unverified) |" in text  # the paper's rows are in the file without a run of ours
    assert "| tgcn |" not in table  # the returned table holds the requested models only
    assert "`stgnn reproduce --protocol tgcn`" in text
    with pytest.raises(KeyError, match="not 'metr-la'"):
        reproduce_tgcn(["ha"], "metr-la", results_dir=tmp_path, command="x")
