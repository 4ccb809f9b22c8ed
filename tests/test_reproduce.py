import json

import pytest

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


def test_results_go_under_the_current_directory(tmp_path, shared_data, monkeypatch):
    # a wheel install must never write into the installed package
    monkeypatch.chdir(tmp_path)
    reproduce("ha", "los-loop", root=shared_data, progress=False, command="stgnn reproduce ha los-loop")
    assert (tmp_path / "results" / "los-loop" / "ha.md").is_file()
    assert (tmp_path / "runs" / "reproduce" / "ha-los-loop" / "metrics.json").is_file()
    record = json.loads((tmp_path / "results" / "los-loop" / "ha.json").read_text())
    assert record["config"] == "stgnn/configs/ha/los-loop.toml"


def test_unknown_pair_is_an_error():
    with pytest.raises(ValueError, match="no paper config stgnn/configs/ha/metr-la.toml"):
        reproduce("ha", "metr-la")
