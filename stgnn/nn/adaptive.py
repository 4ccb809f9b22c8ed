"""Learned (self-adaptive) adjacency of Graph WaveNet, dense and sparse top-k."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stgnn.nn.graph_ops import quiet_sparse_warnings

__all__ = ["AdaptiveAdjacency"]


class AdaptiveAdjacency(nn.Module):
    r"""Self-adaptive adjacency ``A = softmax(ReLU(E_1 E_2), dim=1)``.

    Wu et al., "Graph WaveNet for Deep Spatial-Temporal Graph Modeling", IJCAI 2019,
    https://arxiv.org/abs/1906.00121 (Eq. 5).  ``E_1 [N, d]`` (``source_embedding``, the
    reference's ``nodevec1``) and ``E_2 [d, N]`` (``target_embedding``, ``nodevec2``) are
    initialised from a standard normal (``aptinit=None``).  Recomputed at every call.

    The dense matrix is intrinsic to the model (``O(N^2)`` memory and time).  ``top_k`` gives a
    sparse alternative for large graphs: each row keeps its ``k`` largest scores
    ``ReLU(E_1 E_2)`` and the softmax is taken over those only (the dense row softmax restricted
    to the kept entries and renormalised).  The selection runs in row chunks without gradient
    (memory ``O(chunk * N)``), the kept values are recomputed differentiably (``O(N k d)``), and the
    result is a sparse COO tensor.  *Deviation from the paper* (opt-in): with ``top_k < N`` the
    model is no longer Graph WaveNet's; ``top_k >= N`` equals the dense matrix.

    *Operator convention:* the paper writes the graph convolution as
    ``Z = sum_k (P_f^k X W_k1 + P_b^k X W_k2 + A_adp^k X W_k3)`` (Eq. 6-7); the authors' code (and
    stgnn, for parity) applies the transposed matrices, ``sum_k ((A_adp^T)^k X W_k3)``, because its
    ``nconv`` is einsum ``ncvl,vw->ncwl`` (``x'[w] = sum_v A[v, w] x[v]``): a node aggregates
    along its incoming edges.  :func:`stgnn.nn.graph_ops.transpose_operator` gives ``A^T``.

    Args:
        num_nodes: Number of nodes ``N`` (the embeddings are per node).
        embedding_dim: Embedding size ``d``. Default ``10``.
        top_k: Keep the ``k`` largest entries per row (sparse output); ``None`` (default) is dense.
        chunk_size: Rows scored at once in the sparse top-k selection; ``None`` picks about 4M
            scores per chunk.

    Shapes:
        ``forward() -> [N, N]`` (dense, or sparse COO with ``N * min(k, N)`` entries); rows sum
        to one.  ``forward(node_index [n]) -> [n, n]``.

    Example:
        >>> adp = AdaptiveAdjacency(5, embedding_dim=3)
        >>> a = adp()
        >>> a.shape, torch.allclose(a.sum(1), torch.ones(5))
        (torch.Size([5, 5]), True)
        >>> AdaptiveAdjacency(100, top_k=8)()._nnz()
        800
    """

    def __init__(
        self,
        num_nodes: int,
        embedding_dim: int = 10,
        top_k: int | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.num_nodes = num_nodes
        self.embedding_dim = embedding_dim
        self.top_k = top_k
        self.chunk_size = chunk_size
        self.source_embedding = nn.Parameter(torch.empty(num_nodes, embedding_dim))
        self.target_embedding = nn.Parameter(torch.empty(embedding_dim, num_nodes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Standard-normal embeddings (reference ``torch.randn``)."""
        nn.init.normal_(self.source_embedding)
        nn.init.normal_(self.target_embedding)

    def forward(self, node_index: Tensor | None = None) -> Tensor:
        """The row-stochastic adjacency (dense, or sparse COO with ``top_k``).

        Args:
            node_index: ``[n]`` indices of a subset of the nodes (a sampled subgraph, in its node
                order): the adjacency among those nodes only, ``softmax(ReLU(E_1[idx] E_2[:, idx]))``,
                each row renormalised over the subset.  ``None`` (default): all ``N`` nodes.
        """
        e1: Tensor = self.source_embedding
        e2: Tensor = self.target_embedding
        if node_index is not None:
            e1, e2 = e1[node_index], e2[:, node_index]
        if self.top_k is None:
            return F.softmax(F.relu(e1 @ e2), dim=1)
        n = e1.size(0)
        k = min(self.top_k, n)
        chunk = self.chunk_size or max(1, (1 << 22) // max(n, 1))
        with torch.no_grad():
            cols = torch.cat(
                [F.relu(e1[s : s + chunk] @ e2).topk(k, dim=1).indices for s in range(0, n, chunk)]
            )  # [N, k]
        rows = torch.arange(n, device=e1.device).repeat_interleave(k)
        cols = cols.reshape(-1)
        logits = F.relu((e1[rows] * e2.t()[cols]).sum(-1)).view(n, k)
        vals = F.softmax(logits, dim=1).reshape(-1)
        with quiet_sparse_warnings():
            adj = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=False)
            return adj.coalesce()

    def extra_repr(self) -> str:
        return f"{self.num_nodes}, embedding_dim={self.embedding_dim}, top_k={self.top_k}"
