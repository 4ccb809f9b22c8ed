import pandas as pd
import pytest
import torch

from stgnn.data.dataset import TrafficDataset
from stgnn.data.graph import SensorGraph
from stgnn.data.windows import StandardScaler, WindowData, covariates, split_windows


def test_dcrnn_window_counts_on_metr_la_length():
    s = split_windows(34272, 12, 12, (0.7, 0.1, 0.2))
    assert [s[k].numel() for k in ("train", "val", "test")] == [23974, 3425, 6850]
    assert s["train"][-1] + 1 == s["val"][0] and s["val"][-1] + 1 == s["test"][0]


@pytest.mark.parametrize("bad", [(0.7, 0.2), (0.5, 0.5, 0.5), (-0.1, 0.6, 0.5)])
def test_bad_split_is_rejected(bad):
    with pytest.raises(ValueError, match="split"):
        split_windows(1000, 12, 12, bad)


def test_too_short_series_is_rejected():
    with pytest.raises(ValueError, match="too short"):
        split_windows(20, 12, 12, (0.7, 0.1, 0.2))


def _dataset(t=300, n=4, f=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = 50 + 10 * torch.rand(t, n, f, generator=g)
    values[5, 1, :] = 0.0  # one missing reading
    stamps = pd.date_range("2012-03-01", periods=t, freq="5min")
    graph = SensorGraph.from_dense(torch.eye(n).numpy() + 0.5, [f"s{i}" for i in range(n)])
    return TrafficDataset.from_arrays("toy", values.numpy(), graph, stamps, interval_minutes=5,
                                      units="mph", feature_names=tuple(f"f{i}" for i in range(f)),
                                      source="test")


def test_windows_are_views_of_one_tensor_and_align():
    ds = _dataset()
    wd = WindowData(ds, input_len=12, horizon=12, split=(0.7, 0.1, 0.2))
    # Nothing of window size is stored: only full-length tensors.
    assert wd.inputs.shape[0] == ds.num_steps and wd.targets.shape[0] == ds.num_steps
    batch = wd.batch(torch.tensor([0, 7]))
    assert batch.x.shape == (2, 12, 4, 2) and batch.y.shape == (2, 12, 4, 1)
    torch.testing.assert_close(batch.y[1, 0], ds.series[7 + 12])
    torch.testing.assert_close(wd.scaler.inverse(batch.x[1, -1, :, :1]), ds.series[7 + 11], rtol=1e-5, atol=1e-4)
    assert batch.start.tolist() == [12, 19]
    assert not batch.x_mask[0, 5, 1] and batch.x_mask[0, 5, 0]


def test_scaler_fit_on_train_only_and_ignores_missing():
    ds = _dataset()
    wd = WindowData(ds, split=(0.7, 0.1, 0.2))
    before = wd.scaler.state_dict()
    # Change every value after the training period: the scaler must not move.
    changed = _dataset()
    changed.series[wd.train_end:] = 1e6
    wd2 = WindowData(changed, split=(0.7, 0.1, 0.2))
    assert wd2.scaler.state_dict() == before
    # ...while a change inside the training period does move it.
    changed.series[: wd.train_end] += 1.0
    assert WindowData(changed, split=(0.7, 0.1, 0.2)).scaler.state_dict() != before
    # Missing readings (0) are not part of the mean.
    train = ds.series[: wd.train_end][ds.mask[: wd.train_end]]
    assert wd.scaler.mean.item() == pytest.approx(train.mean().item(), rel=1e-6)


def test_scaler_rejects_an_all_missing_training_period():
    with pytest.raises(ValueError, match="no observed"):
        StandardScaler.fit(torch.zeros(10, 2, 1), torch.zeros(10, 2, dtype=torch.bool))


def test_covariates_from_timestamps():
    stamps = pd.DatetimeIndex(["2012-03-01 00:00", "2012-03-01 12:00", "2012-03-04 18:00"])  # Thu, Thu, Sun
    cov = covariates(stamps, ["time_of_day", "day_of_week"])
    torch.testing.assert_close(cov[:, 0], torch.tensor([0.0, 0.5, 0.75]))
    torch.testing.assert_close(cov[:, 1], torch.tensor([3 / 7, 3 / 7, 6 / 7]))
    with pytest.raises(ValueError, match="unknown covariate"):
        covariates(stamps, ["moon_phase"])


def test_feature_selection_errors():
    ds = _dataset(f=3)
    with pytest.raises(ValueError, match="out of range"):
        WindowData(ds, target_features=[5])
    with pytest.raises(ValueError, match="must start with"):
        WindowData(ds, input_features=[1, 2], target_features=[0])
    wd = WindowData(ds, input_features=[0, 2], covariate_names=["time_of_day", "day_of_week"])
    assert wd.in_channels == 4 and wd.out_channels == 1
