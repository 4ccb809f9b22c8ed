"""The graph layers' contract: what a PyTorch Geometric user relies on, one test per promise.

For every public graph layer (``GraphConv``, ``ChebGraphConv``, ``DiffusionConv``, ``DCGRUCell``
and, where the graph enters, ``GraphWaveNetLayer``): every graph layout gives the same numbers
(``edge_index`` with and without weights, dense, ``torch.sparse`` COO / CSR, a PyG ``Data``'s
``edge_attr``), in float32 and float64; a PyG ``Batch`` gives each graph what it gets alone;
gradients (first and second order) reach ``x``, ``edge_weight`` and a learnable dense adjacency;
``torch.func`` transforms work; Chebyshev / diffusion filters are accurate for large ``K``;
a cached layer never serves an operator of a changed graph; results are permutation
equivariant and agree with PyG's ``ChebConv`` / ``GCNConv``; ``torch.compile`` equals eager and
``torch.jit.trace`` refuses to bake a graph in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.autograd import gradcheck, gradgradcheck
from torch_geometric.data import Batch, Data

from stgnn.nn import (
    ChebGraphConv,
    DCGRUCell,
    DiffusionConv,
    GraphConv,
    GraphWaveNetLayer,
    graph_ops,
    to_dense_adjacency,
)

pytestmark = pytest.mark.usefixtures("single_thread")

N = 6
# an undirected weighted ring with two chords, no self-loops
_SRC = [0, 1, 2, 3, 4, 5, 0, 2]
_DST = [1, 2, 3, 4, 5, 0, 3, 5]
EDGE_INDEX = torch.tensor([_SRC + _DST, _DST + _SRC])
_W = [0.5, 1.0, 2.0, 0.7, 1.3, 0.9, 0.4, 1.6]
EDGE_WEIGHT = torch.tensor(_W + _W, dtype=torch.float64)

# name -> factory; every layer maps [..., N, 3] -> [..., N, 4]
LAYERS: dict[str, Callable[[], nn.Module]] = {
    "gcn": lambda: GraphConv(3, 4),
    "cheb": lambda: ChebGraphConv(3, 4, K=3),
    "cheb_K5": lambda: ChebGraphConv(3, 4, K=5),
    "diffusion": lambda: DiffusionConv(3, 4, K=2),
    "diffusion_K3_reference": lambda: DiffusionConv(3, 4, K=3, reference_compat=True),
    "dcgru": lambda: DCGRUCell(3, 4, K=2),
}
DTYPES = [torch.float32, torch.float64]


def make(name: str, dtype: torch.dtype = torch.float64, **kw: Any) -> nn.Module:
    torch.manual_seed(0)
    layer = LAYERS[name]().to(dtype)
    for k, v in kw.items():
        setattr(layer, k, v)
    return layer


def call(
    layer: nn.Module,
    x: Tensor,
    graph: Any,
    weight: Tensor | None = None,
    batch: Tensor | None = None,
    run: Callable[..., Tensor] | None = None,
) -> Tensor:
    """``layer``'s forward with the arguments its kind takes (through ``run``, e.g. a compiled layer)."""
    run = layer if run is None else run
    if isinstance(layer, DCGRUCell):
        # a state that is a per-node function of x (so batching / permuting x does the same to h)
        h = torch.tanh(x @ torch.linspace(-1, 1, 12, dtype=x.dtype).view(3, 4))
        return run(x, graph, weight, h=h)
    if isinstance(layer, ChebGraphConv):
        return run(x, graph, weight, batch=batch)
    return run(x, graph, weight)


def layouts(dtype: torch.dtype) -> dict[str, tuple[Any, Tensor | None]]:
    ew = EDGE_WEIGHT.to(dtype)
    dense = to_dense_adjacency(EDGE_INDEX, ew, N)
    data = Data(edge_index=EDGE_INDEX, edge_attr=ew.view(-1, 1), num_nodes=N)
    return {
        "edge_index+weight": (EDGE_INDEX, ew),
        "dense": (dense, None),
        "sparse_coo": (dense.to_sparse_coo(), None),
        "sparse_csr": (dense.to_sparse_csr(), None),
        "pyg_data": (data.edge_index, data.edge_attr),
        "int32_edge_index": (EDGE_INDEX.int(), ew),
    }


