"""STGCN (Yu, Yin & Zhu, IJCAI 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from stgnn.data.batch import Batch
from stgnn.models.base import Forecaster, ModelSpec
from stgnn.nn.blocks import NodeLayerNorm, STConvBlock
from stgnn.nn.dropout import Dropout
from stgnn.nn.temporal import GatedTemporalConv

__all__ = ["STGCN"]


class _OutputBlock(nn.Module):
    """hazdzz/STGCN ``OutputBlock``: GLU temporal conv (kernel ``Ko``), layer norm, FC, ReLU,
    dropout, FC.  Works on node-leading ``[N, B, T, C]``."""

    def __init__(
        self,
        Ko: int,
        in_channels: int,
        channels: Sequence[int],
        out_channels: int,
        num_nodes: int | None,
        dropout: float,
        bias: bool,
        reference_compat: bool,
    ) -> None:
        super().__init__()
        self.temporal = GatedTemporalConv(
            in_channels, channels[0], Ko, bias, time_dim=-2, reference_compat=reference_compat
        )
        self.norm = NodeLayerNorm(num_nodes, channels[0], node_dim=0)
        self.fc1 = nn.Linear(channels[0], channels[1], bias=bias)
        self.fc2 = nn.Linear(channels[1], out_channels, bias=bias)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, node_index: Tensor | None = None) -> Tensor:
        h = self.norm(self.temporal(x), node_index=node_index)
        return self.fc2(self.dropout(torch.relu(self.fc1(h))))


class STGCN(Forecaster):
    r"""Spatio-Temporal Graph Convolutional Network.

    Yu, Yin & Zhu, "Spatio-Temporal Graph Convolutional Networks: A Deep Learning Framework for
    Traffic Forecasting", IJCAI 2018, https://arxiv.org/abs/1709.04875.  Two ST-Conv blocks
    (channels 64-16-64, ``Kt = 3``, Chebyshev ``Ks = 3``) and an output block, following
    hazdzz/STGCN (``STGCNChebGraphConv`` / ``STGCNGraphConv``): output block = GLU temporal conv
    with kernel ``Ko = T - 2 * num_blocks * (Kt - 1)``, layer norm, FC 128 -> 128, ReLU, dropout,
    FC.  See :class:`~stgnn.nn.STConvBlock` for the block and its one structural deviation from
    the paper (shared with the reference).

    Output modes:

    * ``single_step=False`` (default): the last FC emits all ``H x F_out`` values at once
      (index ``h * F_out + f``).  This changes only the output block's last layer
      (``128 * (H F_out - F_out) + H F_out - F_out`` more parameters; +1,419 for ``H = 12``,
      ``F_out = 1``).
    * ``single_step=True``: the paper's iterative inference -- the network predicts one step,
      the prediction is appended to the input window (oldest step dropped) and the network is run
      again, ``H`` times.  The forecast features must be the first ``F_out`` input channels; the
      other input channels (covariates) of an appended step are copied from the last observed
      step (*deviation*: the paper has no covariates).  With ``horizon = 1`` this is exactly
      hazdzz/STGCN's single-output model.

    Training with ``single_step=True`` (``single_step_training``):

    * ``"rollout"`` (default, the behaviour of earlier versions): the loss is taken on the whole
      ``H``-step rollout of the model's own predictions, so gradients flow through the fed-back
      predictions.  *Deviation*: this is not how the paper trains.
    * ``"one_step"``: the paper's training -- one-step-ahead loss only, iterated at inference.
      While training, :meth:`forecast` passes the targets and every horizon ``h`` is predicted
      from the true window (the input shifted by ``h`` steps, ground truth appended; covariates of
      the appended steps copied from the last observed step, as at inference).  The ``H`` windows
      run as one batch of ``B H`` samples, and the loss over the ``H`` outputs is the mean
      one-step-ahead loss.  Evaluation and prediction iterate as above.

    Parameter count: with ``reference_compat=True, single_step=True`` and 207 nodes, 1 input and
    1 output feature, 12 input steps, the count equals hazdzz/STGCN's Chebyshev model at its
    defaults (244,609).  ``reference_compat`` registers the 1x1 align convolutions hazdzz creates
    in every layer but never uses (14,784 of those parameters, they do not affect the output), so
    its checkpoints load key-for-key; ``False`` (default) omits them (229,825).

    Implementation: the GLU's residual is folded into the convolution weight
    (:meth:`~stgnn.nn.GatedTemporalConv.folded_weight`), so each GLU layer is one convolution and
    one ``F.glu``;
    dropout masks come from :func:`stgnn.nn.dropout.dropout` (same distribution as ``F.dropout``,
    drawn 3-5x faster on CPU from another random stream).

    Node equivariance: layer norm statistics are over ``[N, C]`` as in the references; with
    ``per_node_norm=True`` (default, references) the affine parameters are ``[N, C]``, which
    ties the model to the node count and order of the training graph.  ``per_node_norm=False``
    uses per-channel affine parameters, making the model node-permutation equivariant and
    usable on any graph (*deviation*, 105,984 -> 512 norm parameters at the paper config).

    Args:
        spec: Dataset-derived sizes.
        num_blocks: ST-Conv blocks. Default ``2``.
        channels: ``(temporal, spatial, out)`` channels of each block. Default ``(64, 16, 64)``.
        output_channels: Output block channels. Default ``(128, 128)``.
        kernel_size: Temporal kernel ``Kt``. Default ``3``.
        K: Chebyshev terms ``Ks``. Default ``3``.
        graph_conv: ``"cheb"`` (default) or ``"first_order"`` (renormalised GCN).
        lambda_max: Laplacian's largest eigenvalue; ``None`` computes it (references).
        dropout: Dropout in blocks and output block. Default ``0.5`` (hazdzz/STGCN ``droprate``).
        single_step: Iterated one-step prediction (see above). Default ``False``.
        single_step_training: ``"rollout"`` (default) or ``"one_step"`` (the paper's training);
            see above. Only with ``single_step=True``.
        per_node_norm: ``[N, C]`` layer-norm affine parameters (references). Default ``True``.
        bias: Biases everywhere. Default ``True``.
        reference_compat: Register hazdzz's unused align convolutions. Default ``False``.
        cached: Reuse the graph operators built at the first call while the graph passed in is
            unchanged (compared with a private copy, see :class:`~stgnn.nn.OperatorCache`).
            Default ``True``.

    Shapes:
        ``x [B, T, N, F_in]``, ``edge_index [2, E]``, ``edge_weight [E]`` ->
        ``[B, H, N, F_out]``.

    Example:
        >>> spec = ModelSpec(num_nodes=4, in_channels=1, out_channels=1, input_len=12, horizon=3)
        >>> model = STGCN(spec)
        >>> edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
        >>> model(torch.randn(2, 12, 4, 1), edge_index).shape
        torch.Size([2, 3, 4, 1])
    """

    output_feedback_params: ClassVar[tuple[str, ...]] = ("single_step",)

    def __init__(
        self,
        spec: ModelSpec,
        *,
        num_blocks: int = 2,
        channels: Sequence[int] = (64, 16, 64),
        output_channels: Sequence[int] = (128, 128),
        kernel_size: int = 3,
        K: int = 3,
        graph_conv: Literal["cheb", "first_order"] = "cheb",
        lambda_max: float | None = None,
        dropout: float = 0.5,
        single_step: bool = False,
        single_step_training: Literal["rollout", "one_step"] = "rollout",
        per_node_norm: bool = True,
        bias: bool = True,
        reference_compat: bool = False,
        cached: bool = True,
    ) -> None:
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f"channels must be (temporal, spatial, out), got {channels}")
        if len(output_channels) != 2:
            raise ValueError(f"output_channels must have two entries, got {output_channels}")
        self.spec = spec
        self.single_step = single_step
        if single_step and spec.in_channels < spec.out_channels:
            raise ValueError("single_step needs the forecast features among the input features")
        if single_step_training not in ("rollout", "one_step"):
            raise ValueError(f"single_step_training must be 'rollout' or 'one_step', got {single_step_training!r}")
        if single_step_training == "one_step" and not single_step:
            raise ValueError(
                "single_step_training='one_step' needs single_step=True (multi-step output has no one-step loss)"
            )
        self.single_step_training = single_step_training
        Ko = spec.input_len - num_blocks * 2 * (kernel_size - 1)
        if Ko < 1:
            raise ValueError(
                f"input_len={spec.input_len} is too short for {num_blocks} blocks with "
                f"kernel_size={kernel_size} (needs > {num_blocks * 2 * (kernel_size - 1)})"
            )
        n = spec.num_nodes if per_node_norm else None
        blocks = []
        c_in = spec.in_channels
        for _ in range(num_blocks):
            blocks.append(
                STConvBlock(
                    c_in,
                    channels[0],
                    channels[1],
                    channels[2],
                    n,
                    kernel_size,
                    K,
                    graph_conv,
                    dropout,
                    bias,
                    lambda_max=lambda_max,
                    reference_compat=reference_compat,
                    cached=cached,
                    node_dim=0,
                    time_dim=-2,
                )  # fmt: skip
            )
            c_in = channels[2]
        self.blocks = nn.ModuleList(blocks)
        steps = 1 if single_step else spec.horizon
        self.output = _OutputBlock(
            Ko, c_in, output_channels, steps * spec.out_channels, n, dropout, bias, reference_compat
        )

    def _one_pass(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None, node_index: Tensor | None = None
    ) -> Tensor:
        h = rearrange(x, "b t n f -> n b t f").contiguous()
        for block in self.blocks:
            h = block(h, edge_index, edge_weight, node_index=node_index)
        out = self.output(h, node_index)  # [N, B, 1, steps * F_out]
        return rearrange(out, "n b 1 (h f) -> b h n f", f=self.spec.out_channels)

    def forecast(
        self,
        batch: Batch,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        teacher_forcing: float = 0.0,
    ) -> Tensor:
        """Forecast ``batch``; while training with ``single_step_training="one_step"``, one step
        ahead of every true window (``teacher_forcing`` is not used by STGCN)."""
        nodes = self.node_kwargs(batch)
        if self.training and self.single_step and self.single_step_training == "one_step":
            return self(batch.x, edge_index, edge_weight, targets=batch.y_scaled, **nodes)
        return self(batch.x, edge_index, edge_weight, **nodes)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        targets: Tensor | None = None,
        node_index: Tensor | None = None,
    ) -> Tensor:
        """Forecast ``[B, H, N, F_out]`` from ``x [B, T, N, F_in]``.

        Args:
            x: Scaled inputs ``[B, T, N, F_in]``.
            edge_index: ``[2, E]``.
            edge_weight: ``[E]`` or ``None``.
            targets: Scaled targets ``[B, H, N, F_out]`` (``single_step=True`` only): output ``h``
                is then the one-step prediction from the true window ending just before step
                ``h`` (teacher-forced, the paper's training) instead of the iterated forecast.
            node_index: ``[N]`` ids (among ``spec.num_nodes``) of the nodes of ``x`` when ``x``
                holds a sampled subgraph: the per-node layer-norm parameters of those nodes are
                used.  ``None``: ``x`` holds every node in order.
        """
        if x.dim() != 4 or x.size(-1) != self.spec.in_channels:
            raise ValueError(f"expected x [B, T, N, {self.spec.in_channels}], got {tuple(x.shape)}")
        f_out = self.spec.out_channels
        if targets is not None:
            if not self.single_step:
                raise ValueError("targets (one-step training) need single_step=True")
            want = (x.size(0), self.spec.horizon, x.size(2), f_out)
            if tuple(targets.shape) != want:
                raise ValueError(f"expected targets {list(want)}, got {list(targets.shape)}")
            return self._one_step_ahead(x, targets, edge_index, edge_weight, node_index)
        if not self.single_step:
            return self._one_pass(x, edge_index, edge_weight, node_index)
        window, preds = x, []
        for _ in range(self.spec.horizon):
            y = self._one_pass(window, edge_index, edge_weight, node_index)  # [B, 1, N, F_out]
            preds.append(y)
            nxt = torch.cat([y, window[:, -1:, :, f_out:]], dim=-1)
            window = torch.cat([window[:, 1:], nxt], dim=1)
        return torch.cat(preds, dim=1)

    def _one_step_ahead(
        self, x: Tensor, targets: Tensor, edge_index: Tensor, edge_weight: Tensor | None,
        node_index: Tensor | None = None,
    ) -> Tensor:
        """One-step predictions from the ``H`` true windows, run as one batch of ``B H`` samples."""
        b, t, n, _ = x.shape
        h = self.spec.horizon
        f_out = self.spec.out_channels
        # the observed steps, then the first H - 1 targets (covariates from the last observed step)
        future = torch.cat([targets[:, : h - 1], x[:, -1:, :, f_out:].expand(b, h - 1, n, -1)], dim=-1)
        full = torch.cat([x, future.to(x.dtype)], dim=1)  # [B, T + H - 1, N, F_in]
        windows = full.unfold(1, t, 1)  # [B, H, N, F_in, T]: window h = steps h .. h + T - 1
        windows = rearrange(windows, "b h n f t -> (b h) t n f")
        y = self._one_pass(windows, edge_index, edge_weight, node_index)  # [B H, 1, N, F_out]
        return rearrange(y, "(b h) 1 n f -> b h n f", b=b)
