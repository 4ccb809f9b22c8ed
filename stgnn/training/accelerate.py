"""Mixed precision and ``torch.compile`` for training and evaluation.

* :func:`amp_dtype` / :func:`autocast` / :func:`grad_scaler`: ``train.amp = true`` on CUDA runs
  the forward pass under ``torch.autocast`` in bfloat16 where the GPU supports it, else in
  float16 with a :class:`torch.amp.GradScaler` (float16's small exponent range makes small
  gradients underflow without loss scaling; bfloat16 has float32's range and needs none).
  Parameters, gradients, the optimizer state, the loss and the metrics stay float32.  On the CPU
  ``amp`` is ignored (bfloat16 autocast runs there, and the tests use it as a proxy for the GPU,
  but it is slower than float32 on most CPUs).
* :func:`compile_model`: ``train.compile = true`` compiles the model's forward in place with
  ``torch.compile`` (state-dict keys unchanged, so checkpoints are the same either way).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["amp_dtype", "autocast", "compile_model", "grad_scaler"]


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype of a run: ``None`` (float32) unless ``amp`` and CUDA; then bfloat16
    where supported (Ampere and newer), else float16."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """``torch.autocast`` on ``device`` in ``dtype``; a disabled one for ``None``."""
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> Any:
    """A loss scaler, enabled for float16 only (a pass-through otherwise).

    With it enabled a step whose gradients overflow is skipped and the scale lowered, as
    :class:`torch.amp.GradScaler` does; that is not an error.
    """
    enabled = dtype == torch.float16
    scaler_cls = getattr(torch.amp, "GradScaler", None)
    if scaler_cls is not None:  # torch >= 2.3
        return scaler_cls(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")  # pragma: no cover


def compile_model(model: nn.Module, warm_up: Any) -> None:
    """Compile ``model``'s forward in place with ``torch.compile`` (default mode).

    The graph layers build their normalised operators (data-dependent sizes, which Dynamo cannot
    trace) on their first call and keep them (``cached=True``); ``warm_up`` runs that first call
    eagerly, without gradients, before compiling.

    Shapes are static (``dynamic=False``): every new input shape compiles once more.  A run sees
    a few -- the full batch and the last, shorter batch of each split, in training and in
    evaluation mode -- which stays within Dynamo's recompile limit (8 per function; beyond it,
    e.g. sampled training with many parts of different sizes, the extra shapes run eagerly).
    With symbolic batch sizes instead (torch's default after the first recompile), inductor
    fails on STGCN in torch 2.13 (``cannot determine truth value of Relational``) at the first
    short batch.

    Args:
        model: The model; ``model.compile()`` keeps its parameters and state-dict keys.
        warm_up: A callable running one forward pass of ``model`` on the run's graph.

    Raises:
        RuntimeError: This torch has no ``nn.Module.compile`` (torch < 2.2).
    """
    if not hasattr(model, "compile"):
        raise RuntimeError(f"train.compile needs torch >= 2.2 (nn.Module.compile); this is torch {torch.__version__}")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = warm_up()
    model.train(was_training)
    if not isinstance(out, Tensor):
        raise TypeError(f"compile_model: warm_up returned {type(out).__name__}, not a forecast tensor")
    model.compile(dynamic=False)
