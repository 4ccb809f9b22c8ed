"""Train and score a model under the T-GCN protocol (:mod:`stgnn.protocols.tgcn`).

The authors' loop differs from this package's trainer in every respect the protocol fixes
(max-scaling of the whole series, windows in order without shuffling, the last partial batch
dropped, a summed loss with an L2 term, a test evaluation after every epoch with selection on
it), so it is written here once, small, and used for every model under this protocol.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stgnn.metrics import masked_mae_loss
from stgnn.models import MODELS, ModelSpec, build_model
from stgnn.protocols.baselines import STATISTICAL_BASELINES
from stgnn.protocols.tgcn import Selection, tgcn_l2_loss, tgcn_metrics, tgcn_split, tgcn_windows, train_size

__all__ = ["ProtocolResult", "TrainSettings", "default_settings", "run_protocol"]

_TGCN_FAMILY = ("tgcn", "gru", "gcn")


@dataclass(frozen=True)
class TrainSettings:
    """How a neural model is trained under the protocol.

    Attributes:
        epochs: Training epochs (the authors: 5000).
        batch_size: Mini-batch size (the authors: 64 on Los-loop, 32 on SZ-taxi).
        lr: Adam learning rate.
        loss: ``"tgcn"`` (the authors' summed squared error + L2, see
            :func:`~stgnn.protocols.tgcn.tgcn_l2_loss`) or ``"mae"`` (mean absolute error).
        l2: ``lambda`` of the ``"tgcn"`` loss.
        weight_decay: Adam weight decay (for the ``"mae"`` loss).
        hparams: Model hyper-parameters (the ``[model]`` table).
    """

    epochs: int
    batch_size: int
    lr: float = 0.001
    loss: str = "tgcn"
    l2: float = 0.0015
    weight_decay: float = 0.0
    hparams: dict[str, Any] = field(default_factory=dict)


def default_settings(model: str, dataset: str, epochs: int | None = None) -> TrainSettings:
    """The protocol's training settings for ``model`` on ``dataset``.

    T-GCN, GRU and GCN get the authors' settings (Adam lr 0.001, summed loss with L2 0.0015,
    batch and hidden units of :data:`~stgnn.protocols.tgcn.PROTOCOL_SETTINGS`).  Other models
    (STGCN, DCRNN, Graph WaveNet, FC-LSTM) are trained with Adam lr 0.001, weight decay 1e-4 and
    the MAE loss (Graph WaveNet's recipe) on the same windows; their architecture keeps its
    defaults.
    """
    from stgnn.protocols.tgcn import PROTOCOL_SETTINGS

    if dataset not in PROTOCOL_SETTINGS:
        raise KeyError(f"T-GCN protocol: no settings for dataset {dataset!r}; known: {', '.join(PROTOCOL_SETTINGS)}")
    ps = PROTOCOL_SETTINGS[dataset]
    n_epochs = ps.epochs if epochs is None else epochs
    if model in _TGCN_FAMILY:
        hparams = {"hidden_channels": ps.hidden_channels} if model == "tgcn" else {}
        return TrainSettings(n_epochs, ps.batch_size, ps.lr, "tgcn", ps.l2, 0.0, hparams)
    return TrainSettings(n_epochs, ps.batch_size, 0.001, "mae", 0.0, 1e-4, {})


@dataclass
class ProtocolResult:
    """The outcome of one model at one ``pre_len`` under the protocol.

    Attributes:
        model: Registry name.
        pre_len: Forecast steps.
        selection: ``"test"`` (authors: best epoch on the test set) or ``"val"`` (honest).
        metrics: Test metrics at the selected epoch (:func:`~stgnn.protocols.tgcn.tgcn_metrics`).
        best_epoch: 1-based selected epoch (``None`` for statistical baselines).
        epochs: Epochs run.
        seconds: Wall time.
        seed: Random seed.
        windows: Window counts per part.
        predictions: De-normalised test predictions ``[W, pre_len, N]`` at the selected epoch.
        history: Per epoch: train loss, test RMSE and (``"val"``) validation RMSE.
    """

    model: str
    pre_len: int
    selection: Selection
    metrics: dict[str, float]
    best_epoch: int | None
    epochs: int
    seconds: float
    seed: int
    windows: dict[str, int]
    predictions: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Everything but the predictions, JSON-ready."""
        out = asdict(self)
        del out["predictions"]
        return out


def _predict(model: torch.nn.Module, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None,
             batch_size: int) -> Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size], edge_index, edge_weight)
                          for i in range(0, x.shape[0], batch_size)])


def _rmse(pred: Tensor, target: Tensor, scale: float) -> float:
    return float(((pred - target).double().pow(2).mean().sqrt()) * scale)


