"""Forecast distributions and their scores: CRPS, intervals, calibration, likelihood, metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from stgnn.distributions import GaussianForecast, PointForecast, QuantileForecast, pinball_loss
from stgnn.metrics import MaskedMetrics, masked_forecast_loss


def _g(mu: float, sigma: float) -> GaussianForecast:
    return GaussianForecast(torch.full((1, 1, 1, 1), mu, dtype=torch.float64),
                            torch.full((1, 1, 1, 1), sigma, dtype=torch.float64))


def _numerical_crps(cdf, y: float, lo: float, hi: float, n: int = 200_001) -> float:
    """∫ (F(x) - 1{x >= y})² dx: ∫ F² below y plus ∫ (1 - F)² above it (trapezoid rule on fine grids)."""
    below = torch.linspace(lo, y, n, dtype=torch.float64)
    above = torch.linspace(y, hi, n, dtype=torch.float64)
    return float(torch.trapezoid(cdf(below) ** 2, below) + torch.trapezoid((1 - cdf(above)) ** 2, above))


@pytest.mark.parametrize(("mu", "sigma", "y"), [(0.0, 1.0, 0.0), (2.0, 0.5, 3.1), (-1.0, 3.0, -7.0), (60.0, 4.0, 52.0)])
def test_gaussian_crps_equals_the_integral_of_the_squared_cdf_difference(mu, sigma, y):
    closed = float(_g(mu, sigma).crps(torch.tensor(y, dtype=torch.float64)))
    normal = Normal(torch.tensor(mu, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64))
    numeric = _numerical_crps(normal.cdf, y, mu - 12 * sigma - abs(y - mu), mu + 12 * sigma + abs(y - mu))
    assert closed == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_quantile_crps_approaches_the_crps_as_levels_fill_the_unit_interval():
    mu, sigma, y = 1.0, 2.0, 2.5
    exact = float(_g(mu, sigma).crps(torch.tensor(y, dtype=torch.float64)))
    normal = Normal(torch.tensor(mu, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64))
    errors = []
    for k in (9, 99, 999):
        levels = [(i + 0.5) / k for i in range(k)]  # midpoint rule
        values = normal.icdf(torch.tensor(levels, dtype=torch.float64)).view(1, 1, 1, 1, k)
        estimate = float(QuantileForecast(levels, values).crps(torch.full((1, 1, 1, 1), y, dtype=torch.float64)))
        errors.append(abs(estimate - exact))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3 * exact


def test_pinball_loss_by_hand():
    v = torch.tensor([[1.0, 2.0, 3.0]])
    levels = torch.tensor([0.1, 0.5, 0.9])
    out = pinball_loss(v, torch.tensor([2.5]), levels)
    torch.testing.assert_close(out, torch.tensor([[0.1 * 1.5, 0.5 * 0.5, 0.1 * 0.5]]))


def test_gaussian_quantiles_and_intervals_are_exact():
    d = _g(10.0, 2.0)
    low, high = d.interval(0.8)
    z = 1.2815515655446004
    assert float(low) == pytest.approx(10 - 2 * z) and float(high) == pytest.approx(10 + 2 * z)
    assert float(d.quantile(0.975)) == pytest.approx(10 + 2 * 1.959963984540054)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        d.interval(1.5)


def test_quantile_forecast_interpolates_inside_its_levels_and_refuses_outside():
    d = QuantileForecast([0.1, 0.5, 0.9], torch.tensor([1.0, 2.0, 6.0]).view(1, 1, 1, 1, 3))
    assert float(d.mean) == 2.0  # the median
    low, high = d.interval(0.8)
    assert (float(low), float(high)) == (1.0, 6.0)
    assert float(d.quantile(0.7)) == pytest.approx(4.0)  # halfway between 0.5 and 0.9
    assert d.covers(0.8) and not d.covers(0.95)
    with pytest.raises(ValueError, match="outside the levels this head predicts"):
        d.interval(0.95)
    with pytest.raises(ValueError, match="increasing"):
        QuantileForecast([0.5, 0.1], torch.zeros(2))


def test_point_forecast_has_kind_point_and_no_intervals():
    d = PointForecast(torch.ones(2, 3, 4, 1))
    assert d.kind == "point" and d.mean.shape == (2, 3, 4, 1)
    with pytest.raises(ValueError, match="no quantiles or intervals"):
        d.interval(0.8)


def test_affine_multiplies_the_scale_and_does_not_shift_it():
    d = GaussianForecast(torch.tensor([0.5]), torch.tensor([0.2]))
    raw = d.affine(torch.tensor([10.0]), torch.tensor([50.0]))
    assert float(raw.mean) == pytest.approx(55.0) and float(raw.scale) == pytest.approx(2.0)
    q = QuantileForecast([0.1, 0.9], torch.tensor([[-1.0, 1.0]])).affine(torch.tensor([3.0]), torch.tensor([7.0]))
    torch.testing.assert_close(q.values, torch.tensor([[4.0, 10.0]]))


# ----------------------------------------------------------------------------- calibration, likelihood
def _process(n: int = 40_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A synthetic process with known noise: y = mu + sigma * eps, mu and sigma varying per reading."""
    g = torch.Generator().manual_seed(seed)
    mu = 50 + 10 * torch.randn(n, 4, 5, 1, generator=g)
    sigma = 0.5 + 3 * torch.rand(n, 4, 5, 1, generator=g)
    y = mu + sigma * torch.randn(n, 4, 5, 1, generator=g)
    return mu, sigma, y


