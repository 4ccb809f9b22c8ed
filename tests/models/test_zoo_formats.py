"""fusion, transformer and stpatch from the command line on every dataset format, with each head and
with user covariates (a time covariate and a node attribute), then ``stgnn explain`` on the checkpoint.

Each benchmark format is a generated stand-in of the published files (same file names, layout and
reader), except Los-loop, which is the real series (skipped where ``../shared/data`` is absent).
Every (format, model) pair trains; the head rotates so that each model meets every head on two
formats.  Small model sizes: this checks the data path, the heads and explain, not the models.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import standins
import torch

from stgnn.cli import main
from stgnn.data import load_dataset
from stgnn.training.trainer import experiment_from_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = {
    "fusion": 'hidden_channels = 8\nheads = 2\npreset = "gman"\nfusion = "attention"',
    "transformer": "input_embedding_dim = 8\ntod_embedding_dim = 4\ndow_embedding_dim = 4\nheads = 2\n"
                   "ffn_channels = 16",
    "stpatch": "channels = 8\nheads = 2\nffn_channels = 16\ncluster_size = 2",
}
MODELS = list(SMALL)
HEADS: list[list[str]] = [[], ["--head", "gaussian"], ["--head", "quantile", "--quantiles", "0.1", "0.5", "0.9"]]


def _los_loop(root: Path, shared: Path | None) -> None:
    if shared is None or not (shared / "los-loop" / "los_speed.csv").is_file():
        pytest.skip("the real Los-loop files are not available")
    shutil.copytree(shared / "los-loop", root / "los-loop")


WRITERS: dict[str, Callable[[Path], object]] = {
    "metr-la": lambda root: standins.write_dcrnn(root / "metr-la", "metr-la.h5", "df", "adj_mx.pkl", t=400, n=6),
    "pems-bay": lambda root: standins.write_dcrnn(root / "pems-bay", "pems-bay.h5", "speed", "adj_mx_bay.pkl",
                                                   t=400, n=6),
    "pems03": lambda root: standins.write_pems(root / "pems03", "03", t=400, n=6, f=1),
    "pems08": lambda root: standins.write_pems(root / "pems08", "08", t=400, n=6, f=3),
    "pemsd7m": lambda root: standins.write_pemsd7m(root / "pemsd7m", t=576, n=5),
    "sz-taxi": lambda root: standins.write_sz_taxi(root / "sz-taxi", t=600, n=5),
    "los-loop": lambda root: None,  # the real files (see _los_loop)
}
CASES = [(fmt, model, HEADS[(i + j) % len(HEADS)]) for i, fmt in enumerate(WRITERS) for j, model in enumerate(MODELS)]


@pytest.fixture(scope="module")
def shared(request: pytest.FixtureRequest) -> Path | None:
    try:
        return request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return None


@pytest.mark.filterwarnings("ignore:.*carry no timestamps")  # formats without timestamps: derived ones
@pytest.mark.parametrize(("fmt", "model", "head"), CASES,
                         ids=[f"{f}-{m}-{h[1] if h else 'point'}" for f, m, h in CASES])
def test_zoo_model_trains_evaluates_and_explains_on_every_format(tmp_path, monkeypatch, shared, fmt, model, head):
    monkeypatch.setattr("stgnn.data.download.check_files", lambda info, folder: None)  # stand-ins, not the originals
    root = tmp_path / "data"
    if fmt == "los-loop":
        _los_loop(root, shared)
    else:
        WRITERS[fmt](root)
    ds = load_dataset(fmt, root)
    covariates = tmp_path / "events.csv"
    pd.DataFrame({"timestamp": ds.timestamps, "event": np.arange(ds.num_steps) % 7 == 0}).to_csv(covariates,
                                                                                                  index=False)
    attributes = tmp_path / "lanes.csv"
    pd.DataFrame({"sensor_id": list(ds.node_ids), "lanes": np.arange(len(ds.node_ids)) % 3 + 2}).to_csv(
        attributes, index=False)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'model = "{model}"\n[model_params]\n{SMALL[model]}\n')
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--dataset", fmt, "--data-dir", str(root), "--epochs", "1",
                 "--max-batches", "1", "--batch-size", "16", *head, "--time-covariates", str(covariates),
                 "--node-attributes", str(attributes), "--device", "cpu", "--output", str(run),
                 "--quiet", "--no-download"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    average = metrics["horizons"]["average"]
    assert metrics["dataset"] == fmt and metrics["model"] == model and average["mae"] > 0
    assert (average.get("crps") is not None) == bool(head)  # probabilistic keys only for a head
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert len(state["covariate_scaler"]["mean"]) == 2  # the event and the lanes channels
    data = ["--data-dir", str(root), "--no-download"]
    assert main(["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--output", str(tmp_path / "eval.json"),
                 "--quiet", *data]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["horizons"] == metrics["horizons"]

    exp, _ = experiment_from_checkpoint(run / "checkpoint.pt", root)
    start = int(exp.data.batch(exp.data.splits["test"][:1]).start[0])  # first forecast step of a test window
    when = pd.Timestamp(exp.dataset.timestamps[start]).isoformat()
    sensor = exp.dataset.node_ids[1]
    out = tmp_path / "explain"
    assert main(["explain", "--checkpoint", str(run / "checkpoint.pt"), "--sensor", sensor, "--time", when,
                 "--steps", "8", "--windows", "8", "--output", str(out), "--quiet", *data]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sensor"] == sensor and summary["model"] == model
    assert (out / "attribution.csv").is_file() and (out / "sensor_importance.csv").is_file()
