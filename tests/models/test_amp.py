"""Mixed precision: a training step of every trainable registered model under ``torch.autocast``.

bfloat16 on CPU always; float16 and bfloat16 on CUDA where a GPU is present (skipped otherwise).

bfloat16 keeps 8 significant bits (relative rounding ~4e-3 per operation).  The stated
tolerance: the loss under autocast agrees with float32 within ``LOSS_RTOL = 1e-2`` relative, and
the gradient points the same way (cosine similarity with the float32 gradient at least
``GRAD_COSINE = 0.995``).  Measured on these tiny models (5 nodes, torch 2.13): loss deviations
1e-5 (FC-LSTM) to 4e-4 (DCRNN), cosines above 0.9999 (CPU; the CUDA cases use the same bounds,
float16 keeping more significant bits than bfloat16).  Parameters and their gradients stay
float32 (autocast casts per operation).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from stgnn.metrics import masked_mae_loss
from stgnn.models import MODELS as REGISTRY
from stgnn.models import Batch, ModelSpec, build_model

pytestmark = pytest.mark.usefixtures("single_thread")

LOSS_RTOL = 1e-2
GRAD_COSINE = 0.995

N = 5
SPEC = ModelSpec(num_nodes=N, in_channels=2, out_channels=1, input_len=12, horizon=3)
TINY: dict[str, dict[str, Any]] = {
    "stgcn": dict(channels=(8, 4, 8), output_channels=(16, 16), dropout=0.0),
    "dcrnn": dict(hidden_channels=8),
    "gwnet": dict(residual_channels=8, dilation_channels=8, skip_channels=16, end_channels=16, dropout=0.0,
                  embedding_dim=4),
    "lstm": dict(hidden_channels=16),
}
"""Small sizes for the larger models; every other registered model runs with its defaults."""
MODELS: dict[str, dict[str, Any]] = {name: TINY.get(name, {}) for name, cls in REGISTRY.items() if cls.trainable}


def _graph() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    src = torch.arange(N).repeat_interleave(2)
    dst = torch.stack([(torch.arange(N) + 1) % N, (torch.arange(N) + 2) % N], 1).reshape(-1)
    return torch.stack([src, dst]), torch.rand(2 * N, generator=g) + 0.1


def _batch(b: int = 8) -> Batch:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, SPEC.input_len, N, SPEC.in_channels, generator=g)
    y = torch.randn(b, SPEC.horizon, N, SPEC.out_channels, generator=g) + 3.0  # away from the null value 0
    return Batch(
        x=x, y=y, y_scaled=y, mask=torch.ones(b, SPEC.horizon, N, dtype=torch.bool),
        start=torch.arange(b), slot=torch.zeros(b, SPEC.horizon, dtype=torch.long),
    )  # fmt: skip


def _step(
    name: str, amp: bool, device: str = "cpu", dtype: torch.dtype = torch.bfloat16
) -> tuple[float, torch.Tensor, torch.nn.Module, set[str]]:
    """Loss and flattened gradient of one training step from the same seeded weights.

    Parameters that never reach the output (Graph WaveNet's last graph conv, as in its reference)
    have no gradient in either mode; the same parameters must get one in both.
    """
    torch.manual_seed(0)
    model = build_model(name, SPEC, **MODELS[name]).to(device).train()
    ei, ew = (t.to(device) for t in _graph())
    batch = _batch().to(device)
    with torch.autocast(device, dtype=dtype, enabled=amp):
        pred = model.forecast(batch, ei, ew)
    loss = masked_mae_loss(pred.float(), batch.y, batch.mask)  # the trainer's loss, outside autocast
    loss.backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    opt.step()
    return float(loss.detach()), torch.cat([g.reshape(-1) for g in grads]), model, no_grad


CUDA = pytest.mark.cuda


@pytest.mark.parametrize(
    ("device", "dtype"),
    [
        ("cpu", torch.bfloat16),
        pytest.param("cuda", torch.float16, marks=CUDA),
        pytest.param("cuda", torch.bfloat16, marks=CUDA),
    ],
)
@pytest.mark.parametrize("name", list(MODELS))
def test_autocast_training_step_matches_float32(name: str, device: str, dtype: torch.dtype) -> None:
    loss32, grad32, _, unused32 = _step(name, False, device)
    loss16, grad16, model, unused16 = _step(name, True, device, dtype)
    assert unused16 == unused32  # the same parameters learn
    assert abs(loss16 - loss32) <= LOSS_RTOL * abs(loss32), (name, loss16, loss32)
    assert grad16.dtype == torch.float32 and torch.isfinite(grad16).all()
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)
    assert cosine >= GRAD_COSINE, (name, float(cosine))
    for p in model.parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all()
