"""A served window becomes exactly the batch the model was trained and evaluated on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import load_experiment

from stgnn.serving.window import WindowError, WindowSpec, concat_batches
from stgnn.training.checkpoint import load_checkpoint


def _window(exp, start: int, order: list[int] | None = None):
    """The raw readings of the window at ``start`` as a client sends them (NaN = missing)."""
    ds = exp.dataset
    idx = slice(start, start + exp.spec.input_len)
    values = ds.series[idx].numpy().astype(np.float64)
    values[~ds.mask[idx].numpy()] = np.nan
    order = order or list(range(ds.num_nodes))
    return [ds.node_ids[i] for i in order], ds.timestamps[idx], values[:, order]


@pytest.fixture(scope="module")
def served(lstm_checkpoint):
    exp = load_experiment(lstm_checkpoint)
    spec = WindowSpec.from_checkpoint(load_checkpoint(lstm_checkpoint), lstm_checkpoint)
    return exp, spec


def test_window_batch_equals_the_training_windows_batch(served):
    exp, spec = served
    start = int(exp.data.splits["test"][3])
    ds = exp.dataset
    ds.mask[start + 2, 1] = False  # a missing input reading travels as null
    ds.series[start + 2, 1] = 0.0
    exp.data.mask = ds.mask
    exp.data.inputs[start + 2, 1, 0] = exp.data.scaler.transform(torch.zeros(1))[0]
    ids, stamps, values = _window(exp, start, order=[2, 0, 3, 1])  # reordered columns
    got = spec.batch(ids, stamps, values)
    want = exp.data.batch(torch.tensor([start]))
    torch.testing.assert_close(got.x, want.x)
    assert torch.equal(got.x_mask, want.x_mask) and not bool(got.x_mask[0, 2, 1])
    assert torch.equal(got.slot, want.slot)
    torch.testing.assert_close(exp.predict(got), exp.predict(want))


def test_forecast_timestamps_follow_the_window(served):
    _, spec = served
    last = pd.Timestamp("2024-01-01 10:00")
    stamps = spec.forecast_timestamps(last)
    assert len(stamps) == spec.horizon and stamps[0] == last + pd.Timedelta(minutes=5)
    assert (stamps[1:] - stamps[:-1] == pd.Timedelta(minutes=5)).all()


@pytest.mark.parametrize("mutate, message", [
    (lambda ids, ts, v: (ids + ["nope"], ts, np.concatenate([v, v[:, :1]], axis=1)), "unknown to the model: 'nope'"),
    (lambda ids, ts, v: (ids[:-1], ts, v[:, :-1]), "of the model's sensors missing"),
    (lambda ids, ts, v: ([ids[0], *ids[:-1]], ts, v), "duplicated"),
    (lambda ids, ts, v: (ids, ts[1:], v[1:]), "takes the last 12 steps, got 11"),
    (lambda ids, ts, v: (ids, ts[::-1], v), "not sorted"),
    (lambda ids, ts, v: (ids, ts.insert(1, ts[0]).delete(2), v), "timestamps: duplicated"),
    (lambda ids, ts, v: (ids, ts + pd.to_timedelta(np.r_[np.zeros(11), 1], "min"), v), "5 min apart"),
    (lambda ids, ts, v: (ids, ts.tz_localize("UTC"), v), "UTC offset"),
    (lambda ids, ts, v: (ids, ts, np.where(np.arange(4)[:, None] == 1, np.inf, v)), "infinite or beyond"),
    (lambda ids, ts, v: (ids, ts, v[:, :, [0, 0]]), "expected 12 rows"),
])
def test_bad_windows_are_named(served, mutate, message):
    exp, spec = served
    ids, stamps, values = mutate(*_window(exp, int(exp.data.splits["test"][0])))
    with pytest.raises(WindowError, match=message):
        spec.batch(ids, stamps, values)


def test_concat_batches_keeps_window_order(served):
    exp, _ = served
    a, b = exp.data.batch(torch.tensor([0, 1])), exp.data.batch(torch.tensor([5]))
    both = concat_batches([a, b])
    assert torch.equal(both.x, exp.data.batch(torch.tensor([0, 1, 5])).x)


def test_concat_batches_refuses_subgraph_batches(served):
    exp, _ = served
    sub = exp.data.batch(torch.tensor([0])).select_nodes(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="sampled subgraph"):
        concat_batches([sub, sub])