# ------------------------------------------------------------------------------ layouts
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LAYERS)
def test_every_graph_layout_gives_the_same_output(name, dtype):
    layer = make(name, dtype)
    x = torch.randn(2, 5, N, 3, dtype=dtype)
    want = call(layer, x, EDGE_INDEX, EDGE_WEIGHT.to(dtype))
    assert want.shape == (2, 5, N, 4) and want.dtype == dtype
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    for layout, (graph, weight) in layouts(dtype).items():
        torch.testing.assert_close(call(layer, x, graph, weight), want, **tol, msg=layout)
    # unweighted edge_index = all weights one
    torch.testing.assert_close(
        call(layer, x, EDGE_INDEX), call(layer, x, EDGE_INDEX, torch.ones(EDGE_INDEX.size(1), dtype=dtype)), **tol
    )


def test_sparse_tensor_adj_t_is_read_transposed():
    torch_sparse = pytest.importorskip("torch_sparse")
    layer = make("diffusion")
    x = torch.randn(2, N, 3, dtype=torch.float64)
    ei = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])  # directed: orientation matters
    ew = torch.rand(4, dtype=torch.float64)
    adj_t = torch_sparse.SparseTensor(row=ei[1], col=ei[0], value=ew, sparse_sizes=(N, N))
    torch.testing.assert_close(layer(x, adj_t), layer(x, ei, ew))


def test_matrix_graph_with_edge_weight_is_an_error():
    dense = to_dense_adjacency(EDGE_INDEX, EDGE_WEIGHT, N)
    with pytest.raises(ValueError, match="edge_weight must be None"):
        make("gcn")(torch.randn(N, 3, dtype=torch.float64), dense, EDGE_WEIGHT)


# ------------------------------------------------------------------------------ PyG Batch
def _two_graphs() -> list[Data]:
    g = torch.Generator().manual_seed(3)
    out = []
    for n, chord in ((N, False), (4, True)):
        src = torch.arange(n)
        dst = (src + 1) % n
        if chord:  # so that the graphs' spectra (lambda_max) differ
            src, dst = torch.cat([src, torch.tensor([0])]), torch.cat([dst, torch.tensor([2])])
        ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)  # undirected
        w = torch.rand(src.numel(), generator=g, dtype=torch.float64) + 0.2
        out.append(Data(edge_index=ei, edge_attr=torch.cat([w, w]).view(-1, 1), num_nodes=n))
    return out


@pytest.mark.parametrize("name", [*LAYERS, "gwnet_layer"])
def test_pyg_batch_gives_each_graph_its_own_result(name):
    graphs = _two_graphs()
    batch = Batch.from_data_list(graphs)
    if name == "gwnet_layer":
        torch.manual_seed(0)
        layer: nn.Module = GraphWaveNetLayer(3, 3, 4, adaptive=False, dropout=0.0).double().eval()
        x = torch.randn(2, 4, batch.num_nodes, 3, dtype=torch.float64)
        together = layer(x, batch.edge_index, batch.edge_attr)[0]
        alone = [layer(xs, g.edge_index, g.edge_attr)[0] for xs, g in zip(x.split([6, 4], dim=-2), graphs, strict=True)]
    else:
        layer = make(name)
        x = torch.randn(2, batch.num_nodes, 3, dtype=torch.float64)
        together = call(layer, x, batch.edge_index, batch.edge_attr, batch=batch.batch)
        parts = zip(x.split([6, 4], dim=-2), graphs, strict=True)
        alone = [call(layer, xs, g.edge_index, g.edge_attr) for xs, g in parts]
    torch.testing.assert_close(together, torch.cat(alone, dim=-2))


