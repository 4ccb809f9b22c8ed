"""Scoring a predictions file under the T-GCN protocol: both layouts, and every way it can be wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stgnn.protocols.score import score_predictions
from stgnn.protocols.tgcn import tgcn_metrics, tgcn_windows, train_size

T, N, SEQ, PRE = 100, 3, 4, 2
IDS = ["s1", "s2", "s3"]
STAMPS = pd.date_range("2015-01-01", periods=T, freq="15min")


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    series = rng.uniform(10, 60, size=(T, N))
    n_train = train_size(T)
    truth = tgcn_windows(series[n_train:], SEQ, PRE)[1].numpy()  # [14, 2, 3]
    pred = truth + rng.normal(size=truth.shape)
    return series, truth, pred


def write_predict_csv(path, pred: np.ndarray, drop: int | None = None, extra: bool = False) -> None:
    n_train = train_size(T)
    rows = []
    for w in range(pred.shape[0]):
        origin = STAMPS[n_train + SEQ - 1 + w]
        for h in range(PRE):
            for n, sensor in enumerate(IDS):
                rows.append((origin, origin + (h + 1) * pd.Timedelta("15min"), h + 1, sensor, pred[w, h, n], 0.0))
    if extra:
        rows.append((STAMPS[5], STAMPS[6], 1, "s1", 1.0, 0.0))
    frame = pd.DataFrame(rows, columns=["origin", "timestamp", "horizon", "sensor", "prediction", "truth"])
    if drop is not None:
        frame = frame.drop(index=drop)
    frame.sample(frac=1.0, random_state=0).to_csv(path, index=False)  # order must not matter


def score(path):
    series, _, _ = data()
    return score_predictions(path, series, STAMPS, IDS, seq_len=SEQ, pre_len=PRE)


def test_authors_layout(tmp_path) -> None:
    _, truth, pred = data()
    path = tmp_path / "test_result.csv"
    pd.DataFrame(pred.reshape(-1, N)).to_csv(path, header=False, index=False)
    out = score(path)
    assert out["layout"] == "tgcn" and out["windows"] == 14 == (T - 80) - SEQ - PRE
    for k, v in tgcn_metrics(truth, pred).items():
        assert out[k] == pytest.approx(v)


def test_predict_csv_layout_maps_by_origin_and_sensor(tmp_path) -> None:
    _, truth, pred = data()
    path = tmp_path / "forecast.csv"
    write_predict_csv(path, pred, extra=True)
    out = score(path)
    assert out["layout"] == "stgnn" and out["ignored_rows"] == 1
    assert out["rmse"] == pytest.approx(tgcn_metrics(truth, pred)["rmse"])


def test_wrong_row_count_is_explained(tmp_path) -> None:
    _, _, pred = data()
    path = tmp_path / "test_result.csv"
    pd.DataFrame(pred.reshape(-1, N)[:-1]).to_csv(path, header=False, index=False)
    with pytest.raises(ValueError, match=r"27 rows x 3 columns.*14 windows x 2 steps = 28 rows"):
        score(path)


def test_missing_window_step_is_named(tmp_path) -> None:
    _, _, pred = data()
    path = tmp_path / "forecast.csv"
    write_predict_csv(path, pred, drop=0)
    with pytest.raises(ValueError, match="1 of 84 .*missing"):
        score(path)


def test_unknown_and_missing_sensors(tmp_path) -> None:
    _, _, pred = data()
    path = tmp_path / "forecast.csv"
    write_predict_csv(path, pred)
    frame = pd.read_csv(path)
    frame.loc[frame["sensor"] == "s3", "sensor"] = "zz"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="not in the dataset.*zz"):
        score(path)
    frame = frame[frame["sensor"] != "zz"]
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="have no prediction.*s3"):
        score(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        score(tmp_path / "nope.csv")


def test_dcrnn_protocol_scores_the_split_windows_masked(tmp_path) -> None:
    import torch

    from stgnn.data.dataset import TrafficDataset
    from stgnn.data.graph import SensorGraph
    from stgnn.data.windows import split_windows
    from stgnn.metrics import MaskedMetrics
    from stgnn.protocols.score import score_dcrnn_predictions

    series, _, _ = data()
    series[90, 1] = 0.0
    ds = TrafficDataset.from_arrays("toy", series[:, :, None], SensorGraph.from_dense(np.eye(N), IDS), STAMPS,
                                    interval_minutes=15, units="x", feature_names=("speed",), source="test",
                                    split=(0.7, 0.1, 0.2))
    starts = split_windows(T, 12, 12, (0.7, 0.1, 0.2))["test"]
    idx = starts[:, None] + 12 + torch.arange(12)
    truth = torch.from_numpy(series)[idx]
    pred = truth + 1.5
    path = tmp_path / "rows.csv"
    pd.DataFrame(pred.reshape(-1, N).numpy()).to_csv(path, header=False, index=False)
    out = score_dcrnn_predictions(path, ds)
    ref = MaskedMetrics()
    ref.update(pred[..., None], truth[..., None], ds.mask[idx])
    assert out["windows"] == len(starts) and out["layout"] == "tgcn"
    assert out["3"] == pytest.approx(ref.compute()["3"]) and out["average"]["mae"] == pytest.approx(1.5)
    assert out["average"]["count"] < pred.numel()  # the zero reading is masked (missing_zero default)


def test_infer_pre_len_from_either_layout(tmp_path) -> None:
    from stgnn.protocols.score import infer_pre_len

    _, _, pred = data()
    rows = tmp_path / "test_result.csv"
    pd.DataFrame(pred.reshape(-1, N)).to_csv(rows, header=False, index=False)
    assert infer_pre_len(rows, T, SEQ) == PRE
    long = tmp_path / "forecast.csv"
    write_predict_csv(long, pred)
    assert infer_pre_len(long, T, SEQ) == PRE
    pd.DataFrame(pred.reshape(-1, N)[:-1]).to_csv(rows, header=False, index=False)
    with pytest.raises(ValueError, match="give --pre-len"):
        infer_pre_len(rows, T, SEQ)
