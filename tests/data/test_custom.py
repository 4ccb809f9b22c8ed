"""A user's own readings + graph description, and every malformed input."""

import numpy as np
import pandas as pd
import pytest
import standins

from stgnn.data.custom import load_custom, read_series_table


def test_locations_graph_and_gap_filling(tmp_path):
    series, locations = standins.write_custom(tmp_path, t=100, n=4)
    frame = pd.read_csv(series).drop(index=[10, 11])  # two missing time steps
    frame.loc[5, "S1"] = np.nan
    frame.to_csv(series, index=False)
    ds = load_custom(series, locations=locations)
    assert ds.series.shape == (100, 4, 1)  # the gap is back on the grid, not dropped
    assert not ds.mask[10].any() and not ds.mask[11].any() and not ds.mask[5, 1]
    assert ds.mask.sum() == 100 * 4 - 2 * 4 - 1
    assert ds.interval_minutes == 5 and ds.node_ids == ["S0", "S1", "S2", "S3"]
    assert ds.graph.num_edges > 0


def test_parquet_and_edge_list(tmp_path):
    series, _ = standins.write_custom(tmp_path, t=50, n=3)
    pq = tmp_path / "r.parquet"
    pd.read_csv(series, parse_dates=["timestamp"]).to_parquet(pq)
    edges = tmp_path / "edges.csv"
    edges.write_text("from,to,weight\nS0,S1,0.5\nS1,S2,1.0\n")
    ds = load_custom(pq, edges=edges)
    assert ds.graph.num_edges == 2 and ds.series.shape == (50, 3, 1)


def test_zero_is_missing_flag(tmp_path):
    series, locations = standins.write_custom(tmp_path, t=50, n=3)
    frame = pd.read_csv(series)
    frame.loc[3, "S0"] = 0.0
    frame.to_csv(series, index=False)
    assert load_custom(series, locations=locations).mask[3, 0]
    assert not load_custom(series, locations=locations, zero_is_missing=True).mask[3, 0]


@pytest.mark.parametrize(("content", "match"), [
    ("timestamp,S0\n2024-01-01 00:00,1\n2024-01-01 00:00,2\n", "duplicate timestamps"),
    ("timestamp,S0\n2024-01-01 00:00,1\n2024-01-01 00:05,abc\n", "must be numeric"),
    ("when,S0\nmonday,1\ntuesday,2\n", "not a timestamp column"),
    ("timestamp,S0\n2024-01-01 00:00:00,1\n2024-01-01 00:00:30,2\n", "whole number of minutes"),
    ("timestamp,S0\n2024-01-01 00:00,1\n", "at least two timestamps"),
])
def test_malformed_series_is_named(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as err:
        read_series_table(path)
    assert "bad.csv" in str(err.value)


def test_missing_series_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_series_table(tmp_path / "nope.csv")


def test_exactly_one_graph_source(tmp_path):
    series, locations = standins.write_custom(tmp_path, t=20, n=3)
    with pytest.raises(ValueError, match="exactly one graph source"):
        load_custom(series)
    with pytest.raises(ValueError, match="exactly one graph source"):
        load_custom(series, locations=locations, edges=locations)


def test_locations_missing_a_sensor(tmp_path):
    series, locations = standins.write_custom(tmp_path, t=20, n=3)
    pd.read_csv(locations).iloc[:2].to_csv(locations, index=False)
    with pytest.raises(ValueError, match=r"no coordinates for 1 sensors.*S2"):
        load_custom(series, locations=locations)


def test_edge_list_with_unknown_sensor(tmp_path):
    series, _ = standins.write_custom(tmp_path, t=20, n=3)
    edges = tmp_path / "edges.csv"
    edges.write_text("from,to\nS0,S9\n")  # no weight column: unweighted
    with pytest.raises(ValueError, match="S9"):
        load_custom(series, edges=edges)
