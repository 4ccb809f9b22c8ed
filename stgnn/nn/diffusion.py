"""Diffusion convolution and the diffusion-convolutional GRU cell (DCRNN)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from stgnn.nn.graph_ops import OperatorKind, diffusion_series, get_operator

__all__ = ["DCGRUCell", "DiffusionConv"]


class DiffusionConv(nn.Module):
    r"""K-step bidirectional diffusion convolution (DCRNN).

    Li, Yu, Shahabi & Liu, "Diffusion Convolutional Recurrent Neural Network: Data-Driven Traffic
    Forecasting", ICLR 2018, https://arxiv.org/abs/1707.01926 (Eq. 2).  The features
    ``[x, S_f x, ..., S_b x, ...]`` (``1 + 2K`` matrices) are concatenated and mapped by one
    linear layer, where ``S_f = (D_O^{-1} W)^T`` and ``S_b = (D_I^{-1} W^T)^T`` are the forward and
    backward random-walk transition operators (``"random_walk"`` / ``"reverse_random_walk"`` in
    :mod:`stgnn.nn.graph_ops`; ``(S_f x)[j] = sum_i W[i, j] / d_out(i) x[i]``).

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
    output_size)``, so reference weights load unchanged.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        K: Diffusion steps per direction (``max_diffusion_step``).
        bias: Add a bias. Default ``True``.
        reference_compat: Reproduce the reference recursion (see above). Default ``False``.
        bidirectional: Use both transition operators (DCRNN ``dual_random_walk``); ``False`` uses
            the forward one only (``random_walk``). Default ``True``.
        node_dim: Node axis of the input. Default ``-2``.

    Shapes:
        ``x [..., N, in_channels]``, ``edge_index [2, E]`` (or dense ``[N, N]``),
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
        self.node_dim = node_dim
        self.num_matrices = 1 + (2 if bidirectional else 1) * K
        self.weight = nn.Parameter(torch.empty(in_channels * self.num_matrices, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal weight and zero bias, as the reference ``LayerParams``."""
        nn.init.xavier_normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def operators(
        self,
        edge_index: Tensor,
        edge_weight: Tensor | None,
        num_nodes: int,
        dtype: torch.dtype | None = None,
    ) -> list[Tensor]:
        """The transition operators ``[S_f]`` or ``[S_f, S_b]`` (cached per graph)."""
        kinds: tuple[OperatorKind, ...] = ("random_walk",)
        if self.bidirectional:
            kinds = ("random_walk", "reverse_random_walk")
        return [get_operator(k, edge_index, edge_weight, num_nodes, dtype=dtype) for k in kinds]

    def diffuse(self, x: Tensor, operators: Sequence[Tensor]) -> Tensor:
        """Diffusion features of node-leading ``x [N, ..., C]`` -> ``[N, ..., C * M]``.

        Channel-separable: ``diffuse(cat([a, b], -1))`` equals the per-channel interleaving of
        ``diffuse(a)`` and ``diffuse(b)``, which :class:`DCGRUCell` uses to diffuse its input and
        state separately.
        """
        terms = diffusion_series(x, operators, self.K, "dcrnn_reference" if self.reference_compat else "chebyshev")
        # stack on a new last axis: [N, ..., C, M] -> feature index c * M + m (reference order)
        return torch.stack(terms, dim=-1).flatten(-2)

    def project(self, features: Tensor, rows: slice | None = None, add_bias: bool = True) -> Tensor:
        """``features @ weight[rows] (+ bias)``; ``rows`` selects the input channels' block."""
        w = self.weight if rows is None else self.weight[rows]
        out = features @ w
        if add_bias and self.bias is not None:
            out = out + self.bias
        return out

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Apply the diffusion convolution (see the class docstring for shapes)."""
        xn = x.movedim(self.node_dim, 0)
        ops = self.operators(edge_index, edge_weight, xn.size(0), x.dtype)
        return self.project(self.diffuse(xn, ops)).movedim(0, self.node_dim)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, K={self.K}, "
            f"bidirectional={self.bidirectional}, reference_compat={self.reference_compat}"
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
        node_dim: int = -2,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.node_dim = node_dim
        c_in = in_channels + hidden_channels
        self.gate_conv = DiffusionConv(
            c_in, 2 * hidden_channels, K, bias,
            reference_compat=reference_compat, bidirectional=bidirectional, node_dim=0,
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
    def operators(
        self, edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int, dtype: torch.dtype
    ) -> list[Tensor]:
        """Transition operators (cached per graph)."""
        return self.gate_conv.operators(edge_index, edge_weight, num_nodes, dtype)

    def diffuse(self, x: Tensor, operators: Sequence[Tensor]) -> Tensor:
        """Diffusion features ``[N, ..., C] -> [N, ..., C * M]``."""
        return self.gate_conv.diffuse(x, operators)

    def input_projections(self, fx: Tensor) -> tuple[Tensor, Tensor]:
        """Input contributions (with biases) to the gates and the candidate.

        ``fx [N, ..., C_in * M]`` (vectorised over any leading axes, e.g. all encoder steps) ->
        ``([N, ..., 2H], [N, ..., H])``.
        """
        return (
            self.gate_conv.project(fx, self._x_rows),
            self.candidate_conv.project(fx, self._x_rows),
        )

    def step(self, xg: Tensor, xc: Tensor, h: Tensor, fh: Tensor, operators: Sequence[Tensor]) -> Tensor:
        """One update from precomputed input projections and the diffused state.

        Args:
            xg: ``[N, B, 2H]`` from :meth:`input_projections`.
            xc: ``[N, B, H]`` from :meth:`input_projections`.
            h: State ``[N, B, H]``.
            fh: ``diffuse(h)`` ``[N, B, H * M]``.
            operators: Transition operators.
        """
        gates = torch.sigmoid(xg + self.gate_conv.project(fh, self._h_rows, add_bias=False))
        r, u = gates.split(self.hidden_channels, dim=-1)
        frh = self.diffuse(r * h, operators)
        c = torch.tanh(xc + self.candidate_conv.project(frh, self._h_rows, add_bias=False))
        return u * h + (1.0 - u) * c

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        h: Tensor | None = None,
    ) -> Tensor:
        """One GRU step (see the class docstring for shapes)."""
        xn = x.movedim(self.node_dim, 0)
        if h is None:
            hn = xn.new_zeros(*xn.shape[:-1], self.hidden_channels)
        else:
            hn = h.movedim(self.node_dim, 0)
        ops = self.operators(edge_index, edge_weight, xn.size(0), x.dtype)
        xg, xc = self.input_projections(self.diffuse(xn, ops))
        out = self.step(xg, xc, hn, self.diffuse(hn, ops), ops)
        return out.movedim(0, self.node_dim)
