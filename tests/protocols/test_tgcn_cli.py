"""``stgnn score`` and ``stgnn reproduce --protocol tgcn`` from the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stgnn.cli import main
from stgnn.protocols.tgcn import tgcn_metrics, tgcn_windows, train_size


def _los_truth(shared_data, pre_len: int) -> np.ndarray:
    raw = pd.read_csv(shared_data / "los-loop" / "los_speed.csv").to_numpy(np.float64)
    return tgcn_windows(raw[train_size(len(raw)) :], 12, pre_len)[1].numpy()


def test_score_authors_layout_on_los_loop(tmp_path, shared_data, capsys) -> None:
    truth = _los_truth(shared_data, 6)
    pred = truth * 0.97 + 1.0
    path = tmp_path / "test_result.csv"
    pd.DataFrame(pred.reshape(-1, truth.shape[-1])).to_csv(path, header=False, index=False)
    code = main(["score", "--dataset", "los-loop", "--protocol", "tgcn", "--predictions", str(path),
                 "--data-dir", str(shared_data), "--no-download"])
    out = capsys.readouterr().out
    assert code == 0
    assert "pre_len 6 (30 min), 386 test windows, tgcn layout" in out  # pre_len inferred from the rows
    expected = tgcn_metrics(truth, pred)
    assert f"RMSE      {expected['rmse']:.4f}" in out and f"R2        {expected['r2']:.4f}" in out


def test_score_dcrnn_protocol(tmp_path, shared_data, capsys) -> None:
    from stgnn.data.windows import split_windows

    raw = pd.read_csv(shared_data / "los-loop" / "los_speed.csv").to_numpy(np.float64)
    starts = split_windows(len(raw), 12, 12, (0.7, 0.1, 0.2))["test"].numpy()
    idx = starts[:, None] + 12 + np.arange(12)
    path = tmp_path / "rows.csv"
    pd.DataFrame((raw[idx] + 2.0).reshape(-1, raw.shape[1])).to_csv(path, header=False, index=False)
    code = main(["score", "--dataset", "los-loop", "--protocol", "dcrnn", "--predictions", str(path),
                 "--data-dir", str(shared_data), "--no-download"])
    out = capsys.readouterr().out
    assert code == 0 and f"{len(starts)} test windows" in out
    assert "| @3 (15 min) | 2.00 | 2.00 |" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--predictions", "nope.csv"], "--predictions: nope.csv: file not found"),
    (["--predictions", "x.csv", "--pre-len", "0"], "--pre-len: must be >= 1"),
])
def test_score_usage_errors(tmp_path, shared_data, capsys, argv, message) -> None:
    code = main(["score", "--dataset", "los-loop", "--protocol", "tgcn", "--data-dir", str(shared_data), *argv])
    assert code == 2 and message in capsys.readouterr().err


def test_reproduce_tgcn_protocol_with_ha(tmp_path, shared_data, capsys) -> None:
    code = main(["reproduce", "ha", "los-loop", "--protocol", "tgcn", "--results-dir", str(tmp_path),
                 "--data-dir", str(shared_data), "--no-download", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    for minutes in (15, 30, 45, 60):
        assert f"### {minutes} min" in out
    assert "| ha | paper (unverified) |" in out and "| ha | ours | no selection |" in out
    assert len(list((tmp_path / "tgcn-protocol" / "los-loop").glob("ha-pre*-test-seed0.json"))) == 4
    assert "`stgnn reproduce ha los-loop --protocol tgcn" not in out  # the command is in the file's runs list
    assert "--protocol tgcn" in (tmp_path / "TGCN_PROTOCOL.md").read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["ha", "metr-la", "--protocol", "tgcn"], "metr-la: the T-GCN protocol is defined for los-loop, sz-taxi"),
    (["--protocol", "tgcn"], "give MODEL [DATASET], or --all"),
    (["tgcn", "--protocol", "tgcn", "--max-batches", "2"], "--max-batches: the T-GCN protocol"),
    (["svr", "los-loop"], "svr: a baseline of the T-GCN protocol only"),
])
def test_reproduce_usage_errors(tmp_path, capsys, argv, message) -> None:
    code = main(["reproduce", *argv, "--results-dir", str(tmp_path), "--no-download"])
    assert code == 2 and message in capsys.readouterr().err
