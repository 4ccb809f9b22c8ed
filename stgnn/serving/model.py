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
from typing import Any

import torch
from torch import Tensor

from stgnn.data.batch import Batch
from stgnn.serving.export import checkpoint_digest, onnx_metadata
from stgnn.serving.window import WindowSpec, concat_batches
from stgnn.training.checkpoint import load_checkpoint
from stgnn.training.trainer import Experiment, experiment_from_checkpoint

__all__ = ["ServedModel", "load_served_model"]


@dataclass
class ServedModel:
    """What the server needs from a model.

    Attributes:
        spec: The input the model takes (sensor ids, window length, scaler, ...).
        forward: ``Batch -> [B, H, N, F_out]`` forecasts in raw units (CPU); called from one
            worker thread at a time.
        backend: ``pytorch`` or ``onnx``.
        info: The description ``GET /model`` returns.
    """

    spec: WindowSpec
    forward: Callable[[Batch], Tensor]
    backend: str
    info: dict[str, Any] = field(default_factory=dict)

    def forecast_many(self, batches: Sequence[Batch]) -> list[Tensor]:
        """One forward pass over the windows of ``batches``; one ``[B_i, H, N, F_out]`` result per batch."""
        out = self.forward(concat_batches(list(batches)))
        return list(torch.split(out, [b.x.shape[0] for b in batches]))


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


def _onnx_forward(path: Path, spec: WindowSpec, threads: int | None) -> Callable[[Batch], Tensor]:
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
    inverse = spec.target_scaler.inverse

    def forward(batch: Batch) -> Tensor:
        return inverse(torch.from_numpy(session.run(None, {name: batch.x.numpy()})[0]))

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
        "probabilistic": False,
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
    return ServedModel(spec, exp.predict, "pytorch", info)
