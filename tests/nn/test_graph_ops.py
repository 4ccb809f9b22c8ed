"""Graph operators against dense numpy re-derivations of the reference formulas."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from stgnn.nn import graph_ops
from stgnn.nn.graph_ops import (
    diffusion_series,
    get_operator,
    make_operator,
    propagate,
    to_dense_adjacency,
    to_edge_index,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def directed_graph(n: int = 9, seed: int = 0) -> np.ndarray:
    """Directed weighted adjacency with self-loops, an isolated sink and asymmetric weights."""
    rng = np.random.default_rng(seed)
    w = (rng.random((n, n)) < 0.35) * rng.uniform(0.1, 1.0, (n, n))
    np.fill_diagonal(w, 1.0)
    w[-1, :] = 0.0  # node n-1 has no out-edges (zero out-degree)
    w[:, 0] = 0.0  # node 0 has no in-edges (zero in-degree)
    return w


# ---- dense numpy re-derivations of the reference formulas --------------------------------
def rw(w: np.ndarray) -> np.ndarray:
    """DCRNN ``calculate_random_walk_matrix`` / Graph WaveNet ``asym_adj``: D^-1 W (row-normalised)."""
    d = w.sum(1)
    dinv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    return dinv[:, None] * w


def scaled_laplacian(w: np.ndarray, lam: float | None = None) -> np.ndarray:
    """hazdzz/STGCN ``calc_gso(sym_norm_lap)`` + ``calc_chebynet_gso``."""
    s = np.maximum(w, w.T)
    d = s.sum(1)
    dis = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
    lap = np.eye(len(w)) - dis[:, None] * s * dis[None, :]
    if lam is None:
        lam = float(np.linalg.norm(lap, 2))
        if lam >= 2:
            lam = 2.0
    return 2 * lap / lam - np.eye(len(w))


def renormalized(w: np.ndarray) -> np.ndarray:
    """hazdzz/STGCN ``calc_gso(sym_renorm_adj)``."""
    s = np.maximum(w, w.T) + np.eye(len(w))
    dis = 1.0 / np.sqrt(s.sum(1))
    return dis[:, None] * s * dis[None, :]


@pytest.fixture()
def graph() -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    w = directed_graph()
    ei, ew = to_edge_index(torch.from_numpy(w))
    return w, ei, ew


def dense(op: torch.Tensor) -> np.ndarray:
    return op.to_dense().numpy()


def test_dcrnn_supports_match_reference_formula(graph):
    w, ei, ew = graph
    n = len(w)
    # DCRNN: supports = [rw(adj).T, rw(adj.T).T], applied as support @ x
    fwd = make_operator("random_walk", ei, ew, n, dtype=torch.float64)
    bwd = make_operator("reverse_random_walk", ei, ew, n, dtype=torch.float64)
    np.testing.assert_allclose(dense(fwd), rw(w).T, atol=1e-12)
    np.testing.assert_allclose(dense(bwd), rw(w.T).T, atol=1e-12)


def test_graph_wavenet_nconv_convention(graph):
    w, ei, ew = graph
    n = len(w)
    x = np.random.default_rng(1).normal(size=(2, 3, n, 4))  # [batch, channel, node, time]
    xt = torch.from_numpy(x).permute(2, 0, 1, 3)  # node-leading
    for kind, a in (("random_walk", rw(w)), ("reverse_random_walk", rw(w.T))):
        ref = np.einsum("ncvl,vw->ncwl", x, a)  # Graph WaveNet nconv(x, asym_adj(.))
        op = make_operator(kind, ei, ew, n, dtype=torch.float64)  # type: ignore[arg-type]
        ours = propagate(op, xt).permute(1, 2, 0, 3).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_scaled_laplacian_and_renormalized_match_hazdzz(graph):
    w, ei, ew = graph
    n = len(w)
    lap = make_operator("scaled_laplacian", ei, ew, n, dtype=torch.float64)
    np.testing.assert_allclose(dense(lap), scaled_laplacian(w), atol=1e-9)
    lap2 = make_operator("scaled_laplacian", ei, ew, n, lambda_max=2.0, dtype=torch.float64)
    np.testing.assert_allclose(dense(lap2), scaled_laplacian(w, 2.0), atol=1e-12)
    ren = make_operator("renormalized_adjacency", ei, ew, n, dtype=torch.float64)
    np.testing.assert_allclose(dense(ren), renormalized(w), atol=1e-12)


def test_lambda_max_large_graph_uses_arpack():
    rng = np.random.default_rng(3)
    n = 120
    w = (rng.random((n, n)) < 0.05) * rng.random((n, n))
    ei, ew = to_edge_index(torch.from_numpy(w))
    lap = make_operator("scaled_laplacian", ei, ew, n, dtype=torch.float64)
    np.testing.assert_allclose(dense(lap), scaled_laplacian(w), atol=1e-8)


def test_conversions_agree_dense_numpy_scipy():
    w = directed_graph()
    a = to_edge_index(torch.from_numpy(w).float())
    b = to_edge_index(w)
    c = to_edge_index(sp.csr_matrix(w))
    for ei, ew in (b, c):
        assert torch.equal(ei, a[0])
        assert ew.dtype == torch.float64  # the input's dtype is kept
        torch.testing.assert_close(ew.float(), a[1])
    np.testing.assert_allclose(to_dense_adjacency(*a, num_nodes=len(w)).numpy(), w, rtol=1e-6)


def test_duplicate_edges_are_summed():
    ei = torch.tensor([[0, 0, 1], [1, 1, 0]])
    ew = torch.tensor([1.0, 2.0, 4.0])
    op = make_operator("random_walk", ei, ew, 2)
    # W[0,1] = 3 (summed), d_out(0) = 3, W[1,0] = 4, d_out(1) = 4
    assert dense(op).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    torch.testing.assert_close(to_dense_adjacency(ei, ew, 2), torch.tensor([[0.0, 3.0], [4.0, 0.0]]))


def test_diffusion_series_modes_against_numpy(graph):
    w, ei, ew = graph
    n = len(w)
    ops = [
        make_operator(k, ei, ew, n, dtype=torch.float64)  # type: ignore[arg-type]
        for k in ("random_walk", "reverse_random_walk")
    ]
    sf, sb = rw(w).T, rw(w.T).T
    x = np.random.default_rng(2).normal(size=(n, 5))
    xt = torch.from_numpy(x)
    got = {m: [t.numpy() for t in diffusion_series(xt, ops, 3, m)] for m in ("power", "chebyshev", "dcrnn_reference")}
    power = [x, sf @ x, sf @ sf @ x, sf @ sf @ sf @ x, sb @ x, sb @ sb @ x, sb @ sb @ sb @ x]
    cheb = [x]
    for s in (sf, sb):
        t0, t1 = x, s @ x
        cheb += [t1]
        for _ in range(2):
            t0, t1 = t1, 2 * s @ t1 - t0
            cheb.append(t1)
    # reference recursion, written out: x0 carries over between supports
    ref = [x]
    x0 = x
    for s in (sf, sb):
        x1 = s @ x0
        ref.append(x1)
        for _ in range(2, 4):
            x2 = 2 * s @ x1 - x0
            ref.append(x2)
            x1, x0 = x2, x1
    for mode, want in (("power", power), ("chebyshev", cheb), ("dcrnn_reference", ref)):
        assert len(got[mode]) == 7
        for a, b in zip(got[mode], want, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-10, err_msg=mode)
    assert not np.allclose(got["chebyshev"][4], got["dcrnn_reference"][4])


def test_operator_cache_is_explicit():
    """Without a cache every call rebuilds; an OperatorCache reuses (static graph promised)."""
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    ew = torch.tensor([1.0, 2.0, 3.0])
    assert get_operator("random_walk", ei, ew, 3) is not get_operator("random_walk", ei, ew, 3)
    cache = graph_ops.OperatorCache()
    a = get_operator("random_walk", ei, ew, 3, cache=cache)
    assert get_operator("random_walk", ei, ew, 3, cache=cache) is a
    assert get_operator("reverse_random_walk", ei, ew, 3, cache=cache) is not a
    assert get_operator("random_walk", ei, ew, 3, dtype=torch.float64, cache=cache) is not a
    assert len(cache) == 3
    cache.clear()
    assert len(cache) == 0
    # a graph that requires grad is never cached
    learn = ew.clone().requires_grad_()
    assert get_operator("random_walk", ei, learn, 3, cache=cache).val.requires_grad
    assert len(cache) == 0


def test_learnable_edge_weights_get_gradients():
    ei = torch.tensor([[0, 1, 2, 0], [1, 2, 0, 2]])
    ew = torch.rand(4, requires_grad=True)
    op = get_operator("reverse_random_walk", ei, ew, 3)
    propagate(op, torch.randn(3, 4)).pow(2).sum().backward()
    assert ew.grad is not None and ew.grad.abs().sum() > 0


def test_pyg_edge_attr_column_accepted():
    ei = torch.tensor([[0, 1], [1, 0]])
    a = get_operator("random_walk", ei, torch.tensor([[2.0], [3.0]]), 2)
    b = get_operator("random_walk", ei, torch.tensor([2.0, 3.0]), 2)
    torch.testing.assert_close(a.to_dense(), b.to_dense())


@pytest.mark.parametrize(
    ("edge_index", "edge_weight", "match"),
    [
        (torch.tensor([0, 1]), None, r"\[2, E\]"),
        (torch.tensor([[0, 5], [1, 0]]), None, "outside"),
        (torch.tensor([[0, 1], [1, 0]]), torch.ones(3), "edge_weight"),
        (torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), None, r"\[2, E\]"),
    ],
)
def test_bad_graph_inputs(edge_index, edge_weight, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make_operator("random_walk", edge_index, edge_weight, 3)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown operator kind"):
        make_operator("laplacian", torch.tensor([[0], [1]]), None, 2)  # type: ignore[arg-type]


def test_value_gradient_spmm_matches_dense_gradcheck():
    """The custom O(E F) backward (learned weights, top-k adaptive adjacency) is exact."""
    g = torch.Generator().manual_seed(0)
    n = 6
    ei = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 2], [1, 2, 3, 4, 5, 0, 3, 5]])
    ew = torch.rand(ei.size(1), generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def f(ew: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        op = get_operator("random_walk", ei, ew, n)
        assert op.val.requires_grad
        return propagate(op, x)

    assert torch.autograd.gradcheck(f, (ew, x))
    # and equals autograd through a dense construction of the same operator
    w = torch.zeros(n, n, dtype=torch.float64).index_put((ei[0], ei[1]), ew)
    dense = (w / w.sum(1, keepdim=True).clamp_min(1e-300)).t()
    torch.testing.assert_close(f(ew, x), dense @ x)
