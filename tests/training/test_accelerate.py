"""Mixed precision choices, the float16 loss scaler, ``train.compile``, and (on CUDA) the GPU path.

The float16 path runs on the CPU here (CPU autocast supports float16) by making the trainer
choose float16, which it does by itself on a GPU without bfloat16.  The ``cuda`` tests run where
a GPU is present (``experiments/gpu_check.sh``) and are skipped elsewhere.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tiny_runs import make_config, trainer, write_data

import stgnn.training.trainer as trainer_module
from stgnn.models import MODELS
from stgnn.training.accelerate import amp_dtype, grad_scaler
from stgnn.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture()
def data(tmp_path: Path) -> tuple[Path, Path]:
    return write_data(tmp_path / "data")


def test_amp_dtype_bfloat16_where_supported_else_float16(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    assert amp_dtype(torch.device("cpu"), True) is None  # ignored on the CPU
    assert amp_dtype(cuda, False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype(cuda, True) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert amp_dtype(cuda, True) == torch.float16
    assert grad_scaler(torch.device("cpu"), torch.float16).is_enabled()
    assert not grad_scaler(torch.device("cpu"), torch.bfloat16).is_enabled()
    assert not grad_scaler(torch.device("cpu"), None).is_enabled()


def test_float16_overflow_skips_the_step_and_lowers_the_scale(data, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(trainer_module, "amp_dtype", lambda device, amp: torch.float16)
    monkeypatch.setattr(trainer_module, "grad_scaler",
                        lambda device, dtype: torch.amp.GradScaler("cpu", init_scale=2.0**80))
    cfg = make_config(*data, model="gcn", epochs=1, max_batches=2, clip_grad_norm=0.0)
    cfg.model_params = {}
    tr = trainer(cfg, tmp_path / "run")
    before = {k: v.clone() for k, v in tr.exp.model.state_dict().items()}
    tr.fit()  # no NonFiniteLossError: the scaled gradients overflow, the scaler skips those updates
    assert tr.scaler.get_scale() == 2.0**78  # halved at each of the two skipped steps
    for key, value in tr.exp.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["grad_scaler"]["scale"] == 2.0**78


def test_float16_training_with_loss_scaling_learns_and_resumes_its_scale(data, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(trainer_module, "amp_dtype", lambda device, amp: torch.float16)
    cfg = make_config(*data, model="gcn", epochs=2, max_batches=3, lr=0.01)
    cfg.model_params = {}
    out = tmp_path / "run"
    tr = trainer(cfg, out)
    first = {k: v.clone() for k, v in tr.exp.model.state_dict().items()}
    tr.fit()
    assert tr.scaler.is_enabled() and math.isfinite(tr.history[-1]["train_loss"])
    assert any(not torch.equal(v, first[k]) for k, v in tr.exp.model.state_dict().items())  # it trained
    state = load_checkpoint(out / "checkpoint.pt")
    cfg.train.epochs = 3
    resumed = trainer(cfg, out)
    resumed.fit(resume=True)
    assert resumed.scaler.is_enabled() and state["grad_scaler"] is not None


def test_compile_wraps_the_model_and_gives_the_eager_metrics(data, tmp_path, monkeypatch) -> None:
    """``train.compile``: Dynamo traces the training and evaluation forward passes (the ``eager``
    backend keeps this test fast: it checks the tracing, not the generated kernels, which the
    benchmark measures); metrics equal the eager run's."""
    compiled: list[torch.nn.Module] = []
    original = torch.nn.Module.compile

    def compile_eager(self: torch.nn.Module, *args: object, **kwargs: object) -> None:
        compiled.append(self)
        original(self, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", compile_eager)
    eager_cfg = make_config(*data, model="gcn", epochs=1, max_batches=2)
    eager_cfg.model_params = {}
    eager = trainer(eager_cfg, tmp_path / "eager").fit()
    cfg = make_config(*data, model="gcn", epochs=1, max_batches=2, compile=True)  # a cached graph operator
    cfg.model_params = {}
    tr = trainer(cfg, tmp_path / "compiled")
    result = tr.fit()
    assert compiled == [tr.exp.model]
    assert result["horizons"]["average"]["mae"] == pytest.approx(eager["horizons"]["average"]["mae"], rel=1e-5)


NEURAL_MODELS = sorted(name for name, cls in MODELS.items() if cls.trainable)


@pytest.mark.parametrize("model", NEURAL_MODELS)
def test_compile_works_for_every_registered_model(data, tmp_path, monkeypatch, model) -> None:
    """``train.compile`` for every neural model of the registry: Dynamo traces its training and
    evaluation passes (the ``eager`` backend: tracing, not kernel generation) and the run's test
    metrics equal the eager run's."""
    original = torch.nn.Module.compile
    compiled: list[torch.nn.Module] = []

    def compile_eager(self: torch.nn.Module, *args: object, **kwargs: object) -> None:
        compiled.append(self)
        original(self, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", compile_eager)
    results = []
    for flag in (False, True):
        cfg = make_config(*data, model=model, epochs=1, max_batches=1, compile=flag)
        if model == "dcrnn":  # one recurrent layer: half the unrolled steps to trace
            cfg.model_params = {"num_layers": 1, "hidden_channels": 16}
        results.append(trainer(cfg, tmp_path / str(flag)).fit()["horizons"]["average"])
    assert len(compiled) == 1
    assert results[1]["mae"] == pytest.approx(results[0]["mae"], rel=1e-5)
    assert results[1]["rmse"] == pytest.approx(results[0]["rmse"], rel=1e-5)


def test_compiled_stgcn_trains_on_a_shorter_last_batch_with_inductor() -> None:
    """The real compiler (inductor, not the ``eager`` backend of the tests above) on a change of
    batch size, as at the last batch of an epoch: each shape compiles once, and the outputs and
    gradients equal eager's.  With symbolic batch sizes inductor failed here on the second shape."""
    from stgnn.models import ModelSpec, build_model
    from stgnn.training.accelerate import compile_model

    spec = ModelSpec(num_nodes=4, in_channels=1, out_channels=1, input_len=10, horizon=2)
    edge_index = torch.tensor([[0, 1, 2, 3, 1, 2, 3, 0], [1, 2, 3, 0, 0, 1, 2, 3]])
    torch.manual_seed(0)
    small = dict(channels=(4, 2, 4), output_channels=(4, 4), dropout=0.0)  # two blocks, as the paper's
    eager = build_model("stgcn", spec, **small)
    model = build_model("stgcn", spec, **small)
    model.load_state_dict(eager.state_dict())
    torch._dynamo.reset()  # no compiled code cached from other tests
    compile_model(model, lambda: model(torch.zeros(2, 10, 4, 1), edge_index))
    for batch in (4, 3):
        x = torch.randn(batch, 10, 4, 1)
        out, ref = model(x, edge_index), eager(x, edge_index)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        out.square().sum().backward()
        ref.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_compile_flag_reaches_the_config() -> None:
    from stgnn.cli import _resolve_config, build_parser

    args = build_parser().parse_args(["train", "--model", "lstm", "--dataset", "los-loop", "--compile"])
    assert _resolve_config(args).train.compile is True
    args = build_parser().parse_args(["train", "--model", "lstm", "--dataset", "los-loop"])
    assert _resolve_config(args).train.compile is False


# ----------------------------------------------------------------------------- CUDA (skipped without a GPU)
@pytest.mark.cuda
@pytest.mark.parametrize("model", ["lstm", "stgcn", "dcrnn", "gwnet", "tgcn", "gcn", "gru"])
def test_cuda_amp_epoch_of_every_model(data, tmp_path, model) -> None:
    cfg = make_config(*data, model=model, epochs=1, max_batches=3, device="cuda", amp=True)
    cfg.model_params = {"hidden_channels": 8, "num_layers": 1} if model == "lstm" else {}
    tr = trainer(cfg, tmp_path / "run")
    result = tr.fit()
    assert tr.amp_dtype in (torch.bfloat16, torch.float16)
    assert result["horizons"]["average"]["mae"] is not None and math.isfinite(result["horizons"]["average"]["mae"])
    assert all(p.dtype == torch.float32 and p.is_cuda for p in tr.exp.model.parameters())


@pytest.mark.cuda
def test_cuda_training_copies_only_the_batches_to_the_device(data, tmp_path) -> None:
    """Host-to-device copies per training step: the batch's tensors (7), nothing constant."""
    from torch.profiler import ProfilerActivity, profile

    steps = 4
    cfg = make_config(*data, model="stgcn", epochs=1, max_batches=steps, device="cuda")
    cfg.model_params = {}
    tr = trainer(cfg, tmp_path / "run")
    tr.exp.evaluate = lambda *a, **k: _Fixed()  # type: ignore[method-assign]  # time the training steps only
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        tr._train_epoch(1)
    names = [e.name for e in prof.events()]
    h2d = sum("HtoD" in n for n in names)
    assert h2d <= 7 * steps, (h2d, steps)
    assert all(b.is_pinned() for b in [tr.exp.data.batch(tr.exp.data.splits["train"][:2]).pin_memory().x])


class _Fixed:
    def compute(self) -> dict[str, dict[str, float]]:
        return {"average": {"mae": 1.0, "rmse": 1.0}}
