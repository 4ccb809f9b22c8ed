import json

from stgnn.reproduce import available_configs, reproduce


def test_configs_cover_the_grid():
    have = set(available_configs())
    for model in ("stgcn", "dcrnn", "gwnet"):
        for dataset in ("metr-la", "pems-bay", "pems04", "pems08", "pemsd7m", "los-loop"):
            assert (model, dataset) in have


def test_reproduce_writes_table_json_and_summary(tmp_path, shared_data):
    record = reproduce("ha", "los-loop", root=shared_data, runs_dir=tmp_path / "runs",
                       results_dir=tmp_path / "results", progress=False, command="stgnn reproduce ha los-loop")
    md = (tmp_path / "results" / "los-loop" / "ha.md").read_text()
    assert "stgnn reproduce ha los-loop" in md and "published MAE" in md and "4.01" in md
    saved = json.loads((tmp_path / "results" / "los-loop" / "ha.json").read_text())
    assert saved["horizons"] == record["horizons"]
    summary = (tmp_path / "results" / "RESULTS.md").read_text()
    assert "## los-loop" in summary and "[ha](los-loop/ha.md)" in summary


def test_reproduce_records_overrides(tmp_path, shared_data):
    record = reproduce("ha", "los-loop", root=shared_data, runs_dir=tmp_path / "runs",
                       results_dir=tmp_path / "results", progress=False,
                       train_overrides={"epochs": 1, "device": None})
    assert record["overrides"] == {"epochs": 1}
    assert "overrides {'epochs': 1}" in (tmp_path / "results" / "los-loop" / "ha.md").read_text()
