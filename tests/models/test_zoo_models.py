"""fusion, transformer, stpatch: shapes, backward, overfitting, equivariance, attention maps, counts."""

from __future__ import annotations

import json
from typing import Any

import pytest
import standins
import torch

from stgnn.cli import main
from stgnn.models import MODELS, Batch, ModelSpec, build_model
from stgnn.models.fusion import PRESETS, Fusion
from stgnn.models.stpatch import STPatch
from stgnn.models.transformer import STTransformer, input_time_slots
from stgnn.nn import to_dense_adjacency
from stgnn.training.config import ConfigError, RunConfig

pytestmark = pytest.mark.usefixtures("single_thread")

N = 6
SPEC = ModelSpec(num_nodes=N, in_channels=2, out_channels=1, input_len=12, horizon=3, steps_per_day=288)

SMALL_FUSION = dict(hidden_channels=8, heads=2)
SMALL_TRANSFORMER = dict(input_embedding_dim=8, tod_embedding_dim=4, dow_embedding_dim=4, heads=2,
                         ffn_channels=16, dropout=0.0)
SMALL_STPATCH = dict(channels=8, heads=2, ffn_channels=16, cluster_size=2, dropout=0.0)

# every temporal encoder, spatial encoder and fusion strategy appears at least once
CASES: list[tuple[str, dict[str, Any]]] = [
    ("fusion", dict(SMALL_FUSION, temporal="lstm", spatial="gcn", fusion="concat")),
    ("fusion", dict(SMALL_FUSION, temporal="gru", spatial="diffusion", fusion="gate")),
    ("fusion", dict(SMALL_FUSION, temporal="tcn", spatial="graph_attention", fusion="attention")),
    ("fusion", dict(SMALL_FUSION, temporal="transformer", spatial="graph_attention", fusion="gate")),
    ("transformer", dict(SMALL_TRANSFORMER, spatial="diffusion")),
    ("transformer", dict(SMALL_TRANSFORMER, spatial="graph_attention")),
    ("transformer", dict(SMALL_TRANSFORMER, spatial="full_attention")),
    ("stpatch", SMALL_STPATCH),
]
IDS = [f"{name}-{'-'.join(str(v) for k, v in kw.items() if k in ('temporal', 'spatial', 'fusion'))}"
       for name, kw in CASES]


def graph(n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.arange(n).repeat_interleave(2)
    dst = torch.stack([(torch.arange(n) + 1) % n, (torch.arange(n) + 2) % n], 1).reshape(-1)
    ei = torch.stack([src, dst])
    return ei, torch.rand(ei.size(1), generator=g) + 0.1


def batch(spec: ModelSpec = SPEC, b: int = 4, seed: int = 0, n: int | None = None) -> Batch:
    n = n or spec.num_nodes
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, spec.input_len, n, spec.in_channels, generator=g)
    y = torch.randn(b, spec.horizon, n, spec.out_channels, generator=g)
    slot = torch.randint(0, 7 * spec.steps_per_day, (b, 1), generator=g) + torch.arange(spec.horizon)
    return Batch(x=x, y=y, y_scaled=y, mask=torch.ones(b, spec.horizon, n, dtype=torch.bool),
                 start=torch.arange(b), slot=slot % (7 * spec.steps_per_day))


def make(name: str, kw: dict[str, Any], spec: ModelSpec = SPEC) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, spec, **kw)


