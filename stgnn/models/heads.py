"""Distributional heads: any registered model forecasting a distribution instead of a point.

:class:`DistributionalForecaster` wraps a registered model.  It builds the model for ``P``
times the forecast features (``P = 2`` for a Gaussian, ``K`` for ``K`` quantile levels) and
turns those raw outputs into distribution parameters, so every model takes a head without a
line of its own:

* ``gaussian``: per reading a mean and a scale, ``softplus(raw) + min_scale`` (positive);
  trained with the masked Gaussian negative log-likelihood.
* ``quantile``: per reading ``K`` quantiles that cannot cross: the level nearest 0.5 is a raw
  output, the levels above it add ``softplus`` increments to it one after another, and the
  levels below subtract them; trained with the pinball loss averaged over the levels.

What a model outputs in its last feature axis is the wrapped model's business; models whose
decoders feed their own output back (DCRNN, FC-LSTM) then feed back the whole parameter vector.
Two things cannot work and are refused when the config is checked
(:func:`head_problems`): teacher forcing (the ground truth has one value per reading, not ``P``)
and models that put their forecasts back into input feature slots
(:attr:`~stgnn.models.base.Forecaster.output_feedback_params`, e.g. STGCN's ``single_step``).
Non-trainable models (historical average, last value) have no head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import torch
from einops import rearrange
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from stgnn.distributions import ForecastDistribution, GaussianForecast, QuantileForecast
from stgnn.models.base import Batch, Forecaster, ModelSpec

__all__ = ["DEFAULT_QUANTILES", "HEADS", "DistributionalForecaster", "head_distribution", "head_problems"]

HEADS = ("point", "gaussian", "quantile")
"""The head kinds of the ``[head]`` config section; ``point`` is the model itself."""

DEFAULT_QUANTILES = (0.1, 0.5, 0.9)
"""Quantile levels of a ``quantile`` head when the config names none."""


def head_problems(
    model_cls: type[Forecaster], kind: str, model_params: dict[str, Any], teacher_forcing: str
) -> list[str]:
    """Why ``model_cls`` with ``model_params`` cannot take a ``kind`` head (empty: it can).

    Args:
        model_cls: The registered model class.
        kind: ``point``, ``gaussian`` or ``quantile``.
        model_params: The model's hyper-parameters from the config.
        teacher_forcing: The ``[train] teacher_forcing`` schedule name.
    """
    if kind == "point":
        return []
    problems = []
    if not model_cls.trainable:
        problems.append(f"{model_cls.__name__} is fitted by statistics, not trained; it has no {kind} head")
    for name in model_cls.output_feedback_params:
        if model_params.get(name):
            problems.append(
                f"[model_params] {name} = {model_params[name]!r} feeds forecasts back as inputs, which a {kind} "
                "head's outputs (distribution parameters) cannot be"
            )
    if teacher_forcing != "none":
        problems.append(
            f"[train] teacher_forcing = {teacher_forcing!r} feeds the ground truth to the decoder, which then "
            f"expects the {kind} head's parameters; use teacher_forcing = \"none\" with a {kind} head"
        )
    return problems


class DistributionalForecaster(Forecaster):
    """A registered model with a Gaussian or quantile head.

    Args:
        model_cls: The registered model class to wrap.
        spec: Sizes from the data (``out_channels`` = forecast features ``F``).
        kind: ``"gaussian"`` or ``"quantile"``.
        quantiles: Increasing levels in (0, 1) of a quantile head (default 0.1, 0.5, 0.9).
        min_scale: Floor of the Gaussian scale, in scaled units (default 1e-3), so the
            likelihood stays finite.
        **hparams: The wrapped model's hyper-parameters.

    Shapes:
        forward: ``x [B, T, N, F_in] -> params [B, H, N, F, P]`` in the scaled target space:
        ``P = 2`` (mean, scale) for ``gaussian``, ``K`` increasing quantiles for ``quantile``.
        :meth:`distribution` turns ``params`` into a :class:`~stgnn.distributions.ForecastDistribution`.

    Example:
        >>> import torch
        >>> from stgnn.models import MODELS, ModelSpec
        >>> spec = ModelSpec(num_nodes=3, in_channels=2, out_channels=1, horizon=4)
        >>> m = DistributionalForecaster(MODELS["gru"], spec, "quantile", hidden_channels=8)
        >>> params = m(torch.randn(5, 12, 3, 2), torch.tensor([[0, 1], [1, 2]]))
        >>> params.shape
        torch.Size([5, 4, 3, 1, 3])
        >>> bool((params.diff(dim=-1) > 0).all())   # quantiles never cross
        True
    """

    def __init__(
        self,
        model_cls: type[Forecaster],
        spec: ModelSpec,
        kind: Literal["gaussian", "quantile"],
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        *,
        min_scale: float = 1e-3,
        **hparams: Any,
    ) -> None:
        super().__init__()
        if kind not in ("gaussian", "quantile"):
            raise ValueError(f"head kind must be 'gaussian' or 'quantile', got {kind!r}")
        problems = head_problems(model_cls, kind, hparams, "none")
        if problems:
            raise ValueError("; ".join(problems))
        self.kind = kind
        self.levels = tuple(float(q) for q in quantiles) if kind == "quantile" else ()
        if kind == "quantile":
            QuantileForecast(self.levels, torch.zeros(len(self.levels)))  # checks the levels
        self.num_params = 2 if kind == "gaussian" else len(self.levels)
        # the quantile that is a raw output; the others are built outward from it
        self.anchor = min(range(len(self.levels)), key=lambda k: abs(self.levels[k] - 0.5)) if self.levels else 0
        self.min_scale = float(min_scale)
        self.spec = spec
        self.base = model_cls(replace(spec, out_channels=spec.out_channels * self.num_params), **hparams)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, **kw: Any) -> Tensor:
        """Distribution parameters ``[B, H, N, F, P]`` (scaled space) for ``x [B, T, N, F_in]``."""
        return self._constrain(self.base(x, edge_index, edge_weight, **kw))

    def forecast(
        self,
        batch: Batch,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        teacher_forcing: float = 0.0,
    ) -> Tensor:
        """Distribution parameters ``[B, H, N, F, P]`` for ``batch`` (the wrapped model's own forecast path)."""
        if teacher_forcing > 0:
            raise ValueError(f"teacher forcing cannot be used with a {self.kind} head (see head_problems)")
        return self._constrain(self.base.forecast(batch, edge_index, edge_weight))

    def _constrain(self, raw: Tensor) -> Tensor:
        raw = rearrange(raw, "b h n (f p) -> b h n f p", p=self.num_params)
        if self.kind == "gaussian":
            scale = F.softplus(raw[..., 1]) + self.min_scale
            return torch.stack([raw[..., 0], scale], dim=-1)
        a = self.anchor
        centre = raw[..., a : a + 1]
        up = centre + torch.cumsum(F.softplus(raw[..., a + 1 :]), dim=-1)
        down = centre - torch.cumsum(F.softplus(raw[..., :a]).flip(-1), dim=-1)
        return torch.cat([down.flip(-1), centre, up], dim=-1)

    def distribution(self, params: Tensor) -> ForecastDistribution:
        """The forecast distribution of ``params`` ``[B, H, N, F, P]`` (from :meth:`forward`)."""
        return head_distribution(self.kind, self.levels, params)


def head_distribution(kind: str, levels: Sequence[float], params: Tensor) -> ForecastDistribution:
    """The distribution a head's parameters ``[B, H, N, F, P]`` describe (scaled space).

    Also used on the output of an exported model (``stgnn serve --onnx``), which has no module.

    Args:
        kind: ``"gaussian"`` (``P = 2``: mean, scale) or ``"quantile"`` (``P = len(levels)``).
        levels: The quantile levels (``quantile`` only).
        params: The constrained parameters.
    """
    if kind == "gaussian":
        return GaussianForecast(params[..., 0], params[..., 1])
    return QuantileForecast(tuple(levels), params)
