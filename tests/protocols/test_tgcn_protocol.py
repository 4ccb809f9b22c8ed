"""The T-GCN protocol: windows as the authors' loop, scaling, metrics by hand, baselines, selection."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from stgnn.protocols.baselines import ar_recursion, arima_forecast, ha_forecast, svr_forecast
from stgnn.protocols.runner import TrainSettings, default_settings, run_protocol
from stgnn.protocols.tgcn import (
    max_scale,
    tgcn_l2_loss,
    tgcn_metrics,
    tgcn_split,
    tgcn_windows,
    to_rows,
    train_size,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def authors_loop(part: np.ndarray, seq_len: int, pre_len: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The window loop of the authors' ``preprocess_data``, restated."""
    xs, ys = [], []
    for i in range(len(part) - seq_len - pre_len):
        a = part[i : i + seq_len + pre_len]
        xs.append(a[0:seq_len])
        ys.append(a[seq_len : seq_len + pre_len])
    return xs, ys


def test_metrics_hand_computed() -> None:
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    p = np.array([[2.0, 2.0], [3.0, 2.0]])
    # errors 1, 0, 0, -2 (y - p = -1, 0, 0, 2)
    m = tgcn_metrics(y, p)
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 4))
    assert m["mae"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(1 - math.sqrt(5) / math.sqrt(30))
    # mean of y = 2.5; sum (y - mean)^2 = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert m["r2"] == pytest.approx(1 - 5 / 5)
    # err = [-1, 0, 0, 2]: mean 0.25, var = (1.5625 + 0.0625 + 0.0625 + 3.0625) / 4 = 1.1875; var(y) = 1.25
    assert m["var"] == pytest.approx(1 - 1.1875 / 1.25)


def test_metrics_pool_windows_and_steps() -> None:
    rng = np.random.default_rng(0)
    y = rng.uniform(1, 5, size=(4, 3, 2))
    p = y + rng.normal(size=y.shape)
    assert tgcn_metrics(y, p) == tgcn_metrics(y.reshape(12, 2), p.reshape(12, 2))
    assert to_rows(y)[3].tolist() == y[1, 0].tolist()  # row = (window, step) in window order


@pytest.mark.parametrize("bad", [np.array([[np.nan, 1.0]]), np.zeros((1, 2))])
def test_metrics_and_scaling_reject_bad_values(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        tgcn_metrics(bad, np.ones_like(bad)) if np.isnan(bad).any() else max_scale(bad)


def test_metrics_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        tgcn_metrics(np.ones((2, 3)), np.ones((3, 2)))


def test_windows_equal_the_authors_loop() -> None:
    part = np.arange(40, dtype=np.float32).reshape(20, 2)
    x, y = tgcn_windows(part, 4, 3)
    xs, ys = authors_loop(part, 4, 3)
    assert x.shape == (len(xs), 4, 2) == (20 - 4 - 3, 4, 2)
    np.testing.assert_array_equal(x.numpy(), np.stack(xs))
    np.testing.assert_array_equal(y.numpy(), np.stack(ys))


def test_windows_too_short() -> None:
    with pytest.raises(ValueError, match="too short"):
        tgcn_windows(np.zeros((15, 2)), 12, 3)


def test_los_loop_window_counts_match_the_authors_loop(shared_data) -> None:
    raw = pd.read_csv(shared_data / "los-loop" / "los_speed.csv").to_numpy(np.float64)
    assert raw.shape == (2016, 207)
    n = train_size(len(raw))
    assert n == 1612
    scaled = raw / raw.max()
    for pre_len, expected_test in zip((3, 6, 9, 12), (389, 386, 383, 380), strict=True):
        split = tgcn_split(raw, 12, pre_len)
        tr_x, tr_y = authors_loop(scaled[:n], 12, pre_len)
        te_x, te_y = authors_loop(scaled[n:], 12, pre_len)
        assert split.test[0].shape[0] == len(te_x) == expected_test == 404 - 12 - pre_len
        assert split.train[0].shape[0] == len(tr_x) == 1612 - 12 - pre_len
        np.testing.assert_allclose(split.test[1].numpy(), np.stack(te_y), rtol=1e-6)
        np.testing.assert_allclose(split.train[0].numpy(), np.stack(tr_x), rtol=1e-6)
        assert split.max_value == raw.max() == 70.0


def test_val_variant_holds_out_the_end_of_training() -> None:
    series = np.random.default_rng(0).uniform(1, 2, size=(200, 3))
    test = tgcn_split(series, 4, 2, "test")
    val = tgcn_split(series, 4, 2, "val")
    assert test.bounds == {"train": (0, 160), "test": (160, 200)}
    assert val.bounds == {"train": (0, 144), "val": (144, 160), "test": (160, 200)}
    assert val.val is not None and val.val[0].shape[0] == 16 - 6
    torch.testing.assert_close(val.test[1], test.test[1])
    with pytest.raises(ValueError, match="selection"):
        tgcn_split(series, 4, 2, "best")  # type: ignore[arg-type]


def test_l2_loss_by_hand() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = tgcn_l2_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0]), [w], l2=0.1)
    assert loss.item() == pytest.approx(0.5 * (1 + 4) + 0.5 * 0.1 * 5)


