"""Graph operators: every support / normalisation the layers use, in one place.

Convention
----------
The public graph interface is PyG's: ``edge_index [2, E]`` with row 0 the *source* and row 1
the *target*, and optional ``edge_weight [E]``.  Edge ``i -> j`` with weight ``w`` is the entry
``W[i, j] = w`` of the weighted adjacency ``W`` (duplicate edges are summed).  A dense ``[N, N]``
floating-point adjacency ``W`` is accepted wherever ``edge_index`` is (see :func:`to_edge_index`).

An *operator* ``P`` returned here is an ``[N, N]`` matrix applied to node features by
``P @ x`` with ``x`` node-leading (``[N, ...]``), i.e. ``(P x)[j] = sum_i P[j, i] x[i]``.
For directed graphs this fixes how the reference implementations' formulas map onto ours:

=============================  ===============================================================
operator                       formula (``W`` = weighted adjacency, ``d_out = W 1``, ``d_in = W^T 1``)
=============================  ===============================================================
``"random_walk"``              ``(D_out^-1 W)^T``: ``(P x)[j] = sum_i W[i,j] / d_out(i) x[i]``.
                               DCRNN's support ``calculate_random_walk_matrix(adj).T`` and Graph
                               WaveNet's ``nconv(x, asym_adj(adj))`` (einsum ``ncvl,vw->ncwl``).
``"reverse_random_walk"``      ``(D_in^-1 W^T)^T = W D_in^-1``: ``(P x)[i] = sum_j W[i,j] / d_in(j) x[j]``.
                               DCRNN's ``calculate_random_walk_matrix(adj.T).T`` and Graph
                               WaveNet's ``nconv(x, asym_adj(adj.T))``.
``"scaled_laplacian"``         ``2 L / lambda_max - I`` with ``L = I - D^-1/2 S D^-1/2`` and
                               ``S = max(W, W^T)`` (elementwise).  STGCN (hazdzz/STGCN
                               ``calc_gso(adj, "sym_norm_lap")`` + ``calc_chebynet_gso``).
``"renormalized_adjacency"``   ``D~^-1/2 (S + I) D~^-1/2`` with ``S = max(W, W^T)`` and ``D~`` the
                               degrees of ``S + I`` (Kipf & Welling's renormalisation trick;
                               hazdzz/STGCN ``calc_gso(adj, "sym_renorm_adj")``).  ``I`` is added
                               even where ``W`` already has self-loops, as the reference does.
=============================  ===============================================================

Zero degrees give zero rows (``1/0 -> 0``), as in every reference.

``lambda_max`` of the scaled Laplacian: ``None`` computes the largest eigenvalue (ARPACK
``eigsh``; hazdzz/STGCN uses the spectral norm ``scipy.sparse.linalg.norm(L, 2)``, the same number
for the symmetric positive semi-definite ``L``; VeritasYin/STGCN_IJCAI-18 also computes it) and,
like hazdzz, uses ``2`` when the estimate reaches ``2``.  A float uses that value (``2.0`` is the
bound every normalised Laplacian satisfies, PyG's ``ChebConv`` default).

Sparse product
--------------
All products go through :func:`propagate`, which multiplies a ``torch.sparse_csr`` operator with a
node-leading 2-D view ``[N, F]`` (``F`` = batch x time x channels) using PyTorch's native CSR
kernel (``torch.sparse.mm(A, x, "sum")``; MKL's ``torch.sparse.mm(A, x)`` off the CPU).  Measured
on this project's shared 2-core CPU (torch 2.13, one intra-op thread, random graphs with
``E ~ 8N``, best of 5 after a warm-up; ``python experiments/parity.py --bench-spmm --threads 1``
reruns it), milliseconds forward / forward+backward w.r.t. ``x``::

    N      F       dense mm       gather+index_add  COO            CSR (MKL)      CSR (native, chosen)
    207    1024    1.04 /  2.22   1.15 /  2.80      0.14 / 0.77    0.15 / 1.00    0.13 / 0.31
    207    4224    3.78 /  8.16   6.09 / 21.4       0.49 / 2.93    0.58 / 1.88    0.42 / 1.31
    207    26624   29.4 /  62.5   183  /  301       5.99 / 21.7    6.84 / 16.8    5.53 / 13.7
    2000   6656     587 /  1154   516  / 1013       25.7 / 88.8    24.8 / 78.6    43.9 / 56.4
    10000  1536       -             -               76.2 /  208    62.4 /  183    42.5 /  159

The native CSR kernel is the fastest forward+backward at every size, including METR-LA's 207
nodes, so fixed supports have no dense path.  Its own backward re-sorts ``A^T`` at every call;
:func:`propagate` uses a custom backward with the transpose cached per operator instead (the
operators are cached, see below).  :func:`diffusion_basis` gives the diffusion features as plain
products ``S^k x`` plus the constant change of basis to the recursions' terms, so that a layer
can fold the recursion's ``2 S x_{k-1} - x_{k-2}`` into its weight (no element-wise passes).
The learned adaptive adjacency of Graph WaveNet is
dense by definition and uses ``torch.mm``.  Layers keep features node-leading internally
(constructor argument ``node_dim``) because moving the node axis in and out costs about twice
the product itself (N=207, F=26624, 2 threads: 5.4 ms product, 16.3 ms with the two permutes).

Caching
-------
:func:`get_operator` caches operators per graph: first by the identity (and in-place version
counter) of the ``edge_index`` / ``edge_weight`` tensors, then by exact content, so a graph
passed again as a new tensor (``data.to(device)`` every step) is still found.  An
``edge_weight`` that requires grad (learned edge weights, grad mode on) bypasses the cache and
gets a differentiable COO operator.
"""

