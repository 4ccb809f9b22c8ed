"""The memory-mapped on-disk series: round trip, windows equal to in-memory windows, bad folders."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from stgnn.data.dataset import TrafficDataset
from stgnn.data.graph import SensorGraph
from stgnn.data.ondisk import HEADER, SeriesWriter, is_converted, open_converted, write_converted
from stgnn.data.windows import WindowData


def _dataset(t: int = 240, n: int = 5, f: int = 2) -> TrafficDataset:
    g = torch.Generator().manual_seed(3)
    values = (40 + 20 * torch.rand(t, n, f, generator=g)).double().numpy()
    values[7, 2, 0] = np.nan  # missing readings
    values[100:110, 4, 0] = np.nan
    stamps = pd.date_range("2024-03-01", periods=t, freq="5min")
    graph = SensorGraph.from_dense(np.eye(n, k=1) + np.eye(n, k=-1), [f"id{i}" for i in range(n)])
    return TrafficDataset.from_arrays("toy", values, graph, stamps, interval_minutes=5, units="mph",
                                      feature_names=("speed", "flow")[:f], source="test", missing_zero=False)


def test_round_trip_keeps_every_value_timestamp_and_edge(tmp_path):
    ds = _dataset()
    write_converted(ds, tmp_path / "conv", steps_per_chunk=17)  # chunks that do not divide T
    back = open_converted(tmp_path / "conv", verify=True)
    assert is_converted(tmp_path / "conv")
    assert torch.equal(back.series, ds.series) and torch.equal(back.mask, ds.mask)
    assert back.timestamps.equals(ds.timestamps) and back.node_ids == ds.node_ids
    assert torch.equal(back.graph.edge_index, ds.graph.edge_index)
    assert torch.equal(back.graph.edge_weight, ds.graph.edge_weight)
    assert (back.name, back.interval_minutes, back.units, back.feature_names, back.split) == (
        ds.name, ds.interval_minutes, ds.units, ds.feature_names, ds.split)
    assert back.release_pages is not None and ds.release_pages is None
    assert back.missing_rate == pytest.approx(ds.missing_rate)


def test_windows_from_the_mapped_series_equal_windows_from_memory(tmp_path):
    ds = _dataset()
    mapped = open_converted(write_converted(ds, tmp_path / "conv", steps_per_chunk=31))
    memory = WindowData(ds, input_len=6, horizon=4, covariate_names=("time_of_day", "day_of_week"))
    lazy = WindowData(mapped, input_len=6, horizon=4, covariate_names=("time_of_day", "day_of_week"))
    with pytest.raises(ValueError, match="memory-mapped"):  # nothing full-length is built from the mapping
        lazy.inputs  # noqa: B018
    assert torch.equal(lazy.scaler.mean, memory.scaler.mean) and torch.equal(lazy.scaler.std, memory.scaler.std)
    assert lazy.in_channels == memory.in_channels
    for split in ("train", "val", "test"):
        a, b = memory.batch(memory.splits[split]), lazy.batch(lazy.splits[split])
        for key in ("x", "y", "y_scaled", "mask", "start", "slot", "x_mask"):
            assert torch.equal(getattr(a, key), getattr(b, key)), (split, key)
    future = torch.tensor([ds.num_steps - 6])  # forecasting past the end of the series
    assert torch.equal(memory.batch(future).slot, lazy.batch(future).slot)
    for a, b in zip(memory.train_period(), lazy.train_period(), strict=True):
        assert torch.equal(a, b)
    # imputation and input masks need the whole series in memory: refused by name, never skipped
    with pytest.raises(ValueError, match=r"data.impute = 'historical'.*memory-mapped"):
        WindowData(mapped, input_len=6, horizon=4, impute="historical")
    with pytest.raises(ValueError, match=r"input masks need the series in memory"):
        WindowData(mapped, input_len=6, horizon=4, input_mask=torch.ones_like(mapped.mask))


def test_chunked_scaler_matches_the_whole_series_statistics():
    ds = _dataset(t=500)
    wd = WindowData(ds)
    observed = ds.series[: wd.train_end][ds.mask[: wd.train_end]].double()
    torch.testing.assert_close(wd.scaler.mean, observed.mean(0).float(), rtol=1e-7, atol=0)
    torch.testing.assert_close(wd.scaler.std, observed.std(0, unbiased=False).float(), rtol=1e-6, atol=0)


def test_writer_streams_chunks_and_marks_nan_missing(tmp_path):
    graph = SensorGraph(["a", "b", "c"], torch.tensor([[0, 1], [1, 2]]))
    stamps = pd.date_range("2024-01-01", periods=10, freq="5min")
    with SeriesWriter(tmp_path / "w", graph, stamps, 5, ("speed",)) as writer:
        writer.append(np.full((4, 3), 1.5))
        writer.append(np.array([[np.nan, 2.0, 3.0]] * 6), mask=np.array([[True, True, False]] * 6))
    ds = open_converted(tmp_path / "w")
    assert ds.series[:4].eq(1.5).all() and ds.mask[:4].all()
    assert ds.mask[4:].tolist() == [[False, True, False]] * 6
    assert ds.series[4:, 0].eq(0).all()  # missing readings hold 0


def test_existing_folder_is_never_overwritten(tmp_path):
    ds = _dataset()
    out = tmp_path / "conv"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="conv"):
        write_converted(ds, out)
    assert (out / "keep.txt").read_text() == "mine"


def test_unfinished_conversion_has_no_header_and_is_refused(tmp_path):
    ds = _dataset()
    graph, stamps = ds.graph, ds.timestamps
    with pytest.raises(ValueError, match="unfinished"):
        with SeriesWriter(tmp_path / "half", graph, stamps, 5, ds.feature_names) as writer:
            writer.append(ds.series[:10].numpy())
    assert not is_converted(tmp_path / "half")
    with pytest.raises(ValueError, match=f"no {HEADER}"):
        open_converted(tmp_path / "half")


def test_bad_chunks_are_refused_naming_the_folder(tmp_path):
    graph = SensorGraph(["a", "b"], torch.tensor([[0], [1]]))
    stamps = pd.date_range("2024-01-01", periods=4, freq="5min")
    writer = SeriesWriter(tmp_path / "bad", graph, stamps, 5, ("speed",))
    with pytest.raises(ValueError, match=r"bad: chunk of shape \(2, 3, 1\)"):
        writer.append(np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="infinite or beyond float32"):
        writer.append(np.array([[1.0, 1e39]]))
    with pytest.raises(ValueError, match="5 steps written, but there are 4"):
        writer.append(np.zeros((5, 2)))


def test_damaged_folders_are_named(tmp_path):
    out = write_converted(_dataset(), tmp_path / "conv")
    series = out / "series.f32"
    series.write_bytes(series.read_bytes()[:-4])
    with pytest.raises(ValueError, match=r"series\.f32: \d+ bytes, the header's shape needs"):
        open_converted(out)
    header = json.loads((out / HEADER).read_text())
    header["version"] = 99
    (out / HEADER).write_text(json.dumps(header))
    with pytest.raises(ValueError, match="format version 99"):
        open_converted(out)


def test_verify_catches_a_changed_file(tmp_path):
    out = write_converted(_dataset(), tmp_path / "conv")
    mask = bytearray((out / "mask.u8").read_bytes())
    mask[0] ^= 1
    (out / "mask.u8").write_bytes(bytes(mask))
    open_converted(out)  # sizes still match: opening alone does not read the data
    with pytest.raises(ValueError, match=r"mask\.u8: sha256"):
        open_converted(out, verify=True)