def test_ha_rolls_its_own_forecasts() -> None:
    x = np.array([[[1.0], [2.0], [3.0]]])  # one window, seq_len 3, one sensor
    out = ha_forecast(x, x, x, 3)
    s1 = 2.0
    s2 = (2 + 3 + s1) / 3
    s3 = (3 + s1 + s2) / 3
    np.testing.assert_allclose(out[0, :, 0], [s1, s2, s3])


def test_svr_repeats_one_prediction_per_window() -> None:
    pytest.importorskip("sklearn")
    series = np.sin(np.arange(300) / 5)[:, None] * np.array([1.0, 2.0]) + 3
    x, y = (t.numpy() for t in tgcn_windows(series, 6, 2))
    out = svr_forecast(x[:200], y[:200], x[200:], 2)
    assert out.shape == (x.shape[0] - 200, 2, 2)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    assert np.abs(out[:, 0] - y[200:].mean(axis=1)).mean() < 0.2


def test_ar_recursion_matches_statsmodels_forecast() -> None:
    pytest.importorskip("statsmodels")
    from statsmodels.tsa.arima.model import ARIMA

    rng = np.random.default_rng(1)
    e = rng.normal(size=400)
    s = np.zeros(400)
    for t in range(2, 400):
        s[t] = 0.6 * s[t - 1] - 0.2 * s[t - 2] + e[t]
    s += 10
    res = ARIMA(s[:300], order=(2, 0, 0), trend="c").fit()
    const, phi = float(res.params[0]), np.asarray(res.params[1:3])
    window = s[300:312]
    expected = res.apply(window).forecast(4)
    np.testing.assert_allclose(ar_recursion(window[None], const, phi, 4)[0], expected, rtol=1e-8)
    x, y = (t.numpy()[..., None] for t in tgcn_windows(s, 12, 3))
    out = arima_forecast(x, y, x[:5], 3, train_series=s[:300, None], order=(2, 0, 0))
    assert out.shape == (5, 3, 1)
    with pytest.raises(ValueError, match="only"):
        arima_forecast(x, y, x[:5], 3, train_series=s[:300, None], order=(1, 1, 0))


def _toy(n: int = 4, t: int = 120) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    base = 50 + 10 * np.sin(np.arange(t)[:, None] / 6 + np.arange(n))
    series = base + rng.normal(scale=1.0, size=(t, n))
    ei = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    return series, ei, torch.ones(ei.shape[1])


@pytest.mark.parametrize("selection", ["test", "val"])
def test_runner_reports_the_selected_epoch(selection: str) -> None:
    series, ei, ew = _toy()
    st = TrainSettings(epochs=4, batch_size=16, lr=0.01, hparams={"hidden_channels": 8})
    r = run_protocol("tgcn", series, ei, ew, seq_len=6, pre_len=2, selection=selection,  # type: ignore[arg-type]
                     settings=st, seed=0)
    key = "test_rmse" if selection == "test" else "val_rmse"
    scores = [h[key] for h in r.history]
    assert r.best_epoch == int(np.argmin(scores)) + 1
    assert r.metrics["rmse"] == pytest.approx(r.history[r.best_epoch - 1]["test_rmse"], rel=1e-5)
    assert r.predictions.shape == (r.windows["test"], 2, 4)
    assert ("val" in r.windows) == (selection == "val")


def test_runner_statistical_and_errors() -> None:
    series, ei, ew = _toy()
    r = run_protocol("ha", series, ei, ew, seq_len=6, pre_len=2)
    assert r.best_epoch is None and r.predictions.shape == (24 - 8, 2, 4)
    with pytest.raises(ValueError, match="no epochs"):
        run_protocol("ha", series, ei, ew, seq_len=6, pre_len=2, selection="val")
    with pytest.raises(KeyError, match="unknown model"):
        run_protocol("nope", series, ei, ew, seq_len=6, pre_len=2)
    with pytest.raises(ValueError, match="settings are required"):
        run_protocol("gcn", series, ei, ew, seq_len=6, pre_len=2)


def test_default_settings() -> None:
    st = default_settings("tgcn", "los-loop")
    assert (st.epochs, st.batch_size, st.lr, st.l2, st.hparams) == (5000, 64, 0.001, 0.0015, {"hidden_channels": 64})
    assert default_settings("tgcn", "sz-taxi", epochs=3).hparams == {"hidden_channels": 100}
    assert default_settings("stgcn", "los-loop").loss == "mae"
    with pytest.raises(KeyError, match="no settings"):
        default_settings("tgcn", "metr-la")
