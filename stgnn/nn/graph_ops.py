"""Graph operators: every support / normalisation the layers use, in one place.

Convention
----------
The public graph interface is PyG's: ``edge_index [2, E]`` with row 0 the *source* and row 1
the *target*, and optional ``edge_weight [E]`` (or PyG's ``edge_attr [E, 1]``).  Edge ``i -> j``
with weight ``w`` is the entry ``W[i, j] = w`` of the weighted adjacency ``W`` (duplicate edges
are summed).  Wherever ``edge_index`` is accepted, so is (see :func:`graph_to_coo`):

* a dense floating-point ``[N, N]`` adjacency ``W`` (e.g. an ``nn.Parameter``; when it requires
  grad every entry, zeros included, is an edge, so every entry gets its gradient);
* a ``torch.sparse`` COO / CSR / CSC ``[N, N]`` adjacency ``W`` (same orientation as the dense one;
  values that require grad get gradients);
* a ``torch_sparse.SparseTensor`` in PyG's ``adj_t`` convention (the *transposed* adjacency,
  ``adj_t[j, i] = W[i, j]``, as PyG's ``GCNConv`` / ``ChebConv`` read it).

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
                               Self-loops of ``W`` are kept in ``S`` (PyG's ``ChebConv`` removes
                               them first; the two agree on graphs without self-loops).
``"renormalized_adjacency"``   ``D~^-1/2 (S + I) D~^-1/2`` with ``S = max(W, W^T)`` and ``D~`` the
                               degrees of ``S + I`` (Kipf & Welling's renormalisation trick;
                               hazdzz/STGCN ``calc_gso(adj, "sym_renorm_adj")``).  ``I`` is added
                               even where ``W`` already has self-loops, as the reference does.
=============================  ===============================================================

Zero degrees give zero rows (``1/0 -> 0``), as in every reference, with a zero (finite) gradient.

Everything is built with differentiable tensor operations in float64 on the CPU (float32 on
other devices) and cast to the requested dtype, so gradients reach ``edge_weight``, the values of
a sparse adjacency and every entry of a dense adjacency that requires grad.  Normalisations are
per node, so on a disjoint union of graphs (a PyG ``Batch``) they are per graph automatically;
the one per-graph quantity is ``lambda_max`` (below).

``lambda_max`` of the scaled Laplacian: ``None`` computes the largest eigenvalue and, like
hazdzz/STGCN, uses ``2`` when the estimate reaches ``2`` (``2.0`` is the bound every normalised
Laplacian satisfies, PyG's ``ChebConv`` default).  Without a ``batch`` vector it is the largest
eigenvalue of the whole graph (what the STGCN references compute, also on a graph with several
components); with ``batch`` (``[N]``, graph id per node, as PyG's ``ChebConv``) each graph of the
batch gets its own, so a ``Batch`` gives every graph the operator it gets alone (an edge between
two graphs of a batch is an error).  For a constant graph it is computed with ARPACK ``eigsh``
(dense ``eigvalsh`` up to 64 nodes), as hazdzz/STGCN's ``norm(L, 2)`` (the same number for the
symmetric positive semi-definite ``L``).  When the graph requires grad it is
``torch.linalg.eigvalsh`` of the dense Laplacian (``O(N^3)`` per graph), so its gradient --
first and second order -- is exact.

Sparse product
--------------
All products go through :func:`propagate`.  A graph operator is an :class:`Operator`: the sorted
COO triplets ``(row, col, val)`` and a ``torch.sparse_csr`` copy of the (detached) values.  The
product ``P @ x`` with a node-leading 2-D view ``[N, F]`` (``F`` = batch x time x channels) uses
PyTorch's native CSR kernel (``torch.sparse.mm(A, x, "sum")``; MKL's ``torch.sparse.mm(A, x)``
off the CPU).  Measured on this project's shared 2-core CPU (torch 2.13, one intra-op thread,
random graphs with ``E ~ 8N``, best of 5 after a warm-up; ``python experiments/parity.py
--bench-spmm --threads 1`` reruns it), milliseconds forward / forward+backward w.r.t. ``x``::

    N      F       dense mm       gather+index_add  COO            CSR (MKL)      CSR (native, chosen)
    207    1024    1.04 /  2.22   1.15 /  2.80      0.14 / 0.77    0.15 / 1.00    0.13 / 0.31
    207    4224    3.78 /  8.16   6.09 / 21.4       0.49 / 2.93    0.58 / 1.88    0.42 / 1.31
    207    26624   29.4 /  62.5   183  /  301       5.99 / 21.7    6.84 / 16.8    5.53 / 13.7
    2000   6656     587 /  1154   516  / 1013       25.7 / 88.8    24.8 / 78.6    43.9 / 56.4
    10000  1536       -             -               76.2 /  208    62.4 /  183    42.5 /  159

The native CSR kernel is the fastest forward+backward at every size, including METR-LA's 207
nodes.  Its own backward re-sorts ``A^T`` at every call; :func:`propagate` uses a custom backward
with the transpose cached per operator instead (worth it when the operator is reused, i.e. with a
layer's ``cached=True``).  Values that require grad (learned edge weights, a top-k adaptive
adjacency) use a custom ``O(E F)`` backward (a sampled dense-dense product) instead of
``torch.sparse.mm``'s ``O(N^2 F)`` one.  Both custom backwards are written so that double backward
is exact (under ``create_graph`` they run as plain differentiable operations), and under
``torch.func`` transforms (``vmap``, ``grad``, ``jacrev``), under forward-mode AD and in
``torch.compile`` the product is made of plain operations, which those support: a dense
``[N, N]`` product for graphs of up to :data:`PLAIN_DENSE_MAX_NODES` nodes (the operator
scattered into a dense matrix, then ``torch.mm``), the gather + ``index_add`` formulation above.
The learned adaptive adjacency of Graph WaveNet is dense by definition and uses ``torch.mm``.
Layers keep features node-leading internally (constructor argument ``node_dim``) because moving
the node axis in and out costs about twice the product itself (N=207, F=26624, 2 threads: 5.4 ms product, 16.3 ms with
the two permutes).

Chebyshev / diffusion terms
---------------------------
:func:`diffusion_series` computes the terms by their recursion (``x_k = 2 S x_{k-1} - x_{k-2}``),
which is numerically stable for any order on a normalised operator.  :func:`diffusion_basis`
gives the same span as plain powers ``S^k x`` plus the constant change of basis, so that a layer
can fold the recursion into its weight (no element-wise passes).  Folding multiplies by the
recursion's polynomial coefficients, which grow like ``2^(k-1)`` and make the fold
ill-conditioned for large orders (order 15 loses ~3e-3 relative in float32, order 24 everything);
layers fold only up to :data:`MAX_FOLDED_ORDER` ``= 2``, where the coefficients are ``[1], [0, 1],
[-1, 0, 2]`` (sum of magnitudes 5): the fold adds at most a few float32 roundings of terms of norm
``<= |x|`` (``|S| <= 1``), well inside ``1e-5`` relative.  Higher orders use the recursion.

Caching
-------
Nothing is cached implicitly (no module-level cache): a graph can change between calls (in place,
through ``.data``, or through a NumPy array sharing its memory), and a cache keyed on tensor
identity or version counters cannot see every change.  Layers take ``cached=False`` (default:
every call builds its operators) or, as PyG's ``cached=True`` for a static graph, ``cached=True``:
the layer's :class:`OperatorCache` keeps the operators with a private copy of the graph and
serves them only while the graph passed in is equal to that copy (``torch.equal``, ``O(E)``), so
even a broken promise gives correct numbers (inside ``torch.compile`` the check is skipped and the
promise is trusted).  A graph that requires grad is never cached.  The models turn caching on
for their dataset's graph (their ``cached=True`` default), which keeps the fast path: the CSR
operators and their cached transposes are built once.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = [
    "MAX_FOLDED_ORDER",
    "DiffusionMode",
    "Operator",
    "OperatorCache",
    "OperatorKind",
    "diffusion_basis",
    "diffusion_coefficients",
    "diffusion_series",
    "get_operator",
    "graph_to_coo",
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
MAX_FOLDED_ORDER = 2
"""Largest order whose recursion a layer folds into its weight (see the module docstring)."""
PLAIN_DENSE_MAX_NODES = 1024
"""Where :func:`propagate` must use plain operations (``torch.compile``, ``torch.func``, forward-mode
AD), graphs of up to this many nodes are applied as a dense ``[N, N]`` product instead of gather +
``index_add`` (5-6x faster at 207 nodes, even at 2,000: see the module docstring's table)."""


@contextlib.contextmanager
def quiet_sparse_warnings() -> Iterator[None]:
    """Silence PyTorch's beta / invariant-check warnings for sparse tensors (one place)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        yield


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


def _is_dense_adjacency(graph: Any) -> bool:
    return (
        isinstance(graph, Tensor)
        and graph.layout == torch.strided
        and graph.is_floating_point()
        and graph.dim() == 2
        and graph.size(0) == graph.size(1)
    )


def _is_sparse_tensor(graph: Any) -> bool:
    """A ``torch_sparse.SparseTensor`` (PyG's ``adj_t``), recognised without importing torch_sparse."""
    return type(graph).__name__ == "SparseTensor" and hasattr(graph, "coo") and hasattr(graph, "sparse_sizes")


def _requires_grad(*tensors: Any) -> bool:
    """Whether a graph input takes part in autograd (grad mode on and a tensor requiring grad)."""
    if not torch.is_grad_enabled():
        return False
    for t in tensors:
        if isinstance(t, Tensor):
            if t.requires_grad:
                return True
        elif _is_sparse_tensor(t):
            val = t.storage.value()
            if val is not None and val.requires_grad:
                return True
    return False


def graph_to_coo(
    edge_index: Any, edge_weight: Tensor | None = None, num_nodes: int | None = None
) -> tuple[Tensor, Tensor, Tensor | None, int]:
    """Any accepted graph input as ``(src, dst, weight, N)`` (the one place inputs are read).

    Args:
        edge_index: ``[2, E]`` integer tensor (row 0 = source), a dense ``[N, N]`` float adjacency,
            a ``torch.sparse`` COO / CSR / CSC ``[N, N]`` adjacency, or a ``torch_sparse.SparseTensor``
            ``adj_t`` (see the module docstring for the orientations).
        edge_weight: ``[E]`` / ``[E, 1]`` or ``None`` (ones); only with an ``edge_index``.
        num_nodes: ``N``; inferred from a matrix input or as ``max(edge_index) + 1``.

    Returns:
        ``src [E']``, ``dst [E']`` (int64), ``weight [E']`` (``None`` for an unweighted
        ``edge_index``; differentiable where the input requires grad) and ``N``.

    Example:
        >>> src, dst, w, n = graph_to_coo(torch.tensor([[0.0, 2.0], [0.0, 0.0]]))
        >>> src.tolist(), dst.tolist(), w.tolist(), n
        ([0], [1], [2.0], 2)
    """
    matrix_input = _is_dense_adjacency(edge_index) or _is_sparse_tensor(edge_index) or (
        isinstance(edge_index, Tensor) and edge_index.layout != torch.strided
    )
    if matrix_input and edge_weight is not None:
        raise ValueError("edge_weight must be None when the graph is given as an adjacency matrix")
    if _is_sparse_tensor(edge_index):
        row, col, val = edge_index.coo()  # adj_t[target, source]
        n = int(edge_index.sparse_sizes()[0])
        src, dst = col.long(), row.long()
        w = val
    elif isinstance(edge_index, Tensor) and edge_index.layout != torch.strided:
        if edge_index.dim() != 2 or edge_index.size(0) != edge_index.size(1):
            raise ValueError(f"sparse adjacency must be square [N, N], got shape {tuple(edge_index.shape)}")
        with quiet_sparse_warnings():
            coo = edge_index if edge_index.layout == torch.sparse_coo else edge_index.to_sparse_coo()
            coo = coo.coalesce()
        idx = coo.indices()
        src, dst, w = idx[0], idx[1], coo.values()
        n = edge_index.size(0)
    elif _is_dense_adjacency(edge_index):
        n = edge_index.size(0)
        if edge_index.requires_grad and torch.is_grad_enabled():
            # every entry is a (possibly zero-weight) edge so that every entry gets its gradient
            grid = torch.arange(n, device=edge_index.device)
            src, dst = grid.repeat_interleave(n), grid.repeat(n)
            w = edge_index.reshape(-1)
        else:
            src, dst = edge_index.nonzero().t()
            w = edge_index[src, dst]
    else:
        if not isinstance(edge_index, Tensor):
            raise TypeError(
                f"edge_index must be a tensor ([2, E], a dense or torch.sparse [N, N] adjacency) or a "
                f"SparseTensor, got {type(edge_index).__name__}"
            )
        n = int(edge_index.max()) + 1 if num_nodes is None and edge_index.numel() else (num_nodes or 0)
        edge_weight = _check_graph(edge_index, edge_weight, n)
        return edge_index[0].long(), edge_index[1].long(), edge_weight, n
    if num_nodes is not None and num_nodes != n:
        raise ValueError(f"adjacency is {n}x{n} but the input has {num_nodes} nodes")
    if w is not None and not w.is_floating_point():
        w = w.float()
    return src.long(), dst.long(), w, n


# ----------------------------------------------------------------------- sparse helpers
def _coalesce(
    row: Tensor, col: Tensor, val: Tensor, n: int, reduce: Literal["sum", "amax"] = "sum"
) -> tuple[Tensor, Tensor, Tensor]:
    """Sort by (row, col) and merge duplicates with ``reduce`` (differentiable in ``val``)."""
    key = row * n + col
    uniq, inv = torch.unique(key, sorted=True, return_inverse=True)
    if reduce == "sum":
        out = val.new_zeros(uniq.numel()).index_add(0, inv, val)
    else:
        out = val.new_full((uniq.numel(),), float("-inf")).scatter_reduce(0, inv, val, reduce="amax", include_self=True)
    return uniq // n, uniq % n, out


def _inv(deg: Tensor, power: float) -> Tensor:
    """``deg ** power`` with ``0 -> 0`` and a finite (zero) gradient there."""
    zero = deg == 0
    safe = torch.where(zero, torch.ones_like(deg), deg)
    return torch.where(zero, torch.zeros_like(deg), safe.pow(power))


def _symmetrize_max(row: Tensor, col: Tensor, val: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """``S = max(W, W^T)`` elementwise (non-negative weights; a missing entry counts as 0)."""
    r, c, v = _coalesce(torch.cat([row, col]), torch.cat([col, row]), torch.cat([val, val]), n, reduce="amax")
    # an edge present in one direction only gets max(w, 0)
    return r, c, v.clamp_min(0.0)


def _csr(row: Tensor, col: Tensor, val: Tensor, n_rows: int, n_cols: int) -> Tensor:
    """CSR tensor from ``(row, col)`` pairs sorted row-major (the one CSR builder)."""
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=row.device)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=n_rows), 0)
    with quiet_sparse_warnings():
        return torch.sparse_csr_tensor(
            crow, col.contiguous(), val.contiguous(), (n_rows, n_cols), check_invariants=False
        )


