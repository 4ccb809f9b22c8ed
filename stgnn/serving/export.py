"""``stgnn export``: a checkpoint's model as ONNX or TorchScript, optionally int8-quantized.

**The graph is baked in.**  An exported model takes one input, ``x [B, T_in, N, F_in]`` (scaled
readings plus covariates, as :class:`~stgnn.serving.window.WindowSpec` builds them), and returns
the scaled forecast ``[B, H, N, F_out]``; the checkpoint's graph operators are constants of the
exported program.  The graph is not an input because building the operators is not exportable:
the scaled Laplacian's ``lambda_max`` comes from an ARPACK eigen-solver (scipy), and coalescing
and normalising an edge list has data-dependent sizes.  The graph of a dataset is static, so an
exported model serves that network; for another graph, export again from a checkpoint whose data
has that graph.  The batch size is dynamic.

Export runs the model once eagerly on real windows (its layers then hold the dataset's
operators, ``cached=True``) and then traces it with :func:`torch.export.export`, under which the
graph products use plain gather + ``index_add`` operations (ScatterND in ONNX) instead of the
sparse CSR kernel, which has no ONNX form.  ONNX goes through PyTorch's ``torch.export``-based
exporter (``onnxscript``).  TorchScript is :func:`torch.jit.trace`; the graph layers refuse to be
traced (a trace would replay one graph's operator for any graph given later), so only models
without graph layers (``lstm``) export to TorchScript, and the others are refused with that
reason (tracing the ``torch.export`` program instead fixes the batch size: its shape arithmetic
runs in Python integers, which a trace records as constants).

Every ONNX export is checked with onnxruntime against the PyTorch model on the checkpoint's
test windows: the largest difference of the scaled outputs must stay within ``1e-4``.  Dynamic
int8 quantization (:func:`onnxruntime.quantization.quantize_dynamic`: int8 weights, activations
quantized per batch at run time) is for CPU inference; it changes the outputs, so instead of the
equality check its report gives the metric change versus float32.

Statistical baselines (``ha``, ``last``) are not exported: their forecast reads the batch's time
slots or input mask rather than ``x`` alone, and they have no weights to compress.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from stgnn.data.batch import Batch
from stgnn.metrics import MaskedMetrics
from stgnn.training.trainer import Experiment

__all__ = [
    "FORMATS",
    "ONNX_TOLERANCE",
    "ExportReport",
    "GraphBaked",
    "checkpoint_digest",
    "export_model",
    "exportable",
    "onnx_metadata",
]

FORMATS = ("onnx", "torchscript")
ONNX_TOLERANCE = 1e-4
"""Largest allowed difference between the ONNX and the PyTorch outputs (scaled units)."""
META_PREFIX = "stgnn."


class GraphBaked(nn.Module):
    """A model with its graph fixed: ``forward(x) -> model(x, edge_index, edge_weight)``.

    Args:
        model: The forecaster (in eval mode).
        edge_index: ``[2, E]`` the checkpoint's graph.
        edge_weight: ``[E]`` or ``None``.

    Shapes:
        x: ``[B, T_in, N, F_in]`` -> ``[B, H, N, F_out]`` (scaled).
    """

    def __init__(self, model: nn.Module, edge_index: Tensor, edge_weight: Tensor | None) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("edge_index", edge_index)
        self.register_buffer("edge_weight", edge_weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x, self.edge_index, self.edge_weight)


def exportable(exp: Experiment) -> str | None:
    """``None`` when the model can be exported, else why not."""
    if not exp.model.trainable:
        return (f"{exp.config.model} is a statistical baseline: its forecast reads the batch's time slots / input "
                "mask, not the input tensor alone, and it has no weights to compress")
    return None


def checkpoint_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a checkpoint file (an export records it, and serving checks it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ExportReport:
    """What :func:`export_model` did and measured.

    Attributes:
        path: The written file.
        format: ``onnx`` or ``torchscript``.
        quantized: Whether int8 dynamic quantization was applied.
        size_bytes: File size.
        windows: Test windows the check ran on.
        max_abs_diff: Largest ``|exported - PyTorch|`` over those windows (scaled units).
        latency_ms: Median CPU latency of one forward pass at ``latency_batch``, exported and PyTorch.
        metrics: Test-window MAE / RMSE / MAPE (12-step average, raw units) of the exported and the
            PyTorch model.
    """

    path: Path
    format: str
    quantized: bool
    size_bytes: int
    windows: int
    max_abs_diff: float
    latency_batch: int
    latency_ms: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"path": str(self.path), "format": self.format, "quantized": self.quantized,
                "size_bytes": self.size_bytes, "windows": self.windows, "max_abs_diff": self.max_abs_diff,
                "latency_batch": self.latency_batch, "latency_ms": self.latency_ms, "metrics": self.metrics}

    def lines(self) -> list[str]:
        """A human-readable summary."""
        out = [f"wrote {self.path} ({self.format}{', int8 dynamic' if self.quantized else ''}, "
               f"{self.size_bytes / 1e6:.2f} MB)",
               f"checked on {self.windows} test windows: max |exported - pytorch| = {self.max_abs_diff:.2e} "
               "(scaled units)"]
        lat = self.latency_ms
        out.append(f"CPU latency, batch {self.latency_batch}: exported {lat['exported']:.2f} ms, "
                   f"pytorch {lat['pytorch']:.2f} ms (median)")
        for name, m in self.metrics.items():
            shown = ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} -" for k, v in m.items())
            out.append(f"test average ({name}): {shown}")
        return out


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``stgnn.*`` metadata an exported ONNX file carries (prefix removed)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def _test_batches(exp: Experiment, limit: int | None, batch_size: int = 64) -> Iterator[Batch]:
    starts = exp.data.splits["test"]
    if limit is not None:
        starts = starts[:limit]
    for i in range(0, starts.numel(), batch_size):
        yield exp.data.batch(starts[i : i + batch_size])


def _scaled_reference(exp: Experiment, batch: Batch) -> Tensor:
    exp.model.eval()
    with torch.no_grad():
        return exp.model.forecast(batch.to(exp.device), exp.edge_index, exp.edge_weight).float().cpu()


def _trace_program(exp: Experiment, sample: Tensor) -> torch.export.ExportedProgram:
    """The model with the checkpoint's graph baked in, traced by :func:`torch.export.export`.

    Raises:
        ValueError: The forward pass reads the graph's values (e.g. neighbourhood lists of
            data-dependent size built at every call), which an exported program cannot do.
    """
    from torch._subclasses.fake_tensor import DataDependentOutputException
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    wrapped = GraphBaked(exp.model, exp.edge_index, exp.edge_weight).eval()
    with torch.no_grad():
        wrapped(sample)  # fills the layers' operator caches with the dataset's graph
        try:
            # Dim.DYNAMIC rather than a named Dim: the solver cannot prove some stride guards of the
            # graph products (e.g. 96 B >= 4 B min(24, 24 B)) that hold for every B >= 1
            return torch.export.export(wrapped, (sample,), dynamic_shapes={"x": {0: torch.export.Dim.DYNAMIC}},
                                       strict=False)
        except (GuardOnDataDependentSymNode, DataDependentOutputException) as exc:
            where = next((line.strip() for line in str(exc).splitlines() if line.strip().startswith("File ")), "")
            raise ValueError(
                f"{exp.config.model} cannot be exported to ONNX: its forward pass reads the graph's values at every "
                f"call (to compare the graph with a kept copy, or to build neighbourhood lists of data-dependent "
                f"size), which an exported program cannot do{f' ({where})' if where else ''}; --format torchscript "
                "may work for it"
            ) from exc


def _write_onnx(program: torch.export.ExportedProgram, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, input_names=["x"], output_names=["forecast"], dynamo=True,
                                         optimize=True, verbose=False)
    assert onnx_program is not None
    onnx_program.save(str(path))


def _set_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Record ``metadata`` (``stgnn.*`` keys) in the ONNX file and check the model."""
    import onnx

    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if not p.key.startswith(META_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))


