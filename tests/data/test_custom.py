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


def test_gaps_are_reported_with_the_longest(tmp_path):
    series, locations = standins.write_custom(tmp_path, t=100, n=3)
    pd.read_csv(series).drop(index=[10, 11, 40]).to_csv(series, index=False)
    with pytest.warns(UserWarning, match=r"readings.csv: 3 of the 100 5-minute steps from 2024-01-01 00:00:00 "
                                         r"to .* have no row .* longest gap runs from 2024-01-01 00:45:00 to "
                                         r"2024-01-01 01:00:00$"):
        read_series_table(series)


def test_day_first_dates_read_month_first_are_pointed_out(tmp_path):
    # 01/03/2012 .. 02/03/2012 (two days in March, day first) parse month-first as 3 January and
    # 3 February: a month of empty steps, which used to surface as "no observed validation readings"
    series, _ = standins.write_custom(tmp_path, t=400, n=3)
    frame = pd.read_csv(series)
    frame["timestamp"] = pd.date_range("2012-03-01", periods=400, freq="5min").strftime("%d/%m/%Y %H:%M")
    frame.to_csv(series, index=False)
    with pytest.warns(UserWarning, match=r"more steps are missing than the file has rows.*day-first dates"):
        read_series_table(series)


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


def test_a_folder_given_as_a_file_is_named_as_such(tmp_path):
    # it used to say "file not found" about a path that exists
    series, locations = standins.write_custom(tmp_path / "data", t=30, n=3)
    with pytest.raises(ValueError, match=r"data: table path is not a file"):
        load_custom(tmp_path / "data", locations=locations)
    with pytest.raises(ValueError, match=r"data: table path is not a file"):
        load_custom(series, locations=tmp_path / "data")


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


# ---------------------------------------------------------------- readings: silent wrongness


def _write(path, frame):
    frame.to_csv(path, index=False)
    return path


def test_irregular_timestamps_are_refused_not_dropped(tmp_path):
    # 5-minute steps that turn into 7-minute steps half-way: the smallest gap made a 5-minute
    # grid on which most 7-minute readings do not lie, and they vanished.
    stamps = list(pd.date_range("2024-01-01", periods=60, freq="5min"))
    stamps += list(stamps[-1] + pd.Timedelta(minutes=7) * np.arange(1, 31))
    frame = pd.DataFrame({"timestamp": stamps, "S0": np.arange(90.0) + 1, "S1": np.arange(90.0) + 100})
    path = _write(tmp_path / "irregular.csv", frame)
    with pytest.raises(ValueError, match=r"irregular.csv: \d+ timestamps are off the 5-minute grid") as err:
        read_series_table(path)
    assert str(pd.Timestamp(stamps[60])) in str(err.value)  # the first off-grid timestamp is listed


def test_irregular_timestamps_resampled_on_request_keep_every_reading(tmp_path):
    stamps = list(pd.date_range("2024-01-01", periods=60, freq="5min"))
    stamps += list(stamps[-1] + pd.Timedelta(minutes=7) * np.arange(1, 31))
    frame = pd.DataFrame({"timestamp": stamps, "S0": np.arange(90.0) + 1})
    with pytest.warns(UserWarning, match=r"24 off-grid timestamps resampled onto the 5-minute grid; 0 grid steps"):
        grid, _, values, interval = read_series_table(_write(tmp_path / "r.csv", frame), resample=True)
    assert interval == 5 and (np.diff(grid.values) == np.timedelta64(5, "m")).all()
    observed = values[~np.isnan(values)]
    assert observed.size == 90 and observed.sum() == frame["S0"].sum()  # 7 > 5: one reading per step


def test_resampling_averages_rows_that_share_a_grid_step(tmp_path):
    stamps = list(pd.date_range("2024-01-01", periods=20, freq="5min"))
    stamps.insert(3, stamps[2] + pd.Timedelta(minutes=2))  # 00:12 joins the 00:10 step
    frame = pd.DataFrame({"timestamp": stamps, "S0": [float(i) for i in range(21)]})
    with pytest.warns(UserWarning, match=r"1 off-grid timestamps .* 1 grid steps hold the mean of several rows"):
        grid, _, values, _ = read_series_table(_write(tmp_path / "r.csv", frame), resample=True)
    assert len(grid) == 20 and values[2, 0] == 2.5 and values[3, 0] == 4.0