class Operator(NamedTuple):
    """A sparse ``[N, N]`` graph operator (see the module docstring).

    ``(row, col, val)`` are sorted row-major with unique pairs; ``val`` carries gradients when
    the graph requires grad; ``csr`` holds the same entries (detached values) for the fast
    product (``None`` when built inside ``torch.func`` transforms or ``torch.compile``, which use
    the triplets).  Apply it with :func:`propagate`.
    """

    row: Tensor
    col: Tensor
    val: Tensor
    num_nodes: int
    csr: Tensor | None

    @property
    def dtype(self) -> torch.dtype:
        """Values dtype."""
        return self.val.dtype

    @property
    def device(self) -> torch.device:
        """Device."""
        return self.val.device

    @classmethod
    def from_coo(cls, row: Tensor, col: Tensor, val: Tensor, n: int) -> Operator:
        """From unique ``(row, col)`` pairs in any order."""
        order = torch.argsort(row * n + col)
        row, col, val = row[order], col[order], val[order]
        return cls(row, col, val, n, None if _plain_ops_only() else _csr(row, col, val.detach(), n, n))

    def to_dense(self) -> Tensor:
        """The dense ``[N, N]`` matrix (differentiable)."""
        n = self.num_nodes
        return self.val.new_zeros(n, n).index_put((self.row, self.col), self.val, accumulate=True)

    def t(self) -> Operator:
        """The transposed operator."""
        return Operator.from_coo(self.col, self.row, self.val, self.num_nodes)


