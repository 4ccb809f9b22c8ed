"""SensorGraph: the canonical graph files, the conversions and every malformed input."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from stgnn.data.graph import SensorGraph
from stgnn.data.graph_io import read_dense_csv, read_sensor_ids
from stgnn.data.safe_pickle import load_adj_pickle


@contextmanager
def no_warnings() -> Iterator[None]:
    """Fail on any warning inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def random_matrix(n: int = 6, density: float = 0.4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(0.1, 1.0, (n, n)) * (rng.random((n, n)) < density)
    matrix[np.arange(n), (np.arange(n) + 1) % n] = 0.5  # a ring: no isolated node
    return matrix


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- published graph files


def test_pems_bay_distances_reproduce_adj_mx_bay(shared_data: Path) -> None:
    ids, _, adj = load_adj_pickle(shared_data / "pems-bay" / "adj_mx_bay.pkl")
    with pytest.warns(UserWarning, match="6 isolated nodes"):
        graph = SensorGraph.from_distances(shared_data / "pems-bay" / "distances_bay_2017.csv", ids)
    dense = graph.to_dense()
    assert graph.node_ids == ids
    assert graph.num_edges == 2694 == int(np.count_nonzero(dense))
    np.testing.assert_allclose(dense, adj, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(dense != 0, adj != 0)


def test_metr_la_adj_pickle(shared_data: Path) -> None:
    path = shared_data / "metr-la" / "adj_mx.pkl"
    with pytest.warns(UserWarning, match=r"1 isolated node .*'717804'"):
        graph = SensorGraph.from_adj_pickle(path)
    assert (graph.num_nodes, graph.num_edges) == (207, 1722)
    assert repr(graph) == f"SensorGraph(num_nodes=207, num_edges=1722, source='{path}')"
    dense = graph.to_dense()
    assert not np.array_equal(dense, dense.T)
    np.testing.assert_array_equal(np.diag(dense), 1.0)
    assert graph.node_ids == read_sensor_ids(shared_data / "metr-la" / "graph_sensor_ids.txt")
    with pytest.warns(UserWarning, match="1 isolated node"):
        los = SensorGraph.from_dense_csv(shared_data / "los-loop" / "los_adj.csv", graph.node_ids)
    np.testing.assert_allclose(los.to_dense(), np.maximum(dense, dense.T), rtol=0, atol=1e-6)


def test_pems08_duplicates_are_merged_and_reported(shared_data: Path) -> None:
    with pytest.warns(UserWarning, match=r"PEMS08\.csv: 18 duplicate rows"):
        graph = SensorGraph.from_edge_list(shared_data / "pems08" / "PEMS08.csv")
    assert (graph.num_nodes, graph.num_edges) == (170, 277)
    key = graph.edge_index[0] * graph.num_nodes + graph.edge_index[1]
    assert bool((key[1:] > key[:-1]).all())  # sorted and unique
    # Its 3 pairs listed in both directions carry equal costs, so symmetrising works.
    with pytest.warns(UserWarning, match="18 duplicate"):
        both = SensorGraph.from_edge_list(shared_data / "pems08" / "PEMS08.csv", symmetric=True)
    assert both.num_edges == 2 * 277 - 6
    dense = both.to_dense()
    np.testing.assert_array_equal(dense, dense.T)


def test_pems03_sensor_ids(shared_data: Path) -> None:
    ids = read_sensor_ids(shared_data / "pems03" / "PEMS03.txt")
    assert len(ids) == 358 and ids[:2] == ["313344", "313349"]
    with no_warnings():
        graph = SensorGraph.from_edge_list(shared_data / "pems03" / "PEMS03.csv", ids)
    assert (graph.num_nodes, graph.num_edges) == (358, 547)
    assert graph.node_ids == ids
    loops = graph.edge_index[0] == graph.edge_index[1]
    assert int(loops.sum()) == 1
    assert graph.with_self_loops("remove").num_edges == 546
    with pytest.raises(ValueError, match=r"PEMS03\.csv: .*'inverse' needs positive costs.*"
                                         r"1 edges have cost 0: '314013->314013'"):
        SensorGraph.from_edge_list(shared_data / "pems03" / "PEMS03.csv", ids, weight="inverse")
    # Without the id list the raw sensor ids are not node indices.
    with pytest.raises(ValueError, match=r"PEMS03\.csv: .*outside the node range"):
        SensorGraph.from_edge_list(shared_data / "pems03" / "PEMS03.csv", num_nodes=358)


def test_pems04_and_pems07(shared_data: Path) -> None:
    with no_warnings():
        pems04 = SensorGraph.from_edge_list(shared_data / "pems04" / "PEMS04.csv")
        pems07 = SensorGraph.from_edge_list(shared_data / "pems07" / "PEMS07.csv", weight="binary")
    assert (pems04.num_nodes, pems04.num_edges) == (307, 340)
    assert pems04.node_ids[:3] == ["0", "1", "2"]
    assert (pems07.num_nodes, pems07.num_edges) == (883, 866)
    assert bool((pems07.edge_weight == 1).all())
    frame = pd.read_csv(shared_data / "pems04" / "PEMS04.csv")
    dense = pems04.to_dense()
    np.testing.assert_allclose(dense[frame["from"], frame["to"]], frame["cost"], rtol=1e-6)
    inverse = SensorGraph.from_edge_list(shared_data / "pems04" / "PEMS04.csv", weight="inverse")
    np.testing.assert_allclose(inverse.edge_weight, 1 / pems04.edge_weight, rtol=1e-6)


def test_pemsd7m_stgcn_kernel(shared_data: Path) -> None:
    path = shared_data / "pemsd7m" / "PeMSD7_W_228.csv"
    with pytest.warns(UserWarning, match="3 isolated nodes"):
        graph = SensorGraph.from_distance_matrix(path, kernel="stgcn")
    dense = graph.to_dense()
    assert graph.num_nodes == 228
    np.testing.assert_array_equal(dense, dense.T)
    np.testing.assert_array_equal(np.diag(dense), 0.0)
    # STGCN's weight_matrix(), written out independently.
    w = read_dense_csv(path) / 10000.0
    expected = np.exp(-w * w / 0.1)
    expected = expected * (expected >= 0.5) * (1 - np.eye(228))
    np.testing.assert_allclose(dense, expected, rtol=1e-6, atol=1e-7)


def test_coordinates_from_published_files(shared_data: Path) -> None:
    locations = pd.read_csv(shared_data / "metr-la" / "graph_sensor_locations.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = SensorGraph.from_coordinates(locations, k=4, threshold=0.0)
    ids, _, _ = load_adj_pickle(shared_data / "metr-la" / "adj_mx.pkl")
    assert graph.node_ids == ids
    assert graph.num_edges == 4 * 207
    assert torch.equal(torch.bincount(graph.edge_index[0]), torch.full((207,), 4))
    assert graph.coordinates is not None and graph.coordinates.shape == (207, 2)
    stations = pd.read_csv(shared_data / "pemsd7m" / "PeMSD7_M_Station_Info.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d7 = SensorGraph.from_coordinates(stations, radius_km=5.0)  # Latitude / Longitude / ID
    assert d7.node_ids[:2] == ["716939", "759700"]


# ---------------------------------------------------------------- conventions and converters


def test_dense_direction_convention() -> None:
    graph = SensorGraph.from_dense(np.array([[0.0, 2.0], [3.0, 0.0]]), ["a", "b"])
    assert graph.edge_index.tolist() == [[0, 1], [1, 0]]
    assert graph.edge_weight.tolist() == [2.0, 3.0]
    assert graph.edge_index.dtype == torch.long and graph.edge_weight.dtype == torch.float32


def test_edges_are_sorted_and_unique() -> None:
    graph = SensorGraph(["a", "b", "c"], torch.tensor([[2, 0, 1, 0], [0, 2, 2, 1]]),
                        torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert graph.edge_index.tolist() == [[0, 0, 1, 2], [1, 2, 2, 0]]
    assert graph.edge_weight.tolist() == [4.0, 2.0, 3.0, 1.0]
    with pytest.raises(ValueError, match=r"1 repeated edges: 'a->b'"):
        SensorGraph(["a", "b"], torch.tensor([[0, 0], [1, 1]]))


def test_converters_round_trip() -> None:
    matrix = random_matrix().astype(np.float32)
    ids = [f"s{i}" for i in range(6)]
    graph = SensorGraph.from_dense(matrix, ids, source="toy")
    n = graph.num_nodes
    np.testing.assert_array_equal(graph.to_dense(), matrix)
    scipy_matrix = graph.to_scipy()
    assert isinstance(scipy_matrix, sp.csr_matrix) and scipy_matrix.dtype == np.float32
    np.testing.assert_array_equal(scipy_matrix.toarray(), matrix)
    torch_sparse = graph.to_torch_sparse()
    assert torch_sparse.is_sparse and torch_sparse.is_coalesced()
    np.testing.assert_array_equal(torch_sparse.to_dense().numpy(), matrix)
    nx_graph = graph.to_networkx()
    assert isinstance(nx_graph, nx.DiGraph)
    assert [nx_graph.nodes[i]["sensor_id"] for i in range(n)] == ids
    np.testing.assert_array_equal(nx.to_numpy_array(nx_graph, nodelist=range(n)), matrix)
    from torch_geometric.utils import to_dense_adj

    data = graph.to_pyg()
    assert data.num_nodes == n
    pyg_dense = to_dense_adj(data.edge_index, edge_attr=data.edge_attr, max_num_nodes=n)[0]
    np.testing.assert_array_equal(pyg_dense.numpy(), matrix)
    # Back again from every layout.
    for other in (SensorGraph.from_dense(scipy_matrix, ids),
                  SensorGraph.from_dense(torch_sparse, ids),
                  SensorGraph.from_networkx(nx_graph)):
        assert other.node_ids == ids
        assert torch.equal(other.edge_index, graph.edge_index)
        assert torch.allclose(other.edge_weight, graph.edge_weight)


def test_networkx_keeps_coordinates_and_handles_undirected() -> None:
    coords = np.array([[34.0, -118.0], [34.1, -118.1], [34.2, -118.2]])
    graph = SensorGraph(["x", "y", "z"], torch.tensor([[0, 1], [1, 2]]),
                        coordinates=coords)
    back = SensorGraph.from_networkx(graph.to_networkx())
    assert back.coordinates is not None
    torch.testing.assert_close(back.coordinates, graph.coordinates)
    undirected = SensorGraph.from_networkx(nx.path_graph(3))
    assert undirected.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    with pytest.raises(ValueError, match="multigraphs are not supported"):
        SensorGraph.from_networkx(nx.MultiDiGraph([(0, 1), (0, 1)]))


def test_reorder() -> None:
    matrix = random_matrix()
    ids = [f"s{i}" for i in range(6)]
    graph = SensorGraph.from_dense(matrix, ids)
    order = [5, 2, 0, 1, 4, 3]
    moved = graph.reorder([ids[i] for i in order])
    np.testing.assert_allclose(moved.to_dense(), matrix[np.ix_(order, order)], rtol=1e-6)
    subset = graph.reorder(["s3", "s1"])
    np.testing.assert_allclose(subset.to_dense(), matrix[np.ix_([3, 1], [3, 1])], rtol=1e-6)
    with pytest.raises(ValueError, match=r"2 requested ids are not in the graph: 'x', 'y'"):
        graph.reorder(["s0", "x", "y"])


def test_check_nodes_message() -> None:
    graph = SensorGraph.from_dense(random_matrix(), [f"s{i}" for i in range(6)], source="g.csv")
    graph.check_nodes([f"s{i}" for i in range(6)])
    graph.check_nodes([f"s{i}" for i in reversed(range(6))])  # sets agree
    with pytest.raises(ValueError) as info:
        graph.check_nodes(["s0", "s1", "s2", "s3", "new1", "new2", "new3"], source="speed.h5")
    message = str(info.value)
    assert message.startswith("speed.h5: sensor ids do not match graph g.csv")
    assert "3 series ids are missing from the graph: 'new1', 'new2', 'new3'" in message
    assert "2 graph ids are not in the series: 's4', 's5'" in message
    with pytest.raises(ValueError, match=r"position 0: series has 's5', graph has 's0'"):
        graph.check_nodes([f"s{i}" for i in reversed(range(6))], ordered=True)


def test_self_loop_policies() -> None:
    graph = SensorGraph.from_dense(np.array([[0.7, 2.0], [3.0, 0.0]]))
    assert graph.with_self_loops("keep") is graph
    assert graph.with_self_loops("remove").to_dense().tolist() == [[0.0, 2.0], [3.0, 0.0]]
    np.testing.assert_allclose(graph.with_self_loops("add").to_dense(), [[0.7, 2.0], [3.0, 1.0]])
    with pytest.raises(ValueError, match="unknown self-loop policy 'sometimes'"):
        graph.with_self_loops("sometimes")  # type: ignore[arg-type]


def test_distances_header_detection_and_filtering(tmp_path: Path) -> None:
    rows = "a,a,0\na,b,30\nb,a,50\nb,b,0\nzz,a,5\n"  # zz is not in the graph
    with_header = write(tmp_path / "with.csv", "from,to,cost\n" + rows)
    without = write(tmp_path / "without.csv", rows)
    frame = pd.DataFrame({"from": ["a", "a", "b", "b"], "to": ["a", "b", "a", "b"],
                          "cost": [0.0, 30.0, 50.0, 0.0]})
    # DCRNN: sigma = std of the 4 finite distances; a->b keeps exp(-2) = 0.135, b->a falls
    # below 0.1; the diagonal is exp(0) = 1.
    sigma = np.array([0.0, 30.0, 50.0, 0.0]).std()
    expected = np.array([[1.0, np.exp(-((30 / sigma) ** 2))], [0.0, 1.0]])
    for source in (with_header, without, frame):
        graph = SensorGraph.from_distances(source, ["a", "b"])
        np.testing.assert_allclose(graph.to_dense(), expected, rtol=1e-6)
    stgcn = SensorGraph.from_distances(frame, ["a", "b"], kernel="stgcn")
    stgcn_weight = np.exp(-np.square(np.array([[0.0, 30.0], [50.0, 0.0]]) / 10000) / 0.1)
    np.testing.assert_allclose(stgcn.to_dense(), stgcn_weight * (1 - np.eye(2)), rtol=1e-6)
    with pytest.raises(ValueError, match=r"with\.csv: none of its 5 rows connects two of the 2"):
        SensorGraph.from_distances(with_header, ["p", "q"])


def test_coordinates_kernel_and_validation() -> None:
    coords = pd.DataFrame({"LAT": [0.0, 1.0, 3.0], "Lon": [0.0, 0.0, 0.0]}, index=["a", "b", "c"])
    graph = SensorGraph.from_coordinates(coords, k=1, threshold=0.0)
    assert graph.node_ids == ["a", "b", "c"]
    assert graph.edge_index.tolist() == [[0, 1, 2], [1, 0, 1]]
    km = 6371.0088 * np.pi / 180  # one degree of latitude
    kept = np.array([km, km, 2 * km])
    np.testing.assert_allclose(graph.edge_weight.numpy(),
                               np.exp(-np.square(kept / kept.std())), rtol=1e-5)
    with pytest.warns(UserWarning, match=r"1 isolated node .*'2'"):
        by_radius = SensorGraph.from_coordinates(coords.to_numpy(), radius_km=1.5 * km, sigma=100.0)
    assert by_radius.edge_index.tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ValueError, match="exactly one of k and radius_km"):
        SensorGraph.from_coordinates(coords, k=1, radius_km=3.0)
    with pytest.raises(ValueError, match=r"k must lie in \[1, 2\]"):
        SensorGraph.from_coordinates(coords, k=3)
    with pytest.raises(ValueError, match="needs latitude and longitude columns"):
        SensorGraph.from_coordinates(coords.rename(columns={"LAT": "y"}), k=1)
    with pytest.raises(ValueError, match="latitudes must lie in"):
        SensorGraph.from_coordinates(np.array([[0.0, 0.0], [100.0, 0.0]]), k=1)


# ---------------------------------------------------------------- malformed inputs


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.ones((3, 4)), r"bad: matrix is not square: shape \(3, 4\)"),
        (np.array([[0.0, np.nan], [np.inf, 0.0]]), "bad: 2 non-finite entries"),
        (np.array([[0.0, -1.0], [1.0, 0.0]]), "bad: negative weights in 1 entries"),
        (sp.csr_matrix(np.array([[0.0, -1.0], [1.0, 0.0]])), "bad: negative weights"),
        (sp.csr_matrix(np.ones((2, 3))), "bad: matrix is not square"),
        (np.array([["a", "b"], ["c", "d"]]), "bad: not a numeric matrix"),
    ],
)
def test_from_dense_rejects(matrix: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SensorGraph.from_dense(matrix, source="bad")


def test_from_dense_rejects_wrong_id_count_and_repeated_ids() -> None:
    with pytest.raises(ValueError, match="m: 3 node ids for a 2x2 matrix"):
        SensorGraph.from_dense(np.eye(2), ["a", "b", "c"], source="m")
    with pytest.raises(ValueError, match="repeated ids: 'a'"):
        SensorGraph.from_dense(np.eye(2), ["a", "a"])


def test_distance_matrix_rejects_nan_and_bad_kernel() -> None:
    with pytest.raises(ValueError, match="d: 1 NaN entries in the distances"):
        SensorGraph.from_distance_matrix(np.array([[0.0, np.nan], [1.0, 0.0]]), source="d")
    with pytest.raises(ValueError, match="unknown kernel 'gauss'"):
        SensorGraph.from_distance_matrix(np.eye(2), kernel="gauss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma must be positive"):
        SensorGraph.from_distance_matrix(np.zeros((2, 2)))


def test_edge_list_unknown_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "edges.csv", "from,to,cost\n1,2,3.0\n2,9,1.0\n8,1,1.0\n")
    with pytest.raises(ValueError, match=r"edges\.csv: 2 ids are not among the 3 node ids: "
                                         r"'8', '9'"):
        SensorGraph.from_edge_list(path, ["1", "2", "3"])
    with pytest.raises(ValueError, match=r"edges\.csv: 2 endpoints are outside the node range "
                                         r"\[0, 5\): 8, 9"):
        SensorGraph.from_edge_list(path, num_nodes=5)
    text = write(tmp_path / "names.csv", "from,to\nalpha,beta\n")
    with pytest.raises(ValueError, match=r"names\.csv: endpoints must be 0-based node indices"):
        SensorGraph.from_edge_list(text, weight="binary")


def test_edge_list_conflicting_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.csv", "from,to,cost\n0,1,3.0\n0,1,4.0\n1,0,3.0\n")
    with pytest.raises(ValueError, match=r"dup\.csv: 1 edges are listed more than once with "
                                         r"different costs: '0->1'"):
        SensorGraph.from_edge_list(path)
    clash = write(tmp_path / "clash.csv", "from,to,cost\n0,1,3.0\n1,0,4.0\n")
    assert SensorGraph.from_edge_list(clash).num_edges == 2
    with pytest.raises(ValueError, match=r"clash\.csv: symmetric=True but 1 edges .*'0<->1'"):
        SensorGraph.from_edge_list(clash, symmetric=True)


def test_edge_list_options(tmp_path: Path) -> None:
    frame = pd.DataFrame({"src": [10, 11], "dst": [11, 12], "distance": [2.0, 4.0]})
    graph = SensorGraph.from_edge_list(frame, id_map={12: 0, 11: 1, 10: 2}, weight="inverse",
                                       symmetric=True)
    assert graph.node_ids == ["12", "11", "10"]
    np.testing.assert_allclose(graph.to_dense(), [[0, 0.25, 0], [0.25, 0, 0.5], [0, 0.5, 0]])
    unweighted = write(tmp_path / "pairs.csv", "0,1\n1,2\n")
    assert SensorGraph.from_edge_list(unweighted, weight="binary").num_edges == 2
    with pytest.raises(ValueError, match=r"pairs\.csv: weight='cost' needs a cost column"):
        SensorGraph.from_edge_list(unweighted)
    with pytest.raises(ValueError, match="unknown weight 'log'"):
        SensorGraph.from_edge_list(frame, weight="log")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build",
    [
        lambda p: SensorGraph.from_edge_list(p),
        lambda p: SensorGraph.from_distances(p, ["a"]),
        lambda p: SensorGraph.from_dense_csv(p),
        lambda p: SensorGraph.from_distance_matrix(p),
        lambda p: SensorGraph.from_adj_pickle(p),
        lambda p: read_sensor_ids(p),
    ],
)
def test_missing_file(tmp_path: Path, build: object) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.csv: .*not found"):
        build(tmp_path / "absent.csv")  # type: ignore[operator]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\xfa", "not a text CSV file"),
        (b"from,to,cost\n1,2,3\n4,5,6,7,8\n", "cannot parse as CSV"),
        (b"from,to,cost\n1,2,three\n", r"1 rows have a missing, non-numeric or infinite cost"),
        (b"from,to,cost\n1,2,-3\n", "1 rows have a negative cost"),
        (b"from,to,cost\n1,,3\n", "1 rows have an empty 'to' id"),
        (b"just one column\n", "expected columns from,to"),
        (b"from,to,cost\n", "holds no edges"),
    ],
)
def test_garbage_edge_csv(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"garbage\.csv: .*{message}"):
        SensorGraph.from_edge_list(path, num_nodes=10)
    with pytest.raises(ValueError, match=r"garbage\.csv"):
        SensorGraph.from_distances(path, ["1", "2"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty"),
        ("1,0\n0,1,1\n", "not a headerless comma-separated numeric matrix"),
        ("1,x\n0,1\n", "not a headerless comma-separated numeric matrix"),
        ("1,0,0\n0,1,0\n", r"matrix is not square: shape \(2, 3\)"),
        ("1,nan\n0,1\n", "1 non-finite entries"),
    ],
)
def test_garbage_dense_csv(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path / "adj.csv", content)
    with pytest.raises(ValueError, match=rf"adj\.csv: {message}"):
        SensorGraph.from_dense_csv(path)


def test_isolated_node_warning() -> None:
    matrix = np.zeros((4, 4))
    matrix[0, 1] = matrix[1, 0] = 1.0
    matrix[3, 3] = 1.0  # a self loop alone does not connect a node
    with pytest.warns(UserWarning, match=r"toy: 2 isolated nodes \(no edge to or from another "
                                         r"node\): 'c', 'd'"):
        SensorGraph.from_dense(matrix, ["a", "b", "c", "d"], source="toy")


def test_constructor_rejects_bad_tensors() -> None:
    with pytest.raises(ValueError, match=r"edge_index must have shape \[2, E\]"):
        SensorGraph(["a", "b"], torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        SensorGraph(["a", "b"], torch.tensor([[0], [2]]))
    with pytest.raises(ValueError, match="1 edge weights for 2 edges"):
        SensorGraph(["a", "b"], torch.tensor([[0, 1], [1, 0]]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="1 negative edge weights"):
        SensorGraph(["a", "b"], torch.tensor([[0, 1], [1, 0]]), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"coordinates must have shape \[2, 2\]"):
        SensorGraph(["a", "b"], torch.tensor([[0, 1], [1, 0]]), coordinates=np.zeros((3, 2)))
