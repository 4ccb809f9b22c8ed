"""Batch: moving a batch (to a device, into pinned memory) keeps every field."""

from __future__ import annotations

from dataclasses import fields

import torch

from stgnn.data.batch import Batch


def _batch() -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(
        x=torch.randn(2, 3, 4, 1, generator=g), y=torch.randn(2, 2, 4, 1, generator=g),
        y_scaled=torch.randn(2, 2, 4, 1, generator=g), mask=torch.ones(2, 2, 4, dtype=torch.bool),
        start=torch.tensor([0, 1]), slot=torch.zeros(2, 2, dtype=torch.long),
        x_mask=torch.ones(2, 3, 4, dtype=torch.bool),
    )


def test_every_field_survives_a_move_including_a_sampled_subgraph():
    sub = _batch().select_nodes(torch.tensor([2, 0]), core=torch.tensor([True, False]))
    assert sub.node_index is not None
    for moved in (sub.to("cpu"), sub._map(lambda t: t.clone())):  # pin_memory() maps the same way
        for f in fields(Batch):
            assert torch.equal(getattr(moved, f.name), getattr(sub, f.name)), f.name
    assert _batch().to("cpu").node_index is None