def _per_graph(batch: Tensor | None, n: int, device: torch.device) -> tuple[Tensor, int]:
    """``(graph id per node [N], number of graphs)``; one graph without ``batch``."""
    if batch is None:
        return torch.zeros(n, dtype=torch.int64, device=device), 1
    if batch.dim() != 1 or batch.numel() != n or batch.is_floating_point():
        raise ValueError(f"batch must be an integer vector [N] with N={n}, got {batch.dtype} {tuple(batch.shape)}")
    if n and int(batch.min()) < 0:
        raise ValueError("batch has negative graph ids")
    return batch.long(), int(batch.max()) + 1 if n else 0


def largest_eigenvalue(row: Tensor, col: Tensor, val: Tensor, n: int, batch: Tensor | None = None) -> Tensor:
    """Largest eigenvalue of a symmetric sparse matrix (COO), per graph of ``batch``.

    Returns ``[G]`` (one graph without ``batch``) in ``val``'s dtype.  Differentiable (dense
    ``torch.linalg.eigvalsh`` per graph) when ``val`` requires grad or inside ``torch.func`` /
    ``torch.compile``; otherwise CPU float64 ARPACK
    ``eigsh`` (dense ``eigvalsh`` up to 64 nodes, ARPACK needs ``k < n``).  Graphs without nodes
    get 0.

    Example:
        >>> largest_eigenvalue(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([1.0, 1.0]), 2).tolist()
        [1.0]
    """
    graph, num_graphs = _per_graph(batch, n, val.device)
    if num_graphs > 1 and bool((graph[row] != graph[col]).any()):
        raise ValueError("batch: an edge joins two different graphs of the batch")
    out = []
    for g in range(num_graphs):
        nodes = (graph == g).nonzero().view(-1) if num_graphs > 1 else torch.arange(n, device=val.device)
        k = nodes.numel()
        if k == 0:
            out.append(val.new_zeros(()))
            continue
        local = torch.full((n,), -1, dtype=torch.int64, device=val.device)
        local[nodes] = torch.arange(k, device=val.device)
        keep = local[row] >= 0
        r, c, v = local[row[keep]], local[col[keep]], val[keep]
        if (val.requires_grad and torch.is_grad_enabled()) or _plain_ops_only(val):
            dense = val.new_zeros(k, k).index_put((r, c), v, accumulate=True)
            out.append(torch.linalg.eigvalsh(dense)[-1])
            continue
        mat = sp.coo_matrix(
            (v.detach().cpu().double().numpy(), (r.cpu().numpy(), c.cpu().numpy())), shape=(k, k)
        ).tocsr()
        if k <= 64:
            lam = float(np.linalg.eigvalsh(mat.toarray()).max())
        else:
            from scipy.sparse.linalg import eigsh

            lam = float(eigsh(mat, k=1, which="LA", return_eigenvectors=False, tol=1e-10)[0])
        out.append(val.new_tensor(lam))
    return torch.stack(out)


