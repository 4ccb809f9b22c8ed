"""Spectral graph convolutions used by STGCN: Chebyshev (ChebNet) and first-order (GCN)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stgnn.nn.graph_ops import diffusion_basis, diffusion_series, get_operator
from stgnn.nn.inits import kaiming_uniform_reset

__all__ = ["ChebGraphConv", "GraphConv"]


class ChebGraphConv(nn.Module):
    r"""Chebyshev spectral graph convolution on the scaled Laplacian.

    Defferrard et al., NeurIPS 2016, https://arxiv.org/abs/1606.09375, as used by STGCN
    (Yu et al., IJCAI 2018, https://arxiv.org/abs/1709.04875, Eq. 3):

    .. math::
        \mathbf{X}' = \sum_{k=0}^{K-1} T_k(\tilde L)\, \mathbf{X}\, \Theta_k + b,\qquad
        \tilde L = 2 L / \lambda_{max} - I,\; L = I - D^{-1/2} S D^{-1/2},

    with ``T_0 = I``, ``T_1 = L~``, ``T_k = 2 L~ T_{k-1} - T_{k-2}`` and ``S = max(W, W^T)`` (a
    directed graph is symmetrised elementwise, as hazdzz/STGCN and DCRNN do).  ``K`` counts the
    Chebyshev terms (STGCN's kernel size ``Ks``; polynomial degree ``K - 1``), like PyG's
    ``ChebConv``.  The operator comes from :func:`stgnn.nn.graph_ops.get_operator` (cached per
    graph, sparse CSR).

    Weight layout ``[K, in_channels, out_channels]`` is hazdzz/STGCN's ``ChebGraphConv.weight``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        K: Number of Chebyshev terms (``>= 1``).
        bias: Add a bias. Default ``True``.
        lambda_max: Largest Laplacian eigenvalue; ``None`` (default) computes it per graph as both
            STGCN reference implementations do (values ``>= 2`` are replaced by 2, as hazdzz);
            ``2.0`` skips the eigen-solve.
        node_dim: Node axis of the input. Default ``-2``.

    Shapes:
        ``x [..., N, in_channels]``, ``edge_index [2, E]`` (or a dense ``[N, N]`` adjacency),
        ``edge_weight [E]`` -> ``[..., N, out_channels]``.

    Example:
        >>> conv = ChebGraphConv(3, 8, K=3)
        >>> edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> conv(torch.randn(4, 12, 3, 3), edge_index).shape
        torch.Size([4, 12, 3, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        K: int,
        bias: bool = True,
        *,
        lambda_max: float | None = None,
        node_dim: int = -2,
    ) -> None:
        super().__init__()
        if K < 1:
            raise ValueError(f"K must be >= 1, got {K}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.K = K
        self.lambda_max = lambda_max
        self.node_dim = node_dim
        self.weight = nn.Parameter(torch.empty(K, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as hazdzz/STGCN (``kaiming_uniform_(a=sqrt(5))``)."""
        kaiming_uniform_reset(self.weight, self.bias)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Apply the filter (see the class docstring for shapes)."""
        xn = x.movedim(self.node_dim, 0)
        lap = get_operator(
            "scaled_laplacian",
            edge_index,
            edge_weight,
            xn.size(0),
            lambda_max=self.lambda_max,
            dtype=x.dtype,
        )
        # plain products [x, L x, L (L x), ...] with the Chebyshev recursion folded into the weight
        basis, coeff = diffusion_basis(xn, [lap], self.K - 1, "chebyshev")
        w = torch.einsum("kio,kj->jio", self.weight, coeff.to(self.weight))
        # [N, ..., K * C_in] (index k * C_in + c) @ [K * C_in, C_out]
        h = torch.cat(basis, dim=-1) @ w.reshape(-1, self.out_channels)
        if self.bias is not None:
            h = h + self.bias
        return h.movedim(0, self.node_dim)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, K={self.K}, lambda_max={self.lambda_max}"


class GraphConv(nn.Module):
    r"""First-order graph convolution with the renormalisation trick.

    Kipf & Welling, ICLR 2017, https://arxiv.org/abs/1609.02907:
    ``X' = D~^{-1/2} (S + I) D~^{-1/2} X W + b`` with ``S = max(W_adj, W_adj^T)``.  This is
    STGCN's first-order approximation (paper Eq. 4-5 with the renormalisation trick;
    hazdzz/STGCN ``GraphConv`` with ``gso_type="sym_renorm_adj"``).  ``I`` is added even to nodes
    that already have a self-loop (as the reference; PyG's ``GCNConv`` adds only missing loops).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        bias: Add a bias. Default ``True``.
        node_dim: Node axis of the input. Default ``-2``.

    Shapes:
        ``x [..., N, in_channels]``, ``edge_index [2, E]`` (or dense ``[N, N]``),
        ``edge_weight [E]`` -> ``[..., N, out_channels]``.

    Example:
        >>> conv = GraphConv(3, 8)
        >>> conv(torch.randn(2, 3, 3), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([2, 3, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, *, node_dim: int = -2) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.node_dim = node_dim
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as hazdzz/STGCN."""
        kaiming_uniform_reset(self.weight, self.bias)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Apply the convolution (see the class docstring for shapes)."""
        xn = x.movedim(self.node_dim, 0)
        adj = get_operator("renormalized_adjacency", edge_index, edge_weight, xn.size(0), dtype=x.dtype)
        (_, h) = diffusion_series(xn, [adj], 1, "power")
        h = h @ self.weight
        if self.bias is not None:
            h = h + self.bias
        return h.movedim(0, self.node_dim)