from __future__ import annotations

import functools
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = [
    "DiffusionMode",
    "OperatorKind",
    "clear_operator_cache",
    "diffusion_basis",
    "diffusion_coefficients",
    "diffusion_series",
    "get_operator",
    "largest_eigenvalue",
    "make_operator",
    "propagate",
    "to_dense_adjacency",
    "to_edge_index",
    "transpose_operator",
]

OperatorKind = Literal["random_walk", "reverse_random_walk", "scaled_laplacian", "renormalized_adjacency"]
DiffusionMode = Literal["power", "chebyshev", "dcrnn_reference"]
_KINDS: tuple[str, ...] = (
    "random_walk",
    "reverse_random_walk",
    "scaled_laplacian",
    "renormalized_adjacency",
)


# --------------------------------------------------------------------------- conversions
def to_edge_index(adj: Tensor | np.ndarray | sp.spmatrix | sp.sparray) -> tuple[Tensor, Tensor]:
    """Convert a weighted adjacency to ``(edge_index, edge_weight)``.

    Entry ``adj[i, j] != 0`` becomes edge ``i -> j`` (row 0 = source) with weight ``adj[i, j]``.

    Args:
        adj: Dense ``[N, N]`` tensor or array, or a scipy sparse matrix.

    Returns:
        ``edge_index [2, E]`` (int64, sorted by source then target) and ``edge_weight [E]``
        (the input's floating dtype, float32 for integer or boolean input; a tensor's device).

    Example:
        >>> ei, ew = to_edge_index(torch.tensor([[0.0, 2.0], [0.5, 0.0]]))
        >>> ei.tolist(), ew.tolist()
        ([[0, 1], [1, 0]], [2.0, 0.5])
    """
    if sp.issparse(adj):
        coo = sp.coo_matrix(adj)
        coo.sum_duplicates()
        coo.eliminate_zeros()
        ei = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
        data = np.asarray(coo.data)
        ew = torch.from_numpy(data if np.issubdtype(data.dtype, np.floating) else data.astype(np.float32))
        order = torch.argsort(ei[0] * max(coo.shape[0], 1) + ei[1])
        return ei[:, order], ew[order]
    t = adj if isinstance(adj, Tensor) else torch.as_tensor(np.asarray(adj))
    if not t.is_floating_point():
        t = t.float()
    if t.dim() != 2 or t.size(0) != t.size(1):
        raise ValueError(f"adjacency must be square [N, N], got shape {tuple(t.shape)}")
    ei = t.nonzero().t().contiguous()
    return ei, t[ei[0], ei[1]]


