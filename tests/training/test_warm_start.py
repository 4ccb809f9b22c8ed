"""stgnn train --init-from / --freeze: weights carried over by name and shape, per-node tensors re-initialised."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import standins
import torch

from stgnn.cli import main
from stgnn.models import ModelSpec, build_model
from stgnn.training.checkpoint import load_checkpoint
from stgnn.training.config import RunConfig
from stgnn.training.trainer import build_forecaster
from stgnn.training.warm_start import per_node_tensors

TINY = "[model_params]\nchannels = [8, 4, 8]\noutput_channels = [8, 8]\ndropout = 0.0\n"
NORMS = {f"{p}.norm.{w}" for p in ("blocks.0", "blocks.1", "output") for w in ("weight", "bias")}


def _train(out: Path, series: Path, locations: Path, config: Path, *extra: str) -> int:
    return main(["train", "--model", "stgcn", "--config", str(config), "--series", str(series), "--locations",
                 str(locations), "--epochs", "1", "--max-batches", "2", "--device", "cpu", "--output", str(out),
                 "--quiet", *extra])


@pytest.fixture(scope="module")
def source(tmp_path_factory, single_thread):
    tmp = tmp_path_factory.mktemp("warm")
    config = tmp / "tiny.toml"
    config.write_text(TINY)
    series, locations = standins.write_custom(tmp / "a", t=300, n=5)
    assert _train(tmp / "a-run", series, locations, config) == 0
    # another network: 4 sensors with other ids
    frame = pd.read_csv(series).iloc[:, :5]
    frame.columns = ["timestamp", "B0", "B1", "B2", "B3"]
    (tmp / "b").mkdir()
    frame.to_csv(tmp / "b" / "readings.csv", index=False)
    loc = pd.read_csv(locations).iloc[:4]
    loc["sensor_id"] = ["B0", "B1", "B2", "B3"]
    loc.to_csv(tmp / "b" / "sensors.csv", index=False)
    return tmp, config, tmp / "a-run" / "checkpoint.pt", (series, locations), (tmp / "b" / "readings.csv",
                                                                                 tmp / "b" / "sensors.csv")


def test_per_node_tensors_are_found_by_shape():
    spec = ModelSpec(num_nodes=5, in_channels=2, out_channels=1)
    assert per_node_tensors(lambda s: build_model("stgcn", s), spec) == NORMS
    assert per_node_tensors(lambda s: build_model("stgcn", s, per_node_norm=False), spec) == set()
    assert per_node_tensors(lambda s: build_model("gwnet", s), spec) == {"adaptive.source_embedding",
                                                                          "adaptive.target_embedding"}
    assert per_node_tensors(lambda s: build_model("dcrnn", s), spec) == set()
    # a model wrapped in a probabilistic head: the same tensors, under the wrapper's names
    headed = RunConfig.from_dict({"model": "gwnet", "head": {"kind": "gaussian"}})
    assert per_node_tensors(lambda s: build_forecaster(headed, s), spec) == {"base.adaptive.source_embedding",
                                                                             "base.adaptive.target_embedding"}


def test_transfer_to_another_network_with_frozen_first_block(source, capsys):
    tmp, config, ckpt, _, (series, locations) = source
    out = tmp / "b-run"
    assert _train(out, series, locations, config, "--init-from", str(ckpt), "--freeze", "blocks.0.*") == 0
    printed = capsys.readouterr().out
    assert f"init from {ckpt}" in printed and "re-initialised blocks.0.norm.weight: per-node tensor" in printed
    record = json.loads((out / "init_from.json").read_text())
    assert set(record["reinitialised"]) == NORMS and record["unused"] == []
    before = load_checkpoint(ckpt)["best_model"]
    after = load_checkpoint(out / "checkpoint.pt")["model"]
    assert set(record["loaded"]) == set(before) - NORMS
    frozen = record["frozen"]
    assert frozen and all(k.startswith("blocks.0.") for k in frozen) and "blocks.0.norm.weight" in frozen
    for name in frozen:
        if name not in NORMS:  # frozen and loaded: exactly the source's weights after training
            torch.testing.assert_close(after[name], before[name])
    trained = [k for k in record["loaded"] if not k.startswith("blocks.0.")]
    assert any(not torch.equal(after[k], before[k]) for k in trained)  # the rest was trained
    assert after["blocks.0.norm.weight"].shape[0] == 4 and before["blocks.0.norm.weight"].shape[0] == 5
    from stgnn.training.config import load_config
    saved = load_config(out / "config.toml")
    assert saved.train.init_from == str(ckpt) and saved.train.freeze == ["blocks.0.*"]


def test_same_sensors_keep_their_per_node_tensors(source):
    tmp, config, ckpt, (series, locations), _ = source
    out = tmp / "a-again"
    assert _train(out, series, locations, config, "--init-from", str(ckpt)) == 0
    record = json.loads((out / "init_from.json").read_text())
    assert record["reinitialised"] == {} and NORMS <= set(record["loaded"])


def test_bad_init_from_and_freeze_are_named(source, tmp_path, capsys):
    tmp, config, ckpt, (series, locations), _ = source
    assert _train(tmp_path / "r1", series, locations, config, "--init-from", str(tmp_path / "nope.pt")) == 2
    assert f"--init-from {tmp_path / 'nope.pt'}: file not found" in capsys.readouterr().err
    assert _train(tmp_path / "r2", series, locations, config, "--init-from", str(ckpt), "--freeze", "encoder.*") == 2
    err = capsys.readouterr().err
    assert "--freeze encoder.*: matches no parameter of the stgcn model" in err and "blocks.0." in err
    assert _train(tmp_path / "r3", series, locations, config, "--freeze", "blocks.*") == 2
    assert "freeze needs init_from" in capsys.readouterr().err
    assert main(["train", "--model", "lstm", "--series", str(series), "--locations", str(locations), "--epochs", "1",
                 "--output", str(tmp_path / "r4"), "--init-from", str(ckpt), "--quiet"]) == 2
    assert "holds a stgcn model, but this run trains lstm" in capsys.readouterr().err
    assert not any((tmp_path / r / "checkpoint.pt").exists() for r in ("r1", "r2", "r3", "r4"))
