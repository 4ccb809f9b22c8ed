"""``torch.device("meta")``: models build anywhere without allocating, and run shape-only where they can.

A CPU-side proxy for GPU readiness: a constructor that puts a tensor on a fixed device (the GUIDE
forbids ``device`` in constructors) leaves it off ``meta`` here, and the CPU build has the same
parameters.  The forward pass runs on ``meta`` (shapes only, no memory, so at LargeST's 8,600
sensors too) for the models whose forward does not read the graph's values; the graph layers
validate and normalise the graph from its values (node ids in range, degrees), which a meta
tensor does not have, so their forward is checked on real tensors by the other model tests.
"""

from __future__ import annotations

import pytest
import torch

from stgnn.models import MODELS, ModelSpec, build_model

SPEC = ModelSpec(num_nodes=8600, in_channels=2, out_channels=1, input_len=12, horizon=12)


@pytest.mark.parametrize("name", list(MODELS))
def test_model_builds_on_meta_with_the_parameters_of_a_cpu_build(name: str) -> None:
    small = ModelSpec(num_nodes=7, in_channels=2, out_channels=1, input_len=12, horizon=3)
    with torch.device("meta"):
        meta = build_model(name, small)
    cpu = build_model(name, small)
    on_meta = {k: v.device.type for k, v in [*meta.named_parameters(), *meta.named_buffers()]}
    assert set(on_meta.values()) <= {"meta"}, {k: d for k, d in on_meta.items() if d != "meta"}
    assert {k: v.shape for k, v in meta.state_dict().items()} == {k: v.shape for k, v in cpu.state_dict().items()}


@pytest.mark.parametrize("name", ["lstm", "gru", "last"])
def test_forward_shapes_on_meta_at_largest_size(name: str) -> None:
    with torch.device("meta"):
        model = build_model(name, SPEC)
        x = torch.empty(64, SPEC.input_len, SPEC.num_nodes, SPEC.in_channels)
        edge_index = torch.empty(2, 0, dtype=torch.long)
        out = model(x, edge_index)
    assert out.device.type == "meta"
    assert out.shape == (64, SPEC.horizon, SPEC.num_nodes, SPEC.out_channels)


def test_historical_average_fits_on_the_device_of_its_data() -> None:
    """``fit_statistics`` builds its tables where the series is (a CPU table failed on CUDA)."""
    spec = ModelSpec(num_nodes=5, in_channels=2, out_channels=1, input_len=12, horizon=3, steps_per_day=24)
    with torch.device("meta"):
        model = build_model("ha", spec)
        series, mask = torch.empty(200, 5, 1), torch.empty(200, 5, dtype=torch.bool)
        slot = torch.empty(200, dtype=torch.long)
    model.fit_statistics(series, mask, slot)
    assert model.table.device.type == "meta" and model.table.shape == (7 * 24, 5, 1)