def to_dense_adjacency(edge_index: Tensor, edge_weight: Tensor | None = None, num_nodes: int | None = None) -> Tensor:
    """Dense ``W [N, N]`` with ``W[i, j]`` the summed weight of edges ``i -> j``.

    Args:
        edge_index: ``[2, E]``.
        edge_weight: ``[E]`` or ``None`` (ones).
        num_nodes: ``N``; ``max(edge_index) + 1`` when ``None``.

    Example:
        >>> to_dense_adjacency(torch.tensor([[0], [1]]), num_nodes=2).tolist()
        [[0.0, 1.0], [0.0, 0.0]]
    """
    n = int(edge_index.max()) + 1 if num_nodes is None else num_nodes
    w = _weights(edge_index, edge_weight, torch.get_default_dtype())
    out = torch.zeros(n, n, dtype=w.dtype, device=edge_index.device)
    return out.index_put_((edge_index[0], edge_index[1]), w, accumulate=True)


def _weights(edge_index: Tensor, edge_weight: Tensor | None, dtype: torch.dtype) -> Tensor:
    if edge_weight is None:
        return torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    return edge_weight


def _check_graph(edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int) -> Tensor | None:
    """Validate the graph inputs; return ``edge_weight`` as ``[E]`` (PyG ``edge_attr [E, 1]`` ok)."""
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must be [2, E], got shape {tuple(edge_index.shape)}")
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"edge_index must be an integer tensor, got {edge_index.dtype}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index has node ids outside [0, {num_nodes})")
    if edge_weight is None:
        return None
    if edge_weight.dim() == 2 and edge_weight.size(1) == 1:
        edge_weight = edge_weight.view(-1)
    if edge_weight.dim() != 1 or edge_weight.numel() != edge_index.size(1):
        raise ValueError(
            f"edge_weight must be [E] (or [E, 1]) with E={edge_index.size(1)}, got shape {tuple(edge_weight.shape)}"
        )
    if not edge_weight.is_floating_point():
        raise TypeError(f"edge_weight must be floating point, got {edge_weight.dtype}")
    return edge_weight


# ----------------------------------------------------------------------- sparse helpers
def _coalesce(
    row: Tensor, col: Tensor, val: Tensor, n: int, reduce: Literal["sum", "amax"] = "sum"
) -> tuple[Tensor, Tensor, Tensor]:
    """Sort by (row, col) and merge duplicates with ``reduce``."""
    key = row * n + col
    uniq, inv = torch.unique(key, sorted=True, return_inverse=True)
    if reduce == "sum":
        out = torch.zeros(uniq.numel(), dtype=val.dtype, device=val.device).index_add(0, inv, val)
    else:
        out = torch.full((uniq.numel(),), float("-inf"), dtype=val.dtype, device=val.device)
        out = out.scatter_reduce(0, inv, val, reduce="amax", include_self=True)
    return uniq // n, uniq % n, out


def _inv(deg: Tensor, power: float) -> Tensor:
    out = deg.pow(power)
    return torch.where(deg == 0, torch.zeros_like(out), out)


