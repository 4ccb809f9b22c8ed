"""DCRNN (Li, Yu, Shahabi & Liu, ICLR 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from stgnn.models.base import Batch, Forecaster, ModelSpec
from stgnn.nn.diffusion import DCGRUCell, DCGRUWeights
from stgnn.nn.graph_ops import Operator

__all__ = ["DCRNN"]


class DCRNN(Forecaster):
    r"""Diffusion Convolutional Recurrent Neural Network (sequence to sequence).

    Li, Yu, Shahabi & Liu, "Diffusion Convolutional Recurrent Neural Network: Data-Driven Traffic
    Forecasting", ICLR 2018, https://arxiv.org/abs/1707.01926.  Encoder and decoder of
    ``num_layers`` :class:`~stgnn.nn.DCGRUCell` (2 x 64 units, ``K = 2``, forward and backward
    random-walk supports).  The decoder starts from the GO symbol (zeros), feeds back its own
    prediction (``F_out`` features, a linear projection of the top hidden state) and, while
    training with ``targets``, the ground truth instead with probability ``teacher_forcing``
    (one draw per decoder step for the whole batch, as the reference).  In eval mode targets are
    never used.  The trainer gets the probability from
    :func:`stgnn.training.schedules.inverse_sigmoid_teacher_forcing` (inverse-sigmoid decay,
    ``tau = 2000``).

    Implementation: states are kept node-leading ``[N, B, H]``; every hidden state is diffused
    once and the result reused by the next layer (as its input) and by the same layer at the next
    step (as its state), and the encoder's first-layer input diffusions are computed for all steps
    at once -- the same numbers as the reference with about a third fewer sparse products.
    Diffusion features are plain sparse products with the recursion folded into the weights
    (:meth:`~stgnn.nn.DiffusionConv.basis_weight`, mapped once per forward), the state's
    contributions are accumulated onto the input's inside the GEMM (``addmm``), the zero initial
    state's products are skipped and ``u * h + (1 - u) * c`` is one ``lerp``: the same numbers up
    to float rounding (parity with the reference ~1e-6 in float32, ~1e-15 in float64).

    Parameter count at 207 nodes, ``F_in = 2``, ``F_out = 1``: 372,353 (chnsh/DCRNN_PyTorch).
    Reference weights map as described in :class:`~stgnn.nn.DCGRUCell`
    (``encoder_model.dcgru_layers.{l}`` -> ``encoder.{l}``, ``decoder_model.dcgru_layers.{l}`` ->
    ``decoder.{l}``, ``decoder_model.projection_layer`` -> ``projection``).

    Args:
        spec: Dataset-derived sizes.
        hidden_channels: DCGRU units. Default ``64``.
        num_layers: Stacked cells in encoder and decoder. Default ``2``.
        K: Diffusion steps. Default ``2``.
        bidirectional: Forward and backward supports (``dual_random_walk``). Default ``True``.
        reference_compat: Use the reference code's diffusion recursion (see
            :class:`~stgnn.nn.DiffusionConv`); the published numbers came from it. Default
            ``False`` (paper recursion).
        checkpoint: Gradient checkpointing per recurrent step while training: only the hidden
            states between steps are kept for the backward pass, everything inside a step is
            recomputed there.  Activation memory drops from about ``14 H`` to ``H`` floats per
            node, sample, layer and step (3x less peak memory at 2,000 nodes; a 10,000-node graph
            trains at batch 16 in 5.4 GB, see experiments/results/BENCHMARKS.md) for about 1.5x
            the time; same numbers.  Default ``False``.
        cached: Reuse the graph operators built at the first call while the graph passed in is
            unchanged (compared with a private copy, see :class:`~stgnn.nn.OperatorCache`).
            Default ``True``.

    Shapes:
        ``x [B, T, N, F_in]``, ``edge_index [2, E]``, ``edge_weight [E]``,
        ``targets [B, H, N, F_out]`` -> ``[B, H, N, F_out]``.

    Example:
        >>> spec = ModelSpec(num_nodes=3, in_channels=2, out_channels=1, horizon=4)
        >>> model = DCRNN(spec, hidden_channels=8)
        >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
        >>> model(torch.randn(5, 12, 3, 2), edge_index).shape
        torch.Size([5, 4, 3, 1])
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        hidden_channels: int = 64,
        num_layers: int = 2,
        K: int = 2,
        bidirectional: bool = True,
        reference_compat: bool = False,
        checkpoint: bool = False,
        cached: bool = True,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.hidden_channels = hidden_channels
        self.checkpoint = checkpoint

        def cell(c_in: int) -> DCGRUCell:
            return DCGRUCell(
                c_in,
                hidden_channels,
                K,
                reference_compat=reference_compat,
                bidirectional=bidirectional,
                cached=cached,
                node_dim=0,
            )

        self.encoder = nn.ModuleList([cell(spec.in_channels if i == 0 else hidden_channels) for i in range(num_layers)])
        self.decoder = nn.ModuleList(
            [cell(spec.out_channels if i == 0 else hidden_channels) for i in range(num_layers)]
        )
        self.projection = nn.Linear(hidden_channels, spec.out_channels)

    def forecast(
        self,
        batch: Batch,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        teacher_forcing: float = 0.0,
    ) -> Tensor:
        """Forecast ``batch``; while training, feed ``batch.y_scaled`` with prob. ``teacher_forcing``."""
        if self.training and teacher_forcing > 0:
            return self(
                batch.x,
                edge_index,
                edge_weight,
                targets=batch.y_scaled,
                teacher_forcing=teacher_forcing,
            )
        return self(batch.x, edge_index, edge_weight)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        targets: Tensor | None = None,
        teacher_forcing: float = 0.0,
    ) -> Tensor:
        """Encode ``x`` and decode ``H`` steps (see the class docstring)."""
        spec = self.spec
        if x.dim() != 4 or x.size(-1) != spec.in_channels:
            raise ValueError(f"expected x [B, T, N, {spec.in_channels}], got {tuple(x.shape)}")
        b, t_in, n, _ = x.shape
        use_truth = self.training and targets is not None and teacher_forcing > 0
        if use_truth:
            assert targets is not None
            want = (b, spec.horizon, n, spec.out_channels)
            if tuple(targets.shape) != want:
                raise ValueError(f"targets must be {want}, got {tuple(targets.shape)}")
            truth = rearrange(targets, "b h n f -> h n b f")
        encoder = cast(list[DCGRUCell], list(self.encoder))
        decoder = cast(list[DCGRUCell], list(self.decoder))
        first = encoder[0]
        ops = first.operators(edge_index, edge_weight, n, x.dtype)
        # weights on the diffusion basis, once per forward (not per step)
        enc_w = [cell.weights() for cell in encoder]
        dec_w = [cell.weights() for cell in decoder]
        if self.checkpoint and torch.is_grad_enabled():
            return self._forward_checkpointed(x, ops, enc_w, dec_w, truth if use_truth else None, teacher_forcing)
        h: list[Tensor | None] = [None for _ in encoder]  # None: the zero initial state
        fh: list[Tensor | None] = [None for _ in encoder]

        # encoder: first-layer input diffusions and projections for all steps at once
        xn = rearrange(x, "b t n f -> n t b f").contiguous()
        xg_all, xc_all = first.input_projections(first.diffuse(xn, ops), enc_w[0])  # [N, T, B, *]
        # unbind, not xg_all[:, t]: indexing's backward would zero-fill a full-size gradient per step
        xg_steps, xc_steps = xg_all.unbind(1), xc_all.unbind(1)
        for t in range(t_in):
            xg, xc = xg_steps[t], xc_steps[t]
            for layer, cell in enumerate(encoder):
                if layer > 0:
                    xg, xc = cell.input_projections(cast(Tensor, fh[layer - 1]), enc_w[layer])
                h[layer] = cell.step(xg, xc, h[layer], fh[layer], ops, enc_w[layer])
                fh[layer] = cell.diffuse(cast(Tensor, h[layer]), ops)

        # decoder
        dec_in = x.new_zeros(n, b, spec.out_channels)  # GO symbol
        last = len(decoder) - 1
        outputs = []
        for t in range(spec.horizon):
            for layer, cell in enumerate(decoder):
                if layer == 0:
                    xg, xc = cell.input_projections(cell.diffuse(dec_in, ops), dec_w[0])
                else:
                    xg, xc = cell.input_projections(cast(Tensor, fh[layer - 1]), dec_w[layer])
                h[layer] = cell.step(xg, xc, h[layer], fh[layer], ops, dec_w[layer])
                if not (t == spec.horizon - 1 and layer == last):
                    fh[layer] = cell.diffuse(cast(Tensor, h[layer]), ops)
            y = self.projection(cast(Tensor, h[last]))  # [N, B, F_out]
            outputs.append(y)
            dec_in = y
            if use_truth and float(torch.rand(())) < teacher_forcing:
                dec_in = truth[t]
        return rearrange(torch.stack(outputs), "h n b f -> b h n f")

    def _forward_checkpointed(
        self,
        x: Tensor,
        ops: list[Operator],
        enc_w: list[DCGRUWeights],
        dec_w: list[DCGRUWeights],
        truth: Tensor | None,
        teacher_forcing: float,
    ) -> Tensor:
        """:meth:`forward` with one checkpointed segment per step (``checkpoint=True``).

        A segment takes the states (and the step's input) and returns the new states; the
        diffusion of a state is recomputed inside the segment that reads it rather than carried
        over (carrying it would keep ``M H`` floats per node and sample alive between steps).
        """
        spec = self.spec
        b, t_in, n, _ = x.shape
        encoder = cast(list[DCGRUCell], list(self.encoder))
        decoder = cast(list[DCGRUCell], list(self.decoder))

        def run_layers(
            cells: list[DCGRUCell], weights: list[DCGRUWeights], xg: Tensor, xc: Tensor, hs: Sequence[Tensor | None]
        ) -> list[Tensor]:
            new: list[Tensor] = []
            for layer, cell in enumerate(cells):
                if layer > 0:
                    xg, xc = cell.input_projections(cell.diffuse(new[-1], ops), weights[layer])
                h = hs[layer]
                fh = None if h is None else cell.diffuse(h, ops)
                new.append(cell.step(xg, xc, h, fh, ops, weights[layer]))
            return new

        def enc_segment(xg: Tensor, xc: Tensor, *hs: Tensor | None) -> tuple[Tensor, ...]:
            return tuple(run_layers(encoder, enc_w, xg, xc, hs))

        def dec_segment(dec_in: Tensor, *hs: Tensor) -> tuple[Tensor, ...]:
            xg, xc = decoder[0].input_projections(decoder[0].diffuse(dec_in, ops), dec_w[0])
            new = run_layers(decoder, dec_w, xg, xc, hs)
            return (*new, self.projection(new[-1]))

        xn = rearrange(x, "b t n f -> n t b f").contiguous()
        xg_all, xc_all = encoder[0].input_projections(encoder[0].diffuse(xn, ops), enc_w[0])
        xg_steps, xc_steps = xg_all.unbind(1), xc_all.unbind(1)
        states: tuple[Tensor | None, ...] = tuple(None for _ in encoder)
        for t in range(t_in):
            states = checkpoint(enc_segment, xg_steps[t], xc_steps[t], *states, use_reentrant=False)
        dec_in = x.new_zeros(n, b, spec.out_channels)  # GO symbol
        outputs = []
        for t in range(spec.horizon):
            *hs, y = checkpoint(dec_segment, dec_in, *states, use_reentrant=False)
            states = tuple(hs)
            outputs.append(y)
            dec_in = y
            if truth is not None and float(torch.rand(())) < teacher_forcing:
                dec_in = truth[t]
        return rearrange(torch.stack(outputs), "h n b f -> b h n f")
