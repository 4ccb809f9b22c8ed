"""Run configuration: a pydantic schema defines every key, TOML files hold the values.

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

    [head]                     # optional: a probabilistic forecast (default kind = "point")
    kind = "quantile"
    quantiles = [0.1, 0.5, 0.9]

    [custom]                   # your own data instead of a benchmark (paths relative to this file)
    series = "readings.csv"
    locations = "sensors.csv"

Every key is typed and range-checked when the file is parsed, before any data is read:
unknown keys, values of the wrong type (``epochs = 2.5`` is an error, not 2 or 3 epochs),
values out of range and names that are not registered are all reported together, one
line per problem, each naming the file and the key.  ``[model_params]`` is checked
against the keyword arguments (and their annotated types) of the model class.
Derived values (number of nodes, input channels) come from the data, never from here.
The field descriptions below are the reference documentation of every key.
"""

from __future__ import annotations

import inspect
import math
import os
import tomllib
import typing
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from stgnn.data.impute import ImputeMethod
from stgnn.data.ondisk import is_converted
from stgnn.data.registry import DATASETS
from stgnn.models import MODELS
from stgnn.models.heads import DEFAULT_QUANTILES, head_problems

__all__ = [
    "COVARIATE_KEYS",
    "CUSTOM_GRAPH_KEYS",
    "ConfigError",
    "CustomConfig",
    "DataConfig",
    "HeadConfig",
    "RunConfig",
    "TrainConfig",
    "load_config",
    "check_device_name",
    "merge",
    "parse_toml",
    "read_config_file",
    "to_toml",
]

CUSTOM_GRAPH_KEYS = ("locations", "distances", "edges", "adjacency")
"""The ``[custom]`` keys that describe the graph; exactly one is given."""

COVARIATE_KEYS = ("time_covariates", "node_attributes")
"""The ``[custom]`` keys of user covariate files (optional, any dataset; see :mod:`stgnn.data.covariates`)."""


class ConfigError(ValueError):
    """A config (file, checkpoint or command-line values) that does not fit the schema.

    The message holds one line per problem, each naming where the value came from
    (file and key, or the command-line option).
    """


class _Section(BaseModel):
    # strict: no silent coercion (2.5 is not an int, "3" is not a number, 1 is not a bool);
    # validate_assignment: `cfg.train.epochs = 0` is checked like a value read from a file.
    model_config = ConfigDict(
        extra="forbid", strict=True, validate_assignment=True, allow_inf_nan=False
    )


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Covariate = Literal["time_of_day", "day_of_week"]


