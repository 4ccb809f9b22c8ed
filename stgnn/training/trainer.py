"""The training loop: Adam, LR schedule, clipping, early stopping, checkpoints, resume.

Determinism: the weights are initialised from ``seed``; every epoch re-seeds the
shuffling generator and torch's global RNG (dropout) from ``(seed, epoch)``.  A
run resumed from the checkpoint of epoch ``k`` therefore replays epoch ``k + 1``
exactly as an uninterrupted run would, and ends with the same metrics.

Launched by torchrun, the same loop trains data-parallel across processes; the global batch,
sharding, reductions and who writes what are described in :mod:`stgnn.training.distributed`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from stgnn.data.custom import attach_covariates, load_custom
from stgnn.data.dataset import TrafficDataset
from stgnn.data.ondisk import open_converted
from stgnn.data.readers import load_dataset
from stgnn.data.registry import DATASETS
from stgnn.data.windows import StandardScaler, WindowData
from stgnn.distributions import ForecastDistribution, PointForecast
from stgnn.metrics import MaskedMetrics, masked_forecast_loss_sum
from stgnn.models import MODELS, Batch, Forecaster, ModelSpec, build_model
from stgnn.models.heads import DistributionalForecaster
from stgnn.training.accelerate import amp_dtype, autocast, compile_model, grad_scaler
from stgnn.training.checkpoint import (
    atomic_write_text,
    environment,
    load_checkpoint,
    save_checkpoint,
    write_json,
)
from stgnn.training.config import RunConfig, to_toml
from stgnn.training.distributed import Distributed
from stgnn.training.fingerprint import align_sensors, data_files, data_fingerprint, fingerprint_changes
from stgnn.training.runlock import RunLock
from stgnn.training.sampling import PartitionSampler, check_sampling
from stgnn.training.schedules import TEACHER_FORCING, curriculum_level
from stgnn.training.warm_start import WarmStart, warm_start

__all__ = [
    "OPTIMIZERS",
    "RESUMABLE_KEYS",
    "Experiment",
    "NonFiniteLossError",
    "RunFolderError",
    "Trainer",
    "experiment_from_checkpoint",
    "load_data",
    "select_device",
]

CHECKPOINT = "checkpoint.pt"


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available")
    return device


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
}

RESUMABLE_KEYS = ("train.epochs", "train.patience", "train.device", "train.num_threads", "train.compile")
"""Config keys that ``--resume`` may change: they do not alter the training done so far.

``train.epochs`` may grow (not below the epochs already run, and not with the ``cosine``
schedule, whose period is the epoch count); ``train.patience`` may change when the new value
would not have stopped the run earlier (0 disables early stopping); device, threads and
compilation are free.
"""


class RunFolderError(ValueError):
    """The run folder cannot take this run (it holds another run, or resuming it would mix two runs)."""


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss, gradient or validation error and was stopped."""


def load_data(cfg: RunConfig, root: str | os.PathLike[str] | None = None) -> TrafficDataset:
    """The dataset a config names: a registered benchmark, ``custom`` files, or a converted (memory-mapped) folder."""
    if cfg.dataset == "custom":  # the schema guarantees a series and one graph file
        c = cfg.custom.given()
        return load_custom(c.pop("series"), **c)
    # the schema admits only a converted folder besides the registered names
    dataset = load_dataset(cfg.dataset, root) if cfg.dataset in DATASETS else open_converted(cfg.dataset)
    return attach_covariates(dataset, cfg.custom.time_covariates, cfg.custom.node_attributes)


def build_forecaster(cfg: RunConfig, spec: ModelSpec) -> Forecaster:
    """The model ``cfg`` describes for ``spec`` (wrapped in its probabilistic head, if any)."""
    if cfg.head.kind == "point":
        return build_model(cfg.model, spec, **cfg.model_params)
    return DistributionalForecaster(MODELS[cfg.model], spec, cfg.head.kind, cfg.head.quantiles, **cfg.model_params)