def _symmetrize_max(row: Tensor, col: Tensor, val: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """``S = max(W, W^T)`` elementwise (non-negative weights; a missing entry counts as 0)."""
    r = torch.cat([row, col])
    c = torch.cat([col, row])
    v = torch.cat([val, val])
    r, c, v = _coalesce(r, c, v, n, reduce="amax")
    # an edge present in one direction only gets max(w, 0)
    return r, c, v.clamp_min(0.0)


def largest_eigenvalue(row: Tensor, col: Tensor, val: Tensor, n: int) -> float:
    """Largest eigenvalue of a symmetric sparse matrix given as COO (CPU float64 ARPACK).

    Dense ``eigvalsh`` for ``n <= 64`` (ARPACK needs ``k < n``).
    """
    r = row.detach().cpu().numpy()
    c = col.detach().cpu().numpy()
    v = val.detach().cpu().double().numpy()
    mat = sp.coo_matrix((v, (r, c)), shape=(n, n)).tocsr()
    if n <= 64:
        return float(np.linalg.eigvalsh(mat.toarray()).max())
    from scipy.sparse.linalg import eigsh

    return float(eigsh(mat, k=1, which="LA", return_eigenvectors=False, tol=1e-10)[0])


def make_operator(
    kind: OperatorKind,
    edge_index: Tensor,
    edge_weight: Tensor | None,
    num_nodes: int,
    *,
    lambda_max: float | None = None,
    dtype: torch.dtype = torch.float32,
    layout: Literal["csr", "coo"] = "csr",
) -> Tensor:
    """Build (uncached) the ``[N, N]`` sparse operator ``kind`` of a graph.

    See the module docstring for the formulas and how they match the reference code.
    Normalisation runs in float64 (as the references' numpy code) and is cast to ``dtype``.

    Args:
        kind: ``"random_walk"``, ``"reverse_random_walk"``, ``"scaled_laplacian"`` or
            ``"renormalized_adjacency"``.
        edge_index: ``[2, E]``, row 0 = source.
        edge_weight: ``[E]`` or ``None`` (ones).
        num_nodes: ``N``.
        lambda_max: Scaled Laplacian only; ``None`` computes it (default).
        dtype: Values dtype.
        layout: ``"csr"`` (fast product) or ``"coo"`` (differentiable w.r.t. ``edge_weight``).

    Example:
        >>> ei = torch.tensor([[0, 1], [1, 2]])
        >>> make_operator("random_walk", ei, None, 3).to_dense().tolist()
        [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown operator kind {kind!r}; expected one of {_KINDS}")
    edge_weight = _check_graph(edge_index, edge_weight, num_nodes)
    n = num_nodes
    work = torch.float64 if edge_index.device.type == "cpu" else torch.float32
    src, dst = edge_index[0].long(), edge_index[1].long()
    w = _weights(edge_index, edge_weight, work).to(work)
    src, dst, w = _coalesce(src, dst, w, n)  # W[src, dst], duplicates summed
    if kind == "random_walk":
        d_out = torch.zeros(n, dtype=work, device=w.device).index_add(0, src, w)
        row, col, val = dst, src, w * _inv(d_out, -1.0)[src]
    elif kind == "reverse_random_walk":
        d_in = torch.zeros(n, dtype=work, device=w.device).index_add(0, dst, w)
        row, col, val = src, dst, w * _inv(d_in, -1.0)[dst]
    else:
        r, c, s = _symmetrize_max(src, dst, w, n)
        eye = torch.arange(n, device=w.device)
        ones = torch.ones(n, dtype=work, device=w.device)
        if kind == "renormalized_adjacency":
            r, c, s = _coalesce(torch.cat([r, eye]), torch.cat([c, eye]), torch.cat([s, ones]), n)
        deg = torch.zeros(n, dtype=work, device=w.device).index_add(0, r, s)
        dis = _inv(deg, -0.5)
        a = dis[r] * s * dis[c]
        if kind == "renormalized_adjacency":
            row, col, val = r, c, a
        else:
            # L = I - A_sym
            lr, lc, lv = _coalesce(torch.cat([eye, r]), torch.cat([eye, c]), torch.cat([ones, -a]), n)
            lam = lambda_max
            if lam is None:
                lam = largest_eigenvalue(lr, lc, lv, n)
            lam = min(float(lam), 2.0) if lambda_max is None else float(lam)
            if lam <= 0:
                raise ValueError(f"lambda_max must be positive, got {lam}")
            row, col, val = _coalesce(
                torch.cat([lr, eye]), torch.cat([lc, eye]), torch.cat([lv * (2.0 / lam), -ones]), n
            )
    return _sparse(row, col, val.to(dtype), n, layout)


def _sparse(row: Tensor, col: Tensor, val: Tensor, n: int, layout: str) -> Tensor:
    """Sparse ``[n, n]`` tensor from unique ``(row, col)`` pairs in any order."""
    idx = torch.stack([row, col])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        coo = torch.sparse_coo_tensor(idx, val, (n, n), check_invariants=False)
        if layout == "coo":
            return coo.coalesce()
        # (row, col) pairs are unique: sort them row-major and build CSR directly
        order = torch.argsort(row * n + col)
        row, col, val = row[order], col[order], val[order]
        crow = torch.zeros(n + 1, dtype=torch.int64, device=row.device)
        crow[1:] = torch.cumsum(torch.bincount(row, minlength=n), 0)
        return torch.sparse_csr_tensor(crow, col.contiguous(), val.contiguous(), (n, n), check_invariants=False)


def transpose_operator(adj: Tensor) -> Tensor:
    """``adj^T`` as an operator: a view for dense, a coalesced COO for sparse ``adj``.

    Graph WaveNet applies a learned adjacency ``A`` as ``A^T x`` (einsum ``ncvl,vw->ncwl``).
    """
    if adj.layout == torch.strided:
        return adj.t()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        coo = adj.to_sparse_coo() if adj.layout != torch.sparse_coo else adj
        return coo.t().coalesce()


def _csr_mm(a: Tensor, x: Tensor) -> Tensor:
    """``a @ x`` for a CSR ``a`` and dense 2-D ``x``."""
    if a.device.type == "cpu":
        # native CSR kernel (``reduce`` argument): skips MKL's zero-fill + copy, and its backward
        # avoids re-sorting the transpose at every call (see the module docstring)
        return torch.sparse.mm(a, x, "sum")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse.mm(a, x)


_TRANSPOSES: dict[int, tuple[Any, Tensor]] = {}


def _csr_transpose(a: Tensor) -> Tensor:
    """``a^T`` as CSR, cached per operator tensor (operators are cached and never modified)."""
    hit = _TRANSPOSES.get(id(a))
    if hit is not None and hit[0]() is a:
        return hit[1]
    crow, col, val = a.crow_indices(), a.col_indices(), a.values()
    n_rows, n_cols = a.shape
    row = torch.repeat_interleave(torch.arange(n_rows, device=crow.device), crow.diff())
    order = torch.argsort(col * n_rows + row)
    at = _csr_from_sorted(col[order], row[order], val[order], n_cols, n_rows)
    for key in [k for k, (ref, _) in _TRANSPOSES.items() if ref() is None]:
        del _TRANSPOSES[key]
    _TRANSPOSES[id(a)] = (weakref.ref(a), at)
    return at


class _CSRMatMul(torch.autograd.Function):
    """``A @ x`` for a constant CSR ``A``; the backward ``A^T grad`` uses a cached CSR transpose.

    PyTorch's own backward of ``torch.sparse.mm(A, x, "sum")`` re-sorts ``A^T`` at every call
    (``aten::sort`` + index conversion: about half the cost of the backward product at METR-LA
    size); the operators here are cached, so their transposes are too.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, x: Tensor) -> Tensor:
        ctx.a = a
        return _csr_mm(a, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if not ctx.needs_input_grad[1]:
            return None, None
        return None, _csr_mm(_csr_transpose(ctx.a), grad.contiguous())


def _csr_from_sorted(row: Tensor, col: Tensor, val: Tensor, n_rows: int, n_cols: int) -> Tensor:
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=row.device)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=n_rows), 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(crow, col, val, (n_rows, n_cols), check_invariants=False)


