"""Diffusion convolution and the diffusion-convolutional GRU cell (DCRNN)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from stgnn.nn.graph_ops import (
    DiffusionMode,
    Operator,
    OperatorCache,
    OperatorKind,
    diffusion_features,
    feature_coefficients,
    get_operator,
)

__all__ = ["DCGRUCell", "DCGRUWeights", "DiffusionConv"]


class DiffusionConv(nn.Module):
    r"""K-step bidirectional diffusion convolution (DCRNN).

    Li, Yu, Shahabi & Liu, "Diffusion Convolutional Recurrent Neural Network: Data-Driven Traffic
    Forecasting", ICLR 2018, https://arxiv.org/abs/1707.01926 (Eq. 2).  The features
    ``[x, S_f x, ..., S_b x, ...]`` (``1 + 2K`` matrices) are concatenated and mapped by one
    linear layer, where ``S_f = (D_O^{-1} W)^T`` and ``S_b = (D_I^{-1} W^T)^T`` are the forward and
    backward random-walk transition operators (``"random_walk"`` / ``"reverse_random_walk"`` in
    :mod:`stgnn.nn.graph_ops`; ``(S_f x)[j] = sum_i W[i, j] / d_out(i) x[i]``).

    *Operator convention:* the paper writes ``sum_k (theta_{k,1} (D_O^{-1} W)^k + theta_{k,2}
    (D_I^{-1} W^T)^k) x``; the code applies the *transposed* transition matrices,
    ``x' = sum_k (theta_{k,1} ((D_O^{-1} W)^T)^k + theta_{k,2} ((D_I^{-1} W^T)^T)^k) x``, i.e. a
    node aggregates from its in-neighbours along the edge direction -- what the authors' code does
    (``calculate_random_walk_matrix(adj).T``); on an undirected graph only the normalisation
    differs between the two.

    ``K`` counts diffusion *hops* per direction (the paper's ``K``, ``max_diffusion_step``): ``K``
    products per direction and ``1 + 2K`` terms -- unlike :class:`~stgnn.nn.ChebGraphConv`, whose
    ``K`` counts terms.

    Terms per support (``reference_compat=False``, default): ``x_1 = S x``,
    ``x_k = 2 S x_{k-1} - x_{k-2}`` with ``x_0 = x``, each support starting from ``x``.  This is the
    recursion of the authors' code with the carry-over bug fixed.  *Deviation from the paper:* the
    paper writes plain powers ``S^k x``; for any ``K`` the recursion spans the same polynomials of
    ``S`` (``x_k = 2 S^k x + lower powers``), so it is the paper's filter family under an invertible
    re-parameterisation of ``theta`` (for ``K = 2``: ``[x, Sx, 2S^2x - x]`` vs ``[x, Sx, S^2x]``).

    ``reference_compat=True`` reproduces chnsh/DCRNN_PyTorch ``DCGRUCell._gconv`` (and the
    TensorFlow original) exactly: ``x0`` and ``x1`` are not reset between the two supports, so the
    backward direction starts from the forward direction's first hop (for ``K = 2``:
    ``[x, Sf x, 2 Sf^2 x - x, Sb Sf x, 2 Sb^2 Sf x - Sf x]``).  The published DCRNN numbers came
    from that code.

    Weight layout: ``weight [in_channels * M, out_channels]`` with row ``c * M + m`` for input
    channel ``c`` and matrix ``m`` (``M = 1 + num_supports * K``, order
    ``[x, S_f terms, S_b terms]``) -- exactly the reference's ``gconv_weight_(input_size * M,
    output_size)``, so reference weights load unchanged.  For ``K <= 2`` the layer projects the
    plain products ``S^k x`` with the recursion folded into the weight (:meth:`basis_weight`);
    larger ``K`` use the recursion's terms (folding is ill-conditioned there, see
    :mod:`stgnn.nn.graph_ops`).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        K: Diffusion steps per direction (``max_diffusion_step``).
        bias: Add a bias. Default ``True``.
        reference_compat: Reproduce the reference recursion (see above). Default ``False``.
        bidirectional: Use both transition operators (DCRNN ``dual_random_walk``); ``False`` uses
            the forward one only (``random_walk``). Default ``True``.
        cached: Build the operators at the first call and reuse them (as PyG's ``cached=True``;
            served only while the graph is unchanged, see :class:`~stgnn.nn.OperatorCache`). Default ``False``.
        node_dim: Node axis of the input. Default ``-2``.

    Shapes:
        ``x [..., N, in_channels]``, ``edge_index [2, E]`` (or an ``[N, N]`` adjacency),
        ``edge_weight [E]`` -> ``[..., N, out_channels]``.

    Example:
        >>> conv = DiffusionConv(2, 16, K=2)
        >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
        >>> conv(torch.randn(8, 3, 2), edge_index).shape
        torch.Size([8, 3, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        K: int,
        bias: bool = True,
        *,
        reference_compat: bool = False,
        bidirectional: bool = True,
        cached: bool = False,
        node_dim: int = -2,
    ) -> None:
        super().__init__()
        if K < 0:
            raise ValueError(f"K must be >= 0, got {K}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.K = K
        self.reference_compat = reference_compat
        self.bidirectional = bidirectional
        self.cached = cached
        self.node_dim = node_dim
        self._cache = OperatorCache()
        self.num_matrices = 1 + (2 if bidirectional else 1) * K
        self.weight = nn.Parameter(torch.empty(in_channels * self.num_matrices, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal weight and zero bias, as the reference ``LayerParams``; forget cached operators."""
        self._cache.clear()
        nn.init.xavier_normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def operators(
        self,
        edge_index: Tensor,
        edge_weight: Tensor | None,
        num_nodes: int,
        dtype: torch.dtype | None = None,
    ) -> list[Operator]:
        """The transition operators ``[S_f]`` or ``[S_f, S_b]`` (reused with ``cached=True``)."""
        kinds: tuple[OperatorKind, ...] = ("random_walk",)
        if self.bidirectional:
            kinds = ("random_walk", "reverse_random_walk")
        cache = self._cache if self.cached else None
        return [get_operator(k, edge_index, edge_weight, num_nodes, dtype=dtype, cache=cache) for k in kinds]

    @property
    def mode(self) -> DiffusionMode:
        """The :func:`~stgnn.nn.graph_ops.diffusion_series` recursion this layer uses."""
        return "dcrnn_reference" if self.reference_compat else "chebyshev"

    def diffuse(self, x: Tensor, operators: Sequence[Operator | Tensor]) -> Tensor:
        """Diffusion features of node-leading ``x [N, ..., C]`` -> ``[N, ..., M * C]``.

        For ``K <= 2`` the features are the *plain* sparse products of
        :func:`~stgnn.nn.graph_ops.diffusion_basis` (feature index ``j * C + c``), not the
        recursion's terms (larger ``K``: the terms, see
        :func:`~stgnn.nn.graph_ops.diffusion_features`); :meth:`project` applies the weight mapped onto that basis
        (:meth:`basis_weight`), which gives the same output as projecting the terms with
        ``weight`` (up to rounding) with fewer element-wise passes and a cheap concatenation
        instead of a per-channel interleave.  Channel-separable: :class:`DCGRUCell` diffuses its
        input and state separately and projects each with its block of rows.
        """
        return torch.cat(diffusion_features(x, operators, self.K, self.mode), dim=-1)

    def basis_weight(self, rows: slice | None = None) -> Tensor:
        """``weight[rows]`` (reference layout, row ``c * M + m``) mapped onto :meth:`diffuse`'s
        features (row ``j * C + c``): ``W'_j = sum_m coeff[m, j] W_m``; differentiable."""
        w = self.weight if rows is None else self.weight[rows]
        m = self.num_matrices
        n_ops = (m - 1) // self.K if self.K else 0
        coeff = feature_coefficients(n_ops, self.K, self.mode, dtype=w.dtype, device=w.device)
        wm = w.view(-1, m, w.size(-1))  # [C, M, out]
        return torch.einsum("cmo,mj->jco", wm, coeff).reshape(-1, w.size(-1))

    def project(self, features: Tensor, rows: slice | None = None, add_bias: bool = True) -> Tensor:
        """``features @ basis_weight(rows) (+ bias)`` for :meth:`diffuse`'s features."""
        w = self.basis_weight(rows)
        f2 = features.reshape(-1, features.size(-1))
        if add_bias and self.bias is not None:
            out = torch.addmm(self.bias, f2, w)
        else:
            out = f2 @ w
        return out.view(*features.shape[:-1], w.size(-1))

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Apply the diffusion convolution (see the class docstring for shapes)."""
        xn = x.movedim(self.node_dim, 0)
        ops = self.operators(edge_index, edge_weight, xn.size(0), x.dtype)
        return self.project(self.diffuse(xn, ops)).movedim(0, self.node_dim)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, K={self.K}, bias={self.bias is not None}, "
            f"bidirectional={self.bidirectional}, reference_compat={self.reference_compat}, cached={self.cached}"
        )


class DCGRUCell(nn.Module):
    r"""GRU cell whose gates are diffusion convolutions (DCRNN, Eq. 3).

    Li et al., ICLR 2018, https://arxiv.org/abs/1707.01926:

    .. math::
        r, u = \sigma(\Theta_{ru} \star_G [x, h] + b_{ru}),\quad
        c = \tanh(\Theta_c \star_G [x, r \odot h] + b_c),\quad
        h' = u \odot h + (1 - u) \odot c

    as chnsh/DCRNN_PyTorch ``DCGRUCell`` with ``use_gc_for_ru=True``: one diffusion convolution
    with ``2 * hidden_channels`` outputs for ``[r, u]`` (in that order, bias initialised to 1) and
    one for ``c`` (bias 0).  Because diffusion is channel-separable the input and the state are
    diffused separately (the same numbers as diffusing ``[x, h]``), which lets
    :class:`~stgnn.models.dcrnn.DCRNN` diffuse each hidden state once and reuse it.

    Reference weights: ``gconv_weight_((C_in + H) * M, 2H)`` -> ``gate_conv.weight``,
    ``gconv_biases_2H`` -> ``gate_conv.bias``, ``gconv_weight_((C_in + H) * M, H)`` ->
    ``candidate_conv.weight``, ``gconv_biases_H`` -> ``candidate_conv.bias``.

    Args:
        in_channels: Input channels ``C_in``.
        hidden_channels: Hidden units ``H``.
        K: Diffusion steps. Default ``2``.
        bias: Gate biases. Default ``True``.
        reference_compat: See :class:`DiffusionConv`. Default ``False``.
        bidirectional: See :class:`DiffusionConv`. Default ``True``.
        cached: Reuse the operators built at the first call (as PyG's ``cached=True``;
            served only while the graph is unchanged, see :class:`~stgnn.nn.OperatorCache`). Default ``False``.
        node_dim: Node axis of the input. Default ``-2``.

    Shapes:
        ``x [..., N, C_in]``, ``h [..., N, H]`` (zeros if ``None``) -> ``h' [..., N, H]``.

    Example:
        >>> cell = DCGRUCell(2, 16, K=2)
        >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
        >>> h = cell(torch.randn(8, 3, 2), edge_index)
        >>> cell(torch.randn(8, 3, 2), edge_index, h=h).shape
        torch.Size([8, 3, 16])
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        K: int = 2,
        bias: bool = True,
        *,
        reference_compat: bool = False,
        bidirectional: bool = True,
        cached: bool = False,
        node_dim: int = -2,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.node_dim = node_dim
        c_in = in_channels + hidden_channels
        self.gate_conv = DiffusionConv(
            c_in, 2 * hidden_channels, K, bias,
            reference_compat=reference_compat, bidirectional=bidirectional, cached=cached, node_dim=0,
        )  # fmt: skip
        self.candidate_conv = DiffusionConv(
            c_in, hidden_channels, K, bias,
            reference_compat=reference_compat, bidirectional=bidirectional, node_dim=0,
        )  # fmt: skip
        self.num_matrices = self.gate_conv.num_matrices
        self._x_rows = slice(0, in_channels * self.num_matrices)
        self._h_rows = slice(in_channels * self.num_matrices, None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal weights; gate bias 1.0 and candidate bias 0.0 (reference)."""
        self.gate_conv.reset_parameters()
        self.candidate_conv.reset_parameters()
        if self.gate_conv.bias is not None:
            nn.init.constant_(self.gate_conv.bias, 1.0)

    # -- building blocks used by the DCRNN model (node-leading tensors) ----------------------
    @property
    def cached(self) -> bool:
        """Whether the operators are reused (see :class:`DiffusionConv`)."""
        return self.gate_conv.cached

    @cached.setter
    def cached(self, value: bool) -> None:
        self.gate_conv.cached = value

    def extra_repr(self) -> str:
        g = self.gate_conv
        return (
            f"{self.in_channels}, {self.hidden_channels}, K={g.K}, cached={g.cached}, "
            f"bidirectional={g.bidirectional}, reference_compat={g.reference_compat}"
        )

    def operators(
        self, edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int, dtype: torch.dtype
    ) -> list[Operator]:
        """Transition operators (the gate convolution's; reused with ``cached=True``)."""
        return self.gate_conv.operators(edge_index, edge_weight, num_nodes, dtype)

    def diffuse(self, x: Tensor, operators: Sequence[Operator | Tensor]) -> Tensor:
        """Diffusion features ``[N, ..., C] -> [N, ..., M * C]`` (see :meth:`DiffusionConv.diffuse`)."""
        return self.gate_conv.diffuse(x, operators)

    def weights(self) -> DCGRUWeights:
        """The weights mapped onto :meth:`diffuse`'s features, computed once per sequence.

        Input rows of both convolutions are joined into one ``[M * C_in, 3H]`` matrix (one GEMM
        for the input's gate and candidate contributions), as are their biases.
        """
        g, c = self.gate_conv, self.candidate_conv
        x_w = torch.cat([g.basis_weight(self._x_rows), c.basis_weight(self._x_rows)], dim=1)
        x_b = None if g.bias is None or c.bias is None else torch.cat([g.bias, c.bias])  # same ``bias`` flag
        return DCGRUWeights(x_w, x_b, g.basis_weight(self._h_rows), c.basis_weight(self._h_rows))

    def input_projections(self, fx: Tensor, weights: DCGRUWeights | None = None) -> tuple[Tensor, Tensor]:
        """Input contributions (with biases) to the gates and the candidate.

        ``fx [N, ..., M * C_in]`` (vectorised over any leading axes, e.g. all encoder steps) ->
        ``([N, ..., 2H], [N, ..., H])``.
        """
        w = self.weights() if weights is None else weights
        f2 = fx.reshape(-1, fx.size(-1))
        out = f2 @ w.x_weight if w.x_bias is None else torch.addmm(w.x_bias, f2, w.x_weight)
        out = out.view(*fx.shape[:-1], out.size(-1))
        return out.split([2 * self.hidden_channels, self.hidden_channels], dim=-1)

    def step(
        self,
        xg: Tensor,
        xc: Tensor,
        h: Tensor | None,
        fh: Tensor | None,
        operators: Sequence[Operator | Tensor],
        weights: DCGRUWeights | None = None,
    ) -> Tensor:
        """One update from precomputed input projections and the diffused state.

        Args:
            xg: ``[N, B, 2H]`` from :meth:`input_projections`.
            xc: ``[N, B, H]`` from :meth:`input_projections`.
            h: State ``[N, B, H]``; ``None`` for the zero state (its products are skipped).
            fh: ``diffuse(h)`` ``[N, B, M * H]`` (``None`` with ``h=None``).
            operators: Transition operators.
            weights: :meth:`weights` (computed here when ``None``).
        """
        w = self.weights() if weights is None else weights
        hid = self.hidden_channels
        if h is None:
            # zero state: the state's contributions vanish and h' = (1 - u) * c
            u = torch.sigmoid(xg[..., hid:])
            return (1.0 - u) * torch.tanh(xc)
        assert fh is not None
        shape = xg.shape[:-1]
        # addmm: the state's contribution is accumulated onto the input's in the GEMM itself
        gates = torch.sigmoid(torch.addmm(xg.reshape(-1, 2 * hid), fh.reshape(-1, fh.size(-1)), w.gate_h_weight))
        r, u = gates.view(*shape, 2 * hid).split(hid, dim=-1)
        frh = self.diffuse(r * h, operators)
        c = torch.tanh(torch.addmm(xc.reshape(-1, hid), frh.reshape(-1, frh.size(-1)), w.candidate_h_weight))
        # u * h + (1 - u) * c, as one fused op
        return torch.lerp(c.view(*shape, hid), h, u)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        h: Tensor | None = None,
    ) -> Tensor:
        """One GRU step (see the class docstring for shapes)."""
        xn = x.movedim(self.node_dim, 0)
        hn = None if h is None else h.movedim(self.node_dim, 0)
        ops = self.operators(edge_index, edge_weight, xn.size(0), x.dtype)
        w = self.weights()
        xg, xc = self.input_projections(self.diffuse(xn, ops), w)
        out = self.step(xg, xc, hn, None if hn is None else self.diffuse(hn, ops), ops, w)
        return out.movedim(0, self.node_dim)


class DCGRUWeights(NamedTuple):
    """A :class:`DCGRUCell`'s weights on the diffusion basis (see :meth:`DCGRUCell.weights`)."""

    x_weight: Tensor  # [M * C_in, 3H]: gate (2H) then candidate (H) columns
    x_bias: Tensor | None  # [3H]
    gate_h_weight: Tensor  # [M * H, 2H]
    candidate_h_weight: Tensor  # [M * H, H]