@dataclass
class Experiment:
    """A dataset windowed for a model: what training and evaluation need."""

    config: RunConfig
    dataset: TrafficDataset
    data: WindowData
    spec: ModelSpec
    model: Forecaster
    device: torch.device
    edge_index: Tensor
    edge_weight: Tensor
    files: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        # the target scaler's mean and std move to the device once, not at every step
        self.data.target_scaler = self.data.target_scaler.to(self.device)

    @classmethod
    def build(
        cls,
        cfg: RunConfig,
        root: str | os.PathLike[str] | None = None,
        *,
        dataset: TrafficDataset | None = None,
        scaler: StandardScaler | None = None,
        covariate_scaler: StandardScaler | None = None,
        input_mask: Tensor | None = None,
    ) -> Experiment:
        """Load data, window it, fit the scaler on train, and build the model.

        Args:
            cfg: The run config.
            root: Data root for registry datasets.
            dataset: Already loaded data (default: :func:`load_data`).
            scaler: A fitted scaler to reuse (default: fit on the training windows).
            covariate_scaler: A fitted scaler of the user covariates to reuse (default: fit on
                the training period).
            input_mask: ``[T, N]`` readings the model inputs may use (default: the dataset's mask);
                hidden readings are missing inputs (imputed per ``data.impute``) but still scored
                as targets; see :class:`~stgnn.data.windows.WindowData`.
        """
        ds = dataset if dataset is not None else load_data(cfg, root)
        dc = cfg.data
        data = WindowData(
            ds,
            input_len=dc.input_len,
            horizon=dc.horizon,
            split=dc.split or None,
            covariate_names=dc.covariates,
            input_features=dc.input_features or None,
            target_features=dc.target_features,
            scaler=scaler,
            covariate_scaler=covariate_scaler,
            impute=dc.impute,
            input_mask=input_mask,
        )
        spec = ModelSpec(
            num_nodes=ds.num_nodes,
            in_channels=data.in_channels,
            out_channels=data.out_channels,
            input_len=dc.input_len,
            horizon=dc.horizon,
            steps_per_day=ds.steps_per_day,
        )
        device = select_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        model = build_forecaster(cfg, spec).to(device)
        return cls(
            cfg, ds, data, spec, model, device,
            ds.graph.edge_index.to(device), ds.graph.edge_weight.to(device),
            data_files(cfg.dataset, cfg.custom.given(), root),
        )

    def fingerprint(self) -> dict[str, Any]:
        """The data fingerprint a checkpoint records (see :mod:`stgnn.training.fingerprint`)."""
        return data_fingerprint(self.dataset, self.data, self.files)

    def to_device(self, batch: Batch) -> Batch:
        """``batch`` on the experiment's device: through pinned host memory with non-blocking
        copies on CUDA (the copy overlaps the computation queued before it); as is on the CPU."""
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device)
        return batch.to(self.device)

    def to_raw(self, output: Tensor) -> ForecastDistribution:
        """The model's output for a batch (scaled) as a forecast in raw units.

        A point model's output becomes a :class:`~stgnn.distributions.PointForecast`; a model
        with a probabilistic head gives its distribution, mapped through the target scaler
        (locations and quantiles ``* std + mean``, a Gaussian scale only ``* std``).
        """
        scaler = self.data.target_scaler  # on the device (see __post_init__)
        if isinstance(self.model, DistributionalForecaster):
            std, mean = scaler.std.to(output.device), scaler.mean.to(output.device)  # no copy on the device
            return self.model.distribution(output.float()).affine(std, mean)
        return PointForecast(scaler.inverse(output.float()))

    def predict_distribution(self, batch: Batch) -> ForecastDistribution:
        """The forecast distribution for ``batch`` in raw units (tensors on the CPU).

        ``.mean`` is ``[B, H, N, F_out]`` (the median for a quantile head), ``.quantile(q)`` and
        ``.interval(level) -> (low, high)`` give quantiles and central intervals; a point model
        gives a :class:`~stgnn.distributions.PointForecast` (``kind == "point"``), whose
        quantiles and intervals raise a ``ValueError``.
        """
        self.model.eval()
        with torch.no_grad():
            out = self.model.forecast(self.to_device(batch), self.edge_index, self.edge_weight)
        return self.to_raw(out.cpu())

    def predict(self, batch: Batch) -> Tensor:
        """Point forecasts in raw units ``[B, H, N, F_out]`` (on the CPU) for ``batch``: the mean
        of a Gaussian head, the median of a quantile head."""
        return self.predict_distribution(batch).point

    def evaluate(
        self,
        split: str,
        batch_size: int = 64,
        progress: bool = False,
        *,
        dist: Distributed | None = None,
        nodes: Tensor | None = None,
    ) -> MaskedMetrics:
        """Masked metrics over a whole split (sums and counts, divided once).

        Args:
            split: ``train``, ``val`` or ``test``.
            batch_size: Windows per batch (over all processes when ``dist`` is given).
            progress: Show a progress bar.
            dist: In a data-parallel run, every process evaluates its share of each batch and
                the sums and counts are all-reduced before dividing (every process returns the
                metrics of the whole split).
            nodes: Score only these node indices (e.g. one region of the network); default all.
        """
        metrics = MaskedMetrics(
            horizons=[h for h in (3, 6, 12) if h <= self.spec.horizon] or [self.spec.horizon],
            null_value=self.config.data.null_value,
        )
        self.model.eval()
        context = autocast(self.device, amp_dtype(self.device, self.config.train.amp))
        part = None if dist is None else (dist.rank, dist.world_size)
        batches = self.data.batches(split, batch_size, part=part)
        total = -(-self.data.num_windows(split) // batch_size)
        keep = None  # the nodes scored: the others are masked like missing readings
        if nodes is not None:
            keep = torch.zeros(self.spec.num_nodes, dtype=torch.bool, device=self.device)
            keep[nodes.to(self.device)] = True
        with torch.no_grad():
            for batch in tqdm(batches, total=total, desc=f"eval {split}", leave=False,
                              disable=not progress, file=sys.stderr):
                batch = self.to_device(batch)
                with context:
                    pred = self.model.forecast(batch, self.edge_index, self.edge_weight)
                mask = batch.mask if keep is None else batch.mask & keep
                metrics.update(self.to_raw(pred), batch.y, mask)
        if dist is not None:
            metrics.load_totals(dist.all_reduce_sums(metrics.totals()))
        return metrics


class _ForecastStep(nn.Module):
    """``model.forecast`` as a module's forward, so that DistributedDataParallel sees the call."""

    def __init__(self, model: Forecaster) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, edge_index: Tensor, edge_weight: Tensor, teacher_forcing: float) -> Tensor:
        return self.model.forecast(batch, edge_index, edge_weight, teacher_forcing=teacher_forcing)