class DataConfig(_Section):
    """Windows, split, features (the ``[data]`` section)."""

    input_len: PositiveInt = Field(12, description="Input steps per window.")
    horizon: PositiveInt = Field(12, description="Forecast steps.")
    split: list[Fraction] = Field(
        default_factory=list,
        description="Chronological (train, val, test) fractions summing to 1; empty = the dataset's default.",
    )
    covariates: list[Covariate] = Field(
        default_factory=lambda: list[Covariate](["time_of_day"]),
        description="Covariates appended to the inputs: time_of_day, day_of_week.",
    )
    input_features: list[NonNegativeInt] = Field(
        default_factory=list, description="Reading features (indices) fed to the model; empty = all."
    )
    target_features: list[NonNegativeInt] = Field(
        default_factory=lambda: [0], min_length=1, description="Reading features (indices) to forecast."
    )
    impute: ImputeMethod = Field(
        "none",
        description=(
            "How missing input readings are filled before the model sees them: none (the stored value, 0), "
            "linear (in time, inside the input window), historical (the sensor's time-of-day mean) or "
            "neighbours (graph neighbours' weighted deviations from their time-of-day means); statistics "
            "fitted on the training period only. Targets are never imputed (the metrics mask them)."
        ),
    )
    null_value: float | None = Field(
        None,
        description=(
            'A target value that the metrics and the loss treat as missing, on top of the dataset\'s own '
            'mask; "none" (the default) = only the mask. The benchmark datasets whose published files '
            "store missing readings as 0 already mark them in their mask, so real zeros in your own "
            "data are never dropped unless you ask for it here or with zero_is_missing."
        ),
    )

    @field_validator("null_value", mode="before")
    @classmethod
    def _none_string(cls, value: Any) -> Any:
        # TOML has no null: "none" (documented) stands for None, in files and checkpoints alike
        return None if value == "none" else value

    @field_validator("split")
    @classmethod
    def _split_sums_to_one(cls, value: list[float]) -> list[float]:
        if value and (len(value) != 3 or not math.isclose(sum(value), 1.0, abs_tol=1e-6)):
            raise ValueError(f"must be empty or three fractions (train, val, test) summing to 1, got {value}")
        if value and value[0] <= 0:
            raise ValueError(f"the train fraction must be > 0, got {value}")
        return value

    @field_validator("covariates", "input_features", "target_features")
    @classmethod
    def _no_duplicates(cls, value: list[Any]) -> list[Any]:
        repeated = sorted({str(v) for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"repeated entries {', '.join(repeated)}")
        return value


def check_device_name(name: str) -> str:
    """``name`` if it is ``auto`` or a device name torch parses (availability is checked when the run starts).

    Raises:
        ValueError: Not a device name, or a device type stgnn does not support.
    """
    if name == "auto":
        return name
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{name!r} is not a device name; use auto, cpu, cuda, cuda:0, ...") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name!r}: device type {device.type!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return name


class TrainConfig(_Section):
    """Optimisation and run control (the ``[train]`` section)."""

    epochs: PositiveInt = Field(100, description="Maximum epochs.")
    batch_size: PositiveInt = Field(64, description="Training batch size.")
    eval_batch_size: PositiveInt = Field(64, description="Validation / test batch size.")
    optimizer: Literal["adam", "adamw", "rmsprop"] = Field("adam", description="adam, adamw or rmsprop.")
    lr: float = Field(1e-3, gt=0.0, description="Learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, description="Weight decay (L2; decoupled for adamw).")
    adam_eps: float = Field(1e-8, gt=0.0, description="Optimizer epsilon.")
    lr_schedule: Literal["none", "multistep", "step", "cosine"] = Field(
        "none",
        description=(
            "none; multistep (multiply by lr_gamma at each of lr_milestones); step (multiply by "
            "lr_gamma every lr_step epochs); cosine (cosine annealing over epochs)."
        ),
    )
    lr_milestones: list[PositiveInt] = Field(
        default_factory=list, description="Epochs (increasing) at which multistep multiplies the LR by lr_gamma."
    )
    lr_gamma: float = Field(0.1, gt=0.0, description="Multiplicative LR decay.")
    lr_step: PositiveInt = Field(10, description="Epochs between decays of the step schedule.")
    clip_grad_norm: float = Field(5.0, ge=0.0, description="Max gradient norm (0 disables clipping).")
    patience: NonNegativeInt = Field(
        10, description="Early stopping after this many epochs without a better validation MAE (0 disables)."
    )
    seed: NonNegativeInt = Field(0, description="Seed for weights, shuffling and dropout.")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1, mps.")
    amp: bool = Field(
        False,
        description=(
            "Mixed precision on CUDA: bfloat16 autocast where the GPU supports it, else float16 with "
            "a gradient scaler; ignored on CPU."
        ),
    )
    compile: bool = Field(
        False, description="Compile the model with torch.compile (eager first call, then compiled)."
    )
    teacher_forcing: Literal["none", "inverse_sigmoid"] = Field(
        "none", description="none or inverse_sigmoid (scheduled sampling, DCRNN)."
    )
    teacher_forcing_tau: float = Field(2000.0, gt=0.0, description="tau of the inverse-sigmoid decay, in steps.")
    curriculum_steps: NonNegativeInt = Field(
        0, description="Horizon curriculum: the loss covers one more horizon every this many steps (0 disables)."
    )
    max_batches: NonNegativeInt = Field(
        0, description="Stop each training epoch after this many batches (0 = all); for quick runs and tests."
    )
    num_threads: NonNegativeInt = Field(0, description="Torch intra-op threads (0 = torch's default).")
    sampling: Literal["full", "partition"] = Field(
        "full",
        description=(
            "full: every training step runs on the whole graph; partition: each batch of windows is split into "
            "one step per graph part (with its halo), loss on the part's own nodes (graphs too large for a "
            "full-graph step; evaluation stays on the full graph)."
        ),
    )
    partitions: PositiveInt = Field(8, description="Graph parts for sampling = 'partition'.")
    halo_hops: NonNegativeInt = Field(
        2, description="Hops of neighbours added around each part (sampling = 'partition')."
    )
    init_from: str = Field(
        "",
        description=(
            "A checkpoint whose weights start this run, matched by name and shape; per-node tensors are "
            "re-initialised unless the sensors are the same (see stgnn.training.warm_start); empty = none. "
            "A relative path in a config file is taken relative to that file."
        ),
    )
    freeze: list[str] = Field(
        default_factory=list,
        description="fnmatch patterns of parameter names not to train, e.g. 'blocks.0.*' (needs init_from).",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device_name(value)

    @field_validator("lr_milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"must be strictly increasing, got {value}")
        return value

    @model_validator(mode="after")
    def _schedule_needs_milestones(self) -> TrainConfig:
        if self.lr_schedule == "multistep" and not self.lr_milestones:
            raise ValueError("lr_schedule = 'multistep' needs lr_milestones")
        if self.freeze and not self.init_from:
            raise ValueError("freeze needs init_from (frozen parameters would keep their random initialisation)")
        return self


class HeadConfig(_Section):
    """What the model forecasts (the ``[head]`` section; ``--head``, ``--quantiles``).

    ``point`` is the model's own forecast.  ``gaussian`` and ``quantile`` wrap the model in a
    :class:`~stgnn.models.heads.DistributionalForecaster`: a mean and a scale per reading
    (trained with the Gaussian negative log-likelihood), or quantiles at ``quantiles`` (trained
    with the pinball loss; they never cross).  Metrics then add CRPS and the coverage and width
    of the 80 % and 95 % intervals; MAE / RMSE / MAPE score the mean (Gaussian) or the median.
    """

    kind: Literal["point", "gaussian", "quantile"] = Field(
        "point", description="point (the model's forecast), gaussian (mean and scale) or quantile."
    )
    quantiles: list[float] = Field(
        default_factory=list,
        description=(
            "Increasing levels in (0, 1) of a quantile head, from at most 0.5 to at least 0.5 (the median "
            "is the point forecast); empty = 0.1, 0.5, 0.9. Intervals need both ends among or between "
            "the levels, e.g. [0.025, 0.1, 0.5, 0.9, 0.975] for 80 % and 95 %. Only for kind = quantile."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _default_levels(cls, data: Any) -> Any:
        # a quantile head without levels gets the default ones, written out in the resolved config
        if isinstance(data, dict) and data.get("kind") == "quantile" and not data.get("quantiles"):
            return {**data, "quantiles": list(DEFAULT_QUANTILES)}
        return data

    @model_validator(mode="after")
    def _levels(self) -> HeadConfig:
        q = self.quantiles
        if self.kind != "quantile":
            if q:
                raise ValueError(
                    f"quantiles {q} given, but they apply only to kind = 'quantile' (kind is {self.kind!r})"
                )
            return self
        if not all(0.0 < v < 1.0 for v in q):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {q}")
        if any(b <= a for a, b in zip(q, q[1:], strict=False)):
            raise ValueError(f"quantiles must be strictly increasing (no repeats), got {q}")
        if not q[0] <= 0.5 <= q[-1]:
            raise ValueError(f"quantiles must reach from at most 0.5 to at least 0.5 (the median is the point "
                             f"forecast), got {q}")
        return self


class CustomConfig(_Section):
    """Your own files (the ``[custom]`` section; ``--series`` etc.): readings and a graph instead of a
    benchmark, and/or covariate files (``time_covariates``, ``node_attributes``), which also go with
    a registered or converted dataset."""

    series: str | None = Field(
        None, description="CSV / Parquet readings: a timestamp column, then one column per sensor id."
    )
    locations: str | None = Field(
        None, description="CSV sensor_id, latitude, longitude: k-nearest-neighbour graph (Gaussian kernel)."
    )
    distances: str | None = Field(None, description="CSV from, to, cost: road distances (DCRNN's Gaussian kernel).")
    edges: str | None = Field(None, description="CSV from, to[, weight]: sensor-id pairs.")
    adjacency: str | None = Field(None, description="Headerless dense N x N CSV in the series' column order.")
    k_neighbors: PositiveInt = Field(8, description="Neighbours per sensor for locations.")
    sigma: float | None = Field(
        None,
        gt=0.0,
        allow_inf_nan=False,
        description=(
            "Width of the Gaussian kernel: in the distances' cost units for distances, in km for locations "
            "(default: the standard deviation of the distances kept)."
        ),
    )
    zero_is_missing: bool = Field(False, description="Treat exact zeros in the readings as missing.")
    missing_values: list[float] = Field(
        default_factory=list,
        description='Sentinel readings that mean "no reading" (e.g. [-9999]); they become missing.',
    )
    resample: bool = Field(
        False,
        description=(
            "Average timestamps that are off the sampling grid into their grid steps (default: they are an error)."
        ),
    )
    units: str = Field("", description="Units of the readings, for reports.")
    time_covariates: str | None = Field(
        None,
        description=(
            "CSV / Parquet covariates by time, fed to the model as extra inputs: a timestamp column, then one "
            "column per covariate (global), or timestamp, sensor_id, covariates (per sensor); see "
            "stgnn.data.covariates."
        ),
    )
    node_attributes: str | None = Field(
        None,
        description=(
            "CSV / Parquet static sensor attributes, fed to the model as extra inputs: a sensor_id column, then "
            "one column per attribute (text columns are one-hot encoded)."
        ),
    )

    def given(self) -> dict[str, Any]:
        """The keys that are set (not ``None``), as keyword arguments of ``load_custom``."""
        return self.model_dump(exclude_none=True)

    @model_validator(mode="after")
    def _one_graph(self) -> CustomConfig:
        graphs = [k for k in CUSTOM_GRAPH_KEYS if getattr(self, k) is not None]
        if self.series is not None and len(graphs) != 1:
            raise ValueError(
                f"series needs exactly one of {', '.join(CUSTOM_GRAPH_KEYS)}; got {', '.join(graphs) or 'none'}"
            )
        if self.series is None and graphs:
            raise ValueError(f"{', '.join(graphs)} given without series")
        return self


class RunConfig(_Section):
    """Everything that determines a run."""

    model: str = Field("lstm", description="Registered model name (see stgnn.models.MODELS).")
    dataset: str = Field(
        "los-loop",
        description=(
            "Registered dataset name, 'custom' with the [custom] section set, or the folder of a dataset "
            "converted by `stgnn datasets convert` (memory-mapped)."
        ),
    )
    data: DataConfig = Field(default_factory=DataConfig, description="Window / split / feature settings.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Optimisation settings.")
    model_params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword hyper-parameters of the model class, checked against it."
    )
    custom: CustomConfig = Field(default_factory=CustomConfig, description="Your own data files.")
    head: HeadConfig = Field(default_factory=HeadConfig, description="Point or probabilistic forecasts.")

    @field_validator("model")
    @classmethod
    def _registered_model(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"unknown model {value!r}; registered: {', '.join(sorted(MODELS))}")
        return value

    @field_validator("dataset")
    @classmethod
    def _registered_dataset(cls, value: str) -> str:
        if value != "custom" and value not in DATASETS and not is_converted(value):
            raise ValueError(f"unknown dataset {value!r}; registered: {', '.join(DATASETS)}, custom, or the "
                             "folder of a converted dataset (`stgnn datasets convert`)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.dataset == "custom" and self.custom.series is None:
            raise ValueError("dataset 'custom' needs [custom] series (--series) and one graph file")
        if self.dataset != "custom" and self.custom.series is not None:
            raise ValueError(
                f"[custom] series is set but dataset is {self.dataset!r}; set dataset = 'custom' or drop [custom]"
            )
        _check_model_params(self.model, self.model_params)
        problems = head_problems(MODELS[self.model], self.head.kind, self.model_params, self.train.teacher_forcing)
        if problems:
            raise ValueError("\n".join(f"[head] kind = {self.head.kind!r}: {p}" for p in problems))
        extra = [k for k in COVARIATE_KEYS if getattr(self.custom, k) is not None]
        if extra and not MODELS[self.model].accepts_covariates:
            able = sorted(name for name, cls in MODELS.items() if cls.accepts_covariates)
            raise ValueError(f"[custom] {', '.join(extra)}: model {self.model!r} cannot use covariates (it does not "
                             f"read extra input features); models that do: {', '.join(able)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML / JSON / checkpoint friendly)."""
        return self.model_dump()

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], source: str = "config", labels: dict[tuple[str, ...], str] | None = None
    ) -> RunConfig:
        """Validate a nested dict (the layout of :meth:`to_dict` and of a TOML config).

        Args:
            raw: The values.
            source: Where they came from (a file name), prefixed to every problem.
            labels: Names to use instead of ``source [section] key`` for some keys, e.g.
                ``{("train", "epochs"): "--epochs"}`` for values given on the command line.

        Raises:
            ConfigError: One line per problem, each naming the source and key.
        """
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source, labels or {})) from None


def _describe(exc: ValidationError, source: str, labels: dict[tuple[str, ...], str]) -> str:
    """One line per problem: ``source [section] key: problem``."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(str(p) for p in err["loc"])
        where = _where(loc, source, labels)
        lines += [f"{where}: {line}" for line in _problem(err).splitlines()]
    return "\n".join(dict.fromkeys(lines))


def _where(loc: tuple[str, ...], source: str, labels: dict[tuple[str, ...], str]) -> str:
    if loc in labels:
        return labels[loc]
    if not loc:
        return source
    if len(loc) == 1:
        table = loc[0] in ("data", "train", "custom", "model_params", "head")
        return f"{source}: [{loc[0]}]" if table else f"{source}: {loc[0]}"
    return f"{source}: [{loc[0]}] {'.'.join(loc[1:])}"


def _problem(err: ErrorDetails) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        section = _SECTIONS.get(tuple(str(p) for p in err["loc"][:-1]))
        return "unknown key" + (f"; known: {', '.join(section.model_fields)}" if section else "")
    if err["type"] in ("missing",):
        return msg.lower()
    return f"{msg} (got {err['input']!r})" if err["type"] not in ("value_error", "assertion_error") else msg


_SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): RunConfig, ("data",): DataConfig, ("train",): TrainConfig, ("custom",): CustomConfig,
    ("head",): HeadConfig,
}


# --------------------------------------------------------------------------- model parameters
@cache
def _model_parameters(model: str) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """The keyword parameters of a model class (after ``spec``), their type hints, and **kwargs."""
    init = MODELS[model].__init__
    params = dict(inspect.signature(init).parameters)
    hints = typing.get_type_hints(init)
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    keep = {
        k: p for k, p in list(params.items())[2:]  # self, spec
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return keep, hints, var_kw


def _check_model_params(model: str, values: dict[str, Any]) -> None:
    params, hints, var_kw = _model_parameters(model)
    problems = []
    for key, value in values.items():
        if key not in params:
            if not var_kw:
                known = ", ".join(params) or "none"
                problems.append(f"[model_params] {key}: unknown key for model {model!r} (known: {known})")
            continue
        hint = hints.get(key)
        if hint is None:
            continue
        try:
            TypeAdapter(hint).validate_python(value, strict=True)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            problems.append(f"[model_params] {key}: {first['msg']} (got {value!r})")
    if problems:
        # raised as ValueError inside a validator; pydantic reports it at the model level
        raise ValueError("\n".join(problems))


# --------------------------------------------------------------------------- TOML
_PATH_KEYS = ("series", *CUSTOM_GRAPH_KEYS, *COVARIATE_KEYS)


def load_config(path: str | os.PathLike[str], base: RunConfig | None = None) -> RunConfig:
    """Read a TOML config over ``base`` (default: the defaults).

    Sections are merged key by key (a file's ``[train]`` replaces only the keys it names).
    Relative paths in ``[custom]`` are taken relative to the config file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: Invalid TOML, or values that do not fit the schema (one line each).
    """
    return RunConfig.from_dict(merge(base or RunConfig(), read_config_file(path)), source=str(path))


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw (not yet validated) table of a TOML config file; relative ``[custom]`` paths made absolute.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: Not a TOML text file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc})") from exc
    return parse_toml(text, str(path), relative_to=path.parent)


def parse_toml(text: str, source: str, *, relative_to: Path | None = None) -> dict[str, Any]:
    """The raw table of TOML ``text`` (``source`` names it in errors); see :func:`read_config_file`.

    Raises:
        ConfigError: Invalid TOML.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML ({exc})") from exc
    custom = raw.get("custom")
    train = raw.get("train")
    if relative_to is not None and isinstance(train, dict) and isinstance(train.get("init_from"), str) \
            and train["init_from"]:
        train["init_from"] = str((relative_to / Path(train["init_from"]).expanduser()).resolve())
    if relative_to is not None and isinstance(custom, dict):
        for key in _PATH_KEYS:
            if isinstance(custom.get(key), str):
                custom[key] = str((relative_to / Path(custom[key]).expanduser()).resolve())
    return raw


def merge(base: RunConfig, raw: dict[str, Any]) -> dict[str, Any]:
    """``base`` as a dict with ``raw`` laid over it section by section (not yet validated)."""
    merged = base.to_dict()
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def to_toml(cfg: RunConfig) -> str:
    """Serialise the resolved config with tomli-w.

    ``null_value = None`` is written as ``"none"`` (TOML has no null); unset ``[custom]``
    keys and ``None``-valued model parameters whose default is ``None`` are omitted, so the
    file reads back to the same config.
    """
    d = cfg.to_dict()
    if d["data"]["null_value"] is None:
        d["data"]["null_value"] = "none"
    d["custom"] = {k: v for k, v in d["custom"].items() if v is not None}
    params, _, _ = _model_parameters(cfg.model)
    for key, value in list(d["model_params"].items()):
        if value is None:
            if key in params and params[key].default is None:
                del d["model_params"][key]
            else:
                raise ConfigError(f"[model_params] {key} = None cannot be written to TOML")
    return tomli_w.dumps(d)
