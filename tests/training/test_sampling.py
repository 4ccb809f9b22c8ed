"""Sampled-subgraph training: per-node parameters follow the sampled nodes, loss on core nodes only."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import torch
from tiny_runs import make_config, trainer, write_data

from stgnn.data.batch import Batch
from stgnn.models import MODELS, Forecaster, ModelSpec, build_model
from stgnn.training.sampling import check_sampling, partition_subgraphs

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = ModelSpec(num_nodes=8, in_channels=2, out_channels=1, input_len=12, horizon=3)
TINY: dict[str, dict[str, Any]] = {
    "gwnet": dict(residual_channels=8, dilation_channels=8, skip_channels=8, end_channels=8, dropout=0.0,
                  embedding_dim=3),
    "stgcn": dict(channels=(8, 4, 8), output_channels=(8, 8), dropout=0.0),
}


def _random_graph(n: int = 60, e: int = 150, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei = ei[:, ei[0] != ei[1]].unique(dim=1)
    return ei, torch.rand(ei.size(1), generator=g)


def _hops(ei: torch.Tensor, start: set[int], hops: int) -> set[int]:
    """Brute-force neighbourhood, edges taken both ways."""
    seen, frontier = set(start), set(start)
    pairs = ei.t().tolist()
    for _ in range(hops):
        frontier = ({b for a, b in pairs if a in frontier} | {a for a, b in pairs if b in frontier}) - seen
        seen |= frontier
    return seen


@pytest.mark.parametrize("hops", [0, 1, 2])
def test_subgraphs_hold_each_core_with_its_exact_halo_and_induced_edges(hops):
    ei, w = _random_graph()
    subs = partition_subgraphs(ei, w, 60, 4, hops)
    cores = torch.cat([s.nodes[s.core] for s in subs]).sort().values
    assert torch.equal(cores, torch.arange(60))  # the cores partition the nodes
    assert max(s.num_core for s in subs) <= 15  # blocks of ceil(60 / 4)
    full = {(a, b): wt for (a, b), wt in zip(ei.t().tolist(), w.tolist(), strict=True)}
    for s in subs:
        assert set(s.nodes.tolist()) == _hops(ei, set(s.nodes[s.core].tolist()), hops)
        kept = set(s.nodes.tolist())
        back = {(int(s.nodes[a]), int(s.nodes[b])): wt
                for (a, b), wt in zip(s.edge_index.t().tolist(), s.edge_weight.tolist(), strict=True)}
        assert back == {k: v for k, v in full.items() if k[0] in kept and k[1] in kept}


def test_a_road_is_cut_into_as_many_contiguous_stretches_as_asked():
    path = torch.stack([torch.arange(39), torch.arange(1, 40)])
    subs = partition_subgraphs(path, None, 40, 4, halo_hops=1)
    assert [s.num_core for s in subs] == [10, 10, 10, 10]
    for s in subs:  # a stretch of ten and one neighbour on each open side
        core = s.nodes[s.core]
        assert int(core.max() - core.min()) == 9 and s.nodes.numel() in (11, 12)


def test_bad_part_counts_are_refused():
    ei, _ = _random_graph()
    with pytest.raises(ValueError, match=r"train.partitions must be between 1 and the number of nodes \(60\), got 61"):
        partition_subgraphs(ei, None, 60, 61, 1)
    with pytest.raises(ValueError, match="train.halo_hops must be >= 0"):
        partition_subgraphs(ei, None, 60, 2, -1)


def _restricted(name: str, model: torch.nn.Module, nodes: torch.Tensor) -> torch.nn.Module:
    """The same model built for the nodes ``nodes`` only: every per-node parameter sliced by hand."""
    small = build_model(name, replace(SPEC, num_nodes=nodes.numel()), **TINY[name])
    state = {}
    for key, value in model.state_dict().items():
        want = small.state_dict()[key].shape
        if value.shape == want:
            state[key] = value
        elif key.endswith("target_embedding"):
            state[key] = value[:, nodes]
        else:  # [N, ...] per-node parameters
            state[key] = value[nodes]
    small.load_state_dict(state)
    return small


@pytest.mark.parametrize("name", list(TINY))
def test_per_node_parameters_are_indexed_by_the_sampled_node_ids(name):
    torch.manual_seed(0)
    model = build_model(name, SPEC, **TINY[name]).eval()
    with torch.no_grad():  # per-node parameters that differ between nodes (STGCN's norm starts at ones)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    nodes = torch.tensor([1, 2, 5, 6])  # not a prefix: ids must be used, not positions
    sub_edges = torch.tensor([[0, 1, 2], [1, 2, 3]])
    x = torch.randn(2, 12, 4, 2)
    with torch.no_grad():
        sampled = model(x, sub_edges, node_index=nodes)
        expected = _restricted(name, model, nodes).eval()(x, sub_edges)
        shifted = model(x, sub_edges, node_index=nodes + 1)
    torch.testing.assert_close(sampled, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(sampled, shifted, atol=1e-4)  # other nodes' parameters give other outputs


def test_only_the_sampled_nodes_embeddings_get_gradients():
    torch.manual_seed(0)
    model = build_model("gwnet", SPEC, **TINY["gwnet"])
    nodes = torch.tensor([0, 3, 4])
    model(torch.randn(2, 12, 3, 2), torch.tensor([[0, 1], [1, 2]]), node_index=nodes).square().sum().backward()
    assert model.adaptive is not None
    rows = model.adaptive.source_embedding.grad.abs().sum(1)
    cols = model.adaptive.target_embedding.grad.abs().sum(0)
    for g in (rows, cols):
        assert g[nodes].sum() > 0 and (g[[1, 2, 5, 6, 7]] == 0).all()  # (ReLU may zero a sampled row)


def test_select_nodes_masks_the_halo_and_keeps_windows():
    b = Batch(x=torch.randn(2, 12, 5, 2), y=torch.randn(2, 3, 5, 1), y_scaled=torch.randn(2, 3, 5, 1),
              mask=torch.ones(2, 3, 5, dtype=torch.bool), start=torch.tensor([12, 13]),
              slot=torch.zeros(2, 3, dtype=torch.long), x_mask=torch.ones(2, 12, 5, dtype=torch.bool))
    nodes, core = torch.tensor([1, 3, 4]), torch.tensor([True, False, True])
    sub = b.select_nodes(nodes, core)
    assert torch.equal(sub.x, b.x[:, :, nodes]) and torch.equal(sub.y, b.y[:, :, nodes])
    assert sub.mask[:, :, 1].eq(False).all() and sub.mask[:, :, [0, 2]].all()
    assert torch.equal(sub.node_index, nodes) and torch.equal(sub.start, b.start)
    with pytest.raises(ValueError, match="subgraph already"):
        sub.select_nodes(nodes)


def test_a_model_with_per_node_parameters_and_no_node_index_is_refused(monkeypatch):
    class PerNode(Forecaster):
        def __init__(self, spec: ModelSpec) -> None:
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(spec.num_nodes))

        def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: Any = None) -> torch.Tensor:
            return x[:, -1:, :, :1] + self.bias[:, None]

    monkeypatch.setitem(MODELS, "pernode", PerNode)
    with pytest.raises(ValueError, match=r"pernode has per-node parameters \(bias\)"):
        check_sampling("pernode", PerNode(SPEC), SPEC, {})
    check_sampling("gwnet", build_model("gwnet", SPEC, **TINY["gwnet"]), SPEC, TINY["gwnet"])  # takes node_index
    check_sampling("dcrnn", build_model("dcrnn", SPEC, hidden_channels=4), SPEC, {"hidden_channels": 4})


def _run(tmp_path, name: str, **train: Any) -> dict[str, Any]:
    series, locations = write_data(tmp_path / "data", t=300, n=6)
    cfg = make_config(series, locations, model="gwnet", epochs=1, max_batches=3, batch_size=16, **train)
    cfg.model_params = dict(TINY["gwnet"])
    out = tmp_path / name
    trainer(cfg, out).fit()
    return json.loads((out / "metrics.json").read_text())


def test_one_part_without_halo_trains_exactly_as_the_full_graph(tmp_path):
    full = _run(tmp_path, "full")
    one = _run(tmp_path, "one", sampling="partition", partitions=1, halo_hops=0)
    for h, row in full["horizons"].items():
        assert one["horizons"][h] == pytest.approx(row, rel=1e-5), h


def test_partition_training_runs_and_evaluates_on_the_full_graph(tmp_path):
    logs: list[str] = []
    series, locations = write_data(tmp_path / "data", t=300, n=6)
    cfg = make_config(series, locations, model="gwnet", epochs=1, max_batches=2, batch_size=16,
                      sampling="partition", partitions=3, halo_hops=1)
    cfg.model_params = dict(TINY["gwnet"])
    tr = trainer(cfg, tmp_path / "run", logs)
    assert tr.sampler is not None and len(tr.sampler) == 3
    steps: list[int] = []
    tr.on_step = lambda epoch, step: steps.append(step)  # type: ignore[method-assign]
    result = tr.fit()
    assert steps == list(range(1, 7))  # 2 batches x 3 parts
    assert result["windows"]["test"] > 0 and result["horizons"]["average"]["mae"] is not None