class _SpMMWithValueGrad(torch.autograd.Function):
    """``A @ x`` differentiable w.r.t. the values of ``A`` (coalesced COO ``row, col, val``).

    ``torch.sparse.mm``'s own gradient for a sparse ``A`` forms the dense ``[N, N]`` product
    ``grad @ x^T`` and masks it (``O(N^2 F)``: 17 s of a 21 s Graph WaveNet step at 10,000 nodes
    with a top-k adaptive adjacency); here it is the per-edge dot product (``O(E F)``).
    """

    @staticmethod
    def forward(ctx: Any, row: Tensor, col: Tensor, val: Tensor, x: Tensor, n: int) -> Tensor:
        ctx.save_for_backward(row, col, val, x)
        ctx.n = n
        return _csr_mm(_csr_from_sorted(row, col, val, n, x.size(0)), x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        row, col, val, x = ctx.saved_tensors
        grad = grad.contiguous()
        grad_val = grad_x = None
        if ctx.needs_input_grad[2]:
            # grad_val[e] = <grad[row_e], x[col_e]>: a sampled dense-dense product (SDDMM) on
            # A's pattern; 28x faster than gathering the rows (10,000 nodes, k = 16, F = 768)
            pattern = _csr_from_sorted(row, col, torch.zeros_like(val), ctx.n, x.size(0))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
                grad_val = torch.sparse.sampled_addmm(pattern, grad, x.t(), beta=0.0).values()
        if ctx.needs_input_grad[3]:
            order = torch.argsort(col * ctx.n + row)
            at = _csr_from_sorted(col[order], row[order], val[order], x.size(0), ctx.n)
            grad_x = _csr_mm(at, grad)
        return None, None, grad_val, grad_x, None


def propagate(operator: Tensor, x: Tensor) -> Tensor:
    """``operator @ x`` for node-leading ``x [N, ...]`` (any trailing shape).

    CSR operators use PyTorch's native CSR kernel on CPU (``torch.sparse.mm(A, x, "sum")``), a
    sparse operator whose values require grad (learned edge weights, a top-k adaptive
    adjacency) a custom ``O(E F)`` backward, dense ones ``torch.mm``; the trailing dimensions are
    flattened into one ``[N, F]`` view (a copy only if ``x`` is not contiguous).

    Example:
        >>> op = make_operator("random_walk", torch.tensor([[0], [1]]), None, 2)
        >>> propagate(op, torch.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist()
        [[0.0, 0.0], [1.0, 2.0]]
    """
    shape = x.shape
    x2 = x.reshape(shape[0], -1)
    if operator.layout == torch.strided:
        out = torch.mm(operator, x2)
    elif operator.layout == torch.sparse_csr and not operator.requires_grad:
        if x2.requires_grad and torch.is_grad_enabled() and operator.device.type == "cpu":
            out = _CSRMatMul.apply(operator, x2)
        else:
            out = _csr_mm(operator, x2)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
            coo = operator.to_sparse_coo() if operator.layout != torch.sparse_coo else operator
            coo = coo.coalesce()
            idx = coo.indices()
            out = _SpMMWithValueGrad.apply(idx[0], idx[1], coo.values(), x2, operator.size(0))
    return out.view(operator.size(0), *shape[1:])


def diffusion_series(x: Tensor, operators: Sequence[Tensor], order: int, mode: DiffusionMode) -> list[Tensor]:
    """Diffusion terms ``[x, (terms of operator 1), (terms of operator 2), ...]``.

    ``x`` is node-leading ``[N, ...]``; each operator contributes ``order`` terms:

    * ``"power"`` (Graph WaveNet ``gcn``): ``S x, S^2 x, ..., S^order x``, each operator from ``x``.
    * ``"chebyshev"`` (DCRNN paper mode): ``x_1 = S x``, ``x_k = 2 S x_{k-1} - x_{k-2}``
      (``x_0 = x``), each operator starting again from ``x``.
    * ``"dcrnn_reference"``: the recursion of chnsh/DCRNN_PyTorch ``DCGRUCell._gconv`` (and the
      TensorFlow original), where ``x_0`` / ``x_1`` carry over from one operator to the next:
      ``x0 = x; for S: x1 = S x0; for k >= 2: x2 = 2 S x1 - x0; x1, x0 = x2, x1``.  With two
      operators and ``order = 2`` the terms are ``[x, Sf x, 2 Sf^2 x - x, Sb Sf x,
      2 Sb (Sb Sf x) - Sf x]``.

    Returns ``1 + len(operators) * order`` tensors shaped like ``x``.
    """
    terms = [x]
    if order == 0:
        return terms
    x0 = x
    for op in operators:
        if mode != "dcrnn_reference":
            x0 = x
        x1 = propagate(op, x0)
        terms.append(x1)
        for _ in range(2, order + 1):
            if mode == "power":
                x2 = propagate(op, x1)
                x1 = x2
            else:
                x2 = 2.0 * propagate(op, x1) - x0
                x1, x0 = x2, x1
            terms.append(x2)
    return terms


_Plan = tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]


