"""User covariates: time covariates (global / per sensor), node attributes, alignment, scaling."""

import numpy as np
import pandas as pd
import pytest
import standins
import torch

from stgnn.data.custom import load_custom
from stgnn.data.windows import StandardScaler, WindowData

T, N = 60, 3
IDS = [f"S{i}" for i in range(N)]


def _files(tmp_path):
    series, locations = standins.write_custom(tmp_path, t=T, n=N)
    stamps = pd.date_range("2024-01-01", periods=T, freq="5min")
    return series, locations, stamps


def test_global_time_covariates_are_aligned_by_timestamp(tmp_path):
    series, locations, stamps = _files(tmp_path)
    cov = pd.DataFrame({"timestamp": stamps, "rain": np.arange(T, dtype=float), "holiday": [True, False] * (T // 2)})
    # rows shuffled, and extra rows before and after the readings: aligned by timestamp
    before = pd.DataFrame({"timestamp": [stamps[0] - pd.Timedelta("5min")], "rain": [-1.0], "holiday": [False]})
    cov = pd.concat([cov.iloc[::-1], before]).reset_index(drop=True)
    cov.to_csv(tmp_path / "weather.csv", index=False)
    ds = load_custom(series, locations=locations, time_covariates=tmp_path / "weather.csv")
    user = ds.user_covariates
    assert user is not None and user.time_names == ("rain", "holiday") and user.node is None
    assert user.time.shape == (T, N, 2)
    torch.testing.assert_close(user.time[:, 1, 0], torch.arange(T, dtype=torch.float32))
    assert torch.equal(user.time[:, 0], user.time[:, 2])  # global: the same for every sensor
    assert user.time[0, 0, 1] == 1.0 and user.time[1, 0, 1] == 0.0  # booleans become 0/1


def test_per_sensor_time_covariates_in_long_layout(tmp_path):
    series, locations, stamps = _files(tmp_path)
    rows = [(t, s, 10.0 * i + k) for k, t in enumerate(stamps) for i, s in enumerate(reversed(IDS))]
    pd.DataFrame(rows, columns=["timestamp", "sensor_id", "incident"]).to_parquet(tmp_path / "inc.parquet")
    ds = load_custom(series, locations=locations, time_covariates=tmp_path / "inc.parquet")
    user = ds.user_covariates
    assert user is not None and user.time_names == ("incident",)
    # S2 was listed first (i = 0): values follow the sensor id, not the row order
    torch.testing.assert_close(user.time[5, :, 0], torch.tensor([25.0, 15.0, 5.0]))


def test_node_attributes_numeric_and_one_hot(tmp_path):
    series, locations, _ = _files(tmp_path)
    pd.DataFrame({"sensor_id": ["S2", "S0", "S1"], "lanes": [4, 2, 3],
                  "road_type": ["freeway", "arterial", "freeway"]}).to_csv(tmp_path / "attrs.csv", index=False)
    ds = load_custom(series, locations=locations, node_attributes=tmp_path / "attrs.csv")
    user = ds.user_covariates
    assert user is not None and user.node_names == ("lanes", "road_type=arterial", "road_type=freeway")
    torch.testing.assert_close(user.node, torch.tensor([[2.0, 1, 0], [3, 0, 1], [4, 0, 1]]))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (lambda s: pd.DataFrame({"timestamp": s[:-3], "rain": 1.0}),
         r"weather.csv: 3 timestamps of the readings have no row: '2024-01-01 04:45:00'"),
        (lambda s: pd.DataFrame({"time": s, "rain": 1.0}), r"weather.csv: time covariates need a 'timestamp' column"),
        (lambda s: pd.DataFrame({"timestamp": s}), r"weather.csv: no covariate columns besides 'timestamp'"),
        (lambda s: pd.DataFrame({"timestamp": s, "sky": "clear"}), r"column 'sky' is not numeric.*one-hot"),
        (lambda s: pd.DataFrame({"timestamp": s, "rain": [np.nan] + [1.0] * (len(s) - 1)}),
         r"column 'rain' has 1 empty or non-finite cells \(at '2024-01-01 00:00:00'\)"),
        (lambda s: pd.DataFrame({"timestamp": list(s) + [s[3]], "rain": 1.0}), r"repeated rows for '2024-01-01 00:15"),
        (lambda s: pd.DataFrame({"timestamp": list(s) + [s[3] + pd.Timedelta("1min")], "rain": 1.0}),
         r"1 rows have timestamps .* not on the readings' grid, e.g. '2024-01-01 00:16:00'"),
        (lambda s: pd.DataFrame({"timestamp": np.repeat(s, 2), "sensor_id": ["S0", "S9"] * len(s), "x": 1.0}),
         r"1 sensor ids are not sensors of the readings: 'S9'"),
        (lambda s: pd.DataFrame({"timestamp": np.repeat(s, 3), "sensor_id": IDS * len(s), "x": 1.0}).drop(index=4),
         r"1 \(timestamp, sensor\) pairs of the readings have no row: '2024-01-01 00:05:00 sensor S1'"),
        (lambda s: pd.DataFrame({"timestamp": np.repeat(s, 2), "sensor_id": ["S0", "S1"] * len(s), "x": 1.0}),
         r"no rows for 1 sensors of the readings: 'S2'"),
    ],
)
def test_time_covariate_errors_name_the_file_and_the_problem(tmp_path, frame, message):
    series, locations, stamps = _files(tmp_path)
    frame(stamps).to_csv(tmp_path / "weather.csv", index=False)
    with pytest.raises(ValueError, match=message):
        load_custom(series, locations=locations, time_covariates=tmp_path / "weather.csv")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"sensor_id": ["S0", "S1"], "lanes": [1, 2]}, r"attrs.csv: no attributes for 1 sensors of the readings: 'S2'"),
        ({"sensor_id": IDS + ["X"], "lanes": [1, 2, 3, 4]}, r"attrs.csv: 1 sensor ids are not sensors .*: 'X'"),
        ({"sensor_id": IDS + ["S0"], "lanes": [1, 2, 3, 4]}, r"attrs.csv: sensor ids repeated: 'S0'"),
        ({"id": IDS, "lanes": [1, 2, 3]}, r"attrs.csv: node attributes need a 'sensor_id' column"),
        ({"sensor_id": IDS, "lanes": [1, np.nan, 3]}, r"attrs.csv: attribute column 'lanes' has 1 empty .*'S1'"),
        ({"sensor_id": IDS, "kind": ["a", None, "b"]}, r"attrs.csv: attribute column 'kind' is empty for .*'S1'"),
    ],
)
def test_node_attribute_errors(tmp_path, table, message):
    series, locations, _ = _files(tmp_path)
    pd.DataFrame(table).to_csv(tmp_path / "attrs.csv", index=False)
    with pytest.raises(ValueError, match=message):
        load_custom(series, locations=locations, node_attributes=tmp_path / "attrs.csv")