class Trainer:
    """Trains an :class:`Experiment` and writes everything into ``output``.

    Files written: ``config.toml`` (resolved), ``environment.json``, ``log.csv`` (one
    row per epoch), ``checkpoint.pt`` (atomic, every epoch), ``metrics.json`` (test
    metrics of the best-validation weights), TensorBoard events when installed, and
    ``.lock`` (the pid of the process writing the folder).

    A run folder describes exactly one run.  :meth:`fit` therefore checks before it
    writes anything: a trainable model needs validation windows (they choose the best
    weights and drive early stopping; without them the run is refused rather than
    reporting untrained weights), the folder is locked against a second process, a folder
    that holds a checkpoint is only continued with ``resume=True``, and a resumed run must
    have the stored config and data except for :data:`RESUMABLE_KEYS`.  Only then are
    ``config.toml`` and ``environment.json`` written.

    A NaN or infinite training loss, gradient norm or validation MAE stops training with a
    :class:`NonFiniteLossError` naming the epoch and batch; ``checkpoint.pt`` then still
    holds the last epoch whose weights were finite (it is written only after an epoch
    passed these checks).

    Host synchronisation: the inner loop reads one two-element tensor per step (the loss and
    the gradient norm) to stop before an update with non-finite values (the check a float16
    ``GradScaler`` makes too); nothing else leaves the device until the epoch ends.

    Args:
        exp: The experiment.
        output: Output directory.
        progress: Show tqdm progress bars.
        log: Where the per-epoch lines go (default stdout).
        dist: This process's place in a data-parallel (torchrun) job; ``None`` for a plain run.
            Every process of the job builds its own trainer; only rank 0 logs and writes files.
    """

    def __init__(
        self,
        exp: Experiment,
        output: str | os.PathLike[str],
        *,
        progress: bool = True,
        log: Callable[[str], None] = print,
        dist: Distributed | None = None,
    ) -> None:
        self.exp = exp
        self.cfg = exp.config
        self.output = Path(output)
        self.dist = dist
        self.writes = dist is None or dist.is_main
        self.progress = progress and self.writes
        self.log = log if self.writes else _silent
        tc = self.cfg.train
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        if tc.teacher_forcing not in TEACHER_FORCING:
            raise ValueError(f"train.teacher_forcing {tc.teacher_forcing!r}; known: {', '.join(TEACHER_FORCING)}")
        if tc.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer {tc.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        self.warm_start: WarmStart | None = None
        if tc.init_from:  # before the optimiser is built: frozen parameters are left out of it
            self.warm_start = warm_start(exp.model, self.cfg, exp.spec, exp.dataset.node_ids, tc.init_from, tc.freeze,
                                         lambda spec: build_forecaster(self.cfg, spec))
            self.log(self.warm_start.summary())
        self.params = [p for p in exp.model.parameters() if p.requires_grad]
        self.optimizer = (
            OPTIMIZERS[tc.optimizer](self.params, lr=tc.lr, weight_decay=tc.weight_decay, eps=tc.adam_eps)
            if exp.model.trainable and self.params else None
        )
        self.scheduler = self._make_scheduler()
        self.amp_dtype = amp_dtype(exp.device, tc.amp)
        self.scaler = grad_scaler(exp.device, self.amp_dtype)
        step: nn.Module = _ForecastStep(exp.model)
        self.net = dist.wrap(step, exp.device) if dist is not None and self.optimizer is not None else step
        self.sampler: PartitionSampler | None = None
        if tc.sampling == "partition" and exp.model.trainable:
            check_sampling(self.cfg.model, exp.model, exp.spec, self.cfg.model_params)
            self.sampler = PartitionSampler(exp.edge_index, exp.edge_weight, exp.spec.num_nodes, tc.partitions,
                                            tc.halo_hops, exp.device)
        self.epoch = 0
        self.global_step = 0
        self.best_val = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, Tensor] = {k: v.detach().clone() for k, v in exp.model.state_dict().items()}
        self.history: list[dict[str, float]] = []
        self.fingerprint: dict[str, Any] | None = None
        self._tb: Any = None

    def _make_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        tc = self.cfg.train
        if self.optimizer is None or tc.lr_schedule == "none":
            return None
        if tc.lr_schedule == "multistep":
            return torch.optim.lr_scheduler.MultiStepLR(self.optimizer, tc.lr_milestones, tc.lr_gamma)
        if tc.lr_schedule == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, tc.lr_step, tc.lr_gamma)
        if tc.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, max(tc.epochs, 1))
        raise ValueError(f"train.lr_schedule {tc.lr_schedule!r}; known: none, multistep, step, cosine")

    # ----------------------------------------------------------------- checkpoint
    @property
    def checkpoint_path(self) -> Path:
        """``output / checkpoint.pt``."""
        return self.output / CHECKPOINT

    def state(self, finished: bool = False) -> dict[str, Any]:
        """Everything needed to resume or evaluate, including the data fingerprint."""
        return {
            "format": 2,
            "config": self.cfg.to_dict(),
            "spec": vars(self.exp.spec).copy(),
            "data": self.fingerprint,
            "scaler": self.exp.data.scaler.state_dict(),
            "covariate_scaler": (None if self.exp.data.covariate_scaler is None
                                 else self.exp.data.covariate_scaler.state_dict()),
            "model": self.exp.model.state_dict(),
            "best_model": self.best_state,
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "finished": finished,
        }

    def _check_validation_windows(self) -> None:
        exp = self.exp
        if not exp.model.trainable or exp.data.num_windows("val") > 0:
            return
        split = list(self.cfg.data.split or exp.dataset.split)
        counts = "/".join(str(exp.data.num_windows(k)) for k in ("train", "val", "test"))
        raise ValueError(
            f"{exp.dataset.source}: split {split} gives {counts} train/val/test windows of "
            f"{exp.spec.input_len} + {exp.spec.horizon} steps out of {exp.dataset.num_steps} steps: no "
            f"validation windows, but {self.cfg.model} is trained and needs them to choose its best "
            "weights and to stop early; give data.split a validation fraction (e.g. [0.7, 0.1, 0.2]) "
            "or use a longer series"
        )

    def _claim_folder(self, resume: bool, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
        """The checkpoint state to continue from (``None``: a new run), or an error; writes nothing.

        In a data-parallel run the state is read onto the CPU, to be broadcast to every rank.
        """
        if not self.checkpoint_path.is_file():
            if resume:
                self.log(f"{self.output}: no checkpoint to resume from; starting a new run there")
            elif (self.output / "config.toml").is_file():
                self.log(f"{self.output}: holds the files of a run that ended before its first checkpoint; "
                         "starting a new run there")
            return None
        state = load_checkpoint(self.checkpoint_path, map_location=self.exp.device if self.dist is None else "cpu")
        if not resume:
            raise RunFolderError(
                f"{self.output} already holds a run (checkpoint after epoch {state.get('epoch')}): pass "
                "--resume to continue it, or give another --output for a new run"
            )
        problems = self._resume_conflicts(state, fingerprint)
        if problems:
            listed = "".join(f"\n  {p}" for p in problems)
            raise RunFolderError(
                f"{self.checkpoint_path}: cannot continue this run with the given settings; they differ "
                f"from the run's own in what it was trained with:{listed}\n"
                f"To continue the run, resume it with its own settings: stgnn train --config "
                f"{self.output / 'config.toml'} --output {self.output} --resume. To train with the new "
                f"settings, start a new run in another --output. Only {', '.join(RESUMABLE_KEYS)} may "
                "change on resume (see stgnn.training.trainer.RESUMABLE_KEYS)."
            )
        return state

    def _resume_conflicts(self, state: dict[str, Any], fingerprint: dict[str, Any]) -> list[str]:
        saved = RunConfig.from_dict(state["config"], source=str(self.checkpoint_path)).to_dict()
        problems = []
        for key, old, new in _differences(saved, self.cfg.to_dict()):
            reason = self._refuse_change(key, new, state)
            if reason is not None:
                problems.append(f"{key}: {old!r} in the run, {new!r} now ({reason})")
        stored = state.get("data")
        if stored is None:
            self.log(f"{self.checkpoint_path}: written before data fingerprints; the data cannot be checked")
            return problems
        if stored["sensor_ids"] != fingerprint["sensor_ids"]:
            pairs = zip(stored["sensor_ids"], fingerprint["sensor_ids"], strict=False)
            at = next((i for i, (a, b) in enumerate(pairs) if a != b),
                      min(len(stored["sensor_ids"]), len(fingerprint["sensor_ids"])))
            problems.append(f"data: sensors differ from position {at} on ({len(stored['sensor_ids'])} "
                            f"sensors in the run, {len(fingerprint['sensor_ids'])} now)")
        problems += [f"data: {change}" for change in fingerprint_changes(stored, fingerprint)]
        return problems

    def _refuse_change(self, key: str, new: Any, state: dict[str, Any]) -> str | None:
        """Why ``key`` may not change to ``new`` on resume, or ``None`` when it may."""
        if key in ("train.device", "train.num_threads", "train.compile"):
            return None
        if key == "train.epochs":
            if self.cfg.train.lr_schedule == "cosine":
                return "the cosine LR schedule's period is the epoch count"
            if new < state["epoch"]:
                return f"the run has already done {state['epoch']} epochs"
            return None
        if key == "train.patience":
            longest = _longest_wait(state["history"])
            if new == 0 or new > longest:
                return None
            return f"patience {new} would have stopped the run earlier ({longest} epochs without improvement)"
        return "changes the training done so far"

    def _restore(self, state: dict[str, Any]) -> None:
        self.exp.model.load_state_dict(state["model"])
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("grad_scaler") is not None:
            self.scaler.load_state_dict(state["grad_scaler"])
        self.best_state = state["best_model"]
        for key in ("epoch", "global_step", "best_val", "best_epoch", "bad_epochs", "history"):
            setattr(self, key, state[key])
        self.log(f"resumed from {self.checkpoint_path} after epoch {self.epoch}")

    # ----------------------------------------------------------------- training
    def on_step(self, epoch: int, step: int) -> None:
        """Called after every optimizer update with the epoch and the new global step; does nothing.

        An extension point for subclasses (custom logging, or a test that stops the
        process at an exact step).
        """

    def _seed_epoch(self, epoch: int) -> torch.Generator:
        """Seed torch's RNG (dropout, teacher forcing) from ``(seed, epoch, rank)``; the returned
        shuffling generator from ``(seed, epoch)``, the same on every rank."""
        seed = self.cfg.train.seed * 1_000_003 + epoch
        rank = 0 if self.dist is None else self.dist.rank
        torch.manual_seed(seed + rank * 1_000_000_007)
        return torch.Generator().manual_seed(seed)

    def _non_finite(self, epoch: int, batch: int | None, what: str) -> NonFiniteLossError:
        where = f"epoch {epoch}" + (f", batch {batch} (global step {self.global_step + 1})" if batch else "")
        kept = (f"{self.checkpoint_path} keeps the weights after epoch {self.epoch}, the last finite ones"
                if self.epoch else "no checkpoint was written")
        return NonFiniteLossError(
            f"{where}: {what}; training stopped and {kept}. Usual causes: readings too large for "
            f"float32 arithmetic, or a learning rate too high for this data (train.lr = {self.cfg.train.lr}); "
            "check the data, lower train.lr or set train.clip_grad_norm"
        )

    def _batches(self, epoch: int) -> tuple[Iterator[tuple[Batch, Tensor, Tensor]], int]:
        """The epoch's training steps: ``(batch, edge_index, edge_weight)``, and their number.

        With ``sampling = "partition"`` every batch of windows gives one step per graph part.
        """
        tc, exp = self.cfg.train, self.exp
        gen = self._seed_epoch(epoch)
        total = -(-exp.data.num_windows("train") // tc.batch_size)
        if tc.max_batches:
            total = min(total, tc.max_batches)
        part = None if self.dist is None else (self.dist.rank, self.dist.world_size)
        batches = exp.data.batches("train", tc.batch_size, shuffle=True, generator=gen, part=part)
        capped = (b for _, b in zip(range(total), batches, strict=False))
        if self.sampler is None:
            return ((b, exp.edge_index, exp.edge_weight) for b in capped), total
        sampler = self.sampler
        return (step for b in capped for step in sampler.split(b, gen)), total * len(sampler)

    def _loss(self, forecast: ForecastDistribution, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss to back-propagate, the loss of the whole batch)``: the masked mean of
        :func:`~stgnn.metrics.masked_forecast_loss` (MAE for a point forecast).

        In a data-parallel run the loss sum and count of the global batch are all-reduced and
        each rank divides its own loss sum by ``count / world_size``, so that DDP's gradient
        average is the gradient of the global batch's masked mean.
        """
        err_sum, count = masked_forecast_loss_sum(forecast, y, mask, self.cfg.data.null_value)
        if self.dist is None:
            loss = err_sum / count.clamp(min=1)
            return loss, loss.detach()
        totals = self.dist.all_reduce_sum(torch.stack([err_sum.detach().double(), count.double()]))
        global_count = totals[1].clamp(min=1)
        loss = err_sum / (global_count / self.dist.world_size).to(err_sum.dtype)
        return loss, totals[0] / global_count

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training windows (``max_batches`` at most), as :meth:`fit` runs it.

        For callers that drive training themselves (a federated client between rounds): no
        validation, checkpoint or log is written.  ``epoch`` seeds the shuffling and dropout.

        Returns:
            The mean training loss of the epoch.

        Raises:
            ValueError: The model is not trained by gradient (it has no optimizer).
            NonFiniteLossError: A NaN or infinite loss or gradient (epoch and batch named).
        """
        if self.optimizer is None:
            raise ValueError(f"{self.cfg.model} is not trained by gradient descent: nothing to train")
        return self._train_epoch(epoch)

    def _train_epoch(self, epoch: int) -> float:
        exp, tc = self.exp, self.cfg.train
        assert self.optimizer is not None
        exp.model.train()
        batches, total = self._batches(epoch)
        schedule = TEACHER_FORCING[tc.teacher_forcing]
        context = autocast(exp.device, self.amp_dtype)
        loss_sum, count = 0.0, 0
        bar = tqdm(total=total, desc=f"epoch {epoch}", leave=False, disable=not self.progress, file=sys.stderr)
        for i, (batch, edge_index, edge_weight) in enumerate(batches, start=1):
            batch = exp.to_device(batch)
            tf = schedule(self.global_step, tc.teacher_forcing_tau)
            with context:
                pred = self.net(batch, edge_index, edge_weight, tf)
            level = curriculum_level(self.global_step, tc.curriculum_steps, exp.spec.horizon)
            forecast = exp.to_raw(pred[:, :level])
            loss, batch_loss = self._loss(forecast, batch.y[:, :level], batch.mask[:, :level])
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # clip and check the true gradients (float16 only)
            if tc.clip_grad_norm > 0:
                norm = torch.nn.utils.clip_grad_norm_(self.params, tc.clip_grad_norm)
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
            # the one host read of the step
            loss_value, norm_value = torch.stack([batch_loss.double(), norm.detach().double()]).tolist()
            # with float16 loss scaling an overflowing gradient is expected: the scaler skips that step
            if not (math.isfinite(loss_value) and (math.isfinite(norm_value) or self.scaler.is_enabled())):
                what = (f"training loss is {loss_value}" if not math.isfinite(loss_value)
                        else f"gradient norm is {norm_value} (loss {loss_value:.4g})")
                raise self._non_finite(epoch, i, what)  # before the update: the weights stay finite
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.global_step += 1
            loss_sum += loss_value
            count += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / count:.4f}")
            self.on_step(epoch, self.global_step)
        bar.close()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss_sum / max(count, 1)

    def fit(self, *, resume: bool = False) -> dict[str, Any]:
        """Train (or fit statistics), then evaluate the best weights on val and test.

        Args:
            resume: Continue the run whose checkpoint is in ``output`` (a new run when there is
                none).  Without it, a folder that holds a checkpoint is refused.

        Returns:
            The ``metrics.json`` content.

        Raises:
            RunFolderError: ``output`` holds another run, or its config or data differ from
                this one in keys that change the training done so far (each one named).
            RunFolderLocked: another process is writing ``output`` (its pid named).
            NonFiniteLossError: training diverged (epoch and batch named).
            ValueError: a trainable model without validation windows.
        """
        self._check_validation_windows()
        fingerprint = self.exp.fingerprint()
        with contextlib.ExitStack() as stack:

            def claim() -> dict[str, Any] | None:  # rank 0 only in a data-parallel run
                stack.enter_context(RunLock(self.output))
                state = self._claim_folder(resume, fingerprint)
                self._write_run_files(resumed_after=None if state is None else int(state["epoch"]))
                return state

            state = claim() if self.dist is None else self.dist.on_main(claim)
            self.fingerprint = fingerprint
            if state is not None:
                self._restore(state)
            try:
                return self._run()
            finally:
                if self._tb is not None:
                    self._tb.close()
                    self._tb = None

    def _run(self) -> dict[str, Any]:
        exp, tc = self.exp, self.cfg.train
        if not exp.model.trainable:
            series, mask, slot = exp.data.train_period()
            exp.model.fit_statistics(series.to(exp.device), mask.to(exp.device), slot.to(exp.device))
            self.best_state = {k: v.detach().clone() for k, v in exp.model.state_dict().items()}
        else:
            assert self.optimizer is not None
            if tc.compile:
                warm = exp.data.batch(exp.data.splits["train"][: tc.batch_size])
                compile_model(exp.model, lambda: exp.model.forecast(exp.to_device(warm), exp.edge_index,
                                                                    exp.edge_weight))
            if self.writes:
                self._open_tensorboard()
            while self.epoch < tc.epochs:
                if tc.patience and self.bad_epochs >= tc.patience:
                    self.log(f"early stopping: no better validation MAE for {tc.patience} epochs")
                    break
                epoch = self.epoch + 1
                lr = float(self.optimizer.param_groups[0]["lr"])  # the LR this epoch trains with
                start = time.perf_counter()
                train_loss = self._train_epoch(epoch)
                val = exp.evaluate("val", tc.eval_batch_size, dist=self.dist).compute()["average"]
                if val["mae"] is None:
                    raise ValueError(f"{exp.dataset.source}: the validation split has no observed readings "
                                     "(all missing); early stopping cannot work on it")
                val_mae = float(val["mae"])
                if self.dist is not None:  # one decision: every rank takes rank 0's number
                    val_mae = self.dist.broadcast(val_mae)
                if not math.isfinite(val_mae):
                    raise self._non_finite(epoch, None, f"validation MAE is {val_mae}")
                elapsed = time.perf_counter() - start
                self.epoch = epoch
                improved = val_mae < self.best_val
                if improved:
                    self.best_val, self.best_epoch, self.bad_epochs = val_mae, epoch, 0
                    self.best_state = {k: v.detach().clone() for k, v in exp.model.state_dict().items()}
                else:
                    self.bad_epochs += 1
                row = {"epoch": epoch, "train_loss": train_loss, "val_mae": val_mae,
                       "val_rmse": val["rmse"] or math.inf, "lr": lr, "seconds": elapsed}
                self.history.append(row)
                self.log(
                    f"epoch {epoch:3d}/{tc.epochs}  train_loss {train_loss:.4f}  val_mae {val_mae:.4f}"
                    f"{' *' if improved else '  '}  lr {lr:.2e}  {elapsed:.1f}s"
                )
                if self.writes:
                    self._write_log()
                    self._tensorboard(row)
                    save_checkpoint(self.state(), self.checkpoint_path)
        exp.model.load_state_dict(self.best_state)
        result = self._final_metrics()
        if self.writes:
            save_checkpoint(self.state(finished=True), self.checkpoint_path)
            write_json(self.output / "metrics.json", result)
        return result

    def _final_metrics(self) -> dict[str, Any]:
        exp = self.exp
        test = exp.evaluate("test", self.cfg.train.eval_batch_size, progress=self.progress, dist=self.dist)
        val = exp.evaluate("val", self.cfg.train.eval_batch_size, dist=self.dist).compute()
        return {
            "horizons": test.compute(),
            "per_step": test.per_step(),
            "val": val,
            "model": self.cfg.model,
            "dataset": exp.dataset.name,
            "num_parameters": sum(p.numel() for p in exp.model.parameters()),
            "windows": {k: exp.data.num_windows(k) for k in ("train", "val", "test")},
            "epochs_run": self.epoch,
            "best_epoch": self.best_epoch,
            "train_seconds": sum(r["seconds"] for r in self.history),
            "units": exp.dataset.units,
            "mape_unit": "percent",
            "processes": 1 if self.dist is None else self.dist.world_size,
        }

    # ----------------------------------------------------------------- files
    def _write_run_files(self, *, resumed_after: int | None) -> None:
        env = environment(self.exp.device)
        env_path = self.output / "environment.json"
        if resumed_after is not None and env_path.is_file():  # keep the record of the sessions that ran before
            try:
                before = json.loads(env_path.read_text())
            except ValueError:
                before = {"unreadable": env_path.read_text(errors="replace")}
            env["resumed_after_epoch"] = resumed_after
            env["previous_sessions"] = [*before.pop("previous_sessions", []), before]
        atomic_write_text(self.output / "config.toml", to_toml(self.cfg))
        write_json(env_path, env)
        if self.warm_start is not None:
            write_json(self.output / "init_from.json", self.warm_start.to_dict())

    def _write_log(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.history[0]))
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.output / "log.csv", buf.getvalue())

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: CSV log only
            return
        self._tb = SummaryWriter(str(self.output / "tensorboard"))

    def _tensorboard(self, row: dict[str, float]) -> None:
        if self._tb is None:
            return
        for key, value in row.items():
            if key != "epoch" and math.isfinite(value):
                self._tb.add_scalar(key, value, int(row["epoch"]))