def test_chebyshev_batch_vector_errors():
    layer = make("cheb")
    x = torch.randn(N, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="batch must be an integer vector"):
        layer(x, EDGE_INDEX, batch=torch.zeros(N + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="edge joins two different graphs"):
        layer(x, EDGE_INDEX, batch=torch.tensor([0, 0, 0, 1, 1, 1]))


# ------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("name", [*LAYERS, "gwnet_layer"])
def test_learnable_dense_adjacency_gets_the_exact_gradient(name):
    torch.manual_seed(1)
    adj = nn.Parameter(torch.rand(5, 5, dtype=torch.float64) + 0.05)
    if name == "gwnet_layer":
        layer = GraphWaveNetLayer(3, 3, 4, adaptive=False, dropout=0.0).double().eval()
        x = torch.randn(1, 3, 5, 3, dtype=torch.float64, requires_grad=True)

        def f(x: Tensor, a: Tensor) -> Tensor:
            out, skip = layer(x, a)
            return out

    else:
        layer = make(name)
        x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)

        def f(x: Tensor, a: Tensor) -> Tensor:
            return call(layer, x, a)

    f(x, adj).square().sum().backward()
    assert adj.grad is not None and adj.grad.abs().sum() > 0
    assert gradcheck(f, (x, adj))


@pytest.mark.parametrize("name", LAYERS)
def test_edge_weight_gradients_first_and_second_order(name):
    layer = make(name)
    x = torch.randn(2, N, 3, dtype=torch.float64, requires_grad=True)
    # the two directions of an edge differ: max(W, W^T) (GCN, Chebyshev) has a kink at ties, where
    # the second derivative does not exist and finite differences blow up
    ew = (EDGE_WEIGHT * torch.linspace(0.8, 1.2, EDGE_WEIGHT.numel(), dtype=torch.float64)).requires_grad_()

    def f(x: Tensor, w: Tensor) -> Tensor:
        return call(layer, x, EDGE_INDEX, w)

    assert gradcheck(f, (x, ew))
    assert gradgradcheck(f, (x, ew))


@pytest.mark.parametrize("name", LAYERS)
def test_forward_mode_ad(name):
    layer = make(name)
    x = torch.randn(2, N, 3, dtype=torch.float64, requires_grad=True)
    ew = (EDGE_WEIGHT * torch.linspace(0.8, 1.2, EDGE_WEIGHT.numel(), dtype=torch.float64)).requires_grad_()
    assert gradcheck(
        lambda x, w: call(layer, x, EDGE_INDEX, w), (x, ew), check_forward_ad=True, check_backward_ad=False
    )


