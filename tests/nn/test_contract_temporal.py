"""The contract of the temporal layers and the blocks, as a PyTorch Geometric user relies on it.

For every public temporal layer (``ChannelAlign``, ``GatedTemporalConv``, ``GatedTCN``,
``NodeLayerNorm``, ``Dropout``) and block (``STConvBlock``, ``GraphWaveNetLayer``):

* shapes and dtypes in float32 and float64, and a ``__repr__`` that shows the settings;
* first- and second-order gradients (``gradcheck`` / ``gradgradcheck`` in float64, with respect
  to the input and every parameter), forward-mode AD;
* ``torch.func``: ``vmap`` over an extra batch axis equals the batched call, ``grad`` and
  ``jacrev`` equal autograd;
* node-permutation equivariance (layers without per-node parameters);
* a PyG ``Batch`` (disjoint union of graphs) gives each graph the result it gets alone;
* bad input raises an error naming the problem.

The graph layers' own contract is in ``test_contract_graph.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, vmap
from torch_geometric.data import Batch, Data

from stgnn.nn import (
    AdaptiveAdjacency,
    ChannelAlign,
    Dropout,
    GatedTCN,
    GatedTemporalConv,
    GraphWaveNetLayer,
    NodeLayerNorm,
    STConvBlock,
    to_dense_adjacency,
)
from stgnn.nn.dropout import dropout

pytestmark = pytest.mark.usefixtures("single_thread")

N = 5


def ring(n: int = N, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A directed ring plus chords, positive weights."""
    g = torch.Generator().manual_seed(seed)
    src = torch.arange(n).repeat_interleave(2)
    dst = torch.stack([(torch.arange(n) + 1) % n, (torch.arange(n) + 2) % n], 1).reshape(-1)
    return torch.stack([src, dst]), torch.rand(2 * n, generator=g, dtype=torch.float64) + 0.1


@dataclass(frozen=True)
class Case:
    """One layer configuration: how to build it, call it, and what it promises."""

    name: str
    make: Callable[[], nn.Module]
    call: Callable[[nn.Module, Tensor, Tensor, Tensor], Tensor]  # (module, x, edge_index, edge_weight)
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    equivariant: bool = True
    repr_has: tuple[str, ...] = ()


def _gwn_call(m: nn.Module, x: Tensor, ei: Tensor, ew: Tensor) -> Tensor:
    out, skip = m(x, ei, ew)
    return torch.cat([out, skip[..., :3]], dim=-1)