def _quantize_onnx(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # the exporter leaves some weights behind constant-foldable nodes (e.g. an Unsqueeze of an
    # initializer); onnxruntime's pre-processing folds them so the quantizer finds every weight
    prepared = dst.with_name(f"prepared-{dst.name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8)


def _write_torchscript(exp: Experiment, sample: Tensor, path: Path, metadata: dict[str, str]) -> None:
    wrapped = GraphBaked(exp.model, exp.edge_index, exp.edge_weight).eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapped, (sample,), check_trace=False)
    except RuntimeError as exc:
        if "torch.jit.trace" not in str(exc):
            raise
        raise ValueError(
            f"{exp.config.model} cannot be exported to TorchScript: its graph layers refuse torch.jit.trace (a trace "
            "would record the graph operator as a constant and replay it for any graph given later); use --format "
            "onnx, which bakes the checkpoint's graph in on purpose and takes only x as input") from exc
    torch.jit.save(traced, str(path), _extra_files={f"{META_PREFIX}{k}": v for k, v in metadata.items()})


class _Runner:
    """Runs an exported file on a scaled input (numpy in, torch out)."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.fmt = fmt
        if fmt == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        else:
            self.module = torch.jit.load(str(path), map_location="cpu")

    def __call__(self, x: Tensor) -> Tensor:
        if self.fmt == "onnx":
            return torch.from_numpy(self.session.run(None, {"x": x.numpy()})[0])
        with torch.no_grad():
            return self.module(x)


def _median_ms(fn: Any, x: Tensor, repeats: int) -> float:
    with torch.no_grad():
        fn(x)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def _headline(metrics: MaskedMetrics) -> dict[str, float | None]:
    average = metrics.compute()["average"]
    return {k: average[k] for k in ("mae", "rmse", "mape")}


def export_model(
    exp: Experiment,
    output: str | os.PathLike[str],
    fmt: Literal["onnx", "torchscript"],
    *,
    quantize: Literal["dynamic"] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    check_windows: int | None = None,
    latency_batch: int = 1,
    latency_repeats: int = 20,
) -> ExportReport:
    """Export ``exp``'s model, check it on the test windows and measure it.

    Args:
        exp: The checkpoint's experiment (:func:`~stgnn.training.trainer.experiment_from_checkpoint`),
            on the CPU.
        output: The file to write.
        fmt: ``onnx`` or ``torchscript``.
        quantize: ``"dynamic"``: int8 dynamic quantization of the ONNX model (ONNX only).
        checkpoint: The checkpoint file; its sha256 is recorded in the export so that
            ``stgnn serve --onnx`` can check that the two belong together.
        check_windows: Check on the first this many test windows (default: all of them).
        latency_batch: Windows per forward pass in the latency measurement.
        latency_repeats: Timed forward passes (the median is reported).

    Returns:
        The :class:`ExportReport`.

    Raises:
        ValueError: The model cannot be exported (the reason named), ``quantize`` with TorchScript,
            a device other than the CPU, or the float32 ONNX model's outputs differ from PyTorch's
            by more than :data:`ONNX_TOLERANCE` on the test windows (the file is then not written).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}; known: {', '.join(FORMATS)}")
    if quantize not in (None, "dynamic"):
        raise ValueError(f"quantize {quantize!r}; known: dynamic")
    if quantize and fmt != "onnx":
        raise ValueError("quantize: int8 dynamic quantization is done on the ONNX model; use --format onnx")
    why = exportable(exp)
    if why:
        raise ValueError(f"{exp.config.model} cannot be exported: {why}")
    if exp.device.type != "cpu":
        raise ValueError(f"export runs on the CPU; the experiment is on {exp.device}")
    if exp.data.num_windows("test") == 0:
        raise ValueError(f"{exp.dataset.source}: no test windows to check the export on")
    output = Path(output)
    sample = next(_test_batches(exp, 2)).x
    metadata = {
        "model": exp.config.model,
        "dataset": exp.dataset.name,
        "num_nodes": str(exp.spec.num_nodes),
        "num_edges": str(int(exp.edge_index.shape[1])),
        "input_shape": f"B,{exp.spec.input_len},{exp.spec.num_nodes},{exp.spec.in_channels}",
        "quantized": quantize or "none",
    }
    if checkpoint is not None:
        metadata["checkpoint_sha256"] = checkpoint_digest(checkpoint)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        float_path = Path(tmp) / f"float{output.suffix}"
        if fmt == "onnx":
            _write_onnx(_trace_program(exp, sample), float_path)
        else:
            _write_torchscript(exp, sample, float_path, metadata)
        float_runner = _Runner(float_path, fmt)
        final_path = float_path
        runner = float_runner
        if quantize:
            final_path = Path(tmp) / f"int8{output.suffix}"
            _quantize_onnx(float_path, final_path)
            runner = _Runner(final_path, fmt)
        horizons = [h for h in (3, 6, 12) if h <= exp.spec.horizon] or [exp.spec.horizon]
        null = exp.config.data.null_value
        ours = MaskedMetrics(horizons=horizons, null_value=null)
        reference = MaskedMetrics(horizons=horizons, null_value=null)
        float_diff, diff, windows = 0.0, 0.0, 0
        for batch in _test_batches(exp, check_windows):
            ref = _scaled_reference(exp, batch)
            flt = float_runner(batch.x)
            float_diff = max(float_diff, float((flt - ref).abs().max()))
            got = flt if runner is float_runner else runner(batch.x)
            diff = max(diff, float((got - ref).abs().max()))
            ours.update(exp.to_raw(got), batch.y, batch.mask)
            reference.update(exp.to_raw(ref), batch.y, batch.mask)
            windows += batch.x.shape[0]
        if not float_diff <= ONNX_TOLERANCE:  # also catches NaN
            raise ValueError(
                f"{exp.config.model}: the exported {fmt} model differs from the PyTorch model by up to "
                f"{float_diff:.3g} (scaled units) on {windows} test windows, more than {ONNX_TOLERANCE:g}; "
                "nothing was written")
        x = next(_test_batches(exp, latency_batch, latency_batch)).x
        latency = {
            "exported": _median_ms(runner, x, latency_repeats),
            "pytorch": _median_ms(lambda t: exp.model(t, exp.edge_index, exp.edge_weight), x, latency_repeats),
        }
        if fmt == "onnx":
            _set_onnx_metadata(final_path, metadata)
        os.replace(final_path, output)
    label = "int8" if quantize else "float32"
    return ExportReport(
        path=output, format=fmt, quantized=bool(quantize), size_bytes=output.stat().st_size, windows=windows,
        max_abs_diff=diff, latency_batch=int(x.shape[0]), latency_ms=latency,
        metrics={f"exported {label}": _headline(ours), "pytorch float32": _headline(reference)},
    )