def _expand(poly: list[float], start: list[float], base: int) -> list[float]:
    """``P(S) v`` as coefficients over the basis: ``p_0 v + sum_j p_j b_{base + j - 1}``."""
    out = [poly[0] * c for c in start]
    for j in range(1, len(poly)):
        out[base + j - 1] += poly[j]
    return out


@functools.lru_cache(maxsize=64)
def _basis_plan(num_ops: int, order: int, mode: str) -> _Plan:
    """Coefficients for :func:`diffusion_basis`.

    Returns ``(starts, terms)``: ``starts[s]`` is the start vector ``v_s`` of operator ``s``'s
    chain as coefficients over the basis built before it, ``terms[m]`` the ``m``-th term of
    :func:`diffusion_series` as coefficients over the whole basis ``[x, S_1 v_1, ..., S_1^K v_1,
    S_2 v_2, ...]``.  The recursion runs on polynomials of ``S`` (coefficient lists).
    """
    if order == 0:
        return (), ((1.0,),)
    size = 1 + num_ops * order
    x = [1.0 if i == 0 else 0.0 for i in range(size)]
    terms: list[list[float]] = [x]
    starts: list[list[float]] = []
    x0 = x
    for s in range(num_ops):
        if mode != "dcrnn_reference":
            x0 = x
        starts.append(x0)
        base = 1 + s * order
        p_prev = [1.0] + [0.0] * order  # x0
        p_cur = [0.0, *p_prev[:-1]]  # S x0
        terms.append(_expand(p_cur, x0, base))
        for _ in range(2, order + 1):
            shifted = [0.0, *p_cur[:-1]]  # S * P(S)
            if mode == "power":
                p_cur = shifted
                terms.append(_expand(p_cur, x0, base))
            else:
                p_prev, p_cur = p_cur, [2.0 * a - b for a, b in zip(shifted, p_prev, strict=True)]
                terms.append(_expand(p_cur, x0, base))
        if mode == "dcrnn_reference" and order >= 2:
            x0 = _expand(p_prev, x0, base)  # the reference's x0 after the inner loop
    return tuple(tuple(v) for v in starts), tuple(tuple(t) for t in terms)