CASES = [
    Case("align_pad", lambda: ChannelAlign(2, 4), lambda m, x, ei, ew: m(x), (2, 6, N, 2), (2, 6, N, 4),
         repr_has=("2, 4",)),
    Case("align_conv", lambda: ChannelAlign(4, 2), lambda m, x, ei, ew: m(x), (2, 6, N, 4), (2, 6, N, 2)),
    Case("glu_grow", lambda: GatedTemporalConv(2, 4, kernel_size=3), lambda m, x, ei, ew: m(x),
         (2, 6, N, 2), (2, 4, N, 4), repr_has=("2, 4", "kernel_size=3")),
    Case("glu_shrink", lambda: GatedTemporalConv(4, 3, kernel_size=2), lambda m, x, ei, ew: m(x),
         (2, 6, N, 4), (2, 5, N, 3)),
    Case("glu_time_dim", lambda: GatedTemporalConv(3, 3, kernel_size=3, time_dim=-2), lambda m, x, ei, ew: m(x),
         (N, 2, 6, 3), (N, 2, 4, 3), repr_has=("time_dim=-2",)),
    Case("tcn", lambda: GatedTCN(2, 3, kernel_size=2, dilation=2), lambda m, x, ei, ew: m(x),
         (2, 6, N, 2), (2, 4, N, 3), repr_has=("2, 3", "kernel_size=2", "dilation=2")),
    Case("tcn_single_step", lambda: GatedTCN(2, 3, kernel_size=3), lambda m, x, ei, ew: m(x),
         (2, 3, N, 2), (2, 1, N, 3)),
    Case("norm_per_node", lambda: NodeLayerNorm(N, 3), lambda m, x, ei, ew: m(x), (2, 4, N, 3), (2, 4, N, 3),
         equivariant=False, repr_has=(f"num_nodes={N}", "channels=3")),
    Case("norm_shared", lambda: NodeLayerNorm(None, 3), lambda m, x, ei, ew: m(x), (2, 4, N, 3), (2, 4, N, 3)),
    Case("dropout_eval", lambda: Dropout(0.3).eval(), lambda m, x, ei, ew: m(x), (2, 4, N, 3), (2, 4, N, 3),
         repr_has=("p=0.3",)),
    Case("stconv_cheb", lambda: STConvBlock(2, 4, 3, 4, num_nodes=N, kernel_size=2, K=3),
         lambda m, x, ei, ew: m(x, ei, ew), (2, 5, N, 2), (2, 3, N, 4), equivariant=False,
         repr_has=(f"num_nodes={N}",)),
    Case("stconv_first_order", lambda: STConvBlock(2, 4, 3, 4, kernel_size=2, graph_conv="first_order"),
         lambda m, x, ei, ew: m(x, ei, ew), (2, 5, N, 2), (2, 3, N, 4)),
    Case("gwnet_layer", lambda: GraphWaveNetLayer(3, 4, 6, dilation=2, adaptive=False, dropout=0.0).eval(),
         _gwn_call, (2, 5, N, 3), (2, 3, N, 6), repr_has=("order=2", "adaptive=False")),
    Case("gwnet_layer_no_gcn", lambda: GraphWaveNetLayer(3, 4, 6, gcn=False, adaptive=False).eval(),
         _gwn_call, (2, 5, N, 3), (2, 4, N, 6)),
]
IDS = [c.name for c in CASES]


