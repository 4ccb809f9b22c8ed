"""Integrated gradients for one forecast of a registered model.

Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017,
https://arxiv.org/abs/1703.01365.  The attribution of input ``x_i`` to the output ``F`` is

    IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i da

for a baseline input ``x'``.  The integral is approximated by the midpoint rule over ``steps``
points, all evaluated in one batched forward/backward (the points are the batch).  By the
*completeness* axiom the attributions sum to ``F(x) - F(x')``; the gap left by the
approximation is returned as ``delta`` so a reader can judge it.

Written here rather than taken from captum: it is a dozen lines on top of the model's own
batching, and going through :meth:`Forecaster.forecast` (so models that need more than ``x``,
e.g. time slots, work unchanged) would need a wrapper around captum anyway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from stgnn.models import Batch, Forecaster

__all__ = ["Attribution", "integrated_gradients"]


@dataclass(frozen=True)
class Attribution:
    """Integrated-gradients attribution of one forecast value.

    Attributes:
        values: ``[T_in, N, F_in]`` attribution of every input (sums to about
            ``output - baseline_output``), in the model's output units (scaled space).
        output: The forecast value ``F(x)``.
        baseline_output: ``F(x')``.
        delta: ``sum(values) - (output - baseline_output)``: the approximation error.
    """

    values: Tensor
    output: float
    baseline_output: float
    delta: float

    def sensor_importance(self) -> Tensor:
        """``[N]`` total absolute attribution of each sensor (over steps and channels)."""
        return self.values.abs().sum(dim=(0, 2))

    def step_importance(self) -> Tensor:
        """``[T_in]`` total absolute attribution of each input step (over sensors and channels)."""
        return self.values.abs().sum(dim=(1, 2))


def _repeat(batch: Batch, x: Tensor) -> Batch:
    """``batch`` (one window) with ``x [S, T, N, F]`` as inputs and every other field repeated ``S`` times."""
    s = x.shape[0]
    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    out = {k: (v.expand(s, *v.shape[1:]) if isinstance(v, Tensor) else v) for k, v in fields.items()}
    out["x"] = x
    return Batch(**out)


def _point(output: Tensor, point: Callable[[Tensor], Tensor] | None) -> Tensor:
    out = output if point is None else point(output)
    if out.dim() != 4:
        raise ValueError(f"the forecast is {tuple(out.shape)}, not point forecasts [B, H, N, F_out]: give point= to "
                         "map it to them")
    return out


def integrated_gradients(
    model: Forecaster,
    batch: Batch,
    edge_index: Tensor,
    edge_weight: Tensor | None = None,
    *,
    horizon: int,
    node: int,
    feature: int = 0,
    baseline: Tensor | None = None,
    steps: int = 64,
    chunk: int = 32,
    point: Callable[[Tensor], Tensor] | None = None,
) -> Attribution:
    """Attribute the forecast ``[horizon, node, feature]`` of one window to its inputs.

    Args:
        model: A model whose forecast is differentiable in ``batch.x``; it is put in eval mode.
        batch: One window (``batch.x [1, T_in, N, F_in]``).
        edge_index: ``[2, E]`` graph.
        edge_weight: ``[E]`` weights or ``None``.
        horizon: Forecast step (0-based).
        node: Node index of the forecast explained.
        feature: Output feature. Default ``0``.
        baseline: ``[T_in, N, F_in]`` reference input; default all zeros (in scaled space: every
            standardised channel at its training mean).
        steps: Points of the midpoint rule. Default ``64``.
        chunk: Points per forward pass (memory). Default ``32``.
        point: Maps the model's forecast output to point forecasts ``[S, H, N, F_out]`` (e.g. the
            mean of a distributional head's parameters); default: the output is one already.

    Returns:
        The :class:`Attribution`.

    Raises:
        ValueError: ``batch`` holds more than one window, ``steps < 1``, the forecast does
            not depend on ``batch.x`` (statistical baselines such as ``ha``), or it is not
            ``[S, H, N, F_out]`` (give ``point``).

    Example:
        >>> from stgnn.models import ModelSpec, build_model
        >>> model = build_model("gwnet", ModelSpec(num_nodes=3, in_channels=1, out_channels=1, horizon=2),
        ...                     residual_channels=8, dilation_channels=8, skip_channels=8, end_channels=8)
        >>> x = torch.randn(1, 12, 3, 1)
        >>> batch = Batch(x=x, y=torch.zeros(1, 2, 3, 1), y_scaled=torch.zeros(1, 2, 3, 1),
        ...               mask=torch.ones(1, 2, 3, dtype=torch.bool), start=torch.zeros(1, dtype=torch.long),
        ...               slot=torch.zeros(1, 2, dtype=torch.long))
        >>> attr = integrated_gradients(model, batch, torch.tensor([[0, 1], [1, 2]]), horizon=1, node=2)
        >>> attr.values.shape, attr.sensor_importance().shape
        (torch.Size([12, 3, 1]), torch.Size([3]))
        >>> abs(attr.delta) < 0.05 * abs(attr.output - attr.baseline_output) + 1e-4
        True
    """
    if batch.x.shape[0] != 1:
        raise ValueError(f"integrated_gradients explains one window; got a batch of {batch.x.shape[0]}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = batch.x[0].detach()
    base = torch.zeros_like(x) if baseline is None else baseline.to(x)
    if base.shape != x.shape:
        raise ValueError(f"baseline {tuple(base.shape)} does not match the input {tuple(x.shape)}")
    model.eval()
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    grads = torch.zeros_like(x)
    for start in range(0, steps, chunk):
        a = alphas[start : start + chunk].view(-1, 1, 1, 1)
        points = (base + a * (x - base)).requires_grad_(True)
        out = _point(model.forecast(_repeat(batch, points), edge_index, edge_weight), point)[:, horizon, node, feature]
        grad = torch.autograd.grad(out.sum(), points, allow_unused=True)[0] if out.requires_grad else None
        if grad is None:
            raise ValueError(f"the forecast of {type(model).__name__} does not depend on its inputs: "
                             "there is nothing to attribute")
        grads += grad.sum(dim=0)
    values = (x - base) * grads / steps
    with torch.no_grad():
        ends = _point(model.forecast(_repeat(batch, torch.stack([x, base])), edge_index, edge_weight), point)
    output, baseline_output = float(ends[0, horizon, node, feature]), float(ends[1, horizon, node, feature])
    delta = float(values.sum()) - (output - baseline_output)
    return Attribution(values.detach(), output, baseline_output, delta)
