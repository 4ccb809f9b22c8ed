"""Learned adjacency and attention maps averaged over a period."""

from __future__ import annotations

import pytest
import torch
from explain_standins import TinyAttention
from torch import Tensor

from stgnn.explain import adaptive_adjacency, attention_recorder, average_attention, top_edges
from stgnn.models import Batch, Forecaster, ModelSpec, build_model


def _batch(x: Tensor) -> Batch:
    b, _, n, _ = x.shape
    return Batch(x=x, y=torch.zeros(b, 2, n, 1), y_scaled=torch.zeros(b, 2, n, 1), mask=torch.ones(b, 2, n, dtype=bool),
                 start=torch.zeros(b, dtype=torch.long), slot=torch.zeros(b, 2, dtype=torch.long))


class _Wrapper(Forecaster):
    def __init__(self, inner: Forecaster) -> None:
        super().__init__()
        self.inner = inner

    def forecast(self, batch: Batch, edge_index: Tensor, edge_weight: Tensor | None = None, *,
                 teacher_forcing: float = 0.0) -> Tensor:
        return self.inner.forecast(batch, edge_index, edge_weight)


def test_attention_is_averaged_over_every_window_of_the_period():
    torch.manual_seed(0)
    model = TinyAttention(ModelSpec(num_nodes=3, in_channels=2, out_channels=1, input_len=5, horizon=2))
    x = torch.randn(7, 5, 3, 2)
    none = torch.empty(2, 0, dtype=torch.long)
    maps, windows = average_attention(model, [_batch(x[:4]), _batch(x[4:])], none)  # batches of 4 and 3
    assert windows == 7 and model.record_attention is False  # switched back off
    with torch.no_grad():
        expected = model.weights(x).mean(dim=(0, 1))  # the mean over all 7 windows, not of the 2 batch means
    torch.testing.assert_close(maps["temporal"], expected)
    assert maps["temporal"].shape == (5, 5) and maps["spatial"].shape == (3, 3)
    assert torch.equal(maps["groups"], torch.tensor([0, 1, 0]))
    assert attention_recorder(model) is model and attention_recorder(torch.nn.Linear(2, 2)) is None
    wrapper = _Wrapper(model)  # e.g. a probabilistic head around the model
    assert attention_recorder(wrapper) is model
    assert average_attention(wrapper, [_batch(x)], none)[0]["temporal"].shape == (5, 5)


def test_attention_errors():
    spec = ModelSpec(num_nodes=3, in_channels=2, out_channels=1, input_len=5, horizon=2)
    none = torch.empty(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match="STGCN records no attention maps"):
        average_attention(build_model("stgcn", ModelSpec(3, 2, 1)), [], none)
    model = TinyAttention(spec)
    with pytest.raises(ValueError, match="no windows"):
        average_attention(model, [], none)

    class Silent(TinyAttention):  # a configuration without attention: no maps
        def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
            return torch.zeros(x.shape[0], 2, x.shape[2], 1)

    assert average_attention(Silent(spec), [_batch(torch.randn(2, 5, 3, 2))], none) == ({}, 2)

    class Fickle(TinyAttention):  # stores a map in the first pass only
        def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
            out = super().forward(x, edge_index, edge_weight)
            if x.shape[0] == 1:
                self.attention_maps = {}
            return out

    batches = [_batch(torch.randn(2, 5, 3, 2)), _batch(torch.randn(1, 5, 3, 2))]
    with pytest.raises(ValueError, match=r"Fickle: forwards stored different attention maps: \['groups', "):
        average_attention(Fickle(spec), batches, none)
    assert model.record_attention is False


def test_adaptive_adjacency_and_its_top_edges():
    torch.manual_seed(0)
    spec = ModelSpec(num_nodes=4, in_channels=2, out_channels=1)
    model = build_model("gwnet", spec, residual_channels=4, dilation_channels=4, skip_channels=8, end_channels=8)
    adj = adaptive_adjacency(model)
    assert adj is not None and adj.shape == (4, 4)
    torch.testing.assert_close(adj.sum(1), torch.ones(4))
    sparse = build_model("gwnet", spec, residual_channels=4, dilation_channels=4, skip_channels=8, end_channels=8,
                         adaptive_top_k=4)
    sparse.load_state_dict(model.state_dict())
    torch.testing.assert_close(adaptive_adjacency(sparse), adj)  # top-k >= N: the dense matrix
    assert adaptive_adjacency(build_model("stgcn", ModelSpec(3, 2, 1))) is None
    matrix = torch.tensor([[0.9, 0.1, 0.0], [0.3, 0.2, 0.5], [0.05, 0.6, 0.35]])
    assert top_edges(matrix, ["a", "b", "c"], 3) == [("c", "b", pytest.approx(0.6)), ("b", "c", 0.5),
                                                      ("b", "a", pytest.approx(0.3))]
    assert len(top_edges(matrix, ["a", "b", "c"], 99)) == 6  # the off-diagonal entries only
    with pytest.raises(ValueError, match=r"adjacency \(3, 3\) does not fit 2 sensors"):
        top_edges(matrix, ["a", "b"], 1)
