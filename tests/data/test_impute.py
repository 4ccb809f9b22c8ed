"""Input imputation: fitted on the training period only, applied to inputs only, no look-ahead."""

import pandas as pd
import pytest
import torch

from stgnn.data.dataset import TrafficDataset
from stgnn.data.graph import SensorGraph
from stgnn.data.impute import InputImputer, interpolate_windows
from stgnn.data.windows import WindowData
from stgnn.training.config import ConfigError, RunConfig

STEPS_PER_DAY = 288


def _dataset(t=2 * STEPS_PER_DAY, n=4, seed=0, missing=()):
    g = torch.Generator().manual_seed(seed)
    steps = torch.arange(t, dtype=torch.float32)[:, None]
    values = 50 + 10 * torch.sin(2 * torch.pi * steps / STEPS_PER_DAY) + torch.arange(n) + torch.rand(t, n, generator=g)
    for step, node in missing:
        values[step, node] = 0.0
    stamps = pd.date_range("2012-03-01", periods=t, freq="5min")
    adj = torch.zeros(n, n)
    for i in range(n - 1):
        adj[i, i + 1] = 1.0 + i  # a directed path with distinct weights
    graph = SensorGraph.from_dense(adj.numpy(), [f"s{i}" for i in range(n)])
    return TrafficDataset.from_arrays("toy", values[..., None].numpy(), graph, stamps, interval_minutes=5,
                                      units="mph", feature_names=("speed",), source="test")


@pytest.mark.parametrize("method", ["historical", "neighbours", "linear"])
def test_statistics_come_from_the_training_period_only(method):
    ds = _dataset(missing=[(100, 1), (500, 1)])
    wd = WindowData(ds, split=(0.5, 0.2, 0.3), impute=method)
    changed = _dataset(missing=[(100, 1), (500, 1)])
    changed.series[wd.train_end:] *= 3.0  # every reading after the training period
    wd2 = WindowData(changed, split=(0.5, 0.2, 0.3), impute=method)
    torch.testing.assert_close(wd2.imputer.slot_mean, wd.imputer.slot_mean, rtol=0, atol=0)
    # ...and a change inside the training period does move them (the check can fail)
    early = _dataset(missing=[(100, 1), (500, 1)])
    early.series[: wd.train_end] += 5.0
    assert not torch.equal(WindowData(early, split=(0.5, 0.2, 0.3), impute=method).imputer.slot_mean,
                           wd.imputer.slot_mean)


def test_historical_fills_the_time_of_day_mean_of_the_training_period():
    ds = _dataset(missing=[(STEPS_PER_DAY + 20, 2)])  # day 2, slot 20
    wd = WindowData(ds, split=(0.5, 0.2, 0.3), impute="historical", covariate_names=())
    assert wd.train_end <= STEPS_PER_DAY + 20
    expected = ds.series[20, 2, 0]  # slot 20 was observed once in the training period, on day 1
    filled = wd.scaler.inverse(wd.inputs[STEPS_PER_DAY + 20, 2])
    torch.testing.assert_close(filled[0], expected, rtol=0, atol=1e-4)


def test_neighbours_add_the_weighted_deviation_of_observed_neighbours():
    ds = _dataset(missing=[(500, 1)])
    day_slot = torch.arange(ds.num_steps) % STEPS_PER_DAY
    imp = InputImputer.fit("neighbours", ds.series[:300], ds.mask[:300], day_slot[:300],
                           steps_per_day=STEPS_PER_DAY, graph=ds.graph)
    filled = imp.fill(ds.series, ds.mask, day_slot)
    s, h = ds.series[500, :, 0], imp.slot_mean[day_slot[500], :, 0]
    # node 1's neighbours: 0 (edge 0->1, weight 1) and 2 (edge 1->2, weight 2); both directions count
    expected = h[1] + (1.0 * (s[0] - h[0]) + 2.0 * (s[2] - h[2])) / 3.0
    torch.testing.assert_close(filled[500, 1, 0], expected)
    assert torch.equal(filled[ds.mask], ds.series[ds.mask])  # observed readings untouched