def test_interval_is_the_most_common_gap(tmp_path):
    # Mostly 10-minute data with one 5-minute blip: the grid is 10 minutes, not 5.
    stamps = list(pd.date_range("2024-01-01", periods=40, freq="10min"))
    frame = pd.DataFrame({"timestamp": stamps, "S0": np.arange(40.0)})
    _, _, values, interval = read_series_table(_write(tmp_path / "r.csv", frame))
    assert interval == 10 and values.shape == (40, 1)
    stamps.insert(5, stamps[4] + pd.Timedelta(minutes=5))
    frame = pd.DataFrame({"timestamp": stamps, "S0": np.arange(41.0)})
    with pytest.raises(ValueError, match="1 timestamps are off the 10-minute grid"):
        read_series_table(_write(tmp_path / "r.csv", frame))


def test_duplicate_sensor_columns_are_named(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("timestamp,767541,767542,767541\n2024-01-01 00:00,1,2,3\n2024-01-01 00:05,4,5,6\n")
    with pytest.raises(ValueError, match=r"dup.csv: column names repeated in the header: '767541' \(each"):
        read_series_table(path)


@pytest.mark.parametrize("value", ["1e300", "-1e39", "inf", "-inf"])
def test_values_float32_cannot_hold_are_refused_naming_sensor_and_time(tmp_path, value):
    series, locations = standins.write_custom(tmp_path, t=30, n=3)
    lines = series.read_text().splitlines()
    cells = lines[8].split(",")
    cells[2] = value  # sensor S1 at the 8th timestamp
    lines[8] = ",".join(cells)
    series.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"readings.csv: 1 readings are infinite or beyond float32's range") as err:
        load_custom(series, locations=locations)
    assert "sensor S1 at 2024-01-01 00:35:00" in str(err.value)


def test_values_float32_cannot_hold_in_a_benchmark_file(tmp_path):
    from stgnn.data import load_dataset

    ids = standins.write_dcrnn(tmp_path / "metr-la", "metr-la.h5", "df", "adj_mx.pkl", t=100, n=4)
    frame = pd.read_hdf(tmp_path / "metr-la" / "metr-la.h5", "df")
    frame.iloc[3, 2] = 1e300
    frame.to_hdf(tmp_path / "metr-la" / "metr-la.h5", key="df", format="fixed")
    with pytest.raises(ValueError, match=rf"metr-la.h5: 1 readings .* sensor {ids[2]} at 2012-03-01 00:15:00: 1e\+300"):
        load_dataset("metr-la", tmp_path, verify=False)


# ---------------------------------------------------------------- readings: clear errors


