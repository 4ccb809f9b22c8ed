"""A model ready to serve: its input spec, a forward function on batches, and its description.

Two backends compute the forecast:

* PyTorch: the checkpoint's experiment (:func:`~stgnn.training.trainer.experiment_from_checkpoint`,
  which reads the dataset for its graph and checks it against the checkpoint's fingerprint);
* ONNX: a file written by ``stgnn export --format onnx`` (graph baked in, see
  :mod:`stgnn.serving.export`), run with onnxruntime; only the checkpoint is read (its sensor
  ids, scaler and config), no data files.  The export records the sha256 of its checkpoint and
  a different checkpoint is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from stgnn.data.batch import Batch
from stgnn.distributions import ForecastDistribution, PointForecast
from stgnn.models.heads import head_distribution
from stgnn.serving.export import checkpoint_digest, onnx_metadata
from stgnn.serving.window import WindowSpec, concat_batches
from stgnn.training.checkpoint import load_checkpoint
from stgnn.training.trainer import Experiment, experiment_from_checkpoint

__all__ = ["Forecast", "ServedModel", "load_served_model"]


class Forecast(NamedTuple):
    """One request's forecast in raw units: ``point`` ``[B, H, N, F_out]``, and the interval when asked."""

    point: Tensor
    lower: Tensor | None = None
    upper: Tensor | None = None


@dataclass
class ServedModel:
    """What the server needs from a model.

    Attributes:
        spec: The input the model takes (sensor ids, window length, scaler, ...).
        forward: ``Batch -> ForecastDistribution`` in raw units (CPU; a
            :class:`~stgnn.distributions.PointForecast` for a point model); called from one worker
            thread at a time.
        backend: ``pytorch`` or ``onnx``.
        info: The description ``GET /model`` returns.
    """

    spec: WindowSpec
    forward: Callable[[Batch], ForecastDistribution]
    backend: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def head(self) -> str:
        """``point``, ``gaussian`` or ``quantile``."""
        return self.spec.config.head.kind

    def covers(self, level: float) -> bool:
        """Whether the model can give the central ``level`` prediction interval."""
        cfg = self.spec.config.head
        if cfg.kind == "point":
            return False
        probe = head_distribution(cfg.kind, cfg.quantiles, torch.zeros(1, 2 if cfg.kind == "gaussian"
                                                                         else len(cfg.quantiles)))
        return probe.covers(level)

    def forecast_many(self, requests: Sequence[tuple[Batch, float | None]]) -> list[Forecast]:
        """One forward pass over the windows of all ``(batch, interval level or None)`` requests.

        Returns:
            One :class:`Forecast` per request (its windows only, its interval when it asked).
        """
        dist = self.forward(concat_batches([b for b, _ in requests]))
        sizes = [b.x.shape[0] for b, _ in requests]
        points = torch.split(dist.point, sizes)
        bounds: dict[float, tuple[tuple[Tensor, ...], tuple[Tensor, ...]]] = {}
        for asked in {lv for _, lv in requests if lv is not None}:
            low, high = dist.interval(asked)
            bounds[asked] = torch.split(low, sizes), torch.split(high, sizes)
        out = []
        for i, (_, level) in enumerate(requests):
            if level is None:
                out.append(Forecast(points[i]))
            else:
                out.append(Forecast(points[i], bounds[level][0][i], bounds[level][1][i]))
        return out


def _test_metrics(checkpoint: Path) -> dict[str, Any] | None:
    """The test metrics of the run the checkpoint belongs to (``metrics.json`` beside it), if any."""
    path = checkpoint.parent / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except ValueError:
        return None
    return {"horizons": metrics.get("horizons"), "units": metrics.get("units")}


def _onnx_forward(path: Path, spec: WindowSpec, threads: int | None) -> Callable[[Batch], ForecastDistribution]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    shape = inputs[0].shape
    want = [spec.input_len, spec.num_nodes, spec.in_channels]
    if len(inputs) != 1 or len(shape) != 4 or list(shape[1:]) != want:
        raise ValueError(f"{path}: takes inputs {[(i.name, i.shape) for i in inputs]}, but the checkpoint's model "
                         f"takes x [B, {', '.join(map(str, want))}]: not an export of this checkpoint")
    name = inputs[0].name
    scaler = spec.target_scaler
    head = spec.config.head

    def forward(batch: Batch) -> ForecastDistribution:
        out = torch.from_numpy(session.run(None, {name: batch.x.numpy()})[0])
        if head.kind == "point":
            return PointForecast(scaler.inverse(out))
        return head_distribution(head.kind, head.quantiles, out).affine(scaler.std, scaler.mean)

    return forward


def load_served_model(
    checkpoint: str | os.PathLike[str],
    *,
    onnx: str | os.PathLike[str] | None = None,
    experiment: Experiment | None = None,
    root: str | os.PathLike[str] | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> ServedModel:
    """Load a checkpoint (and optionally its ONNX export) for serving.

    Args:
        checkpoint: The checkpoint file.
        onnx: An ONNX export of that checkpoint (``stgnn export``); default: serve the PyTorch model.
        experiment: The checkpoint's experiment when the caller has built it already (PyTorch backend).
        root: Data root (PyTorch backend: the dataset is read for its graph).
        device: Overrides the checkpoint's device (PyTorch backend).
        threads: onnxruntime intra-op threads (default: its own choice).

    Raises:
        ValueError: The checkpoint has no data fingerprint, the ONNX file was exported from another
            checkpoint or takes another input shape, or the data no longer fits the checkpoint.
    """
    path = Path(checkpoint)
    state = load_checkpoint(path)
    spec = WindowSpec.from_checkpoint(state, path)
    info: dict[str, Any] = {
        "model": spec.model,
        "dataset": spec.dataset,
        "num_nodes": spec.num_nodes,
        "input_len": spec.input_len,
        "horizon": spec.horizon,
        "interval_minutes": spec.interval_minutes,
        "sensor_ids": list(spec.sensor_ids),
        "input_features": len(spec.input_features),
        "covariates": list(spec.covariate_names),
        "head": {"kind": spec.config.head.kind, "quantiles": list(spec.config.head.quantiles)},
        "config": spec.config.to_dict(),
        "test_metrics": _test_metrics(path),
        "data_fingerprint": state["data"],
        "checkpoint": str(path),
    }
    if onnx is not None:
        meta = onnx_metadata(onnx)
        digest = checkpoint_digest(path)
        recorded = meta.get("checkpoint_sha256")
        if recorded != digest:
            why = ("records no checkpoint" if recorded is None
                   else f"was exported from a checkpoint with sha256 {recorded}")
            raise ValueError(f"{onnx}: {why}, not from {path} (sha256 {digest}); export it again: stgnn export "
                             f"--checkpoint {path} --format onnx --output {onnx}")
        info.update(backend="onnx", onnx=str(onnx), num_edges=int(meta["num_edges"]),
                    quantized=meta.get("quantized", "none"))
        return ServedModel(spec, _onnx_forward(Path(onnx), spec, threads), "onnx", info)
    exp = experiment if experiment is not None else experiment_from_checkpoint(path, root, device, state=state)[0]
    info.update(backend="pytorch", num_edges=int(exp.edge_index.shape[1]), device=str(exp.device))
    return ServedModel(spec, exp.predict_distribution, "pytorch", info)