def make_operator(
    kind: OperatorKind,
    edge_index: Any,
    edge_weight: Tensor | None = None,
    num_nodes: int | None = None,
    *,
    lambda_max: float | None = None,
    batch: Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> Operator:
    """Build the ``[N, N]`` operator ``kind`` of a graph (uncached, differentiable).

    See the module docstring for the formulas, the accepted graph inputs and how they match the
    reference code.  Normalisation runs in float64 on the CPU (as the references' numpy code)
    and is cast to ``dtype``; gradients flow to every graph input that requires grad.

    Args:
        kind: ``"random_walk"``, ``"reverse_random_walk"``, ``"scaled_laplacian"`` or
            ``"renormalized_adjacency"``.
        edge_index: ``[2, E]`` (row 0 = source) or an adjacency matrix (see :func:`graph_to_coo`).
        edge_weight: ``[E]`` or ``None`` (ones).
        num_nodes: ``N`` (inferred when ``None``).
        lambda_max: Scaled Laplacian only; ``None`` computes it (default), per graph of ``batch``.
        batch: ``[N]`` graph id per node (PyG ``Batch.batch``); only ``lambda_max`` depends on it.
        dtype: Values dtype; default the weights' floating dtype or the default dtype.

    Example:
        >>> ei = torch.tensor([[0, 1], [1, 2]])
        >>> make_operator("random_walk", ei, None, 3).to_dense().tolist()
        [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown operator kind {kind!r}; expected one of {_KINDS}")
    src, dst, w_in, n = graph_to_coo(edge_index, edge_weight, num_nodes)
    if dtype is None:
        dtype = w_in.dtype if w_in is not None else torch.get_default_dtype()
    device = src.device
    work = torch.float64 if device.type == "cpu" else torch.float32
    w = torch.ones(src.numel(), dtype=work, device=device) if w_in is None else w_in.to(work)
    src, dst, w = _coalesce(src, dst, w, n)  # W[src, dst], duplicates summed
    if kind == "random_walk":
        d_out = w.new_zeros(n).index_add(0, src, w)
        row, col, val = dst, src, w * _inv(d_out, -1.0)[src]
    elif kind == "reverse_random_walk":
        d_in = w.new_zeros(n).index_add(0, dst, w)
        row, col, val = src, dst, w * _inv(d_in, -1.0)[dst]
    else:
        r, c, s = _symmetrize_max(src, dst, w, n)
        eye = torch.arange(n, device=device)
        ones = w.new_ones(n)
        if kind == "renormalized_adjacency":
            r, c, s = _coalesce(torch.cat([r, eye]), torch.cat([c, eye]), torch.cat([s, ones]), n)
        deg = w.new_zeros(n).index_add(0, r, s)
        dis = _inv(deg, -0.5)
        a = dis[r] * s * dis[c]
        if kind == "renormalized_adjacency":
            row, col, val = r, c, a
        else:
            # L = I - A_sym, then 2 L / lambda_max - I
            lr, lc, lv = _coalesce(torch.cat([eye, r]), torch.cat([eye, c]), torch.cat([ones, -a]), n)
            if lambda_max is None:
                lam = largest_eigenvalue(lr, lc, lv, n, batch).clamp_max(2.0)
            else:
                if lambda_max <= 0:
                    raise ValueError(f"lambda_max must be positive, got {lambda_max}")
                lam = w.new_full((1,), float(lambda_max))
            graph, _ = _per_graph(batch, n, device) if lambda_max is None else (torch.zeros_like(eye), 1)
            scale = 2.0 / lam[graph]  # per node (rows and columns of a block share their graph)
            row, col, val = _coalesce(
                torch.cat([lr, eye]), torch.cat([lc, eye]), torch.cat([lv * scale[lr], -ones]), n
            )
    return Operator.from_coo(row, col, val.to(dtype), n)


def transpose_operator(adj: Tensor | Operator) -> Tensor | Operator:
    """``adj^T`` as an operator: a view for a dense ``adj``, an :class:`Operator` otherwise.

    Graph WaveNet applies a learned adjacency ``A`` as ``A^T x`` (einsum ``ncvl,vw->ncwl``).
    Values of a sparse ``adj`` keep their gradient.
    """
    if isinstance(adj, Operator):
        return adj.t()
    if adj.layout == torch.strided:
        return adj.t()
    return _sparse_to_operator(adj, transpose=True)


def _sparse_to_operator(adj: Tensor, transpose: bool) -> Operator:
    """A ``torch.sparse`` matrix (or its transpose) as an :class:`Operator`; values keep their gradient."""
    src, dst, w, n = graph_to_coo(adj)
    assert w is not None  # a torch.sparse tensor always has values
    return Operator.from_coo(dst, src, w, n) if transpose else Operator.from_coo(src, dst, w, n)


def _csr_mm(a: Tensor, x: Tensor) -> Tensor:
    """``a @ x`` for a CSR ``a`` and dense 2-D ``x``."""
    if a.device.type == "cpu":
        # native CSR kernel (``reduce`` argument): skips MKL's zero-fill + copy
        return torch.sparse.mm(a, x, "sum")
    with quiet_sparse_warnings():
        return torch.sparse.mm(a, x)


_TRANSPOSES: dict[int, tuple[Any, Tensor]] = {}


def _csr_transpose(a: Tensor) -> Tensor:
    """``a^T`` as CSR, cached per CSR tensor (an :class:`Operator`'s CSR is never modified)."""
    hit = _TRANSPOSES.get(id(a))
    if hit is not None and hit[0]() is a:
        return hit[1]
    crow, col, val = a.crow_indices(), a.col_indices(), a.values()
    n_rows, n_cols = a.shape
    row = torch.repeat_interleave(torch.arange(n_rows, device=crow.device), crow.diff())
    order = torch.argsort(col * n_rows + row)
    at = _csr(col[order], row[order], val[order], n_cols, n_rows)
    for key in [k for k, (ref, _) in _TRANSPOSES.items() if ref() is None]:
        del _TRANSPOSES[key]
    _TRANSPOSES[id(a)] = (weakref.ref(a), at)
    return at


def _gather_scatter(row: Tensor, col: Tensor, val: Tensor, x: Tensor, n: int) -> Tensor:
    """``A @ x`` with plain differentiable operations (any order of autograd, ``torch.func``)."""
    return x.new_zeros(n, x.size(-1)).index_add(0, row, val.unsqueeze(-1) * x[col])


class _CSRMatMul(torch.autograd.Function):
    """``A @ x`` for a constant CSR ``A``; the backward ``A^T grad`` uses a cached CSR transpose.

    PyTorch's own backward of ``torch.sparse.mm(A, x, "sum")`` re-sorts ``A^T`` at every call
    (``aten::sort`` + index conversion: about half the cost of the backward product at METR-LA
    size).  The backward is itself a differentiable product, so double backward is exact.
    """

    @staticmethod
    def forward(a: Tensor, x: Tensor) -> Tensor:
        return _csr_mm(a, x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.a = inputs[0]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if not ctx.needs_input_grad[1]:
            return None, None
        at = _csr_transpose(ctx.a)
        if torch.is_grad_enabled():  # create_graph: stay on the differentiable path
            return None, _CSRMatMul.apply(at, grad.contiguous())
        return None, _csr_mm(at, grad.contiguous())


class _SpMMWithValueGrad(torch.autograd.Function):
    """``A @ x`` differentiable w.r.t. the values of ``A`` (row-major sorted ``row, col, val``).

    ``torch.sparse.mm``'s own gradient for a sparse ``A`` forms the dense ``[N, N]`` product
    ``grad @ x^T`` and masks it (``O(N^2 F)``: 17 s of a 21 s Graph WaveNet step at 10,000 nodes
    with a top-k adaptive adjacency); here it is the per-edge dot product (``O(E F)``).  Under
    ``create_graph`` the backward is computed with plain differentiable operations (exact double
    backward); the fast kernels serve first-order gradients only.
    """

    @staticmethod
    def forward(row: Tensor, col: Tensor, val: Tensor, csr: Tensor, x: Tensor) -> Tensor:
        return _csr_mm(csr, x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        row, col, val, csr, x = inputs
        ctx.save_for_backward(row, col, val, x)
        ctx.csr = csr

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        row, col, val, x = ctx.saved_tensors
        n = ctx.csr.size(0)
        grad = grad.contiguous()
        grad_val = grad_x = None
        if torch.is_grad_enabled():  # create_graph: differentiable formulas
            if ctx.needs_input_grad[2]:
                grad_val = (grad[row] * x[col]).sum(-1)
            if ctx.needs_input_grad[4]:
                grad_x = _gather_scatter(col, row, val, grad, x.size(0))
            return None, None, grad_val, None, grad_x
        if ctx.needs_input_grad[2]:
            # grad_val[e] = <grad[row_e], x[col_e]>: a sampled dense-dense product (SDDMM) on
            # A's pattern; 28x faster than gathering the rows (10,000 nodes, k = 16, F = 768)
            pattern = _csr(row, col, torch.zeros_like(val), n, x.size(0))
            with quiet_sparse_warnings():
                grad_val = torch.sparse.sampled_addmm(pattern, grad, x.t(), beta=0.0).values()
        if ctx.needs_input_grad[4]:
            grad_x = _csr_mm(_csr_transpose(ctx.csr), grad)
        return None, None, grad_val, None, grad_x


def _plain_ops_only(*tensors: Tensor) -> bool:
    """Inside ``torch.func`` transforms or ``torch.compile``, or for forward-mode AD (a ``tensors``
    entry with a tangent): no custom Functions, no sparse kernels."""
    if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return True
    return any(torch.autograd.forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def propagate(operator: Operator | Tensor, x: Tensor) -> Tensor:
    """``operator @ x`` for node-leading ``x [N, ...]`` (any trailing shape).

    An :class:`Operator` uses PyTorch's native CSR kernel (with the custom backwards described in
    the module docstring), a dense ``[N, N]`` tensor ``torch.mm``, a ``torch.sparse`` tensor is
    converted to an :class:`Operator`.  Inside ``torch.func`` transforms and ``torch.compile`` the
    product uses plain operations: the operator as a dense matrix and ``torch.mm`` up to
    :data:`PLAIN_DENSE_MAX_NODES` nodes, a gather + ``index_add`` above.  ``x`` is cast to the
    operator's dtype where they differ (e.g. a bfloat16 state under ``torch.autocast`` with a float32
    operator).  The trailing dimensions are flattened into one ``[N, F]`` view (a copy only if ``x``
    is not contiguous).

    Example:
        >>> op = make_operator("random_walk", torch.tensor([[0], [1]]), None, 2)
        >>> propagate(op, torch.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist()
        [[0.0, 0.0], [1.0, 2.0]]
    """
    if isinstance(operator, Tensor) and operator.layout != torch.strided:
        operator = _sparse_to_operator(operator, transpose=False)
    shape = x.shape
    x2 = x.reshape(shape[0], -1)
    if isinstance(operator, Tensor):
        n = operator.size(0)
        if x2.dtype != operator.dtype and not torch.is_autocast_enabled(x2.device.type):
            x2 = x2.to(operator.dtype)
        out = torch.mm(operator, x2)
    else:
        n = operator.num_nodes
        if x2.dtype != operator.dtype:
            x2 = x2.to(operator.dtype)
        if operator.csr is None or _plain_ops_only(x2, operator.val):
            if n <= PLAIN_DENSE_MAX_NODES:
                out = torch.mm(operator.to_dense(), x2)
            else:
                out = _gather_scatter(operator.row, operator.col, operator.val, x2, n)
        elif operator.val.requires_grad and torch.is_grad_enabled():
            out = _SpMMWithValueGrad.apply(operator.row, operator.col, operator.val, operator.csr, x2)
        elif x2.requires_grad and torch.is_grad_enabled() and operator.device.type == "cpu":
            out = _CSRMatMul.apply(operator.csr, x2)
        else:
            out = _csr_mm(operator.csr, x2)
    return out.view(n, *shape[1:])


def diffusion_series(
    x: Tensor, operators: Sequence[Operator | Tensor], order: int, mode: DiffusionMode
) -> list[Tensor]:
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


def diffusion_coefficients(
    num_operators: int,
    order: int,
    mode: DiffusionMode,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """The change of basis ``coeff [M, M]`` of :func:`diffusion_basis`, without data.

    Cached per ``(num_operators, order, mode, dtype, device)``, so a layer on a GPU does not copy
    it from the host at every call; the returned tensor is shared: do not modify it in place.

    Example:
        >>> diffusion_coefficients(1, 2, "chebyshev").tolist()  # [x, Sx, 2 S^2 x - x]
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 2.0]]
    """
    return _coefficients(num_operators, order, mode, dtype, torch.device(device or "cpu"), True)


@functools.lru_cache(maxsize=256)
def _coefficients(n_ops: int, order: int, mode: str, dtype: torch.dtype, device: torch.device, fold: bool) -> Tensor:
    if fold:
        return torch.tensor(_basis_plan(n_ops, order, mode)[1], dtype=torch.float64).to(dtype=dtype, device=device)
    return torch.eye(1 + n_ops * order, dtype=dtype, device=device)


def feature_coefficients(
    num_operators: int, order: int, mode: DiffusionMode, *, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``coeff [M, M]`` for :func:`diffusion_features`: term ``m = sum_j coeff[m, j] feature_j``.

    :func:`diffusion_coefficients` where the order is folded (``order <= MAX_FOLDED_ORDER``), the
    identity otherwise (cached per device, like :func:`diffusion_coefficients`).
    """
    return _coefficients(num_operators, order, mode, dtype, torch.device(device), order <= MAX_FOLDED_ORDER)


def diffusion_features(
    x: Tensor, operators: Sequence[Operator | Tensor], order: int, mode: DiffusionMode
) -> list[Tensor]:
    """What a layer projects: the plain products of :func:`diffusion_basis` up to
    :data:`MAX_FOLDED_ORDER` (recursion folded into the weight with :func:`feature_coefficients`),
    the recursion's terms (:func:`diffusion_series`) above it, where folding is ill-conditioned."""
    if order <= MAX_FOLDED_ORDER:
        return diffusion_basis(x, operators, order, mode)[0]
    return diffusion_series(x, operators, order, mode)


def diffusion_basis(
    x: Tensor, operators: Sequence[Operator | Tensor], order: int, mode: DiffusionMode
) -> tuple[list[Tensor], Tensor]:
    """Plain sparse products spanning :func:`diffusion_series`, and the change of basis.

    Returns ``(basis, coeff)`` with ``basis = [x, S_1 v_1, S_1^2 v_1, ..., S_1^K v_1, S_2 v_2,
    ...]`` (``v_s = x``, or for ``"dcrnn_reference"`` the carried-over ``x_0`` of the previous
    operator) and ``coeff [M, M]`` (float64, CPU) such that term ``m`` of
    :func:`diffusion_series` is ``sum_j coeff[m, j] * basis[j]``.  A layer that projects the
    terms with weights ``W_m`` can instead project the basis with ``W'_j = sum_m coeff[m, j]
    W_m``: the same numbers (up to rounding) without the ``2 S x_{k-1} - x_{k-2}`` element-wise
    passes, forward and backward.  Folding is ill-conditioned for large orders (see the module
    docstring); layers use :func:`diffusion_features`, which folds only up to
    :data:`MAX_FOLDED_ORDER`.
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
class OperatorCache:
    """Operators of a graph that is expected to stay the same (a layer's ``cached=True``).

    An entry is served only for a graph equal to the one it was built from: the cache keeps a
    private copy of the graph inputs (``edge_index`` / adjacency, ``edge_weight``, ``batch``) and
    compares them with ``torch.equal`` at every call (``O(E)``, a device synchronisation on a
    GPU), so a graph changed in place, through ``.data`` or through a NumPy array sharing its
    memory is rebuilt, never served stale.  Inside ``torch.compile`` the comparison is skipped
    (it would break the graph): there ``cached=True`` is PyG's promise of a static graph.  A graph
    that requires grad bypasses the cache.  Entries are per operator kind, ``lambda_max``, node
    count, dtype and device; the last graph seen is kept per entry.

    Example:
        >>> cache = OperatorCache()
        >>> ei = torch.tensor([[0, 1], [1, 0]])
        >>> get_operator("random_walk", ei, cache=cache) is get_operator("random_walk", ei, cache=cache)
        True
    """

    def __init__(self) -> None:
        self._ops: dict[tuple[Any, ...], tuple[tuple[Tensor | None, ...], Operator]] = {}
        # the same operators without their CSR copies: what torch.compile can trace
        self._plain: dict[tuple[Any, ...], Operator] = {}

    def clear(self) -> None:
        """Forget every operator."""
        self._ops.clear()
        self._plain.clear()

    def __len__(self) -> int:
        return len(self._ops)

    def __deepcopy__(self, memo: dict[int, Any]) -> OperatorCache:
        return OperatorCache()  # a copied layer builds its own operators

    def get(self, key: tuple[Any, ...], graph: tuple[Tensor | None, ...]) -> Operator | None:
        """The operator stored under ``key`` if it was built from ``graph`` (see the class docstring)."""
        if torch.compiler.is_compiling():
            plain = self._plain.get(key)
            if plain is None:
                raise RuntimeError(
                    "torch.compile cannot build graph operators (data-dependent sizes): construct the layer "
                    "with cached=True and run it once eagerly on the graph before calling the compiled module"
                )
            return plain
        hit = self._ops.get(key)
        if hit is None:
            return None
        return hit[1] if _same_graph(hit[0], graph) else None

    def put(self, key: tuple[Any, ...], graph: tuple[Tensor | None, ...], op: Operator) -> None:
        """Store ``op`` with a private copy of ``graph``."""
        self._ops[key] = (tuple(None if t is None else t.detach().clone() for t in graph), op)
        self._plain[key] = op._replace(csr=None)


def _same_graph(a: tuple[Tensor | None, ...], b: tuple[Tensor | None, ...]) -> bool:
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            if x is not y:
                return False
        elif x.shape != y.shape or x.dtype != y.dtype or x.device != y.device or not torch.equal(x, y):
            return False
    return True


def _graph_content(edge_index: Any, edge_weight: Tensor | None, batch: Tensor | None) -> tuple[Tensor | None, ...]:
    """The tensors that define a graph input, for :class:`OperatorCache`'s comparison."""
    if _is_sparse_tensor(edge_index):
        row, col, val = edge_index.coo()
        return row, col, val, batch
    if edge_index.layout != torch.strided:
        with quiet_sparse_warnings():
            coo = (edge_index if edge_index.layout == torch.sparse_coo else edge_index.to_sparse_coo()).coalesce()
        return coo.indices(), coo.values(), batch
    return edge_index, edge_weight, batch


def _check_not_tracing() -> None:
    if torch.jit.is_tracing():
        raise RuntimeError(
            "torch.jit.trace would record this graph's normalised operator as a constant and replay it "
            "for any other graph; use torch.compile (which re-checks its inputs) or run the layer eagerly"
        )


def get_operator(
    kind: OperatorKind,
    edge_index: Any,
    edge_weight: Tensor | None = None,
    num_nodes: int | None = None,
    *,
    lambda_max: float | None = None,
    batch: Tensor | None = None,
    dtype: torch.dtype | None = None,
    cache: OperatorCache | None = None,
) -> Operator:
    """:func:`make_operator`, reused from ``cache`` when one is given: the entry point of every layer.

    Args:
        kind: Operator kind (see the module docstring).
        edge_index: ``[2, E]`` (row 0 = source) or an adjacency (see :func:`graph_to_coo`).
        edge_weight: ``[E]`` / ``[E, 1]`` or ``None``.
        num_nodes: ``N`` (inferred when ``None``).
        lambda_max: Scaled Laplacian only (``None``: computed per graph of ``batch``).
        batch: ``[N]`` graph id per node, or ``None`` (one graph).
        dtype: Values dtype (default: the weights' floating dtype or the default dtype).
        cache: An :class:`OperatorCache` (reuses the operator while the graph is unchanged);
            ``None`` builds the operator now.

    Raises:
        RuntimeError: Under ``torch.jit.trace`` (the graph would be baked into the trace).
    """
    _check_not_tracing()
    if cache is None and torch.compiler.is_compiling():
        raise RuntimeError(
            "torch.compile cannot build graph operators (data-dependent sizes): construct the layer with "
            "cached=True and run it once eagerly on the graph before calling the compiled module"
        )
    if cache is None or _requires_grad(edge_index, edge_weight):
        return make_operator(
            kind, edge_index, edge_weight, num_nodes, lambda_max=lambda_max, batch=batch, dtype=dtype
        )
    device = edge_index.device() if _is_sparse_tensor(edge_index) else edge_index.device
    key = (kind, lambda_max, num_nodes, dtype, device)
    graph = () if torch.compiler.is_compiling() else _graph_content(edge_index, edge_weight, batch)
    op = cache.get(key, graph)
    if op is None:
        op = make_operator(kind, edge_index, edge_weight, num_nodes, lambda_max=lambda_max, batch=batch, dtype=dtype)
        cache.put(key, graph, op)
    return op
