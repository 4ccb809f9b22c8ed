"""Attention layers and the neighbourhood partition: reference values, graph layouts, PyG Batch, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from stgnn.nn import (
    AxisSelfAttention,
    GraphAttention,
    TransformerLayer,
    cluster_graph,
    neighbourhood_partition,
    to_dense_adjacency,
)

pytestmark = pytest.mark.usefixtures("single_thread")

EI = torch.tensor([[0, 1, 1, 2, 3, 0], [1, 0, 2, 3, 0, 0]])  # a self-loop on 0, directed edges
N = 4


def dense_reference(layer: GraphAttention, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
    """Masked dense attention: node i attends to j where adj[j, i] != 0 (edge j -> i) or j == i."""
    h, d = layer.heads, layer.out_channels // layer.heads
    q, k, v = layer.qkv(x).unflatten(-1, (3, h, d)).unbind(-3)  # [..., N, h, d]
    scores = torch.einsum("...ihd,...jhd->...hij", q, k) / math.sqrt(d)
    allowed = (adj.T != 0) | torch.eye(adj.size(0), dtype=torch.bool)
    attn = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = torch.einsum("...hij,...jhd->...ihd", attn, v).flatten(-2)
    return layer.out(out)


def test_graph_attention_equals_masked_dense_attention():
    torch.manual_seed(0)
    layer = GraphAttention(3, 8, heads=2).double()
    x = torch.randn(2, 5, N, 3, dtype=torch.float64)
    adj = to_dense_adjacency(EI, None, N).double()
    torch.testing.assert_close(layer(x, EI), dense_reference(layer, x, adj))
    # dense adjacency input, a weighted edge list (weights only select edges) and duplicate edges agree
    torch.testing.assert_close(layer(x, adj), layer(x, EI))
    torch.testing.assert_close(layer(x, EI, torch.rand(EI.size(1), dtype=torch.float64) + 0.5), layer(x, EI))
    torch.testing.assert_close(layer(x, torch.cat([EI, EI], 1)), layer(x, EI))


def test_graph_attention_node_dim_and_gradients():
    torch.manual_seed(0)
    layer = GraphAttention(3, 8, heads=2, node_dim=0)
    x = torch.randn(N, 2, 3, requires_grad=True)  # [N, B, C]
    out = layer(x, EI)
    assert out.shape == (N, 2, 8)
    last = GraphAttention(3, 8, heads=2)  # node axis -2, same weights
    last.load_state_dict(layer.state_dict())
    torch.testing.assert_close(out, last(x.movedim(0, -2), EI).movedim(-2, 0))
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in layer.parameters())


def test_graph_attention_on_a_pyg_batch_gives_each_graph_its_own_result():
    torch.manual_seed(0)
    layer = GraphAttention(2, 4, heads=2)
    g1 = Data(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), num_nodes=3)
    g2 = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
    batch = Batch.from_data_list([g1, g2])
    x = torch.randn(6, batch.num_nodes, 2)
    out = layer(x, batch.edge_index)
    torch.testing.assert_close(out[:, :3], layer(x[:, :3], g1.edge_index))
    torch.testing.assert_close(out[:, 3:], layer(x[:, 3:], g2.edge_index))


def test_graph_attention_rejects_a_graph_of_another_size_and_bad_heads():
    with pytest.raises(ValueError, match="adjacency is 5x5 but the input has 4 nodes"):
        GraphAttention(2, 4, heads=2)(torch.randn(1, N, 2), torch.zeros(5, 5))
    with pytest.raises(ValueError, match="divisible by heads"):
        GraphAttention(2, 6, heads=4)


def test_axis_self_attention_map_and_axis():
    torch.manual_seed(0)
    att = AxisSelfAttention(8, heads=2, seq_dim=-2).eval()
    x = torch.randn(2, 3, N, 8)
    out, amap = att(x, return_attention=True)
    assert out.shape == x.shape and amap is not None and amap.shape == (N, N)
    torch.testing.assert_close(amap.sum(-1), torch.ones(N))
    # along the node axis, each (batch, step) is one independent sequence
    ref, _ = att(x[1:, 2:])
    torch.testing.assert_close(out[1:, 2:], ref)
    assert att(x)[1] is None


@pytest.mark.parametrize("mixer", ["temporal", "spatial", "graph", "diffusion"])
def test_transformer_layer_mixers(mixer):
    torch.manual_seed(0)
    layer = TransformerLayer(8, heads=2, mixer=mixer)
    x = torch.randn(2, 5, N, 8, requires_grad=True)
    out, amap = layer(x, EI, return_attention=True)
    assert out.shape == x.shape
    expect = {"temporal": (5, 5), "spatial": (N, N), "graph": (N, N), "diffusion": None}[mixer]
    assert (None if amap is None else tuple(amap.shape)) == expect
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in layer.parameters())
    if mixer in ("graph", "diffusion"):
        with pytest.raises(ValueError, match="needs edge_index"):
            layer(x)
    with pytest.raises(ValueError, match="mixer must be"):
        TransformerLayer(8, mixer="conv")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ partition
def grid_edges(rows: int, cols: int) -> torch.Tensor:
    idx = torch.arange(rows * cols).view(rows, cols)
    right = torch.stack([idx[:, :-1].reshape(-1), idx[:, 1:].reshape(-1)])
    down = torch.stack([idx[:-1].reshape(-1), idx[1:].reshape(-1)])
    return torch.cat([right, down], 1)


def test_partition_sizes_components_and_determinism():
    ei = torch.cat([grid_edges(6, 6), grid_edges(3, 3) + 36], 1)  # two components: 36 and 9 nodes
    n = 45 + 2  # and two isolated nodes
    clusters = neighbourhood_partition(ei, n, 5)
    assert clusters.shape == (n,) and clusters.dtype == torch.long
    p = int(clusters.max()) + 1
    assert sorted(set(clusters.tolist())) == list(range(p))  # ids 0 .. P - 1, each used
    sizes = torch.bincount(clusters)
    assert int(sizes.max()) <= 5
    assert p == math.ceil(36 / 5) + math.ceil(9 / 5) + 2  # only each component's last block is short
    first = set(clusters[:36].tolist())
    assert first.isdisjoint(clusters[36:45].tolist()) and clusters[45] != clusters[46]  # never across components
    torch.testing.assert_close(neighbourhood_partition(ei, n, 5), clusters)
    # a dense adjacency and the reversed edges give the same partition (directions are ignored)
    torch.testing.assert_close(neighbourhood_partition(to_dense_adjacency(ei, None, n), n, 5), clusters)
    torch.testing.assert_close(neighbourhood_partition(ei.flip(0), n, 5), clusters)


def test_partition_blocks_are_local_on_a_path():
    path = torch.stack([torch.arange(19), torch.arange(1, 20)])
    clusters = neighbourhood_partition(path, 20, 4)
    # RCM numbers a path from one end: every block is four consecutive nodes
    for c in range(5):
        members = (clusters == c).nonzero().flatten()
        assert members.numel() == 4 and int(members.max() - members.min()) == 3


def test_cluster_graph_and_bad_arguments():
    clusters = torch.tensor([0, 0, 1, 1, 2])
    ei = torch.tensor([[0, 1, 2, 3, 3], [1, 2, 3, 4, 4]])
    assert cluster_graph(ei, clusters, 3).tolist() == [[0, 1], [1, 2]]
    # target 0 is joined to cluster 1 by one edge, to 2 by three, to 3 by two: the cap keeps the most joined
    cl = torch.tensor([0, 1, 2, 2, 2, 3, 3])
    star = torch.tensor([[1, 2, 3, 4, 5, 6, 0], [0, 0, 0, 0, 0, 0, 1]])
    assert cluster_graph(star, cl, 4).tolist() == [[1, 2, 3, 0], [0, 0, 0, 1]]
    assert cluster_graph(star, cl, 4, max_neighbours=2).tolist() == [[2, 3, 0], [0, 0, 1]]
    assert cluster_graph(star, cl, 4, max_neighbours=1).tolist() == [[2, 0], [0, 1]]
    with pytest.raises(ValueError, match="max_neighbours must be >= 1"):
        cluster_graph(star, cl, 4, max_neighbours=0)
    # one cluster (a small graph): no edges between clusters, with or without the cap
    assert cluster_graph(ei, torch.zeros(5, dtype=torch.long), 1, max_neighbours=2).shape == (2, 0)
    with pytest.raises(ValueError, match="cluster_size must be >= 1"):
        neighbourhood_partition(ei, 5, 0)
    with pytest.raises(ValueError, match=r"node ids outside \[0, 4\)"):
        neighbourhood_partition(ei, 4, 2)