def run(model: torch.nn.Module, bt: Batch, ei: Any, ew: torch.Tensor | None = None) -> torch.Tensor:
    return model.forecast(bt, ei, ew)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registry():
    assert MODELS["fusion"] is Fusion and MODELS["transformer"] is STTransformer and MODELS["stpatch"] is STPatch


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_shapes_backward_and_graph_layouts(name, kw):
    model = make(name, kw)
    ei, ew = graph()
    bt = batch()
    out = run(model, bt, ei, ew)
    assert out.shape == (4, SPEC.horizon, N, SPEC.out_channels)
    out.pow(2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(run(model, bt, to_dense_adjacency(ei, ew, N)), run(model, bt, ei, ew),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_overfits_a_tiny_batch(name, kw):
    model = make(name, kw)
    ei, ew = graph()
    bt = batch(b=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(80 if name == "fusion" else 40):  # the attention models get there in fewer steps
        opt.zero_grad()
        loss = (run(model, bt, ei, ew) - bt.y).pow(2).mean()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first / 10, (first, loss.item())


def permute_graph(ei: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return inv[ei]


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_node_permutation_equivariance(name, kw):
    model = make(name, kw).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ei, ew = graph()
    bt = batch()
    x = bt.x.double()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    extra, extra_p = {}, {}
    if name == "transformer":
        extra = extra_p = {"time_slot": input_time_slots(bt, SPEC.input_len, SPEC.steps_per_day)}
    if name == "stpatch":  # equivariant for a given partition (the computed one depends on node ids)
        clusters = torch.tensor([0, 0, 1, 1, 2, 2])
        extra, extra_p = {"clusters": clusters}, {"clusters": clusters[perm]}
    out = model(x, ei, ew.double(), **extra)
    out_p = model(x[:, :, perm], permute_graph(ei, perm), ew.double(), **extra_p)
    torch.testing.assert_close(out_p, out[:, :, perm])


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_runs_on_another_graph(name, kw):
    model = make(name, kw).eval()
    spec9 = ModelSpec(9, 2, 1, 12, 3)
    out = run(model, batch(spec9, b=2), *graph(9))
    assert out.shape == (2, 3, 9, 1) and torch.isfinite(out).all()


def test_attention_maps_recorded_only_when_asked():
    ei, ew = graph()
    bt = batch()
    cases = [
        ("fusion", dict(SMALL_FUSION, temporal="transformer", spatial="graph_attention", fusion="attention"),
         {"temporal_0": (12, 12), "temporal_1": (12, 12), "spatial_0": (N, N), "spatial_1": (N, N),
          "fusion": (N, 2)}),
        ("transformer", dict(SMALL_TRANSFORMER, spatial="graph_attention", temporal_layers=1, spatial_layers=1),
         {"temporal_0": (12, 12), "spatial_0": (N, N)}),
        ("transformer", dict(SMALL_TRANSFORMER, spatial="full_attention", temporal_layers=1, spatial_layers=1),
         {"temporal_0": (12, 12), "spatial_0": (N, N)}),
        ("stpatch", dict(SMALL_STPATCH, layers=1), {"temporal_0": (4, 4), "spatial_0": (3, 3)}),
    ]
    adj = to_dense_adjacency(ei, None, N) > 0
    for name, kw, shapes in cases:
        model = make(name, kw).eval()
        assert model.record_attention is False
        run(model, bt, ei, ew)
        assert model.attention_maps == {}
        model.record_attention = True
        with torch.no_grad():
            run(model, bt, ei, ew)
        maps = model.attention_maps
        assert {k: tuple(v.shape) for k, v in maps.items()} == shapes, name
        for key, amap in maps.items():
            assert not amap.requires_grad
            torch.testing.assert_close(amap.sum(-1), torch.ones(amap.size(0)))  # rows are distributions
            if key.startswith("spatial") and amap.size(0) == N and "graph" in str(kw.get("spatial")):
                allowed = adj.T | torch.eye(N, dtype=torch.bool)  # row i: its in-neighbours and itself
                assert (amap[~allowed] == 0).all() and (amap[allowed] > 0).all()


def test_fusion_without_attention_is_not_an_attention_model():
    from stgnn.explain.maps import attention_recorder

    plain = make("fusion", dict(SMALL_FUSION, temporal="gru", spatial="diffusion", fusion="gate"))
    assert not plain.has_attention and not hasattr(plain, "record_attention") and attention_recorder(plain) is None
    with pytest.raises(ValueError, match="has no attention to record"):
        plain.record_attention = True
    plain.record_attention = False  # switching off is harmless
    for kw in (dict(temporal="transformer"), dict(spatial="graph_attention"), dict(fusion="attention")):
        model = make("fusion", {**SMALL_FUSION, "temporal": "gru", "spatial": "gcn", "fusion": "concat", **kw})
        assert model.has_attention and attention_recorder(model) is model and model.record_attention is False


def test_stpatch_records_the_clusters_of_the_nodes():
    model = make("stpatch", SMALL_STPATCH).eval()
    ei, ew = graph()
    run(model, batch(), ei, ew)
    assert model.patch_clusters is not None and model.patch_clusters.tolist() == \
        model.partition(ei, N)[0].tolist()


# ------------------------------------------------------------------------------ fusion
def test_fusion_presets_and_overrides():
    for preset, kinds in PRESETS.items():
        m = Fusion(SPEC, preset=preset, **SMALL_FUSION)  # type: ignore[arg-type]
        assert (m.temporal_kind, m.spatial_kind, m.fusion_kind) == kinds
    m = Fusion(SPEC, preset="gman", fusion="concat", **SMALL_FUSION)  # type: ignore[arg-type]
    assert (m.temporal_kind, m.spatial_kind, m.fusion_kind) == ("transformer", "graph_attention", "concat")
    assert (Fusion(SPEC).temporal_kind, Fusion(SPEC).spatial_kind, Fusion(SPEC).fusion_kind) == \
        ("gru", "diffusion", "gate")


@pytest.mark.parametrize(("kw", "match"), [
    (dict(preset="astgcn"), "unknown preset 'astgcn'"),
    (dict(temporal="cnn"), "temporal must be one of"),
    (dict(spatial="cheb"), "spatial must be one of"),
    (dict(fusion="sum"), "fusion must be one of"),
    (dict(spatial_layers=0), "spatial_layers must be >= 1"),
    (dict(kernel_size=1), "kernel_size must be >= 2"),
])
def test_fusion_rejects_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        Fusion(SPEC, **kw)


def test_config_rejects_unknown_encoder_names_before_data_is_read():
    with pytest.raises(ConfigError, match="temporal"):
        RunConfig.from_dict({"model": "fusion", "model_params": {"temporal": "cnn"}})
    with pytest.raises(ConfigError, match="spatial"):
        RunConfig.from_dict({"model": "transformer", "model_params": {"spatial": "gcn"}})
    RunConfig.from_dict({"model": "fusion", "model_params": {"preset": "gman", "fusion": "attention"}})


def test_fusion_tcn_covers_the_window():
    """The TCN's receptive field covers all 12 input steps: the first step changes the output."""
    model = make("fusion", dict(SMALL_FUSION, temporal="tcn")).eval()
    ei, ew = graph()
    x = batch().x
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert not torch.allclose(model(x, ei, ew), model(x2, ei, ew))


# ------------------------------------------------------------------------- transformer
def test_input_time_slots_count_back_from_the_first_forecast_step_and_wrap_the_week():
    bt = batch(b=2)
    bt.slot = torch.tensor([[5, 6, 7], [2, 3, 4]])
    slots = input_time_slots(bt, 12, 288)
    assert slots[0].tolist() == [(5 - 12 + t) % 2016 for t in range(12)]
    assert slots[1].tolist()[:10] == list(range(2006, 2016)) and slots[1].tolist()[10:] == [0, 1]


def test_transformer_uses_time_of_day_and_day_of_week():
    model = make("transformer", SMALL_TRANSFORMER).eval()
    ei, ew = graph()
    bt = batch()
    base = run(model, bt, ei, ew)
    for shift in (1, 288):  # one step later; same time of day, next day
        moved = Batch(**{**vars(bt), "slot": (bt.slot + shift) % 2016})
        assert not torch.allclose(run(model, moved, ei, ew), base)
    with pytest.raises(ValueError, match="time_slot"):
        model(bt.x, ei, ew)
    with pytest.raises(ValueError, match=r"expected time_slot \[4, 12\]"):
        model(bt.x, ei, ew, time_slot=bt.slot)
    plain = make("transformer", dict(SMALL_TRANSFORMER, time_embedding=False)).eval()
    torch.testing.assert_close(plain(bt.x, ei, ew), run(plain, bt, ei, ew))
    assert n_params(model) - n_params(plain) > 0


@pytest.mark.parametrize("kind", ["gaussian", "quantile"])
def test_transformer_under_a_probabilistic_head_gets_the_time_slots(kind):
    from stgnn.models.heads import DistributionalForecaster

    torch.manual_seed(0)
    model = DistributionalForecaster(STTransformer, SPEC, kind, **SMALL_TRANSFORMER).eval()
    bt = batch()
    params = model.forecast(bt, *graph())
    assert params.shape == (4, SPEC.horizon, N, 1, 2 if kind == "gaussian" else 3)
    moved = Batch(**{**vars(bt), "slot": (bt.slot + 288) % 2016})  # the next day: another day-of-week embedding
    assert not torch.allclose(model.forecast(moved, *graph()), params)


def test_transformer_rejects_bad_settings():
    with pytest.raises(ValueError, match="divisible by heads"):
        STTransformer(SPEC, input_embedding_dim=7, time_embedding=False, heads=2)
    with pytest.raises(ValueError, match="spatial must be one of"):
        STTransformer(SPEC, spatial="gcn")  # type: ignore[arg-type]
    model = make("transformer", SMALL_TRANSFORMER)
    with pytest.raises(ValueError, match=r"expected x \[B, 12, N, 2\]"):
        model(torch.zeros(2, 8, N, 2), *graph())


# ----------------------------------------------------------------------------- stpatch
def test_stpatch_partition_is_kept_for_the_same_graph_and_rebuilt_for_another():
    model = make("stpatch", SMALL_STPATCH)
    ei, _ = graph()
    c1, e1 = model.partition(ei, N)
    c2, _ = model.partition(ei.clone(), N)
    assert c2 is c1  # an equal graph is served from the kept copy
    other = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    c3, e3 = model.partition(other, N)
    assert c3 is not c1 and int(c3.max()) + 1 == 3 and e3.size(1) == 2
    ei[1, 0] = 5  # changed in place: recomputed, not served stale
    c4, e4 = model.partition(ei, N)
    assert c4 is not c1
    capped = make("stpatch", dict(SMALL_STPATCH, cluster_size=1, max_patch_neighbours=1))
    _, edges = capped.partition(graph()[0], N)
    assert torch.bincount(edges[1], minlength=N).max() == 1  # each patch attends to one neighbour patch


def test_stpatch_rejects_bad_settings():
    with pytest.raises(ValueError, match="patch_len=5 must divide input_len=12"):
        STPatch(SPEC, patch_len=5)
    with pytest.raises(ValueError, match="cluster_size must be >= 1"):
        STPatch(SPEC, cluster_size=0)
    with pytest.raises(ValueError, match="max_patch_neighbours must be >= 1"):
        STPatch(SPEC, max_patch_neighbours=0)
    model = make("stpatch", SMALL_STPATCH)
    with pytest.raises(ValueError, match=r"expected clusters \[6\]"):
        model(batch().x, *graph(), clusters=torch.zeros(5, dtype=torch.long))


# --------------------------------------------------------------------- parameter counts
def test_documented_parameter_counts():
    spec = ModelSpec(207, 2, 1, 12, 12)
    counts = {preset: n_params(Fusion(spec, preset=preset)) for preset in PRESETS}  # type: ignore[arg-type]
    assert counts == {"dcrnn": 104_652, "stgcn": 88_012, "tgcn": 71_884, "gcn_lstm": 88_524, "gwnet": 120_780,
                      "gman": 147_660}
    assert n_params(Fusion(spec)) == 104_652
    assert n_params(STTransformer(spec)) == 156_508
    assert n_params(STPatch(spec)) == 205_964
    # no per-node parameters: the same counts for another graph size
    assert n_params(STTransformer(ModelSpec(5000, 2, 1, 12, 12))) == 156_508
    assert n_params(STPatch(ModelSpec(5000, 2, 1, 12, 12))) == 205_964


# --------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("model", ["fusion", "transformer", "stpatch"])
def test_cli_trains_and_evaluates_on_own_data(tmp_path, model):
    series, locations = standins.write_custom(tmp_path / "data", t=400, n=5)
    small = {"fusion": 'hidden_channels = 8\nheads = 2\npreset = "gman"\nfusion = "attention"',
             "transformer": "input_embedding_dim = 8\ntod_embedding_dim = 4\ndow_embedding_dim = 4\nheads = 2\n"
                            "ffn_channels = 16",
             "stpatch": "channels = 8\nheads = 2\nffn_channels = 16\ncluster_size = 2"}[model]
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'model = "{model}"\n[train]\nepochs = 1\nbatch_size = 32\n[model_params]\n{small}\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--series", str(series), "--locations", str(locations),
                 "--output", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["horizons"]["average"]["mae"] > 0
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--output",
                 str(tmp_path / "eval.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["horizons"] == metrics["horizons"]


@pytest.mark.parametrize("model", ["fusion", "transformer", "stpatch"])
def test_cli_trains_on_a_benchmark_format_with_default_settings(tmp_path, monkeypatch, model):
    """``stgnn train --model X --dataset D`` without a config for (X, D) uses the model defaults. A
    PEMS04 stand-in (3 features, an edge-list graph); its files are not the published ones, so the
    checksum check is switched off for this test."""
    monkeypatch.setattr("stgnn.data.download.check_files", lambda info, folder: None)
    standins.write_pems(tmp_path / "pems04", "04", t=300, n=8, f=3)
    out = tmp_path / "run"
    assert main(["train", "--model", model, "--dataset", "pems04", "--data-dir", str(tmp_path), "--epochs", "1",
                 "--max-batches", "2", "--output", str(out), "--quiet", "--no-download"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "pems04" and metrics["horizons"]["average"]["mae"] > 0
