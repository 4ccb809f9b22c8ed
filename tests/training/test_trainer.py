"""The training loop: schedules, early stopping, validation windows, non-finite stops, resume rules."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from tiny_runs import make_config, trainer, write_data

from stgnn.distributions import ForecastDistribution
from stgnn.training.checkpoint import load_checkpoint
from stgnn.training.schedules import curriculum_level, inverse_sigmoid_teacher_forcing
from stgnn.training.trainer import (
    RESUMABLE_KEYS,
    Experiment,
    NonFiniteLossError,
    RunFolderError,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture()
def data(tmp_path: Path) -> tuple[Path, Path]:
    return write_data(tmp_path / "data")


# ----------------------------------------------------------------------------- schedules
def test_inverse_sigmoid_teacher_forcing_curve():
    tau = 2000.0
    for step in (0, 1000, 5000, 15000, 20000, 40000):
        assert inverse_sigmoid_teacher_forcing(step, tau) == pytest.approx(tau / (tau + math.exp(step / tau)))
    values = [inverse_sigmoid_teacher_forcing(s) for s in range(0, 60000, 1000)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))  # monotone decay
    assert values[0] > 0.99 and inverse_sigmoid_teacher_forcing(30000) < 0.5 < inverse_sigmoid_teacher_forcing(10000)
    assert inverse_sigmoid_teacher_forcing(10**8) == 0.0  # no overflow


def test_curriculum_level():
    assert [curriculum_level(s, 3, 4) for s in range(14)] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4]
    assert curriculum_level(0, 0, 12) == 12  # disabled: the whole horizon


def test_trainer_does_not_import_a_model_class_for_a_schedule():
    source = Path(__import__("stgnn.training.trainer", fromlist=["x"]).__file__).read_text()
    assert "stgnn.models.dcrnn" not in source and "DCRNN" not in source


def test_curriculum_restricts_the_loss_to_the_leading_horizons(data, tmp_path, monkeypatch):
    import stgnn.training.trainer as module

    seen: list[int] = []
    original = module.masked_forecast_loss_sum

    def spy(pred: ForecastDistribution, target: torch.Tensor, mask: torch.Tensor,
            null_value: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(pred.point.shape[1])
        return original(pred, target, mask, null_value)

    monkeypatch.setattr(module, "masked_forecast_loss_sum", spy)
    cfg = make_config(*data, epochs=2, max_batches=3, curriculum_steps=2)
    trainer(cfg, tmp_path / "run").fit()
    assert seen == [1, 1, 2, 2, 3, 3]


# ----------------------------------------------------------------------------- LR schedules
@pytest.mark.parametrize(
    ("schedule", "options", "factors"),
    [
        ("none", {}, [1.0, 1.0, 1.0, 1.0]),
        ("multistep", {"lr_milestones": [2, 3], "lr_gamma": 0.1}, [1.0, 1.0, 0.1, 0.01]),
        ("step", {"lr_step": 2, "lr_gamma": 0.5}, [1.0, 1.0, 0.5, 0.5]),
        ("cosine", {}, [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]),
    ],
)
def test_logged_lr_is_the_lr_each_epoch_used(data, tmp_path, schedule, options, factors):
    cfg = make_config(*data, epochs=4, max_batches=1, lr=0.01, lr_schedule=schedule, patience=0, **options)
    tr = trainer(cfg, tmp_path / "run")
    used: list[float] = []
    assert tr.optimizer is not None
    tr.optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    tr.fit()
    logged = [row["lr"] for row in tr.history]
    assert used == pytest.approx([0.01 * f for f in factors])
    assert logged == pytest.approx(used)
    log_csv = pd.read_csv(tmp_path / "run" / "log.csv")
    assert log_csv["lr"].tolist() == pytest.approx(used)


# ----------------------------------------------------------------------------- early stopping
class _ScriptedMetrics:
    def __init__(self, mae: float) -> None:
        self.mae = mae

    def compute(self) -> dict[str, dict[str, float]]:
        return {"average": {"mae": self.mae, "rmse": self.mae, "mape": self.mae}}

    def per_step(self) -> list[dict[str, float]]:
        return []


def _script_validation(exp: Experiment, maes: list[float]) -> None:
    queue = iter(maes)

    def evaluate(split: str, batch_size: int = 64, progress: bool = False, *, dist: Any = None) -> Any:
        return _ScriptedMetrics(next(queue) if split == "val" else 1.0)

    exp.evaluate = evaluate  # type: ignore[method-assign]


def test_early_stopping_after_patience_epochs_without_improvement(data, tmp_path):
    logs: list[str] = []
    tr = trainer(make_config(*data, epochs=10, patience=2), tmp_path / "run", logs)
    kept: dict[int, dict[str, torch.Tensor]] = {}
    tr.on_step = lambda epoch, step: kept.__setitem__(  # type: ignore[method-assign]
        epoch, {k: v.clone() for k, v in tr.exp.model.state_dict().items()})
    _script_validation(tr.exp, [5.0, 4.0, 4.5, 4.2, 3.0, 99.0, 99.0])
    result = tr.fit()
    assert [row["val_mae"] for row in tr.history] == [5.0, 4.0, 4.5, 4.2]
    assert result["epochs_run"] == 4 and result["best_epoch"] == 2
    assert any("early stopping" in line for line in logs)
    for key, value in tr.exp.model.state_dict().items():  # the best epoch's weights are kept
        assert torch.equal(value, kept[2][key]), key


def test_patience_zero_disables_early_stopping(data, tmp_path):
    tr = trainer(make_config(*data, epochs=4, patience=0, max_batches=1), tmp_path / "run")
    _script_validation(tr.exp, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert tr.fit()["epochs_run"] == 4


# ----------------------------------------------------------------------------- validation windows
def test_trainable_model_without_validation_windows_is_refused_before_writing(data, tmp_path):
    out = tmp_path / "run"
    tr = trainer(make_config(*data, split=[0.8, 0.0, 0.2]), out)
    with pytest.raises(ValueError, match=r"split \[0.8, 0.0, 0.2\] gives 302/0/75 train/val/test windows"):
        tr.fit()
    assert not out.exists()


def test_statistical_model_needs_no_validation_windows(data, tmp_path):
    result = trainer(make_config(*data, model="ha", split=[0.8, 0.0, 0.2]), tmp_path / "run").fit()
    assert result["windows"]["val"] == 0 and result["horizons"]["average"]["mae"] is not None


# ----------------------------------------------------------------------------- non-finite loss
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    trainer(make_config(*data, epochs=1), out).fit()
    good = load_checkpoint(out / "checkpoint.pt")

    tr = trainer(make_config(*data, epochs=3), out)
    tr.exp.data.inputs[:] = float("inf")  # every forecast becomes NaN
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 1 \(global step 3\): training loss is nan") as err:
        tr.fit(resume=True)
    assert "keeps the weights after epoch 1" in str(err.value)
    kept = load_checkpoint(out / "checkpoint.pt")
    assert kept["epoch"] == 1
    for key, value in good["model"].items():
        assert torch.equal(kept["model"][key], value) and torch.isfinite(value).all()


def test_non_finite_gradient_stops_before_the_update(data, tmp_path):
    tr = trainer(make_config(*data, epochs=1, clip_grad_norm=0.0), tmp_path / "run")
    before = {k: v.clone() for k, v in tr.exp.model.state_dict().items()}
    weight = next(tr.exp.model.parameters())
    weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 1 .*gradient norm is inf.*no checkpoint"):
        tr.fit()
    for key, value in tr.exp.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# ----------------------------------------------------------------------------- resume
def test_resume_restores_scheduler_state_and_matches_an_uninterrupted_run(data, tmp_path):
    options = {"lr_schedule": "multistep", "lr_milestones": [2], "lr_gamma": 0.1, "max_batches": 3, "patience": 0}
    full = trainer(make_config(*data, epochs=3, **options), tmp_path / "full")
    expected = full.fit()

    out = tmp_path / "split"
    trainer(make_config(*data, epochs=1, **options), out).fit()  # first session: one epoch
    logs: list[str] = []
    resumed = trainer(make_config(*data, epochs=3, **options), out, logs)  # more epochs: allowed
    result = resumed.fit(resume=True)
    assert any("resumed from" in line and "after epoch 1" in line for line in logs)
    assert resumed.scheduler is not None and resumed.scheduler.last_epoch == 3
    assert [r["lr"] for r in resumed.history] == pytest.approx([r["lr"] for r in full.history])
    assert [r["val_mae"] for r in resumed.history] == [r["val_mae"] for r in full.history]
    assert result["horizons"] == expected["horizons"]
    env = json.loads((out / "environment.json").read_text())
    assert env["resumed_after_epoch"] == 1 and len(env["previous_sessions"]) == 1
    assert "epochs = 3" in (out / "config.toml").read_text()


def test_resume_with_changed_config_names_each_key_and_writes_nothing(data, tmp_path):
    out = tmp_path / "run"
    trainer(make_config(*data, epochs=1), out).fit()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    changed = make_config(*data, epochs=2, lr=0.01, batch_size=16)
    with pytest.raises(RunFolderError) as err:
        trainer(changed, out).fit(resume=True)
    message = str(err.value)
    assert "train.lr: 0.001 in the run, 0.01 now" in message
    assert "train.batch_size: 32 in the run, 16 now" in message
    assert "train.epochs:" not in message  # more epochs is allowed
    assert "--config" in message and "another --output" in message and "drop --resume" not in message
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # config.toml, environment.json, checkpoint untouched


def test_resume_allows_device_threads_and_a_later_patience(data, tmp_path):
    out = tmp_path / "run"
    trainer(make_config(*data, epochs=1, patience=3), out).fit()
    cfg = make_config(*data, epochs=2, patience=5, num_threads=1)
    assert trainer(cfg, out).fit(resume=True)["epochs_run"] == 2
    assert set(RESUMABLE_KEYS) == {"train.epochs", "train.patience", "train.device", "train.num_threads",
                                   "train.compile"}


def test_resume_refuses_fewer_epochs_than_done_an_earlier_patience_and_cosine_epochs(data, tmp_path):
    out = tmp_path / "run"
    tr = trainer(make_config(*data, epochs=3, patience=0), out)
    _script_validation(tr.exp, [5.0, 6.0, 7.0, 1.0, 1.0])  # two epochs without improvement
    tr.fit()
    with pytest.raises(RunFolderError, match="train.epochs: 3 in the run, 2 now .the run has already done 3 epochs"):
        trainer(make_config(*data, epochs=2, patience=0), out).fit(resume=True)
    with pytest.raises(RunFolderError, match="train.patience: 0 in the run, 1 now .patience 1 would have stopped"):
        trainer(make_config(*data, epochs=3, patience=1), out).fit(resume=True)

    cosine = tmp_path / "cosine"
    trainer(make_config(*data, epochs=1, lr_schedule="cosine"), cosine).fit()
    with pytest.raises(RunFolderError, match="cosine LR schedule's period is the epoch count"):
        trainer(make_config(*data, epochs=2, lr_schedule="cosine"), cosine).fit(resume=True)


def test_resume_refuses_changed_data(data, tmp_path):
    series, locations = data
    out = tmp_path / "run"
    trainer(make_config(series, locations, epochs=1), out).fit()
    frame = pd.read_csv(series)
    frame.iloc[5, 1] += 1.0
    frame.to_csv(series, index=False)
    with pytest.raises(RunFolderError, match=r"data: readings.csv sha256 [0-9a-f]{12}\.\.\. -> [0-9a-f]{12}"):
        trainer(make_config(series, locations, epochs=2), out).fit(resume=True)


def test_existing_run_is_not_overwritten_without_resume(data, tmp_path):
    out = tmp_path / "run"
    trainer(make_config(*data, epochs=1), out).fit()
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(RunFolderError, match="already holds a run .checkpoint after epoch 1.: pass --resume"):
        trainer(make_config(*data, epochs=1), out).fit()
    assert (out / "checkpoint.pt").read_bytes() == before


def test_checkpoint_records_the_data_fingerprint(data, tmp_path):
    series, locations = data
    out = tmp_path / "run"
    trainer(make_config(series, locations, epochs=1), out).fit()
    fp = load_checkpoint(out / "checkpoint.pt")["data"]
    assert fp["sensor_ids"] == ["S0", "S1", "S2", "S3"]
    assert fp["interval_minutes"] == 5 and fp["num_steps"] == 400
    assert fp["windows"] == {"train": 264, "val": 38, "test": 75}
    assert set(fp["files"]) == {"readings.csv", "sensors.csv"} and all(len(d) == 64 for d in fp["files"].values())


def test_validation_split_without_observed_readings_is_named(tmp_path):
    series, locations = write_data(tmp_path / "data")
    frame = pd.read_csv(series)
    frame.iloc[260:340, 1:] = float("nan")  # every target of every validation window is missing
    frame.to_csv(series, index=False)
    tr = trainer(make_config(series, locations, epochs=2), tmp_path / "run")
    with pytest.raises(ValueError, match="readings.csv: the validation split has no observed readings"):
        tr.fit()
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
