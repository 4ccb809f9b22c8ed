"""Integrated gradients: exact on a linear model, complete on a graph model, finds the upstream sensor."""

from __future__ import annotations

import pytest
import torch
from explain_standins import LAG, TARGET, UPSTREAM, upstream_config, upstream_data
from torch import Tensor

from stgnn.explain import integrated_gradients
from stgnn.models import Batch, Forecaster, ModelSpec, build_model
from stgnn.training.trainer import Experiment, Trainer


def _batch(x: Tensor) -> Batch:
    b, _, n, _ = x.shape
    return Batch(x=x, y=torch.zeros(b, 2, n, 1), y_scaled=torch.zeros(b, 2, n, 1), mask=torch.ones(b, 2, n, dtype=bool),
                 start=torch.zeros(b, dtype=torch.long), slot=torch.zeros(b, 2, dtype=torch.long))


class _Linear(Forecaster):
    """out[b, h, n] = sum over t, m, f of w[h, n, t, m, f] x[b, t, m, f]."""

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        return torch.einsum("hntmf,btmf->bhn", self.w, x).unsqueeze(-1)


class _Params(Forecaster):
    """A distributional stand-in: (mean, scale) parameters of the wrapped model's forecast."""

    def __init__(self, inner: Forecaster) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        mean = self.inner(x, edge_index, edge_weight)
        return torch.stack([mean, mean.abs() + 1.0], dim=-1)


def test_linear_model_attribution_is_weight_times_input():
    torch.manual_seed(0)
    w = torch.randn(2, 3, 4, 3, 2)
    x = torch.randn(1, 4, 3, 2)
    attr = integrated_gradients(_Linear(w), _batch(x), torch.empty(2, 0, dtype=torch.long), horizon=1, node=2,
                                steps=4)
    torch.testing.assert_close(attr.values, w[1, 2] * x[0])
    assert attr.delta == pytest.approx(0.0, abs=1e-5)
    baseline = torch.randn(4, 3, 2)
    shifted = integrated_gradients(_Linear(w), _batch(x), torch.empty(2, 0, dtype=torch.long), horizon=1, node=2,
                                   baseline=baseline, steps=3)
    torch.testing.assert_close(shifted.values, w[1, 2] * (x[0] - baseline))


def test_graph_model_attributions_sum_to_the_output_change(single_thread):
    torch.manual_seed(0)
    spec = ModelSpec(num_nodes=5, in_channels=2, out_channels=1, input_len=12, horizon=3)
    model = build_model("stgcn", spec)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 1], [1, 2, 3, 4, 0, 3]])
    x = torch.randn(1, 12, 5, 2)
    attr = integrated_gradients(model, _batch(x), edge_index, horizon=2, node=3, steps=128)
    change = attr.output - attr.baseline_output
    assert abs(change) > 1e-3
    assert abs(attr.delta) < 0.02 * abs(change) + 1e-4
    assert attr.values.shape == (12, 5, 2) and attr.sensor_importance().shape == (5,)


def test_bad_requests_are_refused():
    model = _Linear(torch.randn(2, 3, 4, 3, 2))
    none = torch.empty(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match="explains one window; got a batch of 2"):
        integrated_gradients(model, _batch(torch.randn(2, 4, 3, 2)), none, horizon=0, node=0)
    with pytest.raises(ValueError, match=r"baseline \(4, 3, 1\) does not match the input \(4, 3, 2\)"):
        integrated_gradients(model, _batch(torch.randn(1, 4, 3, 2)), none, horizon=0, node=0,
                             baseline=torch.zeros(4, 3, 1))
    with pytest.raises(ValueError, match=r"the forecast is \(32, 2, 3\), not point forecasts \[B, H, N, F_out\]"):
        integrated_gradients(model, _batch(torch.randn(1, 4, 3, 2)), none, horizon=0, node=0,
                             point=lambda out: out[..., 0])
    # distribution parameters [B, H, N, F, P] mapped to their point forecast
    x = torch.randn(1, 4, 3, 2)
    params = integrated_gradients(_Params(model), _batch(x), none, horizon=0, node=1, point=lambda out: out[..., 0])
    torch.testing.assert_close(params.values, integrated_gradients(model, _batch(x), none, horizon=0, node=1).values)
    with pytest.raises(ValueError, match=r"the forecast is \(\d+, 2, 3, 1, 2\), not point forecasts"):
        integrated_gradients(_Params(model), _batch(x), none, horizon=0, node=1)
    ha = build_model("ha", ModelSpec(num_nodes=3, in_channels=2, out_channels=1, horizon=2, steps_per_day=4))
    with pytest.raises(ValueError, match="HistoricalAverage does not depend on its inputs"):
        integrated_gradients(ha, _batch(torch.randn(1, 4, 3, 2)), none, horizon=0, node=0)


def test_attribution_ranks_the_true_upstream_sensor_first(tmp_path, single_thread):
    readings, edges, _, _ = upstream_data(tmp_path / "data")
    exp = Experiment.build(upstream_config(readings, edges))
    Trainer(exp, tmp_path / "run", progress=False, log=lambda _: None).fit()
    for start in exp.data.splits["test"][:5]:
        attr = integrated_gradients(exp.model, exp.data.batch(start.view(1)), exp.edge_index, exp.edge_weight,
                                    horizon=0, node=TARGET)
        assert int(attr.sensor_importance().argmax()) == UPSTREAM
        # the driving reading is the upstream one LAG steps before the forecast step (inputs cover the
        # input_len steps before it, so that is input index input_len - LAG)
        assert int(attr.step_importance().argmax()) == exp.spec.input_len - LAG