def test_linear_interpolates_inside_the_window_and_never_looks_ahead():
    x = torch.tensor([1.0, 0.0, 0.0, 4.0, 0.0, 0.0]).view(1, 6, 1, 1)
    m = torch.tensor([True, False, False, True, False, False]).view(1, 6, 1)
    out = interpolate_windows(x, m)
    assert out.flatten().tolist() == [1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    lead = interpolate_windows(torch.tensor([0.0, 0.0, 5.0]).view(1, 3, 1, 1),
                               torch.tensor([False, False, True]).view(1, 3, 1))
    assert lead.flatten().tolist() == [5.0, 5.0, 5.0]
    # a window whose last inputs are missing: the readings after the window do not matter
    ds = _dataset(missing=[(110, 0), (111, 0)])
    wd = WindowData(ds, split=(0.5, 0.2, 0.3), impute="linear")
    first = wd.scaler.inverse(wd.batch(torch.tensor([100])).x[..., :1])  # inputs 100..111, raw units
    ds.series[112:, 0] += 100.0
    wd2 = WindowData(ds, split=(0.5, 0.2, 0.3), impute="linear")
    again = wd2.scaler.inverse(wd2.batch(torch.tensor([100])).x[..., :1])
    torch.testing.assert_close(first[0, :, 0], again[0, :, 0])
    torch.testing.assert_close(first[0, 10, 0, 0], first[0, 9, 0, 0])  # carried forward from step 109


def test_targets_are_never_imputed_and_dropped_inputs_stay_targets():
    ds = _dataset(missing=[(40, 1)])
    drop = torch.zeros_like(ds.mask)
    drop[30, 2] = True
    wd = WindowData(ds, split=(0.5, 0.2, 0.3), impute="historical", input_mask=ds.mask & ~drop)
    plain = WindowData(ds, split=(0.5, 0.2, 0.3))
    batch = wd.batch(torch.tensor([20]))  # inputs 20..31, targets 32..43
    assert not batch.x_mask[0, 10, 2]
    assert batch.y[0, 8, 1, 0] == 0 and not batch.mask[0, 8, 1]  # the missing target stays missing
    assert torch.equal(batch.y, plain.batch(torch.tensor([20])).y)
    assert torch.equal(batch.mask, plain.batch(torch.tensor([20])).mask)
    late = wd.batch(torch.tensor([25]))  # step 30 is an input of window 25 and a target of window 7
    assert not late.x_mask[0, 5, 2]
    assert wd.batch(torch.tensor([7])).mask[0, 11, 2]  # still scored as a target
    # the dropped input was filled, not left at the raw 0 that "none" shows: slot 30 has no other
    # training reading of sensor 2, so it gets the sensor's training mean (the documented fallback)
    train = slice(0, wd.train_end)
    sensor_mean = ds.series[train, 2, 0][wd.input_mask[train, 2]].double().mean().float()
    torch.testing.assert_close(wd.scaler.inverse(late.x[0, 5, 2, :1])[0], sensor_mean, rtol=0, atol=1e-4)
    none = WindowData(ds, split=(0.5, 0.2, 0.3), input_mask=ds.mask & ~drop)
    assert float(none.scaler.inverse(none.batch(torch.tensor([25])).x[0, 5, 2, :1])) == pytest.approx(0.0, abs=1e-3)


def test_bad_input_mask_and_method_are_refused():
    ds = _dataset()
    with pytest.raises(ValueError, match="input_mask.*bool"):
        WindowData(ds, input_mask=ds.mask.float())
    with pytest.raises(ValueError, match="input_mask.*shape"):
        WindowData(ds, input_mask=ds.mask[:10])
    with pytest.raises(ValueError, match="data.impute: unknown method 'cubic'"):
        WindowData(ds, impute="cubic")


def test_config_key_is_checked():
    assert RunConfig.from_dict({"data": {"impute": "neighbours"}}).data.impute == "neighbours"
    with pytest.raises(ConfigError, match=r"\[data\] impute"):
        RunConfig.from_dict({"data": {"impute": "spline"}}, source="run.toml")


def test_experiment_passes_impute_and_input_mask_through(tmp_path):
    import standins

    from stgnn.training.trainer import Experiment

    series, locations = standins.write_custom(tmp_path, t=300, n=3)
    cfg = RunConfig.from_dict({"model": "last", "dataset": "custom", "data": {"impute": "linear"},
                               "custom": {"series": str(series), "locations": str(locations)}})
    base = Experiment.build(cfg)
    hide = base.dataset.mask.clone()
    hide[250:, 1] = False
    exp = Experiment.build(cfg, dataset=base.dataset, scaler=base.data.scaler, input_mask=hide)
    assert exp.data.imputer.method == "linear" and exp.data.input_mask is hide
    batch = exp.data.batch(torch.tensor([245]))
    assert not batch.x_mask[0, 5:, 1].any() and batch.mask[0, :, 1].all()
