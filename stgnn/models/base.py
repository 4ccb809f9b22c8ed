"""The contract every forecasting model in :data:`stgnn.models.MODELS` follows.

A model maps ``x: [B, T_in, N, F_in]`` (scaled readings plus covariates) and a
graph given as ``edge_index [2, E]`` / ``edge_weight [E]`` to a forecast
``[B, H, N, F_out]`` in the *scaled* space of the target features.  The trainer
inverts the scaling before computing masked metrics on the raw values.

Models are built from a :class:`ModelSpec` (values derived from the dataset,
never from a config) plus the model's own keyword hyper-parameters (the
``[model]`` table of a TOML config).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from stgnn.data.batch import Batch

__all__ = ["Batch", "Forecaster", "ModelSpec", "takes_node_index"]


def takes_node_index(model: type[nn.Module]) -> bool:
    """Whether ``model.forward`` takes a ``node_index`` keyword (the nodes of a sampled subgraph)."""
    return "node_index" in inspect.signature(model.forward).parameters


@dataclass(frozen=True)
class ModelSpec:
    """Sizes a model needs, derived from the dataset and the window settings.

    Attributes:
        num_nodes: Number of sensors ``N``.
        in_channels: Input features per node and step ``F_in`` (readings + covariates).
        out_channels: Forecast features per node and step ``F_out``.
        input_len: Input window length ``T_in``.
        horizon: Number of forecast steps ``H``.
        steps_per_day: Steps in one day (288 for 5-minute data).
    """

    num_nodes: int
    in_channels: int
    out_channels: int
    input_len: int = 12
    horizon: int = 12
    steps_per_day: int = 288


class Forecaster(nn.Module):
    """Base class of the registered models.

    Subclasses implement ``forward(x, edge_index, edge_weight=None, **kw)`` returning
    ``[B, H, N, F_out]``.  Two hooks adapt a model to the trainer:

    * :meth:`forecast` turns a :class:`Batch` into a forecast.  The default calls
      ``forward`` on ``batch.x``; sequence-to-sequence models with teacher forcing
      override it to pass ``targets`` while training.
    * :meth:`fit_statistics` lets non-gradient models (historical average) fit on
      the training split.  ``trainable = False`` tells the trainer to skip the
      gradient loop.
    """

    trainable: ClassVar[bool] = True
    output_feedback_params: ClassVar[tuple[str, ...]] = ()
    """Hyper-parameters that, when true, make the model feed its forecasts back into its input
    feature slots (a probabilistic head, whose outputs are distribution parameters, is then refused)."""
    accepts_covariates: ClassVar[bool] = True
    """Whether the model reads every input channel ``x[..., :F_in]`` (``spec.in_channels``), so that
    user covariates (:mod:`stgnn.data.covariates`) reach it.  A model that looks only at the
    readings (or at none of ``x``) sets it to ``False``; a config with covariates is then refused."""

    def forecast(
        self,
        batch: Batch,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        teacher_forcing: float = 0.0,
    ) -> Tensor:
        """Forecast ``[B, H, N, F_out]`` (scaled) for ``batch``.

        Args:
            batch: The mini-batch.
            edge_index: ``[2, E]`` graph connectivity.
            edge_weight: ``[E]`` edge weights or ``None``.
            teacher_forcing: Probability of feeding ground truth to a decoder (training only).
        """
        return self(batch.x, edge_index, edge_weight, **self.node_kwargs(batch))

    def node_kwargs(self, batch: Batch) -> dict[str, Tensor]:
        """``{"node_index": batch.node_index}`` for a batch of a sampled subgraph when ``forward``
        takes ``node_index`` (a model with per-node parameters indexes them with it), else ``{}``.

        A model whose parameters depend on the node count but whose ``forward`` has no
        ``node_index`` cannot train on sampled subgraphs; :func:`stgnn.training.sampling.check_sampling`
        refuses it before training.
        """
        if batch.node_index is None or not takes_node_index(type(self)):
            return {}
        return {"node_index": batch.node_index}

    def fit_statistics(self, series: Tensor, mask: Tensor, slot: Tensor) -> None:
        """Fit non-gradient parameters on the training period.

        Args:
            series: Scaled target features of the training period ``[T_train, N, F_out]``.
            mask: ``[T_train, N]``, True where a reading exists.
            slot: ``[T_train]`` time-of-week slot of every step.

        The default does nothing.
        """
