"""Start a run from another run's weights (``[train] init_from``), freezing some by name (``freeze``).

Models take the graph at ``forward`` time, so most of a model trained on one sensor network
fits another one: its weights are copied tensor by tensor, matched by name and shape.  What
does not carry over is re-initialised (the new model's own initialisation, from the run's
seed) and listed:

* **per-node tensors** -- every tensor whose shape depends on the number of nodes ``N``
  (STGCN's per-node layer norms, Graph WaveNet's node embeddings, the historical average's
  table).  They are found by building the model a second time for ``N + 1`` nodes (on the
  ``meta`` device, no memory) and comparing shapes, so no model has to declare them.  Their
  rows belong to particular sensors, so they are copied only when the two runs have exactly
  the same sensors in the same order; otherwise they are re-initialised, even when ``N``
  happens to be equal;
* tensors whose shape differs for another reason (other input features or horizon);
* tensors the checkpoint does not have.

The target data keeps its own scaler, fitted on its own training period.  Frozen parameters
(``fnmatch`` patterns on parameter names, e.g. ``blocks.0.*``) get ``requires_grad = False``,
so the optimiser never updates them; a pattern may cover re-initialised tensors too (they then
keep their initialisation, e.g. a layer norm's ones and zeros), and both lists name them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from stgnn.data.preview import preview
from stgnn.models import ModelSpec
from stgnn.training.checkpoint import load_checkpoint
from stgnn.training.config import RunConfig

__all__ = ["WarmStart", "per_node_tensors", "warm_start"]


@dataclass
class WarmStart:
    """What :func:`warm_start` did, for the log and the run folder (``init_from.json``).

    Attributes:
        source: The checkpoint the weights came from.
        loaded: Tensors copied from it.
        reinitialised: Tensors left at their fresh initialisation, each with the reason.
        unused: Tensors of the checkpoint this model has no place for.
        frozen: Parameters that will not be trained.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """Lines for the training log."""
        lines = [f"init from {self.source}: {len(self.loaded)} tensors loaded, "
                 f"{len(self.reinitialised)} re-initialised, {len(self.frozen)} parameters frozen"]
        lines += [f"  re-initialised {name}: {why}" for name, why in self.reinitialised.items()]
        if self.unused:
            lines.append(f"  not used from the checkpoint: {preview(self.unused)}")
        if self.frozen:
            lines.append(f"  frozen: {preview(self.frozen, limit=8)}")
        return "\n".join(lines)


def per_node_tensors(build: Callable[[ModelSpec], nn.Module], spec: ModelSpec) -> set[str]:
    """Names of the ``state_dict`` tensors whose shape depends on the number of nodes.

    Args:
        build: Builds the model for a spec (e.g. ``lambda s: build_model("gwnet", s)``).
        spec: The spec of the model at hand.

    Example:
        >>> from stgnn.models import build_model
        >>> spec = ModelSpec(num_nodes=5, in_channels=2, out_channels=1)
        >>> sorted(per_node_tensors(lambda s: build_model("gwnet", s), spec))
        ['adaptive.source_embedding', 'adaptive.target_embedding']
    """
    with torch.device("meta"):
        small = build(spec).state_dict()
        large = build(dataclasses.replace(spec, num_nodes=spec.num_nodes + 1)).state_dict()
    return {name for name, t in small.items() if name in large and t.shape != large[name].shape}


def warm_start(model: nn.Module, cfg: RunConfig, spec: ModelSpec, sensor_ids: list[str],
               path: str, freeze: list[str], build: Callable[[ModelSpec], nn.Module]) -> WarmStart:
    """Copy the compatible weights of checkpoint ``path`` into ``model`` and freeze by pattern.

    Args:
        model: The freshly built model of this run (changed in place).
        cfg: This run's config (its ``model`` and ``model_params``).
        spec: This run's model spec.
        sensor_ids: This run's sensors, in node order.
        path: The checkpoint (its best weights are used).
        freeze: ``fnmatch`` patterns of parameter names to freeze.
        build: Builds this run's model for a spec (to find the per-node tensors).

    Returns:
        The record of what was loaded, re-initialised, left unused and frozen.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` holds another model class, none of its tensors fits, or a
            ``freeze`` pattern matches no parameter (the parameter names are listed).
    """
    state = load_checkpoint(path)
    source_cfg = RunConfig.from_dict(state["config"], source=str(path))
    if source_cfg.model != cfg.model:
        raise ValueError(f"{path}: holds a {source_cfg.model} model, but this run trains {cfg.model}; "
                         "--init-from needs a checkpoint of the same model")
    weights: dict[str, torch.Tensor] = state["best_model"]
    source_ids = (state.get("data") or {}).get("sensor_ids")
    same_sensors = source_ids is not None and [str(s) for s in source_ids] == list(sensor_ids)
    per_node = per_node_tensors(build, spec)
    record = WarmStart(source=str(path))
    own = model.state_dict()
    update = {}
    for name, tensor in own.items():
        if name not in weights:
            record.reinitialised[name] = "not in the checkpoint"
        elif name in per_node and not same_sensors:
            record.reinitialised[name] = (f"per-node tensor (shape {tuple(tensor.shape)}; the checkpoint's "
                                          f"{tuple(weights[name].shape)} belongs to other sensors)")
        elif weights[name].shape != tensor.shape:
            record.reinitialised[name] = (f"shape {tuple(tensor.shape)} here, {tuple(weights[name].shape)} in "
                                          "the checkpoint")
        else:
            update[name] = weights[name]
            record.loaded.append(name)
    if not update:
        raise ValueError(f"{path}: none of its tensors fits this {cfg.model} model (names or shapes differ "
                         "everywhere); check model_params against the checkpoint's")
    model.load_state_dict(update, strict=False)
    record.unused = [name for name in weights if name not in own]
    names = [name for name, _ in model.named_parameters()]
    for pattern in freeze:
        matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ValueError(f"--freeze {pattern}: matches no parameter of the {cfg.model} model; its parameters "
                             f"are {preview(names, limit=12)}")
        record.frozen += [name for name in matched if name not in record.frozen]
    for name, param in model.named_parameters():
        if name in record.frozen:
            param.requires_grad_(False)
    return record