def diffusion_coefficients(num_operators: int, order: int, mode: DiffusionMode) -> Tensor:
    """The change of basis ``coeff [M, M]`` (float64) of :func:`diffusion_basis`, without data.

    Example:
        >>> diffusion_coefficients(1, 2, "chebyshev").tolist()  # [x, Sx, 2 S^2 x - x]
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 2.0]]
    """
    return torch.tensor(_basis_plan(num_operators, order, mode)[1], dtype=torch.float64)


def diffusion_basis(
    x: Tensor, operators: Sequence[Tensor], order: int, mode: DiffusionMode
) -> tuple[list[Tensor], Tensor]:
    """Plain sparse products spanning :func:`diffusion_series`, and the change of basis.

    Returns ``(basis, coeff)`` with ``basis = [x, S_1 v_1, S_1^2 v_1, ..., S_1^K v_1, S_2 v_2,
    ...]`` (``v_s = x``, or for ``"dcrnn_reference"`` the carried-over ``x_0`` of the previous
    operator) and ``coeff [M, M]`` (float64, CPU) such that term ``m`` of
    :func:`diffusion_series` is ``sum_j coeff[m, j] * basis[j]``.  A layer that projects the
    terms with weights ``W_m`` can instead project the basis with ``W'_j = sum_m coeff[m, j]
    W_m``: the same numbers (up to rounding) without the ``2 S x_{k-1} - x_{k-2}`` element-wise
    passes, forward and backward.
    """
    starts, _ = _basis_plan(len(operators), order, mode)
    basis = [x]
    for s, op in enumerate(operators):
        if order == 0:
            break
        v = starts[s]
        nz = [(j, c) for j, c in enumerate(v) if c != 0.0]
        if len(nz) == 1 and nz[0][1] == 1.0:
            cur = basis[nz[0][0]]
        else:
            cur = sum((c * basis[j] for j, c in nz[1:]), nz[0][1] * basis[nz[0][0]])
        for _ in range(order):
            cur = propagate(op, cur)
            basis.append(cur)
    return basis, diffusion_coefficients(len(operators), order, mode)


# -------------------------------------------------------------------------------- cache
@dataclass(eq=False)
class _GraphRecord:
    graph_ref: Any  # weakref to the edge_index (or dense adjacency) tensor
    graph_version: int
    weight_ref: Any
    weight_version: int
    graph_copy: Tensor
    weight_copy: Tensor | None
    edge_index: Tensor
    edge_weight: Tensor | None
    ops: dict[tuple[Any, ...], Tensor] = field(default_factory=dict)


_MAX_GRAPHS = 8
_RECORDS: list[_GraphRecord] = []


def clear_operator_cache() -> None:
    """Forget every cached operator."""
    _RECORDS.clear()


def _ref(t: Tensor | None) -> Any:
    return None if t is None else weakref.ref(t)


def _version(t: Tensor | None) -> int:
    """In-place version counter; ``-1`` where none is tracked (inference tensors, ``None``)."""
    if t is None:
        return 0
    try:
        return int(t._version)
    except RuntimeError:
        return -1


def _is_dense_adjacency(graph: Tensor) -> bool:
    return graph.is_floating_point() and graph.dim() == 2 and graph.size(0) == graph.size(1)