def run_protocol(
    model_name: str,
    series: np.ndarray | Tensor,
    edge_index: Tensor,
    edge_weight: Tensor | None,
    *,
    seq_len: int,
    pre_len: int,
    selection: Selection = "test",
    settings: TrainSettings | None = None,
    seed: int = 0,
    steps_per_day: int = 288,
    device: str = "cpu",
    log: Any = None,
) -> ProtocolResult:
    """Run ``model_name`` under the T-GCN protocol on ``series`` ``[T, N]`` / ``[T, N, 1]``.

    Statistical baselines (``ha``, ``svr``, ``arima`` of
    :data:`~stgnn.protocols.baselines.STATISTICAL_BASELINES`) forecast the raw test windows
    directly.  Registered neural models are trained on the max-scaled training windows, in
    order, dropping the last partial batch; after every epoch they forecast the test windows
    (and the validation windows when ``selection="val"``), and the epoch with the lowest RMSE on
    the selection set gives the reported test metrics.

    Args:
        model_name: A statistical baseline or a :data:`~stgnn.models.MODELS` name.
        series: Raw readings ``[T, N]`` or ``[T, N, 1]``, complete (no missing values).
        edge_index: ``[2, E]`` graph.
        edge_weight: ``[E]`` weights or ``None``.
        seq_len: Input steps.
        pre_len: Forecast steps.
        selection: ``"test"`` (authors) or ``"val"`` (honest).
        settings: Training settings (required for neural models).
        seed: Seed of ``torch`` and ``numpy``.
        steps_per_day: For models that need it in their :class:`~stgnn.models.ModelSpec`.
        device: Torch device.
        log: Optional callable ``log(str)`` for per-epoch progress.

    Raises:
        KeyError: unknown model.
        ValueError: bad series shape, or no settings for a neural model.
    """
    values = np.asarray(series.cpu() if isinstance(series, Tensor) else series, dtype=np.float64)
    if values.ndim == 3:
        if values.shape[2] != 1:
            raise ValueError(f"T-GCN protocol: one feature per sensor expected, got {values.shape[2]}")
        values = values[:, :, 0]
    if values.ndim != 2:
        raise ValueError(f"T-GCN protocol: series must be [T, N], got shape {values.shape}")
    split = tgcn_split(values, seq_len, pre_len, selection)
    windows = {k: int(v[0].shape[0]) for k, v in (("train", split.train), ("val", split.val), ("test", split.test))
               if v is not None}
    truth64 = tgcn_windows(values[split.bounds["test"][0] :], seq_len, pre_len)[1].numpy()  # raw [W, P, N]
    start = time.monotonic()
    np.random.seed(seed)
    torch.manual_seed(seed)

    if model_name in STATISTICAL_BASELINES:
        if selection == "val":
            raise ValueError(f"{model_name}: a statistical baseline has no epochs to select; use selection='test'")
        n_train = train_size(values.shape[0])
        tr_x, tr_y = (t.numpy() for t in tgcn_windows(values[:n_train], seq_len, pre_len))
        te_x = tgcn_windows(values[n_train:], seq_len, pre_len)[0].numpy()
        extra = {"train_series": values[:n_train]} if model_name == "arima" else {}
        pred = STATISTICAL_BASELINES[model_name](tr_x, tr_y, te_x, pre_len, **extra)
        return ProtocolResult(model_name, pre_len, selection, tgcn_metrics(truth64, pred), None, 0,
                              time.monotonic() - start, seed, windows, pred)

    if model_name not in MODELS:
        known = sorted([*MODELS, *STATISTICAL_BASELINES])
        raise KeyError(f"unknown model {model_name!r} for the T-GCN protocol; known: {', '.join(known)}")
    if settings is None:
        raise ValueError(f"{model_name}: training settings are required for a neural model")
    num_nodes = values.shape[1]
    spec = ModelSpec(num_nodes=num_nodes, in_channels=1, out_channels=1, input_len=seq_len, horizon=pre_len,
                     steps_per_day=steps_per_day)
    model = build_model(model_name, spec, **settings.hparams).to(device)
    if not getattr(model, "trainable", True):
        raise ValueError(f"{model_name}: not a trainable model; the T-GCN protocol's HA is 'ha' among its baselines")
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    ei = edge_index.to(device)
    ew = None if edge_weight is None else edge_weight.to(device)
    x_tr, y_tr = (t.unsqueeze(-1).to(device) for t in split.train)
    x_te = split.test[0].unsqueeze(-1).to(device)
    y_te = split.test[1].unsqueeze(-1).to(device)
    val = None if split.val is None else tuple(t.unsqueeze(-1).to(device) for t in split.val)
    n_batches = x_tr.shape[0] // settings.batch_size
    if n_batches == 0:
        raise ValueError(f"batch size {settings.batch_size} exceeds the {x_tr.shape[0]} training windows")
    best_score, best_epoch, best_pred = float("inf"), 0, None
    history: list[dict[str, float]] = []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        total = 0.0
        for m in range(n_batches):  # in order, the last partial batch dropped (authors' loop)
            xb = x_tr[m * settings.batch_size : (m + 1) * settings.batch_size]
            yb = y_tr[m * settings.batch_size : (m + 1) * settings.batch_size]
            pred = model(xb, ei, ew)
            if settings.loss == "tgcn":
                loss = tgcn_l2_loss(pred, yb, model.parameters(), settings.l2)
            elif settings.loss == "mae":
                loss = masked_mae_loss(pred, yb, None, None)
            else:
                raise ValueError(f"unknown loss {settings.loss!r} (use 'tgcn' or 'mae')")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        test_pred = _predict(model, x_te, ei, ew, 256)
        row = {"epoch": float(epoch), "train_loss": total / n_batches,
               "test_rmse": _rmse(test_pred, y_te, split.max_value)}
        if val is not None:
            row["val_rmse"] = _rmse(_predict(model, val[0], ei, ew, 256), val[1], split.max_value)
        history.append(row)
        score = row["val_rmse" if selection == "val" else "test_rmse"]
        if not np.isfinite(row["train_loss"]):
            raise FloatingPointError(f"{model_name}: non-finite training loss at epoch {epoch}")
        if score < best_score:
            best_score, best_epoch, best_pred = score, epoch, test_pred[..., 0].double().cpu() * split.max_value
        if log is not None:
            log(f"{model_name} pre_len={pre_len} epoch {epoch}: " + ", ".join(
                f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
    assert best_pred is not None
    pred_np = best_pred.numpy()
    return ProtocolResult(model_name, pre_len, selection, tgcn_metrics(truth64, pred_np), best_epoch,
                          settings.epochs, time.monotonic() - start, seed, windows, pred_np, history)