@pytest.mark.parametrize(("content", "match"), [
    ("timestamp;S0;S1\n2024-01-01 00:00;1;2\n2024-01-01 00:05;3;4\n", "separated by semicolons, not commas"),
    ("timestamp\tS0\n2024-01-01 00:00\t1\n2024-01-01 00:05\t3\n", "separated by tabs, not commas"),
    ("S0,S1\n1,2\n3,4\n", "first column 'S0' holds int64 values, not timestamps"),
    ("timestamp,S0,S1\n2024-01-01 00:00,True,1\n2024-01-01 00:05,False,2\n", "'S0' holds booleans"),
    ("timestamp,S0\n2024-01-01 00:00,1\n,2\n2024-01-01 00:10,3\n", "1 rows have no timestamp"),
    ("timestamp,S0,S1\n2024-01-01 00:00,1,2\n2024-01-01 00:05,3,n/a?\n",
     r"'S1' must be numeric; 1 cells are not \(2024-01-01 00:05:00: 'n/a\?'\)"),
    ("", "file is empty"),
])
def test_malformed_readings_are_named(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as err:
        read_series_table(path)
    assert str(err.value).startswith(str(path))


def test_all_missing_sensor_warns_naming_it(tmp_path):
    series, locations = standins.write_custom(tmp_path, t=30, n=3)
    frame = pd.read_csv(series)
    frame["S2"] = np.nan
    frame.to_csv(series, index=False)
    with pytest.warns(UserWarning, match=r"readings.csv: 1 sensors have no reading at all: 'S2'"):
        ds = load_custom(series, locations=locations)
    assert not ds.mask[:, 2].any()


def test_sentinel_values_warn_with_counts_and_can_be_declared_missing(tmp_path):
    series, locations = standins.write_custom(tmp_path, t=30, n=3)
    frame = pd.read_csv(series)
    frame.loc[[2, 3, 4], "S0"] = -9999
    frame.loc[5, "S1"] = -1
    frame.to_csv(series, index=False)
    with pytest.warns(UserWarning, match=r"4 negative readings in 2 sensors \(most common: -9999 x3, -1 x1\)"):
        load_custom(series, locations=locations)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_custom(series, locations=locations, missing_values=[-9999, -1])
    assert not ds.mask[2:5, 0].any() and not ds.mask[5, 1] and int((~ds.mask).sum()) == 4


# ---------------------------------------------------------------- coordinates


@pytest.mark.parametrize(("edit", "match"), [
    (lambda f: f.assign(sensor_id=["S0", "S1", "S1"]), r"sensors.csv: sensor ids listed more than once: 'S1'"),
    (lambda f: f.assign(latitude=[34.0, np.nan, 34.1]), r"sensors.csv: 1 sensors have a missing .*: 'S1'"),
    (lambda f: f.assign(latitude=[34.0, 134.0, 34.1]), r"sensors.csv: latitudes must lie .* S1 \(134, "),
    (lambda f: f.assign(longitude=[-118.0, -118.1, "west"]), r"sensors.csv: 1 sensors have a missing .*: 'S2'"),
])
def test_bad_coordinates_are_named_by_file_and_sensor(tmp_path, edit, match):
    series, locations = standins.write_custom(tmp_path, t=20, n=3)
    edit(pd.read_csv(locations)).to_csv(locations, index=False)
    with pytest.raises(ValueError, match=match):
        load_custom(series, locations=locations)


def test_knn_graph_keeps_every_sensors_k_edges(tmp_path):
    # A tight cluster and one remote sensor: the kernel width is set by the cluster, so the
    # remote sensor's k edges all fall under DCRNN's 0.1 threshold.
    n = 12
    series, locations = standins.write_custom(tmp_path, t=20, n=n)
    frame = pd.read_csv(locations)
    frame.loc[n - 1, ["latitude", "longitude"]] = [34.6, -117.5]
    frame.to_csv(locations, index=False)
    ds = load_custom(series, locations=locations, k_neighbors=3)
    sources = ds.graph.edge_index[0]
    assert sorted(set(sources.tolist())) == list(range(n))
    assert ds.graph.num_edges == n * 3


def test_knn_explicit_threshold_that_isolates_warns_why():
    from stgnn.data.graph import SensorGraph

    xy = np.array([[34.0, -118.0], [34.001, -118.0], [34.002, -118.0], [34.003, -118.0], [35.0, -117.0]])
    with pytest.warns(UserWarning, match=r"threshold=0.1 drops all 1 nearest-neighbour edges of 1 sensors.*'4'"):
        SensorGraph.from_coordinates(xy, k=1, threshold=0.1)


def test_knn_on_the_real_metr_la_locations_leaves_no_node_isolated(shared_data):
    from stgnn.data.graph import SensorGraph
    from stgnn.data.graph_io import coordinates_table

    path = shared_data / "metr-la" / "graph_sensor_locations.csv"
    graph = SensorGraph.from_coordinates(coordinates_table(pd.read_csv(path), str(path)), k=8)
    assert graph.num_nodes == 207 and set(graph.edge_index[0].tolist()) == set(range(207))


def test_equal_distances_need_a_kernel_width_that_the_config_and_cli_can_give(tmp_path, capsys):
    from stgnn.cli import main

    series, _ = standins.write_custom(tmp_path, t=50, n=3)
    distances = tmp_path / "distances.csv"
    distances.write_text("from,to,cost\nS0,S1,100\nS1,S2,100\n")
    with pytest.raises(ValueError, match=r"--sigma"):
        load_custom(series, distances=distances)
    ds = load_custom(series, distances=distances, sigma=100.0)
    assert np.allclose(ds.graph.edge_weight[ds.graph.edge_index[0] != ds.graph.edge_index[1]].numpy(), np.exp(-1.0))
    assert main(["train", "--series", str(series), "--distances", str(distances), "--sigma", "0",
                 "--model", "ha", "--output", str(tmp_path / "r0"), "--quiet"]) == 2
    assert "sigma" in capsys.readouterr().err
    assert main(["train", "--series", str(series), "--distances", str(distances), "--sigma", "100",
                 "--model", "ha", "--output", str(tmp_path / "r1"), "--quiet"]) == 0
    assert 'sigma = 100.0' in (tmp_path / "r1" / "config.toml").read_text()
