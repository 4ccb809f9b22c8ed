"""Shapes, gradients, graph-layout equivalence and reference formulas of the stgnn.nn layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from stgnn.nn import (
    AdaptiveAdjacency,
    ChebGraphConv,
    DCGRUCell,
    DiffusionConv,
    GatedTCN,
    GatedTemporalConv,
    GraphConv,
    GraphWaveNetLayer,
    NodeLayerNorm,
    STConvBlock,
    to_dense_adjacency,
    to_edge_index,
)

pytestmark = pytest.mark.usefixtures("single_thread")


N = 6


def small_graph(n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.arange(n).repeat_interleave(2)
    dst = torch.stack([(torch.arange(n) + 1) % n, (torch.arange(n) + 3) % n], 1).reshape(-1)
    ei = torch.cat([torch.stack([src, dst]), torch.arange(n).repeat(2, 1)], 1)  # + self-loops
    ew = torch.rand(ei.size(1), generator=g) + 0.1
    return ei, ew


def rw(w: np.ndarray) -> np.ndarray:
    d = w.sum(1)
    return np.where(d > 0, 1 / np.where(d > 0, d, 1), 0)[:, None] * w


def grads_flow(module: nn.Module, out: torch.Tensor, x: torch.Tensor | None = None) -> None:
    out.pow(2).mean().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    if x is not None:
        assert x.grad is not None and x.grad.abs().sum() > 0


GRAPH_LAYERS = [
    lambda: ChebGraphConv(3, 5, K=3),
    lambda: GraphConv(3, 5),
    lambda: DiffusionConv(3, 5, K=2),
    lambda: DiffusionConv(3, 5, K=2, reference_compat=True),
]


@pytest.mark.parametrize("make", GRAPH_LAYERS)
def test_graph_layer_shapes_grad_layouts(make):
    torch.manual_seed(0)
    layer = make()
    ei, ew = small_graph()
    x = torch.randn(2, 4, N, 3, requires_grad=True)
    out = layer(x, ei, ew)
    assert out.shape == (2, 4, N, 5)
    # dense adjacency input == edge_index input
    dense_w = to_dense_adjacency(ei, ew, N)
    torch.testing.assert_close(layer(x, dense_w), out)
    # PyG Data with edge_attr [E, 1]
    data = Data(edge_index=ei, edge_attr=ew[:, None], num_nodes=N)
    torch.testing.assert_close(layer(x, data.edge_index, data.edge_attr), out)
    # unbatched [N, C] input
    torch.testing.assert_close(layer(x[1, 2], ei, ew), out[1, 2])
    # node-leading layout via node_dim=0
    layer.node_dim = 0
    torch.testing.assert_close(layer(x.permute(2, 0, 1, 3), ei, ew).permute(1, 2, 0, 3), out)
    layer.node_dim = -2
    grads_flow(layer, out, x)


def test_cheb_graph_conv_matches_dense_formula():
    torch.manual_seed(0)
    ei, ew = small_graph()
    w = to_dense_adjacency(ei, ew, N).double().numpy()
    s = np.maximum(w, w.T)
    dis = 1 / np.sqrt(s.sum(1))
    lap = np.eye(N) - dis[:, None] * s * dis[None]
    lt = 2 * lap / np.linalg.eigvalsh(lap).max() - np.eye(N)
    conv = ChebGraphConv(3, 4, K=3).double()
    x = np.random.default_rng(0).normal(size=(2, N, 3))
    t = [x, lt @ x, 2 * lt @ (lt @ x) - x]
    wt = conv.weight.detach().numpy()
    want = sum(t[k] @ wt[k] for k in range(3)) + conv.bias.detach().numpy()  # type: ignore[union-attr]
    got = conv(torch.from_numpy(x), ei, ew.double()).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-10)


def np_dcrnn_gconv(x, supports, K, weight, bias):
    """Hand-written numpy version of chnsh/DCRNN_PyTorch DCGRUCell._gconv (x: [B, N, C])."""
    b, n, c = x.shape
    x0 = x.transpose(1, 2, 0).reshape(n, c * b)
    xs = [x0]
    for s in supports:
        x1 = s @ x0
        xs.append(x1)
        for _ in range(2, K + 1):
            x2 = 2 * s @ x1 - x0
            xs.append(x2)
            x1, x0 = x2, x1
    m = len(xs)
    feats = np.stack(xs).reshape(m, n, c, b).transpose(3, 1, 2, 0).reshape(b * n, c * m)
    return (feats @ weight + bias).reshape(b, n, -1)


def test_diffusion_conv_reference_compat_matches_numpy_and_paper_mode_differs():
    torch.manual_seed(0)
    ei, ew = small_graph()
    w = to_dense_adjacency(ei, ew, N).double().numpy()
    supports = [rw(w).T, rw(w.T).T]
    x = np.random.default_rng(0).normal(size=(3, N, 2))
    compat = DiffusionConv(2, 4, K=2, reference_compat=True).double()
    paper = DiffusionConv(2, 4, K=2).double()
    paper.load_state_dict(compat.state_dict())
    nn.init.normal_(compat.bias)  # type: ignore[arg-type]
    paper.load_state_dict(compat.state_dict())
    want = np_dcrnn_gconv(
        x,
        supports,
        2,
        compat.weight.detach().numpy(),
        compat.bias.detach().numpy(),  # type: ignore[union-attr]
    )
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(compat(xt, ei, ew.double()).detach().numpy(), want, atol=1e-10)
    assert compat.weight.shape == (2 * 5, 4)  # [C * (2K+1), out]: the reference's layout
    diff = (paper(xt, ei, ew.double()) - compat(xt, ei, ew.double())).abs().max()
    assert diff > 1e-3


def test_dcgru_cell_matches_numpy_reference_cell():
    torch.manual_seed(0)
    ei, ew = small_graph()
    w = to_dense_adjacency(ei, ew, N).double().numpy()
    supports = [rw(w).T, rw(w.T).T]
    cell = DCGRUCell(2, 3, K=2, reference_compat=True).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = np.random.default_rng(0).normal(size=(4, N, 2))
    h = np.random.default_rng(1).normal(size=(4, N, 3))
    g = cell.gate_conv
    c = cell.candidate_conv
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    gw, gb = g.weight.detach().numpy(), g.bias.detach().numpy()  # type: ignore[union-attr]
    cw, cb = c.weight.detach().numpy(), c.bias.detach().numpy()  # type: ignore[union-attr]
    ru = sig(np_dcrnn_gconv(np.concatenate([x, h], -1), supports, 2, gw, gb))
    r, u = ru[..., :3], ru[..., 3:]
    cand = np.tanh(np_dcrnn_gconv(np.concatenate([x, r * h], -1), supports, 2, cw, cb))
    want = u * h + (1 - u) * cand
    got = cell(torch.from_numpy(x), ei, ew.double(), h=torch.from_numpy(h))
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-10)


def test_dcgru_cell_shapes_grad_init():
    cell = DCGRUCell(2, 8, K=2)
    assert torch.all(cell.gate_conv.bias == 1.0) and torch.all(cell.candidate_conv.bias == 0.0)  # type: ignore[operator]
    ei, ew = small_graph()
    x = torch.randn(3, N, 2, requires_grad=True)
    h = cell(x, ei, ew)
    h2 = cell(x, ei, ew, h=h)
    assert h2.shape == (3, N, 8)
    dense_w = to_dense_adjacency(ei, ew, N)
    torch.testing.assert_close(cell(x, dense_w, h=h), h2)
    grads_flow(cell, h2, x)


def conv2d_glu_reference(x, conv: GatedTemporalConv):
    """GLU via torch Conv2d on [B, C, T, N] (hazdzz layout) with the same weights."""
    xc = x.permute(0, 3, 1, 2)
    k = conv.kernel_size
    h = F.conv2d(xc, conv.weight.unsqueeze(-1), conv.bias)
    p, q = h[:, : conv.out_channels], h[:, conv.out_channels :]
    c_in, c_out = conv.in_channels, conv.out_channels
    if c_in > c_out:
        assert conv.align.conv is not None
        res = F.conv2d(xc, conv.align.conv.weight[:, :, None, None], conv.align.conv.bias)
    elif c_in < c_out:
        res = torch.cat([xc, xc.new_zeros(xc.size(0), c_out - c_in, *xc.shape[2:])], 1)
    else:
        res = xc
    out = (p + res[:, :, k - 1 :]) * torch.sigmoid(q)
    return out.permute(0, 2, 3, 1)


@pytest.mark.parametrize(("c_in", "c_out"), [(2, 6), (6, 6), (6, 3)])
def test_gated_temporal_conv_matches_conv2d(c_in, c_out):
    torch.manual_seed(0)
    conv = GatedTemporalConv(c_in, c_out, kernel_size=3)
    x = torch.randn(2, 12, N, c_in, requires_grad=True)
    out = conv(x)
    assert out.shape == (2, 10, N, c_out)
    torch.testing.assert_close(out, conv2d_glu_reference(x, conv))
    # node-leading layout with time_dim=-2
    conv.time_dim = -2
    torch.testing.assert_close(conv(x.permute(2, 0, 1, 3)).permute(1, 2, 0, 3), out)
    conv.time_dim = -3
    grads_flow(conv, out, x)
    # the unused align conv is registered only with reference_compat
    assert GatedTemporalConv(c_in, c_out, reference_compat=True).align.conv is not None
    assert (conv.align.conv is not None) == (c_in > c_out)


def test_gated_tcn_matches_conv2d():
    torch.manual_seed(0)
    tcn = GatedTCN(4, 5, kernel_size=2, dilation=2)
    x = torch.randn(3, 13, N, 4, requires_grad=True)
    out = tcn(x)
    assert out.shape == (3, 11, N, 5)
    xc = x.permute(0, 3, 2, 1)  # [B, C, N, T] (Graph WaveNet layout)
    w = tcn.weight.unsqueeze(2)  # [2C, C_in, 1, k]
    f = F.conv2d(xc, w[:5], tcn.bias[:5], dilation=(1, 2))  # type: ignore[index]
    g = F.conv2d(xc, w[5:], tcn.bias[5:], dilation=(1, 2))  # type: ignore[index]
    torch.testing.assert_close(out, (torch.tanh(f) * torch.sigmoid(g)).permute(0, 3, 2, 1))
    grads_flow(tcn, out, x)
    with pytest.raises(ValueError, match="shorter than the receptive field"):
        tcn(torch.randn(1, 2, N, 4))


def test_node_layer_norm_matches_layernorm_and_is_node_agnostic():
    torch.manual_seed(0)
    ln = NodeLayerNorm(N, 4)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    ref = nn.LayerNorm([N, 4], eps=1e-12)
    ref.load_state_dict(ln.state_dict())
    x = torch.randn(2, 5, N, 4)
    torch.testing.assert_close(ln(x), ref(x))
    ln.node_dim = 0
    torch.testing.assert_close(ln(x.permute(2, 0, 1, 3)).permute(1, 2, 0, 3), ref(x))
    shared = NodeLayerNorm(None, 4)
    assert shared(torch.randn(3, 11, 4)).shape == (3, 11, 4)  # any node count
    with pytest.raises(ValueError, match="built for"):
        NodeLayerNorm(N, 4)(torch.randn(2, N + 1, 4))


@pytest.mark.parametrize("graph_conv", ["cheb", "first_order"])
def test_st_conv_block(graph_conv):
    torch.manual_seed(0)
    block = STConvBlock(2, 8, 4, 8, num_nodes=N, graph_conv=graph_conv)
    with torch.no_grad():  # break LayerNorm's trivial init so its grads are non-zero
        block.norm.weight.normal_()
    ei, ew = small_graph()
    x = torch.randn(3, 12, N, 2, requires_grad=True)
    out = block(x, ei, ew)
    assert out.shape == (3, 8, N, 8)
    torch.testing.assert_close(block(x, to_dense_adjacency(ei, ew, N)), out)
    grads_flow(block, out, x)


def test_adaptive_adjacency_dense_and_topk():
    torch.manual_seed(0)
    adp = AdaptiveAdjacency(N, embedding_dim=3)
    a = adp()
    e1, e2 = adp.source_embedding, adp.target_embedding
    torch.testing.assert_close(a, torch.softmax(torch.relu(e1 @ e2), dim=1))
    sparse_full = AdaptiveAdjacency(N, embedding_dim=3, top_k=N)
    sparse_full.load_state_dict(adp.state_dict())
    torch.testing.assert_close(sparse_full().to_dense(), a)
    topk = AdaptiveAdjacency(50, embedding_dim=4, top_k=5, chunk_size=7)
    s = topk()
    assert s.is_sparse and s._nnz() == 50 * 5
    dense_s = s.to_dense()
    torch.testing.assert_close(dense_s.sum(1), torch.ones(50))
    full = torch.softmax(torch.relu(topk.source_embedding @ topk.target_embedding), 1)
    kept = torch.where(dense_s > 0, full, torch.zeros_like(full))
    torch.testing.assert_close(dense_s, kept / kept.sum(1, keepdim=True))
    (s.to_dense() * torch.randn(50, 50)).sum().backward()
    assert topk.source_embedding.grad is not None and topk.source_embedding.grad.abs().sum() > 0


@pytest.mark.parametrize("top_k", [None, 3])
def test_graph_wavenet_layer(top_k):
    torch.manual_seed(0)
    layer = GraphWaveNetLayer(4, 6, 8, dilation=2, dropout=0.0)
    adp_mod = AdaptiveAdjacency(N, 3, top_k=top_k)
    ei, ew = small_graph()
    x = torch.randn(2, 13, N, 4, requires_grad=True)
    out, skip = layer(x, ei, ew, adaptive_adj=adp_mod())
    assert out.shape == (2, 11, N, 4) and skip.shape == (2, 11, N, 8)
    out1, skip1 = layer(x, ei, ew, adaptive_adj=adp_mod(), skip_steps=1)
    torch.testing.assert_close(skip1, skip[:, -1:])
    torch.testing.assert_close(out1, out)
    layer.eval()
    e_out, _ = layer(x, ei, ew, adaptive_adj=adp_mod())
    torch.testing.assert_close(layer(x, to_dense_adjacency(ei, ew, N), adaptive_adj=adp_mod())[0], e_out)
    layer.train()
    (out.pow(2).mean() + skip.pow(2).mean()).backward()
    for name, p in list(layer.named_parameters()) + list(adp_mod.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="adaptive_adj"):
        layer(x, ei, ew)


def test_graph_wavenet_layer_matches_reference_formula():
    """[h, A1 h, A1^2 h, A2 h, A2^2 h, Ap h, Ap^2 h] with nconv = einsum('ncvl,vw->ncwl')."""
    torch.manual_seed(0)
    layer = GraphWaveNetLayer(3, 3, 5, dropout=0.0).double().eval()
    ei, ew = small_graph()
    w = to_dense_adjacency(ei, ew, N).double().numpy()
    adp = torch.softmax(torch.randn(N, N, dtype=torch.float64), 1)
    x = torch.randn(2, 5, N, 3, dtype=torch.float64)
    out, _ = layer(x, ei, ew.double(), adaptive_adj=adp)
    h = layer.tcn(x).permute(0, 3, 2, 1).detach().numpy()  # [B, C, N, T]
    terms = [h]
    for a in (rw(w), rw(w.T), adp.numpy()):
        x1 = np.einsum("ncvl,vw->ncwl", h, a)
        x2 = np.einsum("ncvl,vw->ncwl", x1, a)
        terms += [x1, x2]
    cat = np.concatenate(terms, 1)  # channel index k * C + c
    assert layer.mlp is not None
    mlp = np.einsum("ncvl,oc->novl", cat, layer.mlp.weight.detach().numpy())
    mlp = mlp + layer.mlp.bias.detach().numpy()[None, :, None, None]
    res = mlp + x.permute(0, 3, 2, 1).numpy()[..., -4:]
    bn = layer.bn
    want = (res - bn.running_mean.numpy()[None, :, None, None]) / np.sqrt(  # type: ignore[union-attr]
        bn.running_var.numpy()[None, :, None, None] + bn.eps  # type: ignore[union-attr]
    ) * bn.weight.detach().numpy()[None, :, None, None] + bn.bias.detach().numpy()[None, :, None, None]
    np.testing.assert_allclose(out.detach().permute(0, 3, 2, 1).numpy(), want, atol=1e-10)


def test_to_edge_index_roundtrip_layers_agree():
    ei, ew = small_graph()
    ei2, ew2 = to_edge_index(to_dense_adjacency(ei, ew, N))
    conv = DiffusionConv(3, 2, K=2)
    x = torch.randn(4, N, 3)
    torch.testing.assert_close(conv(x, ei2, ew2), conv(x, ei, ew))


@pytest.mark.parametrize(
    ("edge_index", "edge_weight", "match"),
    [
        (torch.tensor([[0, 1], [1, N]]), None, "outside"),  # node id >= N
        (torch.tensor([[0, 1], [1, 2]]), torch.ones(3), "edge_weight"),
        (torch.ones(N + 1, N + 1), None, "adjacency is"),  # wrong-size dense adjacency
        (torch.tensor([[0, 1, 2]]), None, r"\[2, E\]"),
    ],
)
@pytest.mark.parametrize("make", GRAPH_LAYERS[:3])
def test_graph_layers_reject_bad_graphs(make, edge_index, edge_weight, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()(torch.randn(2, N, 3), edge_index, edge_weight)