def _with_both(tmp_path, rain: np.ndarray):
    series, locations, stamps = _files(tmp_path)
    pd.DataFrame({"timestamp": stamps, "rain": rain}).to_csv(tmp_path / "weather.csv", index=False)
    pd.DataFrame({"sensor_id": IDS, "lanes": [2, 3, 7]}).to_csv(tmp_path / "attrs.csv", index=False)
    return load_custom(series, locations=locations, time_covariates=tmp_path / "weather.csv",
                       node_attributes=tmp_path / "attrs.csv")


def test_covariates_become_scaled_input_channels_fitted_on_training_only(tmp_path):
    rain = np.random.default_rng(0).normal(3.0, 2.0, T)
    data = WindowData(_with_both(tmp_path, rain), input_len=4, horizon=2, split=(0.6, 0.2, 0.2))
    assert data.in_channels == 1 + 1 + 2  # reading, time_of_day, rain, lanes
    train = rain[: data.train_end]
    scaler = data.covariate_scaler
    assert scaler is not None
    np.testing.assert_allclose(scaler.mean.numpy(), [train.mean(), 4.0], rtol=1e-5)
    np.testing.assert_allclose(scaler.std.numpy(), [train.std(), np.std([2, 3, 7])], rtol=1e-5)
    np.testing.assert_allclose(data.inputs[:, 1, 2].numpy(), (rain - train.mean()) / train.std(), atol=1e-5)
    lanes = (np.array([2, 3, 7]) - 4.0) / np.std([2, 3, 7])
    np.testing.assert_allclose(data.inputs[7, :, 3].numpy(), lanes, atol=1e-5)
    batch = data.batch(torch.tensor([0, 5]))
    assert batch.x.shape == (2, 4, N, 4)


def test_test_period_covariates_do_not_change_the_scaler(tmp_path):
    rain = np.random.default_rng(1).normal(0.0, 1.0, T)
    base = WindowData(_with_both(tmp_path / "a", rain), input_len=4, horizon=2, split=(0.6, 0.2, 0.2))
    changed = rain.copy()
    changed[base.train_end:] *= 1000.0  # the validation and test periods only
    other = WindowData(_with_both(tmp_path / "b", changed), input_len=4, horizon=2, split=(0.6, 0.2, 0.2))
    assert base.covariate_scaler is not None and other.covariate_scaler is not None
    torch.testing.assert_close(base.covariate_scaler.mean, other.covariate_scaler.mean)
    torch.testing.assert_close(base.covariate_scaler.std, other.covariate_scaler.std)
    # and the training step just before the cut still counts
    changed[base.train_end - 1] += 5.0
    third = WindowData(_with_both(tmp_path / "c", changed), input_len=4, horizon=2, split=(0.6, 0.2, 0.2))
    assert third.covariate_scaler is not None
    assert not torch.equal(base.covariate_scaler.mean, third.covariate_scaler.mean)


def test_a_reused_covariate_scaler_must_fit_the_channels(tmp_path):
    ds = _with_both(tmp_path, np.zeros(T))
    data = WindowData(ds, input_len=4, horizon=2)
    assert data.covariate_scaler is not None
    reused = WindowData(ds, input_len=4, horizon=2, covariate_scaler=data.covariate_scaler)
    torch.testing.assert_close(reused.inputs, data.inputs)
    with pytest.raises(ValueError, match=r"covariate scaler has 1 channels, the data's covariates 2 \(rain, lanes\)"):
        WindowData(ds, input_len=4, horizon=2, covariate_scaler=StandardScaler(torch.zeros(1), torch.ones(1)))