def _silent(line: str) -> None:
    """The log of the processes other than rank 0."""


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, old, new)`` for every leaf that differs between two nested dicts."""
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def _longest_wait(history: list[dict[str, float]]) -> int:
    """Most consecutive non-improving epochs before the last epoch of ``history``.

    Early stopping with a patience at or below this would have ended the run earlier.
    """
    best, waited, longest = math.inf, 0, 0
    for row in history[:-1]:
        if row["val_mae"] < best:
            best, waited = row["val_mae"], 0
        else:
            waited += 1
        longest = max(longest, waited)
    return longest


def experiment_from_checkpoint(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    device: str | None = None,
    *,
    state: dict[str, Any] | None = None,
) -> tuple[Experiment, dict[str, Any]]:
    """Rebuild the experiment of a checkpoint with its best weights, its scaler and its sensor order.

    Today's data is mapped onto the trained nodes by sensor id (reordered columns are fine).
    A change of the data since training (length, digests, window counts) is reported as a
    warning, since metrics then cover other windows.

    Args:
        path: The checkpoint file (named in messages).
        root: The data root (default: ``$STGNN_DATA``, else ``./datasets``).
        device: Overrides the checkpoint's ``[train] device``.
        state: The checkpoint's contents when the caller has already read ``path`` with
            :func:`load_checkpoint` (it is then not read again); default: read ``path``.

    Raises:
        ValueError: The data's sensors differ from the trained ones (missing and extra ids
            named), its sampling interval differs, or the checkpoint's weights do not fit the
            model its config describes.
    """
    if state is None:
        state = load_checkpoint(path)
    cfg = RunConfig.from_dict(state["config"], source=str(path))
    if device is not None:
        cfg.train.device = device
    dataset = load_data(cfg, root)
    stored = state.get("data")
    if stored is None:
        warnings.warn(f"{path}: the checkpoint records no data fingerprint (written by an older stgnn); "
                      "sensors are taken in the data's column order, unchecked", stacklevel=2)
    else:
        if stored["interval_minutes"] != dataset.interval_minutes:
            raise ValueError(f"{dataset.source}: readings every {dataset.interval_minutes} min, but {path} "
                             f"was trained on readings every {stored['interval_minutes']} min")
        dataset = align_sensors(dataset, stored["sensor_ids"], str(path))
    covariate_scaler = state.get("covariate_scaler")
    exp = Experiment.build(cfg, root, dataset=dataset, scaler=StandardScaler.from_state_dict(state["scaler"]),
                           covariate_scaler=None if covariate_scaler is None
                           else StandardScaler.from_state_dict(covariate_scaler))
    if stored is not None:
        changes = fingerprint_changes(stored, exp.fingerprint())
        if changes:
            warnings.warn(f"{path}: the data changed since training: {'; '.join(changes)}", stacklevel=2)
    try:
        exp.model.load_state_dict(state["best_model"])
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"{path}: its weights do not fit the {cfg.model} model its config describes "
                         f"(config and weights disagree): {detail[:600]}") from exc
    return exp, state
