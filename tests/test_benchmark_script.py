"""experiments/benchmark.py: job plans (--baseline, --repeats), the registry models, the tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

import benchmark  # noqa: E402


def _args(**kw: object) -> argparse.Namespace:
    base = dict(adj=Path("adj.pkl"), batch=64, threads=2, refs={}, device="cpu", models=["dcrnn"], allocs=["env"],
                warmup=2, min_steps=3, min_time=5.0, max_steps=8, baseline=None, repeats=1, part="metr",
                modes=["train", "infer"])
    base.update(kw)
    return argparse.Namespace(**base)


def test_baseline_jobs_follow_ours_and_import_stgnn_from_the_other_checkout(tmp_path):
    jobs = benchmark.metr_jobs(_args(baseline=tmp_path, allocs=["default", "env"]))
    order = [(j["impl"], j["alloc"], j["mode"]) for j in jobs]
    assert order[:4] == [("ours", "default", "train"), ("base", "default", "train"),
                         ("ours", "env", "train"), ("base", "env", "train")]
    assert all(j.get("stgnn_path") == str(tmp_path) for j in jobs if j["impl"] == "base")
    assert not any("stgnn_path" in j for j in jobs if j["impl"] == "ours")


def test_a_baseline_child_imports_stgnn_from_its_checkout(tmp_path):
    """The child of a baseline job puts the checkout first on the import path (here: this checkout
    reached through a symlink, so the recorded module file tells the two apart)."""
    link = tmp_path / "other"
    link.symlink_to(REPO)
    spec = dict(graph="random", nodes=12, batch=2, threads=1, refs={}, model="gcn", impl="base", alloc="env",
                mode="infer", warmup=0, min_steps=1, min_time=0.0, max_steps=1, stgnn_path=str(link))
    out = benchmark.run_job(spec, timeout=120, mem_limit_gb=8)
    assert out["ok"], out.get("error")
    assert out["stgnn_file"] == str(link / "stgnn" / "__init__.py")


def test_repeats_cycle_the_jobs_and_the_tables_use_the_median(monkeypatch, capsys):
    seen: list[dict] = []

    def fake_run(spec, timeout, mem_limit_gb, script=None):  # ours 10, 30, 20 samples/s; base always 10
        seen.append(spec)
        ours = [j for j in seen if j["impl"] == "ours" and j["mode"] == spec["mode"]]
        sps = (10.0, 30.0, 20.0)[len(ours) - 1] if spec["impl"] == "ours" else 10.0
        return {**spec, "ok": True, "median_s": 64 / sps, "samples_per_s": sps, "peak_rss_mb": 1.0, "times_s": []}

    monkeypatch.setattr(benchmark, "run_job", fake_run)
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--part", "metr", "--models", "dcrnn", "--allocs", "env",
                                      "--baseline", "/old", "--repeats", "3", "--adj", "adj.pkl"])
    benchmark.main()
    assert len(seen) == 12  # (ours, base) x (train, infer) x 3 cycles
    train = [(j["impl"], j.get("repeat", 0)) for j in seen if j["mode"] == "train"]
    assert train == [("ours", 0), ("base", 0), ("base", 1), ("ours", 1), ("ours", 2), ("base", 2)]
    printed = capsys.readouterr().out
    assert "| dcrnn | train | - | 2.00x | - | 2.000 |" in printed  # median 20 vs 10
    assert "medians of 3 interleaved repetitions" in printed


@pytest.mark.parametrize("model", benchmark.REGISTRY_MODELS)
def test_registry_models_build_and_step(model):
    spec = dict(graph="random", nodes=10, batch=2, model=model, impl="ours", teacher_forcing=0.5)
    torch.manual_seed(0)
    m, fwd, f_in, steps, edges = benchmark._build(spec)
    x, y = torch.randn(2, 12, 10, f_in), torch.rand(2, steps, 10, 1)
    out = fwd(x, y, True)
    assert out.shape == (2, 12, 10, 1) and edges > 0
    out.abs().mean().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_modes_limit_the_jobs_and_the_as_run_ratio_is_ours_mallopt_over_ref_default(monkeypatch, capsys):
    speeds = {("ours", "default"): 10.0, ("ours", "env"): 12.0, ("ours", "mallopt"): 30.0,
              ("ref", "default"): 10.0, ("ref", "env"): 20.0}
    seen: list[dict] = []

    def fake_run(spec, timeout, mem_limit_gb, script=None):
        seen.append(spec)
        sps = speeds[(spec["impl"], spec["alloc"])]
        return {**spec, "ok": True, "median_s": 64 / sps, "samples_per_s": sps, "peak_rss_mb": 1.0, "times_s": []}

    monkeypatch.setattr(benchmark, "run_job", fake_run)
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--part", "metr", "--models", "dcrnn", "--modes", "train",
                                      "--ref-dir", "dcrnn=/ref", "--adj", "adj.pkl"])
    benchmark.main()
    assert {j["mode"] for j in seen} == {"train"} and len(seen) == 5
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| dcrnn |"))
    assert row.split(" | ")[6:9] == ["1.00x", "0.60x", "3.00x"]  # default, env, as run
