"""SZ-taxi (T-GCN release): registry entry and reader, on a generated file of the published layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import standins

from stgnn.data import load_dataset
from stgnn.data.registry import get_info


def test_registry_entry() -> None:
    info = get_info("sz-taxi")
    assert info.shape == (2976, 156, 1) and info.interval_minutes == 15
    assert [f.name for f in info.files] == ["sz_speed.csv", "sz_adj.csv"]
    assert all(f.url and "lehaifeng/T-GCN" in f.url for f in info.files)


def test_reader_on_a_generated_file(tmp_path) -> None:
    ids = standins.write_sz_taxi(tmp_path / "sz-taxi")
    ds = load_dataset("sz-taxi", tmp_path, verify=False)
    assert tuple(ds.series.shape) == (2976, 156, 1)
    assert ds.node_ids == ids
    assert bool(ds.mask.all())  # zeros are readings here, as the T-GCN protocol scores them
    assert ds.timestamps[0] == pd.Timestamp("2015-01-01") and ds.timestamps[-1] == pd.Timestamp("2015-01-31 23:45")
    raw = pd.read_csv(tmp_path / "sz-taxi" / "sz_speed.csv").to_numpy()
    np.testing.assert_allclose(ds.series[..., 0].numpy(), raw, rtol=1e-6)
    assert ds.graph.num_edges == 2 * 155


def test_reader_names_a_non_numeric_file(tmp_path) -> None:
    standins.write_sz_taxi(tmp_path / "sz-taxi", t=50, n=4)
    path = tmp_path / "sz-taxi" / "sz_speed.csv"
    text = path.read_text().splitlines()
    text[3] = "a,b,c,d"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match="sz_speed.csv"):
        load_dataset("sz-taxi", tmp_path, verify=False)
