"""Distributional heads around registered models: shapes, non-crossing quantiles, calibration after training."""

from __future__ import annotations

import pytest
import torch

from stgnn.distributions import GaussianForecast, QuantileForecast
from stgnn.metrics import MaskedMetrics, masked_forecast_loss
from stgnn.models import MODELS, ModelSpec
from stgnn.models.heads import DistributionalForecaster

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = ModelSpec(num_nodes=4, in_channels=2, out_channels=1, input_len=12, horizon=3)
EDGES = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
SMALL = {
    "lstm": dict(hidden_channels=8, num_layers=1),
    "stgcn": dict(channels=(8, 4, 8), output_channels=(16, 16)),
    "dcrnn": dict(hidden_channels=8),
    "gwnet": dict(residual_channels=8, dilation_channels=8, skip_channels=16, end_channels=16, embedding_dim=4),
    "tgcn": dict(hidden_channels=8),
    "gru": dict(hidden_channels=8),
    "gcn": dict(hidden_channels=8),
    # called as model(x, edge_index) here, without the batch's time slots (forecast(batch) passes them)
    "transformer": dict(time_embedding=False),
}


@pytest.mark.parametrize("name", [n for n, cls in MODELS.items() if cls.trainable])
@pytest.mark.parametrize(("kind", "params"), [("gaussian", 2), ("quantile", 3)])
def test_every_trainable_model_takes_a_head(name, kind, params):
    torch.manual_seed(0)
    model = DistributionalForecaster(MODELS[name], SPEC, kind, **SMALL.get(name, {}))
    out = model(torch.randn(2, 12, 4, 2), EDGES)
    assert out.shape == (2, 3, 4, 1, params)
    dist = model.distribution(out)
    assert isinstance(dist, GaussianForecast if kind == "gaussian" else QuantileForecast)
    assert dist.mean.shape == (2, 3, 4, 1)
    out.sum().backward()
    # gradients reach every parameter that they reach in the model without a head
    point = MODELS[name](SPEC, **SMALL.get(name, {}))
    point(torch.randn(2, 12, 4, 2), EDGES).sum().backward()
    unreached = {n for n, p in point.named_parameters() if p.grad is None}
    assert {n.removeprefix("base.") for n, p in model.named_parameters() if p.grad is None} == unreached


def test_quantiles_never_cross_whatever_the_raw_outputs():
    levels = (0.025, 0.1, 0.3, 0.5, 0.7, 0.9, 0.975)
    model = DistributionalForecaster(MODELS["gcn"], SPEC, "quantile", levels, hidden_channels=8)
    raw = 50.0 * torch.randn(64, 3, 4, len(levels), generator=torch.Generator().manual_seed(0))
    raw[0] = 1e4  # saturated softplus increments
    raw[1] = -1e4  # vanishing increments
    values = model._constrain(raw)
    assert torch.isfinite(values).all()
    assert (values.diff(dim=-1) >= 0).all()
    assert torch.equal(values[..., 0, 3], raw[..., 3])  # the level nearest 0.5 is the anchor


def test_gaussian_scale_is_positive():
    model = DistributionalForecaster(MODELS["gcn"], SPEC, "gaussian", hidden_channels=8)
    raw = torch.tensor([-1e4, -5.0, 0.0, 30.0]).repeat_interleave(2).view(1, 1, 4, 2)
    raw[..., 0] = 0.0
    scale = model._constrain(raw)[..., 1]
    assert (scale >= model.min_scale).all()


def _synthetic(n: int, g: torch.Generator, spec: ModelSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """y = 0.8 * the last input + N(0, 0.5²) noise: the true 80 % interval is ±1.28 * 0.5."""
    x = torch.randn(n, spec.input_len, spec.num_nodes, 1, generator=g)
    y = 0.8 * x[:, -1:].expand(n, spec.horizon, spec.num_nodes, 1)
    return x, y + 0.5 * torch.randn(n, spec.horizon, spec.num_nodes, 1, generator=g)


@pytest.mark.parametrize("kind", ["gaussian", "quantile"])
def test_trained_head_is_calibrated_on_a_process_with_known_noise(kind):
    spec = ModelSpec(num_nodes=3, in_channels=1, out_channels=1, input_len=4, horizon=2)
    edges = torch.tensor([[0, 1, 2], [1, 2, 0]])
    torch.manual_seed(0)
    model = DistributionalForecaster(MODELS["gru"], spec, kind, (0.1, 0.5, 0.9), hidden_channels=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(220):
        x, y = _synthetic(256, g, spec)
        loss = masked_forecast_loss(model.distribution(model(x, edges)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = _synthetic(15_000, torch.Generator().manual_seed(1), spec)  # 90,000 readings
    metrics = MaskedMetrics(horizons=(1, 2))
    with torch.no_grad():
        metrics.update(model.distribution(model(x, edges)), y)
    out = metrics.compute()["average"]
    assert out["coverage_80"] == pytest.approx(0.80, abs=0.03)
    assert out["width_80"] == pytest.approx(2 * 1.2816 * 0.5, rel=0.1)


def test_teacher_forcing_and_output_feedback_are_refused():
    with pytest.raises(ValueError, match="single_step"):
        DistributionalForecaster(MODELS["stgcn"], SPEC, "gaussian", single_step=True)
    with pytest.raises(ValueError, match="fitted by statistics"):
        DistributionalForecaster(MODELS["ha"], SPEC, "gaussian")
    with pytest.raises(ValueError, match="'gaussian' or 'quantile'"):
        DistributionalForecaster(MODELS["gru"], SPEC, "beta")  # type: ignore[arg-type]
