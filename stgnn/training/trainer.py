"""The training loop: Adam, LR schedule, clipping, early stopping, checkpoints, resume.

Determinism: the weights are initialised from ``seed``; every epoch re-seeds the
shuffling generator and torch's global RNG (dropout) from ``(seed, epoch)``.  A
run resumed from the checkpoint of epoch ``k`` therefore replays epoch ``k + 1``
exactly as an uninterrupted run would, and ends with the same metrics.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from stgnn.data.custom import load_custom
from stgnn.data.dataset import TrafficDataset
from stgnn.data.readers import load_dataset
from stgnn.data.windows import StandardScaler, WindowData
from stgnn.metrics import MaskedMetrics, masked_mae_loss
from stgnn.models import Batch, Forecaster, ModelSpec, build_model
from stgnn.models.dcrnn import DCRNN
from stgnn.training.checkpoint import (
    atomic_write_text,
    environment,
    load_checkpoint,
    save_checkpoint,
    write_json,
)
from stgnn.training.config import RunConfig, to_toml

__all__ = [
    "OPTIMIZERS",
    "TEACHER_FORCING",
    "Experiment",
    "Trainer",
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

TEACHER_FORCING: dict[str, Callable[[int, float], float]] = {
    "none": lambda step, tau: 0.0,
    "inverse_sigmoid": DCRNN.teacher_forcing_ratio,  # scheduled sampling of DCRNN
}


def load_data(cfg: RunConfig, root: str | os.PathLike[str] | None = None) -> TrafficDataset:
    """The dataset a config names: a registered benchmark, or ``custom`` files."""
    if cfg.dataset == "custom":  # the schema guarantees a series and one graph file
        c = cfg.custom.given()
        return load_custom(c.pop("series"), **c)
    return load_dataset(cfg.dataset, root)


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

    @classmethod
    def build(
        cls,
        cfg: RunConfig,
        root: str | os.PathLike[str] | None = None,
        *,
        dataset: TrafficDataset | None = None,
        scaler: StandardScaler | None = None,
    ) -> Experiment:
        """Load data, window it, fit the scaler on train, and build the model."""
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
        model = build_model(cfg.model, spec, **cfg.model_params).to(device)
        return cls(
            cfg, ds, data, spec, model, device,
            ds.graph.edge_index.to(device), ds.graph.edge_weight.to(device),
        )

    def predict(self, batch: Batch) -> Tensor:
        """Forecasts in raw units ``[B, H, N, F_out]`` (on the CPU) for ``batch``."""
        self.model.eval()
        with torch.no_grad():
            pred = self.model.forecast(batch.to(self.device), self.edge_index, self.edge_weight)
        return self.data.target_scaler.inverse(pred.float()).cpu()

    def evaluate(self, split: str, batch_size: int = 64, progress: bool = False) -> MaskedMetrics:
        """Masked metrics over a whole split (sums and counts, divided once)."""
        metrics = MaskedMetrics(
            horizons=[h for h in (3, 6, 12) if h <= self.spec.horizon] or [self.spec.horizon],
            null_value=self.config.data.null_value,
        )
        self.model.eval()
        autocast = _autocast(self.device, self.config.train.amp)
        batches = self.data.batches(split, batch_size)
        total = -(-self.data.num_windows(split) // batch_size)
        with torch.no_grad():
            for batch in tqdm(batches, total=total, desc=f"eval {split}", leave=False,
                              disable=not progress, file=sys.stderr):
                batch = batch.to(self.device)
                with autocast:
                    pred = self.model.forecast(batch, self.edge_index, self.edge_weight)
                metrics.update(self.data.target_scaler.inverse(pred.float()), batch.y, batch.mask)
        return metrics


def _autocast(device: torch.device, amp: bool) -> Any:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


class Trainer:
    """Trains an :class:`Experiment` and writes everything into ``output``.

    Files written: ``config.toml`` (resolved), ``environment.json``, ``log.csv`` (one
    row per epoch), ``checkpoint.pt`` (atomic, every epoch), ``metrics.json`` (test
    metrics of the best-validation weights) and TensorBoard events when installed.

    Args:
        exp: The experiment.
        output: Output directory.
        progress: Show tqdm progress bars.
        log: Where the per-epoch lines go (default stdout).
    """

    def __init__(
        self,
        exp: Experiment,
        output: str | os.PathLike[str],
        *,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.exp = exp
        self.cfg = exp.config
        self.output = Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.log = log
        tc = self.cfg.train
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        if tc.teacher_forcing not in TEACHER_FORCING:
            raise ValueError(f"train.teacher_forcing {tc.teacher_forcing!r}; known: {', '.join(TEACHER_FORCING)}")
        if tc.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer {tc.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        params = [p for p in exp.model.parameters() if p.requires_grad]
        self.optimizer = (
            OPTIMIZERS[tc.optimizer](params, lr=tc.lr, weight_decay=tc.weight_decay, eps=tc.adam_eps)
            if exp.model.trainable and params else None
        )
        self.scheduler = self._make_scheduler()
        self.epoch = 0
        self.global_step = 0
        self.best_val = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, Tensor] = {k: v.detach().clone() for k, v in exp.model.state_dict().items()}
        self.history: list[dict[str, float]] = []
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
        """Everything needed to resume or evaluate."""
        return {
            "format": 1,
            "config": self.cfg.to_dict(),
            "spec": vars(self.exp.spec).copy(),
            "scaler": self.exp.data.scaler.state_dict(),
            "model": self.exp.model.state_dict(),
            "best_model": self.best_state,
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "finished": finished,
        }

    def resume(self) -> bool:
        """Restore from ``checkpoint.pt`` if present; True when something was restored."""
        if not self.checkpoint_path.is_file():
            return False
        state = load_checkpoint(self.checkpoint_path, map_location=self.exp.device)
        saved = RunConfig.from_dict(state["config"]).to_dict()
        if saved != self.cfg.to_dict():
            raise ValueError(
                f"{self.checkpoint_path}: was written by a different config; use another --output "
                "or drop --resume"
            )
        self.exp.model.load_state_dict(state["model"])
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.best_state = state["best_model"]
        for key in ("epoch", "global_step", "best_val", "best_epoch", "bad_epochs", "history"):
            setattr(self, key, state[key])
        self.log(f"resumed from {self.checkpoint_path} after epoch {self.epoch}")
        return True

    # ----------------------------------------------------------------- training
    def _seed_epoch(self, epoch: int) -> torch.Generator:
        seed = self.cfg.train.seed * 1_000_003 + epoch
        torch.manual_seed(seed)
        return torch.Generator().manual_seed(seed)

    def _train_epoch(self, epoch: int) -> float:
        exp, tc = self.exp, self.cfg.train
        assert self.optimizer is not None
        exp.model.train()
        gen = self._seed_epoch(epoch)
        n = exp.data.num_windows("train")
        total = -(-n // tc.batch_size)
        if tc.max_batches:
            total = min(total, tc.max_batches)
        schedule = TEACHER_FORCING[tc.teacher_forcing]
        autocast = _autocast(exp.device, tc.amp)
        loss_sum, count = 0.0, 0
        bar = tqdm(total=total, desc=f"epoch {epoch}", leave=False, disable=not self.progress, file=sys.stderr)
        for i, batch in enumerate(exp.data.batches("train", tc.batch_size, shuffle=True, generator=gen)):
            if i >= total:
                break
            batch = batch.to(exp.device)
            tf = schedule(self.global_step, tc.teacher_forcing_tau)
            with autocast:
                pred = exp.model.forecast(batch, exp.edge_index, exp.edge_weight, teacher_forcing=tf)
            pred = exp.data.target_scaler.inverse(pred.float())
            y, mask = batch.y, batch.mask
            if tc.curriculum_steps:
                level = min(exp.spec.horizon, 1 + self.global_step // tc.curriculum_steps)
                pred, y, mask = pred[:, :level], y[:, :level], mask[:, :level]
            loss = masked_mae_loss(pred, y, mask, self.cfg.data.null_value)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(exp.model.parameters(), tc.clip_grad_norm)
            self.optimizer.step()
            self.global_step += 1
            loss_sum += float(loss.detach())
            count += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / count:.4f}")
        bar.close()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss_sum / max(count, 1)

    def fit(self, *, resume: bool = False) -> dict[str, Any]:
        """Train (or fit statistics), then evaluate the best weights on val and test.

        Returns the ``metrics.json`` content.
        """
        exp, tc = self.exp, self.cfg.train
        self._write_run_files()
        if resume:
            self.resume()
        if not exp.model.trainable:
            series, mask, slot = exp.data.train_period()
            exp.model.fit_statistics(series.to(exp.device), mask.to(exp.device), slot.to(exp.device))
            self.best_state = {k: v.detach().clone() for k, v in exp.model.state_dict().items()}
        else:
            self._open_tensorboard()
            while self.epoch < tc.epochs:
                if tc.patience and self.bad_epochs >= tc.patience:
                    self.log(f"early stopping: no better validation MAE for {tc.patience} epochs")
                    break
                epoch = self.epoch + 1
                start = time.perf_counter()
                train_loss = self._train_epoch(epoch)
                val = exp.evaluate("val", tc.eval_batch_size).compute()["average"]
                val_mae = val["mae"] if val["mae"] is not None else math.inf
                elapsed = time.perf_counter() - start
                self.epoch = epoch
                improved = val_mae < self.best_val
                if improved:
                    self.best_val, self.best_epoch, self.bad_epochs = val_mae, epoch, 0
                    self.best_state = {k: v.detach().clone() for k, v in exp.model.state_dict().items()}
                else:
                    self.bad_epochs += 1
                lr = self.optimizer.param_groups[0]["lr"] if self.optimizer else 0.0
                row = {"epoch": epoch, "train_loss": train_loss, "val_mae": val_mae,
                       "val_rmse": val["rmse"] or math.inf, "lr": lr, "seconds": elapsed}
                self.history.append(row)
                self.log(
                    f"epoch {epoch:3d}/{tc.epochs}  train_loss {train_loss:.4f}  val_mae {val_mae:.4f}"
                    f"{' *' if improved else '  '}  lr {lr:.2e}  {elapsed:.1f}s"
                )
                self._write_log()
                self._tensorboard(row)
                save_checkpoint(self.state(), self.checkpoint_path)
        exp.model.load_state_dict(self.best_state)
        result = self._final_metrics()
        save_checkpoint(self.state(finished=True), self.checkpoint_path)
        write_json(self.output / "metrics.json", result)
        if self._tb is not None:
            self._tb.close()
        return result

    def _final_metrics(self) -> dict[str, Any]:
        exp = self.exp
        test = exp.evaluate("test", self.cfg.train.eval_batch_size, progress=self.progress)
        val = exp.evaluate("val", self.cfg.train.eval_batch_size).compute()
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
        }

    # ----------------------------------------------------------------- files
    def _write_run_files(self) -> None:
        atomic_write_text(self.output / "config.toml", to_toml(self.cfg))
        write_json(self.output / "environment.json", environment(self.exp.device))

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


def experiment_from_checkpoint(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, device: str | None = None
) -> tuple[Experiment, dict[str, Any]]:
    """Rebuild the experiment of a checkpoint with its best weights and its scaler."""
    state = load_checkpoint(path)
    cfg = RunConfig.from_dict(state["config"], source=str(path))
    if device is not None:
        cfg.train.device = device
    exp = Experiment.build(cfg, root, scaler=StandardScaler.from_state_dict(state["scaler"]))
    exp.model.load_state_dict(state["best_model"])
    return exp, state
