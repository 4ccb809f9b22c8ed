"""Run configuration: dataclasses define the schema, TOML files hold the values.

A config file holds only what differs from the defaults::

    model = "gwnet"            # optional; the CLI's --model wins
    dataset = "metr-la"        # optional; the CLI's --dataset wins

    [data]
    covariates = ["time_of_day"]

    [train]
    lr = 0.001
    weight_decay = 0.0001

    [model_params]             # keyword hyper-parameters of the model class
    dropout = 0.3

Unknown keys are errors (naming the file and the key), never silently ignored.
Derived values (number of nodes, input channels) come from the data, never from here.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["DataConfig", "RunConfig", "TrainConfig", "load_config", "to_toml"]


@dataclass
class DataConfig:
    """Windows, split, features.

    Attributes:
        input_len: Input steps per window.
        horizon: Forecast steps.
        split: Chronological (train, val, test) fractions; empty = the dataset's default.
        covariates: Covariates appended to the inputs (``time_of_day``, ``day_of_week``).
        input_features: Reading features fed to the model (empty = all).
        target_features: Features to forecast.
        null_value: Target value treated as missing by the metrics and loss (``"none"`` in
            TOML: no null value).
    """

    input_len: int = 12
    horizon: int = 12
    split: list[float] = field(default_factory=list)
    covariates: list[str] = field(default_factory=lambda: ["time_of_day"])
    input_features: list[int] = field(default_factory=list)
    target_features: list[int] = field(default_factory=lambda: [0])
    null_value: float | None = 0.0


@dataclass
class TrainConfig:
    """Optimisation and run control.

    Attributes:
        epochs: Maximum epochs.
        batch_size: Training batch size.
        eval_batch_size: Validation / test batch size.
        optimizer: ``adam``, ``adamw`` or ``rmsprop``.
        lr: Learning rate.
        weight_decay: Weight decay (L2; decoupled for ``adamw``).
        adam_eps: Optimizer epsilon.
        lr_schedule: ``none``, ``multistep`` (``lr_milestones`` / ``lr_gamma``), ``step``
            (multiply by ``lr_gamma`` every ``lr_step`` epochs) or ``cosine``.
        lr_milestones: Epochs at which ``multistep`` multiplies the LR by ``lr_gamma``.
        lr_gamma: Multiplicative LR decay.
        clip_grad_norm: Max gradient norm (0 disables clipping).
        patience: Early stopping after this many epochs without a better validation MAE
            (0 disables early stopping).
        seed: Seed for weights, shuffling and dropout.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ...
        amp: Mixed precision (bfloat16 autocast) on CUDA; ignored on CPU.
        teacher_forcing: ``none`` or ``inverse_sigmoid`` (scheduled sampling, DCRNN).
        teacher_forcing_tau: ``tau`` of the inverse-sigmoid decay, in training steps.
        curriculum_steps: Horizon curriculum: the loss covers one more horizon every
            this many steps (0 disables).
        max_batches: Stop each training epoch after this many batches (0 = all); for
            quick runs and tests.
        num_threads: Torch intra-op threads (0 = torch's default).
    """

    epochs: int = 100
    batch_size: int = 64
    eval_batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    lr_schedule: str = "none"
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    lr_step: int = 10
    clip_grad_norm: float = 5.0
    patience: int = 10
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    teacher_forcing: str = "none"
    teacher_forcing_tau: float = 2000.0
    curriculum_steps: int = 0
    max_batches: int = 0
    num_threads: int = 0


@dataclass
class RunConfig:
    """Everything that determines a run.

    Attributes:
        model: Registered model name.
        dataset: Registered dataset name, or ``custom`` with ``custom`` paths set.
        data: Window / split / feature settings.
        train: Optimisation settings.
        model_params: Keyword hyper-parameters passed to the model class.
        custom: For your own data: ``series`` and one of ``locations`` /
            ``distances`` / ``edges`` / ``adjacency`` (paths), plus optional
            ``zero_is_missing`` and ``k_neighbors``.
    """

    model: str = "lstm"
    dataset: str = "los-loop"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model_params: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML / JSON / checkpoint friendly)."""
        out = dataclasses.asdict(self)
        out["model_params"] = dict(self.model_params)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> RunConfig:
        """Inverse of :meth:`to_dict` (also the layout of a TOML config)."""
        raw = dict(raw)
        cfg = cls()
        params = raw.pop("model_params", None)
        if params is not None and not isinstance(params, dict):
            raise ValueError(f"{source}: [model_params] must be a table")
        for key, value in raw.items():
            if key in ("data", "train"):
                section = getattr(cfg, key)
                if not isinstance(value, dict):
                    raise ValueError(f"{source}: [{key}] must be a table")
                setattr(cfg, key, _update(section, value, f"{source} [{key}]"))
            elif key in ("model", "dataset"):
                if not isinstance(value, str):
                    raise ValueError(f"{source}: {key!r} must be a string")
                setattr(cfg, key, value)
            elif key == "custom":
                cfg.custom = dict(value)
            else:
                raise ValueError(
                f"{source}: unknown key {key!r} (known: model, dataset, data, train, model_params, custom)"
            )
        if params:
            cfg.model_params = dict(params)
        return cfg


def _update(obj: Any, values: dict[str, Any], source: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"{source}: unknown key {key!r}; known: {', '.join(known)}")
        if key == "null_value" and value == "none":
            changes[key] = None
            continue
        default = getattr(obj, key)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{source}: {key!r} must be true/false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{source}: {key!r} must be a number, got {value!r}")
            value = type(default)(value) if isinstance(default, float) or float(value).is_integer() else value
        if isinstance(default, list) and not isinstance(value, list):
            raise ValueError(f"{source}: {key!r} must be a list, got {value!r}")
        changes[key] = value
    return dataclasses.replace(obj, **changes)


def load_config(path: str | os.PathLike[str], base: RunConfig | None = None) -> RunConfig:
    """Read a TOML config over ``base`` (default: the defaults)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML ({exc})") from exc
    merged = (base or RunConfig()).to_dict()
    for key, value in raw.items():
        if key in ("data", "train", "model_params", "custom") and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return RunConfig.from_dict(merged, source=str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(cfg: RunConfig) -> str:
    """Serialise the resolved config (``None`` is written as ``"none"``, as TOML has no null)."""
    d = cfg.to_dict()
    lines = [f"model = {_toml_value(d['model'])}", f"dataset = {_toml_value(d['dataset'])}"]
    for section, key in (("data", "data"), ("train", "train"), ("model_params", "model_params"), ("custom", "custom")):
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {_toml_value('none' if v is None else v)}" for k, v in d[key].items()]
    return "\n".join(lines) + "\n"