def test_true_gaussian_intervals_cover_their_level():
    mu, sigma, y = _process()
    m = MaskedMetrics(horizons=(1, 4))
    for i in range(0, mu.shape[0], 10_000):  # in batches: sums and counts accumulate
        m.update(GaussianForecast(mu[i : i + 10_000], sigma[i : i + 10_000]), y[i : i + 10_000])
    out = m.compute()
    for key in ("1", "4", "average"):
        assert out[key]["coverage_80"] == pytest.approx(0.80, abs=0.03)
        assert out[key]["coverage_95"] == pytest.approx(0.95, abs=0.03)
    z80 = Normal(0.0, 1.0).icdf(torch.tensor(0.9))
    assert out["average"]["width_80"] == pytest.approx(float((2 * z80 * sigma).double().mean()), rel=1e-5)


def test_true_quantiles_cover_their_level():
    mu, sigma, y = _process(seed=1)
    levels = [0.025, 0.1, 0.5, 0.9, 0.975]
    z = Normal(0.0, 1.0).icdf(torch.tensor(levels))
    values = mu.unsqueeze(-1) + sigma.unsqueeze(-1) * z
    m = MaskedMetrics(horizons=(1,))
    m.update(QuantileForecast(levels, values), y)
    out = m.compute()["average"]
    assert out["coverage_80"] == pytest.approx(0.80, abs=0.03)
    assert out["coverage_95"] == pytest.approx(0.95, abs=0.03)


def test_gaussian_nll_of_the_true_parameters_is_lowest():
    mu, sigma, y = _process(n=20_000, seed=2)
    true = float(masked_forecast_loss(GaussianForecast(mu, sigma), y))
    for wrong in (GaussianForecast(mu + 0.5 * sigma, sigma), GaussianForecast(mu, 0.7 * sigma),
                  GaussianForecast(mu, 1.4 * sigma), GaussianForecast(mu, torch.full_like(sigma, float(sigma.mean())))):
        assert true < float(masked_forecast_loss(wrong, y))


def test_loss_leaves_out_missing_readings_and_keeps_gradients_finite():
    mu = torch.zeros(1, 2, 1, 1, requires_grad=True)
    scale = torch.ones(1, 2, 1, 1, requires_grad=True)
    y = torch.tensor([0.0, float("nan")]).view(1, 2, 1, 1)
    mask = torch.tensor([True, False]).view(1, 2, 1)
    loss = masked_forecast_loss(GaussianForecast(mu, scale), y, mask)
    assert float(loss.detach()) == pytest.approx(0.5 * math.log(2 * math.pi))  # only the observed reading
    loss.backward()
    assert mu.grad is not None and scale.grad is not None
    assert torch.isfinite(mu.grad).all() and torch.isfinite(scale.grad).all() and float(scale.grad[0, 1]) == 0.0


def test_probabilistic_metrics_accumulate_then_divide():
    m = MaskedMetrics(horizons=(1,))
    one = GaussianForecast(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    three = GaussianForecast(torch.zeros(1, 1, 3, 1), torch.full((1, 1, 3, 1), 2.0))
    m.update(one, torch.zeros(1, 1, 1, 1))
    m.update(three, torch.zeros(1, 1, 3, 1))
    crps1 = float(one.crps(torch.zeros(1, 1, 1, 1)))
    crps2 = float(three.crps(torch.zeros(1, 1, 3, 1))[0, 0, 0, 0])
    assert m.compute()["1"]["crps"] == pytest.approx((crps1 + 3 * crps2) / 4)  # not the mean of the batch means


def test_uncovered_levels_are_none_and_kinds_do_not_mix():
    m = MaskedMetrics(horizons=(1,))
    m.update(QuantileForecast([0.1, 0.5, 0.9], torch.zeros(1, 1, 1, 1, 3)), torch.zeros(1, 1, 1, 1))
    out = m.compute()["1"]
    assert out["coverage_80"] == 1.0 and out["coverage_95"] is None and out["width_95"] is None
    with pytest.raises(ValueError, match="point forecast added"):
        m.update(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
    point = MaskedMetrics(horizons=(1,))
    point.update(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert "crps" not in point.compute()["1"]