def test_chebyshev_lambda_max_none_gradient_is_exact_on_a_directed_graph():
    layer = ChebGraphConv(2, 2, K=3, lambda_max=None).double()
    ei = torch.tensor([[0, 1, 2, 3, 0], [1, 2, 3, 0, 2]])
    ew = torch.tensor([0.3, 1.2, 0.8, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 4, 2, dtype=torch.float64)
    assert gradcheck(lambda w: layer(x, ei, w), (ew,))


@pytest.mark.parametrize("name", LAYERS)
def test_node_with_only_zero_weight_edges_gets_finite_gradients(name):
    layer = make(name)
    ew = EDGE_WEIGHT.clone()
    ew[(EDGE_INDEX == 5).any(0)] = 0.0  # node 5 keeps its edges, all with weight 0
    ew.requires_grad_()
    x = torch.randn(2, N, 3, dtype=torch.float64, requires_grad=True)
    call(layer, x, EDGE_INDEX, ew).square().sum().backward()
    assert ew.grad is not None and x.grad is not None
    assert torch.isfinite(ew.grad).all() and torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------------ torch.func
@pytest.mark.parametrize("name", LAYERS)
def test_vmap_jacrev_and_grad(name):
    layer = make(name)
    xs = torch.randn(3, 2, N, 3, dtype=torch.float64)
    ew = EDGE_WEIGHT.clone()

    out = torch.func.vmap(lambda v: call(layer, v, EDGE_INDEX, ew))(xs)
    torch.testing.assert_close(out, torch.stack([call(layer, v, EDGE_INDEX, ew) for v in xs]))

    jac = torch.func.jacrev(lambda v: call(layer, v, EDGE_INDEX, ew))(xs[0])
    want = torch.autograd.functional.jacobian(lambda v: call(layer, v, EDGE_INDEX, ew), xs[0])
    torch.testing.assert_close(jac, want)

    g = torch.func.grad(lambda w: call(layer, xs[0], EDGE_INDEX, w).square().sum())(ew)
    w = ew.clone().requires_grad_()
    call(layer, xs[0], EDGE_INDEX, w).square().sum().backward()
    torch.testing.assert_close(g, w.grad)


# ------------------------------------------------------------------------------ large K
def _dense_reference_terms(kind: str, w: np.ndarray, order: int, x: np.ndarray) -> list[np.ndarray]:
    """float64 three-term recursion on dense operators built here from the formulas."""
    n = w.shape[0]
    if kind == "cheb":
        s = np.maximum(w, w.T)
        d = s.sum(1)
        dis = np.where(d > 0, d ** -0.5, 0.0)
        lap = np.eye(n) - dis[:, None] * s * dis[None, :]
        lam = min(np.linalg.eigvalsh(lap).max(), 2.0)
        ops = [2 * lap / lam - np.eye(n)]
    else:
        d_out, d_in = w.sum(1), w.sum(0)
        inv_out = np.divide(1.0, d_out, out=np.zeros_like(d_out), where=d_out > 0)
        inv_in = np.divide(1.0, d_in, out=np.zeros_like(d_in), where=d_in > 0)
        ops = [(w * inv_out[:, None]).T, (w.T * inv_in[:, None]).T]
    terms = [x]
    for op in ops:
        x0, x1 = x, op @ x
        terms.append(x1)
        for _ in range(2, order + 1):
            x0, x1 = x1, 2 * op @ x1 - x0
            terms.append(x1)
    return terms


@pytest.mark.parametrize("K", [2, 3, 4, 8, 16, 25])
@pytest.mark.parametrize("kind", ["cheb", "diffusion"])
def test_float32_filters_match_a_float64_recursion_for_large_K(kind, K):
    g = torch.Generator().manual_seed(0)
    n = 30
    ei = torch.randint(0, n, (2, 90), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    ei = torch.cat([ei, ei.flip(0)], 1)  # undirected
    ew = torch.rand(ei.size(1) // 2, generator=g, dtype=torch.float64) + 0.1
    ew = torch.cat([ew, ew])
    x = torch.randn(n, 8, 3, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    if kind == "cheb":
        layer: nn.Module = ChebGraphConv(3, 4, K=K, node_dim=0)
        weights = [layer.weight[k].double() for k in range(K)]
        order = K - 1
    else:
        layer = DiffusionConv(3, 4, K=K, node_dim=0)
        m = layer.num_matrices
        weights = [layer.weight.view(3, m, 4)[:, j].double() for j in range(m)]
        order = K
    out = layer(x.float(), ei, ew.float()).double()
    w = to_dense_adjacency(ei, ew, n).numpy()
    terms = _dense_reference_terms(kind, w, order, x.reshape(n, -1).numpy())
    ref = sum(torch.from_numpy(t).view(n, 8, 3) @ wk for t, wk in zip(terms, weights, strict=True))
    ref = ref + layer.bias.double()
    rel = (out - ref).norm() / ref.norm()
    assert rel < 1e-5, f"{kind} K={K}: relative error {rel:.2e}"


# ------------------------------------------------------------------------------ caching
def _stale_cases() -> dict[str, Callable[[Tensor, Tensor, np.ndarray], tuple[Tensor, Tensor]]]:
    def data_edit(ei: Tensor, ew: Tensor, arr: np.ndarray) -> tuple[Tensor, Tensor]:
        ew.data.mul_(torch.linspace(0.5, 2.0, ew.numel(), dtype=ew.dtype))  # invisible to the version counter
        return ei, ew

    def numpy_edit(ei: Tensor, ew: Tensor, arr: np.ndarray) -> tuple[Tensor, Tensor]:
        arr[:3] = 5.0  # ew shares this memory
        return ei, ew

    def equal_valued_new_tensor(ei: Tensor, ew: Tensor, arr: np.ndarray) -> tuple[Tensor, Tensor]:
        new = ew.clone()
        new[0] = 3.0  # an in-place edit of the tensor seen first ...
        ew.copy_(new)
        return ei, new.clone()  # ... then a new tensor with the same values

    def rewired_edge_index(ei: Tensor, ew: Tensor, arr: np.ndarray) -> tuple[Tensor, Tensor]:
        ei[1, 0] = 4  # in place, same number of edges
        return ei, ew

    return {
        "data_edit": data_edit,
        "numpy_edit": numpy_edit,
        "equal_valued_new_tensor": equal_valued_new_tensor,
        "rewired_edge_index": rewired_edge_index,
    }


@pytest.mark.parametrize("case", list(_stale_cases()))
@pytest.mark.parametrize("name", LAYERS)
def test_cached_layer_never_serves_a_changed_graph(name, case):
    layer = make(name, cached=True)
    fresh = make(name)  # same weights, no cache
    arr = EDGE_WEIGHT.numpy().copy()
    ei, ew = EDGE_INDEX.clone(), torch.from_numpy(arr)
    x = torch.randn(2, N, 3, dtype=torch.float64)
    torch.testing.assert_close(call(layer, x, ei, ew), call(fresh, x, ei, ew))
    ei, ew = _stale_cases()[case](ei, ew, arr)
    torch.testing.assert_close(call(layer, x, ei, ew), call(fresh, x, ei, ew))


def test_cached_layer_reuses_its_operators_for_an_unchanged_graph(monkeypatch):
    layer = make("diffusion", cached=True)
    x = torch.randn(2, N, 3, dtype=torch.float64)
    layer(x, EDGE_INDEX, EDGE_WEIGHT)
    built = []
    real = graph_ops.make_operator
    monkeypatch.setattr(graph_ops, "make_operator", lambda *a, **k: built.append(a[0]) or real(*a, **k))
    layer(x, EDGE_INDEX.clone(), EDGE_WEIGHT.clone())  # equal graph, new tensors: reused
    assert built == []
    layer(x, EDGE_INDEX, EDGE_WEIGHT * 2)
    assert built == ["random_walk", "reverse_random_walk"]
    uncached = make("diffusion")
    uncached(x, EDGE_INDEX, EDGE_WEIGHT)
    assert len(built) == 4  # cached=False (default) builds at every call


# ------------------------------------------------------------------------------ equivariance
@pytest.mark.parametrize("name", LAYERS)
def test_node_permutation_equivariance(name):
    layer = make(name)
    x = torch.randn(2, N, 3, dtype=torch.float64)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(2))
    inv = torch.argsort(perm)
    out = call(layer, x, EDGE_INDEX, EDGE_WEIGHT)
    out_p = call(layer, x[:, perm], inv[EDGE_INDEX], EDGE_WEIGHT)
    torch.testing.assert_close(out_p, out[:, perm])


# ------------------------------------------------------------------------------ PyG equivalence
@pytest.mark.parametrize("lambda_max", [2.0, 1.7, None])
def test_chebyshev_matches_pyg_chebconv(lambda_max):
    from torch_geometric.nn import ChebConv

    graphs = _two_graphs()
    batch = Batch.from_data_list(graphs)
    ours = ChebGraphConv(3, 4, K=4, lambda_max=lambda_max).double()
    ref = ChebConv(3, 4, K=4).double()
    with torch.no_grad():
        for k, lin in enumerate(ref.lins):
            lin.weight.copy_(ours.weight[k].t())
        ref.bias.copy_(ours.bias)
    x = torch.randn(batch.num_nodes, 3, dtype=torch.float64)
    ew = batch.edge_attr.view(-1)
    if lambda_max is None:  # ours computes it per graph; PyG takes it per graph as an input
        lam = []
        for g in graphs:
            w = to_dense_adjacency(g.edge_index, g.edge_attr.view(-1), g.num_nodes).numpy()
            d = w.sum(1)
            lam.append(np.linalg.eigvalsh(np.eye(len(d)) - w / np.sqrt(np.outer(d, d))).max())
        want = ref(x, batch.edge_index, ew, batch=batch.batch, lambda_max=torch.tensor(lam, dtype=torch.float64))
    else:
        want = ref(x, batch.edge_index, ew, batch=batch.batch, lambda_max=torch.tensor(lambda_max, dtype=torch.float64))
    torch.testing.assert_close(ours(x, batch.edge_index, ew, batch=batch.batch), want)


def test_graph_conv_matches_pyg_gcnconv():
    from torch_geometric.nn import GCNConv

    ours = GraphConv(3, 4).double()
    ref = GCNConv(3, 4).double()
    with torch.no_grad():
        ref.lin.weight.copy_(ours.weight.t())
        ref.bias.copy_(ours.bias)
    x = torch.randn(N, 3, dtype=torch.float64)
    torch.testing.assert_close(ours(x, EDGE_INDEX, EDGE_WEIGHT), ref(x, EDGE_INDEX, EDGE_WEIGHT))


def test_diffusion_matches_tsl_style_diffusion_on_an_undirected_graph():
    """tsl's ``DiffConv`` (root weight, ``k`` hops of the row-normalised adjacency per direction):
    on an undirected graph both directions are ``D^-1 W`` applied as ``P^T x`` and powers equal
    the K = 1 Chebyshev terms; K = 1 makes the two filter families identical."""
    layer = DiffusionConv(3, 4, K=1).double()
    x = torch.randn(N, 3, dtype=torch.float64)
    w = to_dense_adjacency(EDGE_INDEX, EDGE_WEIGHT, N)
    p = (w / w.sum(1, keepdim=True)).t()
    wm = layer.weight.view(3, 3, 4)  # [C, M, out], M = [x, S_f x, S_b x]
    want = x @ wm[:, 0] + (p @ x) @ wm[:, 1] + (p @ x) @ wm[:, 2] + layer.bias
    torch.testing.assert_close(layer(x, EDGE_INDEX, EDGE_WEIGHT), want)


# ------------------------------------------------------------------------------ compile / trace
@pytest.mark.slow
@pytest.mark.parametrize("name", ["gcn", "cheb", "diffusion", "dcgru"])
def test_compile_fullgraph_equals_eager_on_a_fixed_graph(name):
    layer = make(name, torch.float32, cached=True)
    ew = EDGE_WEIGHT.float()
    x = torch.randn(2, N, 3)
    eager = call(layer, x, EDGE_INDEX, ew)  # builds the operators (eager, once)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True)
    torch.testing.assert_close(call(layer, x, EDGE_INDEX, ew, run=compiled), eager)


@pytest.mark.slow
def test_compile_without_cached_operators_raises_a_clear_error():
    layer = make("gcn", torch.float32)
    torch._dynamo.reset()
    with pytest.raises(Exception, match="cached=True"):
        torch.compile(layer, fullgraph=True)(torch.randn(N, 3), EDGE_INDEX, EDGE_WEIGHT.float())


@pytest.mark.parametrize("name", LAYERS)
def test_jit_trace_refuses_to_bake_in_the_graph(name):
    layer = make(name, torch.float32)
    with pytest.raises(RuntimeError, match="torch.compile"):
        torch.jit.trace(lambda x, ei, ew: call(layer, x, ei, ew), (torch.randn(N, 3), EDGE_INDEX, EDGE_WEIGHT.float()))


# ------------------------------------------------------------------------------ the rest
def test_repr_shows_the_settings():
    assert repr(GraphConv(3, 4)) == "GraphConv(3, 4, bias=True, cached=False)"
    assert repr(ChebGraphConv(3, 4, K=3, cached=True)) == (
        "ChebGraphConv(3, 4, K=3, lambda_max=None, bias=True, cached=True)"
    )
    assert "K=2, bias=True, bidirectional=True, reference_compat=False, cached=False" in repr(DiffusionConv(3, 4, K=2))
    assert "3, 4, K=2, cached=False, bidirectional=True" in repr(DCGRUCell(3, 4))


def test_fast_products_match_the_plain_formulation_to_second_order():
    """The custom autograd Functions kept for speed against ``_gather_scatter`` (plain ops)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ew = EDGE_WEIGHT.clone().requires_grad_()
    for learn in (False, True):
        op = graph_ops.make_operator("random_walk", EDGE_INDEX, ew if learn else EDGE_WEIGHT)
        assert op.val.requires_grad == learn
        fast = graph_ops.propagate(op, x)
        plain = graph_ops._gather_scatter(op.row, op.col, op.val, x, N)
        torch.testing.assert_close(fast, plain)
        v = torch.randn(fast.shape, generator=g, dtype=torch.float64, requires_grad=True)
        inputs = (x, ew) if learn else (x,)
        g_fast = torch.autograd.grad((fast * v).sum(), inputs, create_graph=True)
        g_plain = torch.autograd.grad((plain * v).sum(), inputs, create_graph=True)
        for a, b in zip(g_fast, g_plain, strict=True):
            torch.testing.assert_close(a, b)
        # second order: d/d(v, x, ew) of <grad, u>
        u = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in g_fast]
        wrt = (v, *inputs)
        gg_fast = torch.autograd.grad(
            sum((t * c).sum() for t, c in zip(g_fast, u, strict=True)), wrt, allow_unused=True, retain_graph=True
        )
        gg_plain = torch.autograd.grad(
            sum((t * c).sum() for t, c in zip(g_plain, u, strict=True)), wrt, allow_unused=True
        )
        for a, b in zip(gg_fast, gg_plain, strict=True):
            if a is None or b is None:
                assert a is None and b is None
            else:
                torch.testing.assert_close(a, b)


def test_dcrnn_training_step_under_bfloat16_autocast():
    from stgnn.metrics import masked_mae_loss
    from stgnn.models import ModelSpec
    from stgnn.models.dcrnn import DCRNN

    torch.manual_seed(0)
    model = DCRNN(ModelSpec(N, 2, 1, 12, 3), hidden_channels=8)
    x = torch.randn(2, 12, N, 2)
    y = torch.rand(2, 3, N, 1) + 0.5
    ew = EDGE_WEIGHT.float()
    loss32 = masked_mae_loss(model(x, EDGE_INDEX, ew), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16 = masked_mae_loss(model(x, EDGE_INDEX, ew), y)
    loss16.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert abs(loss16.item() - loss32.item()) < 0.02 * loss32.item()  # bfloat16: ~3 significant digits


@pytest.mark.parametrize("dense_max", [0, 1024])
def test_both_plain_products_equal_the_sparse_kernel(monkeypatch, dense_max):
    """Under torch.func (and torch.compile) ``propagate`` uses plain operations: a dense product up to
    ``PLAIN_DENSE_MAX_NODES`` nodes, gather + index_add above.  Both give the sparse kernel's
    output and gradients (first order, w.r.t. ``x`` and the edge weights)."""
    import stgnn.nn.graph_ops as graph_ops

    monkeypatch.setattr(graph_ops, "PLAIN_DENSE_MAX_NODES", dense_max)
    gen = torch.Generator().manual_seed(0)
    n = 30
    ei = torch.randint(0, n, (2, 120), generator=gen)
    w = torch.rand(120, generator=gen, dtype=torch.float64)
    x = torch.randn(n, 7, dtype=torch.float64, generator=gen)

    def product(x: Tensor, w: Tensor) -> Tensor:
        return graph_ops.propagate(graph_ops.make_operator("random_walk", ei, w, n), x)

    eager = product(x, w)  # the CSR kernel
    via_vmap = torch.func.vmap(product, in_dims=(0, None))(x.unsqueeze(0).expand(3, -1, -1), w)
    torch.testing.assert_close(via_vmap, eager.expand(3, -1, -1))
    jac_x, jac_w = torch.func.jacrev(product, argnums=(0, 1))(x, w)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    rows = [torch.autograd.grad(product(xr, wr).reshape(-1)[i], (xr, wr)) for i in range(0, n * 7, 17)]
    for k, i in enumerate(range(0, n * 7, 17)):
        torch.testing.assert_close(jac_x.reshape(n * 7, n, 7)[i], rows[k][0])
        torch.testing.assert_close(jac_w.reshape(n * 7, -1)[i], rows[k][1])
