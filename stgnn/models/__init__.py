"""Forecasting models and the explicit ``MODELS`` registry.

``MODELS`` maps a registry name to a :class:`~stgnn.models.base.Forecaster`
subclass.  Every class is built as ``cls(spec, **hparams)`` where ``spec`` is a
:class:`~stgnn.models.base.ModelSpec` derived from the data and ``hparams`` is
the ``[model]`` table of a config.
"""

from __future__ import annotations

from stgnn.models.base import Batch, Forecaster, ModelSpec
from stgnn.models.baselines import FCLSTM, HistoricalAverage, LastValue
from stgnn.models.dcrnn import DCRNN
from stgnn.models.fusion import Fusion
from stgnn.models.gwnet import GraphWaveNet
from stgnn.models.stgcn import STGCN
from stgnn.models.stpatch import STPatch
from stgnn.models.tgcn import GCN, GRU, TGCN
from stgnn.models.transformer import STTransformer

__all__ = ["MODELS", "Batch", "Forecaster", "ModelSpec", "build_model"]

MODELS: dict[str, type[Forecaster]] = {
    "ha": HistoricalAverage,
    "last": LastValue,
    "lstm": FCLSTM,
    "stgcn": STGCN,
    "dcrnn": DCRNN,
    "gwnet": GraphWaveNet,
    "tgcn": TGCN,
    "gru": GRU,
    "gcn": GCN,
    "fusion": Fusion,
    "transformer": STTransformer,
    "stpatch": STPatch,
}


def build_model(name: str, spec: ModelSpec, **hparams: object) -> Forecaster:
    """Instantiate the registered model ``name`` for ``spec`` with ``hparams``.

    Raises:
        KeyError: ``name`` is not registered (the message lists the registered names).
        TypeError: a hyper-parameter is not accepted by the model (the message names it).
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    try:
        return cls(spec, **hparams)
    except TypeError as exc:
        raise TypeError(f"model {name!r}: bad hyper-parameters {sorted(hparams)}: {exc}") from exc
