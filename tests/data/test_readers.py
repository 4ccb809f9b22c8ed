"""Readers on the real graph files and on generated stand-ins of the big files."""

import numpy as np
import pandas as pd
import pytest
import standins
import torch

from stgnn.data import load_dataset
from stgnn.data.integrity import MissingFilesError
from stgnn.data.readers import READERS
from stgnn.data.registry import get_info


def _read(name, folder):
    return READERS[name](folder, get_info(name))


@pytest.mark.parametrize(("name", "h5", "key", "pkl"), [
    ("metr-la", "metr-la.h5", "df", "adj_mx.pkl"),
    ("pems-bay", "pems-bay.h5", "speed", "adj_mx_bay.pkl"),
])
def test_dcrnn_h5_standins(tmp_path, name, h5, key, pkl):
    ids = standins.write_dcrnn(tmp_path / name, h5, key, pkl, t=600, n=6)
    ds = _read(name, tmp_path / name)
    assert ds.series.shape == (600, 6, 1) and ds.series.dtype == torch.float32
    assert ds.node_ids == ids
    assert not ds.timestamps_derived and ds.timestamps[0] == pd.Timestamp("2012-03-01")
    raw = pd.read_hdf(tmp_path / name / h5, key).to_numpy()
    assert torch.equal(ds.mask, torch.from_numpy(raw != 0))  # 0 means missing
    assert ds.graph.num_edges == int((standins.ring_adj(6) > 0).sum())


def test_h5_with_wrong_key_names_file_and_keys(tmp_path):
    standins.write_dcrnn(tmp_path / "metr-la", "metr-la.h5", "speed", "adj_mx.pkl")
    with pytest.raises(ValueError, match=r"metr-la\.h5.*no key 'df'.*speed"):
        _read("metr-la", tmp_path / "metr-la")


def test_h5_sensor_mismatch_is_named(tmp_path):
    folder = tmp_path / "metr-la"
    standins.write_dcrnn(folder, "metr-la.h5", "df", "adj_mx.pkl", n=6)
    standins.write_adj_pickle(folder / "adj_mx.pkl", [str(800000 + i) for i in range(6)], standins.ring_adj(6))
    with pytest.raises(ValueError, match="700000"):
        _read("metr-la", folder)


def test_damaged_h5_is_a_clear_error(tmp_path):
    folder = tmp_path / "metr-la"
    standins.write_dcrnn(folder, "metr-la.h5", "df", "adj_mx.pkl")
    (folder / "metr-la.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="metr-la.h5: not a readable"):
        _read("metr-la", folder)


@pytest.mark.parametrize("number", ["03", "04", "07", "08"])
def test_pems_npz_standins(tmp_path, number):
    f = 1 if number in ("03", "07") else 3
    name = f"pems{number}"
    standins.write_pems(tmp_path / name, number, t=500, n=8, f=f)
    ds = _read(name, tmp_path / name)
    assert ds.series.shape == (500, 8, f)
    assert ds.timestamps_derived and ds.timestamps[0] == pd.Timestamp(get_info(name).start)
    assert ds.graph.num_nodes == 8
    assert ds.graph.num_edges == 2 * 7  # binary, made symmetric
    if number == "03":
        assert ds.node_ids[0] == "311900"


def test_npz_without_data_key(tmp_path):
    folder = tmp_path / "pems04"
    standins.write_pems(folder, "04")
    np.savez(folder / "PEMS04.npz", flow=np.zeros((10, 8, 3)))
    with pytest.raises(ValueError, match=r"PEMS04\.npz: no array 'data'"):
        _read("pems04", folder)


def test_pemsd7m_standin_weekday_timestamps(tmp_path):
    standins.write_pemsd7m(tmp_path / "pemsd7m", t=288 * 3, n=5)
    ds = _read("pemsd7m", tmp_path / "pemsd7m")
    assert ds.series.shape == (864, 5, 1)
    # 2012-05-01 is a Tuesday; three weekdays: Tue, Wed, Thu.
    assert ds.timestamps[288 * 2] == pd.Timestamp("2012-05-03")
    dense = ds.graph.to_dense()
    assert np.allclose(dense, dense.T) and np.all(np.diag(dense) == 0)


def test_pemsd7m_weekday_calendar_skips_weekends():
    from stgnn.data.dataset import derive_timestamps

    stamps = derive_timestamps("2012-05-01", 288 * 44, 5, weekdays_only=True)
    assert stamps[-1] == pd.Timestamp("2012-06-29 23:55")  # 44 weekdays of May-June 2012
    assert set(stamps.day_of_week) == {0, 1, 2, 3, 4}


def test_los_loop_real(shared_data):
    ds = load_dataset("los-loop", shared_data)
    assert ds.series.shape == (2016, 207, 1)
    assert bool(ds.mask.all())  # imputed by T-GCN: zeros are not masked (there are none)
    ids = (shared_data / "metr-la" / "graph_sensor_ids.txt").read_text().strip().split(",")
    assert ds.node_ids == ids
    assert ds.timestamps[-1] == pd.Timestamp("2012-03-07 23:55")
    dense = ds.graph.to_dense()
    assert np.allclose(dense, dense.T)


def test_missing_big_file_names_file_and_folder(tmp_path, shared_data):
    # The graph files are there, the series is not: the error lists the file and its folder.
    folder = tmp_path / "metr-la"
    folder.mkdir()
    (folder / "adj_mx.pkl").write_bytes((shared_data / "metr-la" / "adj_mx.pkl").read_bytes())
    with pytest.raises(MissingFilesError) as err:
        load_dataset("metr-la", tmp_path)
    text = str(err.value)
    assert "metr-la.h5" in text and str(folder) in text
    assert "- adj_mx.pkl" not in text  # present files are not reported missing


def test_root_resolution_env_then_default(tmp_path, monkeypatch):
    from stgnn.data.registry import resolve_root

    monkeypatch.setenv("STGNN_DATA", str(tmp_path))
    assert resolve_root(None) == tmp_path
    assert str(resolve_root("elsewhere")) == "elsewhere"
    monkeypatch.delenv("STGNN_DATA")
    assert str(resolve_root(None)) == "datasets"


def test_unknown_dataset_lists_names():
    with pytest.raises(KeyError, match="metr-la"):
        load_dataset("nope")


def test_los_loop_repeated_sensor_column_is_named(tmp_path, shared_data):
    folder = tmp_path / "los-loop"
    folder.mkdir()
    lines = (shared_data / "los-loop" / "los_speed.csv").read_text().splitlines()
    header = lines[0].split(",")
    header[5] = header[2]  # pandas would have renamed it to "<id>.1"
    (folder / "los_speed.csv").write_text("\n".join([",".join(header), *lines[1:]]) + "\n")
    (folder / "los_adj.csv").write_bytes((shared_data / "los-loop" / "los_adj.csv").read_bytes())
    with pytest.raises(ValueError, match=rf"los_speed.csv: column names repeated in the header: '{header[2]}' \(each"):
        load_dataset("los-loop", tmp_path, verify=False)