def build(case: Case, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(0)
    m = case.make().double()
    with torch.no_grad():  # non-trivial affine parameters (ones / zeros would hide mistakes)
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.to(dtype)


def inputs(case: Case, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    ei, ew = ring()
    return torch.randn(case.in_shape, generator=g, dtype=torch.float64).to(dtype), ei, ew.to(dtype)




@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_shape_dtype_repr(case: Case, dtype: torch.dtype) -> None:
    m = build(case, dtype)
    x, ei, ew = inputs(case, dtype)
    out = case.call(m, x, ei, ew)
    assert out.shape == case.out_shape and out.dtype == dtype
    assert torch.isfinite(out).all()
    text = repr(m)
    for part in case.repr_has:
        assert part in text, (part, text)
    # float32 agrees with float64
    m64 = build(case, torch.float64)
    x64, _, ew64 = inputs(case, torch.float64)
    torch.testing.assert_close(out.double(), case.call(m64, x64, ei, ew64), atol=1e-5, rtol=1e-4)


class Bound(nn.Module):
    """``case.call`` on a fixed graph as a one-input module (for ``functional_call``)."""

    def __init__(self, case: Case, m: nn.Module, ei: Tensor, ew: Tensor) -> None:
        super().__init__()
        self.case, self.m, self.ei, self.ew = case, m, ei, ew

    def forward(self, x: Tensor) -> Tensor:
        return self.case.call(self.m, x, self.ei, self.ew)


def stateless(case: Case) -> tuple[Callable[..., Tensor], Tensor, tuple[Tensor, ...]]:
    """``f(x, *params)`` for ``case`` in float64, with its input and parameters."""
    x, ei, ew = inputs(case)
    bound = Bound(case, build(case), ei, ew)
    names = [n for n, _ in bound.named_parameters()]
    params = tuple(p.detach() for p in bound.parameters())

    def f(xx: Tensor, *ps: Tensor) -> Tensor:
        return functional_call(bound, dict(zip(names, ps, strict=True)), (xx,))

    return f, x, params


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck_and_gradgradcheck(case: Case) -> None:
    """First and second order, with respect to the input and every parameter (float64).

    ``fast_mode`` compares random projections of the analytical and numerical Jacobians (PyTorch's
    fast gradcheck): the same check in a fraction of the time of the full Jacobians.
    """
    f, x, params = stateless(case)
    args = tuple(t.clone().requires_grad_() for t in (x, *params))
    assert torch.autograd.gradcheck(f, args, fast_mode=True)
    assert torch.autograd.gradgradcheck(f, args, fast_mode=True)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_mode_ad(case: Case) -> None:
    f, x, params = stateless(case)
    args = tuple(t.clone().requires_grad_() for t in (x, *params))
    assert torch.autograd.gradcheck(f, args, check_forward_ad=True, check_backward_ad=False, fast_mode=True)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vmap_equals_batched_call(case: Case) -> None:
    """``vmap`` over an extra leading axis, and over stacked parameters (model ensembling)."""
    f, x, params = stateless(case)
    xs = torch.stack([x, x.flip(0), 2 * x])
    torch.testing.assert_close(vmap(lambda v: f(v, *params))(xs), torch.stack([f(v, *params) for v in xs]))
    if not params:
        return
    stacked = tuple(torch.stack([p, 1.5 * p]) for p in params)
    got = vmap(lambda *ps: f(x, *ps))(*stacked)
    torch.testing.assert_close(got, torch.stack([f(x, *ps) for ps in zip(*stacked, strict=True)]))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_func_grad_and_jacrev_equal_autograd(case: Case) -> None:
    f, x, params = stateless(case)
    w = torch.randn(case.out_shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def loss(xx: Tensor, *ps: Tensor) -> Tensor:
        return (f(xx, *ps) * w).sum()

    argnums = tuple(range(1 + len(params)))
    got = grad(loss, argnums=argnums)(x, *params)
    leaves = tuple(t.clone().requires_grad_() for t in (x, *params))
    want = torch.autograd.grad(loss(*leaves), leaves)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    jac = jacrev(lambda xx: f(xx, *params))(x)  # [out..., in...]
    vjp_from_jac = jac.reshape(w.numel(), -1).t().mv(w.reshape(-1)).reshape(x.shape)
    torch.testing.assert_close(vjp_from_jac, want[0])


def _compiled_equals_eager(case: Case, backend: str) -> None:
    """Forward and gradients (input and parameters) of ``torch.compile(fullgraph=True)`` = eager,
    on a fixed graph: the graph convolutions are ``cached`` and their operators built by one eager
    call first (as for the graph layers)."""
    torch._dynamo.reset()
    m = build(case, torch.float32)
    for sub in m.modules():
        if hasattr(sub, "cached"):
            sub.cached = True
    x, ei, ew = inputs(case, torch.float32)
    bound = Bound(case, m, ei, ew)
    bound(x)
    compiled = torch.compile(bound, fullgraph=True, backend=backend)
    results = []
    for fn in (bound, compiled):
        xx = x.clone().requires_grad_()
        out = fn(xx)
        grads = torch.autograd.grad(out.square().sum(), [xx, *m.parameters()])
        results.append((out, grads))
    (out_e, grads_e), (out_c, grads_c) = results
    torch.testing.assert_close(out_c, out_e, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads_c, grads_e, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_compile_fullgraph_equals_eager(case: Case) -> None:
    """Traced by dynamo without a graph break, through AOT autograd (no code generation)."""
    _compiled_equals_eager(case, "aot_eager")


INDUCTOR_CASES = {"glu_shrink", "gwnet_layer_no_gcn", "norm_shared", "tcn"}


@pytest.mark.slow
@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES if c.name in INDUCTOR_CASES])
def test_compile_inductor_equals_eager(case: Case) -> None:
    """The default backend (generated C++ kernels, ~5-20 s per layer on 2 cores): one case per
    kind of temporal computation (the blocks with graph convolutions take ~50 s each here and are
    checked with ``aot_eager`` above)."""
    _compiled_equals_eager(case, "inductor")


@pytest.mark.parametrize("case", [c for c in CASES if c.equivariant], ids=[c.name for c in CASES if c.equivariant])
def test_node_permutation_equivariance(case: Case) -> None:
    m = build(case)
    x, ei, ew = inputs(case)
    nd = 0 if case.name == "glu_time_dim" else -2  # that case is [N, B, T, C]
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(N)
    out = case.call(m, x, ei, ew)
    out_p = case.call(m, x.index_select(nd % x.dim(), perm), inv[ei], ew)  # node perm[i] -> i
    torch.testing.assert_close(out_p, out.index_select(nd % out.dim(), perm))


# ----------------------------------------------------------------------------- graph layouts


GRAPH_CASES = [c for c in CASES if c.name in ("stconv_cheb", "stconv_first_order", "gwnet_layer")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", GRAPH_CASES, ids=[c.name for c in GRAPH_CASES])
def test_every_graph_layout_gives_the_same_output(case: Case, dtype: torch.dtype) -> None:
    """``edge_index`` + weights, dense, ``torch.sparse`` COO / CSR, a PyG ``Data``'s ``edge_attr
    [E, 1]`` and an int32 ``edge_index`` are the same graph to every block."""
    m = build(case, dtype)
    x, ei, ew = inputs(case, dtype)
    want = case.call(m, x, ei, ew)
    dense = to_dense_adjacency(ei, ew, N)
    data = Data(edge_index=ei, edge_attr=ew.view(-1, 1), num_nodes=N)
    layouts: dict[str, tuple[Tensor, Tensor | None]] = {
        "dense": (dense, None),
        "sparse_coo": (dense.to_sparse_coo(), None),
        "sparse_csr": (dense.to_sparse_csr(), None),
        "pyg_data": (data.edge_index, data.edge_attr),
        "int32_edge_index": (ei.int(), ew),
    }
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    for name, (graph, weight) in layouts.items():
        got = case.call(m, x, graph, weight)  # type: ignore[arg-type]
        torch.testing.assert_close(got, want, **tol, msg=name)


# ----------------------------------------------------------------------------- batched graphs


def two_graphs() -> tuple[Data, Data, Batch]:
    ei_a, ew_a = ring(4, seed=0)
    ei_b, ew_b = ring(6, seed=1)
    a = Data(edge_index=ei_a, edge_attr=ew_a, num_nodes=4)
    b = Data(edge_index=ei_b, edge_attr=ew_b, num_nodes=6)
    return a, b, Batch.from_data_list([a, b])


BATCH_LAYERS = {
    "norm_shared": lambda: NodeLayerNorm(None, 3),
    "stconv_first_order": lambda: STConvBlock(3, 4, 3, 3, kernel_size=2, graph_conv="first_order"),
    "stconv_cheb": lambda: STConvBlock(3, 4, 3, 3, kernel_size=2),  # lambda_max computed per graph
    "stconv_cheb_fixed_lambda": lambda: STConvBlock(3, 4, 3, 3, kernel_size=2, lambda_max=2.0),
    "gwnet_layer": lambda: GraphWaveNetLayer(3, 4, 6, adaptive=False).eval(),
    "gwnet_layer_adaptive": lambda: GraphWaveNetLayer(3, 4, 6, adaptive=True).eval(),
}


def _run_batched(name: str, m: nn.Module, x: Tensor, data: Data, batch: Tensor | None) -> Tensor:
    if name == "norm_shared":
        return m(x, batch)
    if name.startswith("stconv"):
        return m(x, data.edge_index, data.edge_attr, batch)
    adj = None
    if name == "gwnet_layer_adaptive":
        # a block-diagonal adaptive adjacency: each graph's own embeddings
        torch.manual_seed(5)
        blocks = [AdaptiveAdjacency(n, embedding_dim=3).double()() for n in (4, 6)]
        adj = torch.block_diag(*blocks) if batch is not None else blocks[0 if data.num_nodes == 4 else 1]
    out, skip = m(x, data.edge_index, data.edge_attr, adaptive_adj=adj)
    return torch.cat([out, skip], dim=-1)


@pytest.mark.parametrize("name", list(BATCH_LAYERS))
def test_pyg_batch_equals_each_graph_alone(name: str) -> None:
    torch.manual_seed(0)
    m = BATCH_LAYERS[name]().double()
    a, b, batch = two_graphs()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, 10, 3, generator=g, dtype=torch.float64)
    together = _run_batched(name, m, x, batch, batch.batch)
    alone = torch.cat([_run_batched(name, m, x[:, :, :4], a, None), _run_batched(name, m, x[:, :, 4:], b, None)], 2)
    torch.testing.assert_close(together, alone)


def test_node_layer_norm_batch_vector_is_what_makes_graphs_separate() -> None:
    """Without the batch vector the statistics mix the graphs (the reason it exists)."""
    x = torch.randn(2, 3, 10, 4, dtype=torch.float64)
    x[:, :, 4:] = 10 * x[:, :, 4:] + 3  # the second graph on another scale
    ln = NodeLayerNorm(None, 4).double()
    batch = torch.tensor([0] * 4 + [1] * 6)
    per_graph = ln(x, batch)
    assert not torch.allclose(per_graph, ln(x))
    torch.testing.assert_close(per_graph[:, :, :4], ln(x[:, :, :4]))
    # unsorted graph ids work too
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ln(x[:, :, perm], batch[perm]), per_graph[:, :, perm])


# ----------------------------------------------------------------------------- bad input


def test_node_layer_norm_names_the_sizes() -> None:
    ln = NodeLayerNorm(5, 3)
    with pytest.raises(ValueError, match=r"built for 5 nodes.*got 7"):
        ln(torch.randn(2, 7, 3))
    with pytest.raises(ValueError, match=r"built for 3 channels, got 4"):
        ln(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"batch must be an integer vector.*\[5\]"):
        ln(torch.randn(2, 5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="batch must be an integer vector"):
        ln(torch.randn(2, 5, 3), torch.zeros(5))
    # per-node parameters: a batch of two 5-node graphs is 10 nodes, not the 5 it was built for
    with pytest.raises(ValueError, match=r"built for 5 nodes.*got 10"):
        ln(torch.randn(2, 10, 3), torch.tensor([0] * 5 + [1] * 5))


def test_temporal_layers_name_bad_sizes() -> None:
    with pytest.raises(ValueError, match="expected 2 input channels, got 3"):
        GatedTCN(2, 4)(torch.randn(1, 5, 3, 3))
    with pytest.raises(ValueError, match="shorter than the receptive field 5"):
        GatedTCN(2, 4, kernel_size=3, dilation=2)(torch.randn(1, 4, 3, 2))
    with pytest.raises(ValueError, match="time_dim must not be the channel"):
        GatedTemporalConv(2, 4, time_dim=-1)(torch.randn(1, 5, 3, 2))


# ----------------------------------------------------------------------------- dropout


def test_dropout_is_exact_under_every_transform() -> None:
    """Linear in the input with a constant mask: all-order gradients, forward AD, vmap."""
    x = torch.randn(6, 40, dtype=torch.float64, requires_grad=True)
    for p in (0.3, 0.5):  # the uniform path and the fair-coin path

        def seeded(v: Tensor, p: float = p) -> Tensor:
            torch.manual_seed(0)
            return dropout(v, p) * v  # * v: a non-zero second derivative

        assert torch.autograd.gradcheck(seeded, (x,), check_forward_ad=True, fast_mode=True)
        assert torch.autograd.gradgradcheck(seeded, (x,), fast_mode=True)
        same = vmap(lambda v, p=p: dropout(v, p), randomness="same")(torch.ones(3, 200, dtype=torch.float64))
        assert (same == same[0]).all() and (same[0] == 0).any()
        different = vmap(lambda v, p=p: dropout(v, p), randomness="different")(torch.ones(3, 200))
        assert not (different == different[0]).all()
        kept = different[different != 0]
        torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))