def _lookup(graph: Tensor, weight: Tensor | None) -> _GraphRecord:
    for i, rec in enumerate(_RECORDS):
        if (
            rec.graph_ref() is graph
            and rec.graph_version == _version(graph) != -1
            and (rec.weight_ref() if rec.weight_ref is not None else None) is weight
            and rec.weight_version == _version(weight) != -1
        ):
            _RECORDS.insert(0, _RECORDS.pop(i))
            return rec
    for i, rec in enumerate(_RECORDS):
        same_weight = (weight is None and rec.weight_copy is None) or (
            weight is not None
            and rec.weight_copy is not None
            and rec.weight_copy.shape == weight.shape
            and rec.weight_copy.dtype == weight.dtype
            and rec.weight_copy.device == weight.device
            and torch.equal(rec.weight_copy, weight)
        )
        if (
            same_weight
            and rec.graph_copy.shape == graph.shape
            and rec.graph_copy.dtype == graph.dtype
            and rec.graph_copy.device == graph.device
            and torch.equal(rec.graph_copy, graph)
        ):
            rec.graph_ref, rec.graph_version = weakref.ref(graph), _version(graph)
            rec.weight_ref = _ref(weight)
            rec.weight_version = _version(weight)
            _RECORDS.insert(0, _RECORDS.pop(i))
            return rec
    ew: Tensor | None
    if _is_dense_adjacency(graph):
        ei, ew = to_edge_index(graph.detach())
    else:
        ei, ew = graph.detach(), None if weight is None else weight.detach()
    rec = _GraphRecord(
        graph_ref=weakref.ref(graph),
        graph_version=_version(graph),
        weight_ref=_ref(weight),
        weight_version=_version(weight),
        graph_copy=graph.detach().clone(),
        weight_copy=None if weight is None else weight.detach().clone(),
        edge_index=ei,
        edge_weight=ew,
    )
    _RECORDS.insert(0, rec)
    del _RECORDS[_MAX_GRAPHS:]
    return rec


def get_operator(
    kind: OperatorKind,
    edge_index: Tensor,
    edge_weight: Tensor | None = None,
    num_nodes: int | None = None,
    *,
    lambda_max: float | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Cached :func:`make_operator` (CSR), the entry point every layer uses.

    Args:
        kind: Operator kind (see the module docstring).
        edge_index: ``[2, E]`` (row 0 = source) or a dense float ``[N, N]`` adjacency.
        edge_weight: ``[E]`` / ``[E, 1]`` or ``None``; ignored for a dense adjacency.
        num_nodes: ``N``; inferred from a dense adjacency or ``max(edge_index) + 1``.
        lambda_max: Scaled Laplacian only (``None``: computed).
        dtype: Values dtype (default: ``edge_weight``'s floating dtype or the default dtype).

    Example:
        >>> ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
        >>> get_operator("random_walk", ei, num_nodes=3) is get_operator("random_walk", ei, num_nodes=3)
        True
    """
    dense = _is_dense_adjacency(edge_index)
    if dense:
        n = edge_index.size(0)
        if num_nodes is not None and num_nodes != n:
            raise ValueError(f"dense adjacency is {n}x{n} but the input has {num_nodes} nodes")
        edge_weight = None
    else:
        n = int(edge_index.max()) + 1 if num_nodes is None else num_nodes
        if edge_weight is not None and edge_weight.dim() == 2 and edge_weight.size(1) == 1:
            edge_weight = edge_weight.view(-1)  # PyG edge_attr [E, 1]
        # full validation (O(E), a device sync) runs in make_operator, i.e. once per graph
    if dtype is None:
        if edge_weight is not None and edge_weight.is_floating_point():
            dtype = edge_weight.dtype
        elif dense:
            dtype = edge_index.dtype
        else:
            dtype = torch.get_default_dtype()
    if edge_weight is not None and edge_weight.requires_grad and torch.is_grad_enabled():
        return make_operator(kind, edge_index, edge_weight, n, lambda_max=lambda_max, dtype=dtype, layout="coo")
    rec = _lookup(edge_index, edge_weight)
    key = (kind, lambda_max, n, dtype)
    op = rec.ops.get(key)
    if op is None:
        with torch.no_grad():
            op = make_operator(kind, rec.edge_index, rec.edge_weight, n, lambda_max=lambda_max, dtype=dtype)
        rec.ops[key] = op
    return op
