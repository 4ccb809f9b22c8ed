"""Federated averaging with Flower on loopback: weighted means of shared weights, per-node weights local.

Skipped when Flower (the ``federated`` extra) is not installed.
"""

import json

import numpy as np
import pytest
import standins
import torch

pytest.importorskip("flwr")

from stgnn.cli import main  # noqa: E402
from stgnn.federated.compare import make_regions  # noqa: E402
from stgnn.federated.fedavg import FederatedError, RegionClient, run_fedavg, shared_state_keys  # noqa: E402
from stgnn.models import ModelSpec, build_model  # noqa: E402
from stgnn.training.config import RunConfig  # noqa: E402
from stgnn.training.trainer import Experiment, build_forecaster, load_data  # noqa: E402

TINY_GWNET = {"residual_channels": 4, "dilation_channels": 4, "skip_channels": 8, "end_channels": 8, "blocks": 1}
EMBEDDINGS = ["adaptive.source_embedding", "adaptive.target_embedding"]


def _config(tmp_path, model="gwnet", n=7):
    series, locations = standins.write_custom(tmp_path / "data", t=400, n=n)
    return RunConfig.from_dict({
        "model": model, "dataset": "custom",
        "custom": {"series": str(series), "locations": str(locations), "k_neighbors": 3},
        "train": {"batch_size": 16, "max_batches": 2, "device": "cpu", "seed": 0},
        "model_params": TINY_GWNET if model == "gwnet" else {},
    })


class RecordingClient(RegionClient):
    """Keeps its per-node weights as they were right after its own training."""

    after_fit: dict[str, torch.Tensor]

    def fit(self, parameters, config):
        out = super().fit(parameters, config)
        self.after_fit = {k: self.exp.model.state_dict()[k].clone() for k in EMBEDDINGS}
        return out


def _clients(cfg, cls=RegionClient):
    from stgnn.data.partition import region_dataset

    dataset = load_data(cfg)
    regions = make_regions(dataset, 2)
    exps = [Experiment.build(cfg, dataset=region_dataset(dataset, r.sensor_ids, r.name)) for r in regions]
    shared = shared_state_keys(lambda s: build_forecaster(cfg, s), exps[0].spec)
    return [cls(r.name, e, shared) for r, e in zip(regions, exps, strict=True)]


def test_global_weights_are_the_example_weighted_mean_and_per_node_weights_stay_local(tmp_path):
    clients = _clients(_config(tmp_path), RecordingClient)
    sizes = [c.exp.spec.num_nodes for c in clients]
    assert sorted(sizes) == [3, 4]
    assert not set(EMBEDDINGS) & set(clients[0].shared_keys)
    result = run_fedavg(clients, rounds=1)

    weights = [np.asarray(c.sent[1], dtype=np.float64) for c in clients]
    assert weights[0] != weights[1]  # windows x sensors: the bigger region counts more
    for i, key in enumerate(clients[0].shared_keys):
        sent = [c.sent[0][i].astype(np.float64) for c in clients]
        expected = sum(w * a for w, a in zip(weights, sent, strict=True)) / sum(weights)
        np.testing.assert_allclose(result.global_weights[1][i], expected, rtol=1e-5, atol=1e-6, err_msg=key)
        for c in clients:  # every client continues from the average
            np.testing.assert_allclose(c.snapshots[1][key].numpy(), result.global_weights[1][i], rtol=0, atol=0)
    assert not np.allclose(clients[0].sent[0][0], clients[1].sent[0][0])  # the clients did differ
    for c in clients:  # node embeddings: one row per own sensor, exactly as the client trained them
        for key in EMBEDDINGS:
            assert c.exp.spec.num_nodes in c.snapshots[1][key].shape
            torch.testing.assert_close(c.snapshots[1][key], c.after_fit[key], rtol=0, atol=0)
    assert result.best_round == 1 and len(result.val_mae) == 1 and np.isfinite(result.val_mae[0])
    assert result.address.startswith("127.0.0.1:")


def test_shared_entries_leave_out_per_node_and_integer_state():
    spec = ModelSpec(num_nodes=5, in_channels=2, out_channels=1)
    gwnet = shared_state_keys(lambda s: build_model("gwnet", s), spec)
    assert not set(EMBEDDINGS) & set(gwnet) and not [k for k in gwnet if k.endswith("num_batches_tracked")]
    assert any(k.endswith("running_mean") for k in gwnet)
    assert not [k for k in shared_state_keys(lambda s: build_model("stgcn", s), spec) if ".norm." in k]
    plain = shared_state_keys(lambda s: build_model("stgcn", s, per_node_norm=False), spec)
    assert [k for k in plain if ".norm." in k]
    # a run config builds the model as a run does: with a probabilistic head its entries are nested
    cfg = RunConfig.from_dict({"model": "gwnet", "dataset": "los-loop", "head": {"kind": "gaussian"}})
    headed = shared_state_keys(lambda s: build_forecaster(cfg, s), spec)
    assert headed and all(k.startswith("base.") for k in headed)
    assert not [k for k in headed if k.endswith("_embedding")]


class FailingClient(RegionClient):
    def fit(self, parameters, config):
        if self.name == "region-2":
            with self._turn() as ok:
                if ok:
                    raise RuntimeError("disk full")
            return parameters, self.examples, {}
        return super().fit(parameters, config)


def test_a_failing_client_stops_the_run_with_its_name(tmp_path):
    clients = _clients(_config(tmp_path, model="lstm"), FailingClient)
    with pytest.raises(FederatedError, match="client region-2: disk full"):
        run_fedavg(clients, rounds=3)


def test_cli_writes_the_comparison(tmp_path, capsys):
    series, locations = standins.write_custom(tmp_path / "data", t=400, n=7)
    config = tmp_path / "run.toml"
    params = "\n".join(f"{k} = {v}" for k, v in TINY_GWNET.items())
    config.write_text(f'model = "gwnet"\n[custom]\nseries = "{series}"\nlocations = "{locations}"\nk_neighbors = 3\n'
                      f'[train]\nbatch_size = 16\nmax_batches = 2\ndevice = "cpu"\n[model_params]\n{params}\n')
    out = tmp_path / "fed"
    argv = ["federated", "--config", str(config), "--clients", "2", "--rounds", "2", "--output", str(out), "--quiet"]
    assert main(argv) == 0
    record = json.loads((out / "federated.json").read_text())
    assert set(record["metrics"]) == {"federated", "local", "centralised"}
    for method in record["metrics"].values():
        assert set(method) == {"region-1", "region-2"}
        assert all(m["average"]["mae"] > 0 for m in method.values())
    assert record["local_keys"] == EMBEDDINGS and len(record["val_mae_by_round"]) == 2
    assert sorted(r["num_sensors"] for r in record["regions"]) == [3, 4]
    table = (out / "comparison.md").read_text()
    assert "| region-1 |" in table and "stgnn federated --config" in table
    assert (out / "centralised" / "checkpoint.pt").is_file() and (out / "region-1.pt").is_file()
    assert "| region | sensors | local-only | federated | centralised |" in capsys.readouterr().out
    assert main(argv) == 2  # the folder holds a run already
    assert "holds a federated run already" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--clients", "1"], "--clients: must be >= 2, got 1"),
    (["--clients", "9"], "--clients: 9 regions of a 7-sensor network"),
    (["--rounds", "0"], "--rounds: must be >= 1, got 0"),
    (["--model", "ha"], "ha is not trained by gradient descent"),
])
def test_cli_refuses_bad_arguments(tmp_path, capsys, extra, message):
    series, locations = standins.write_custom(tmp_path / "data", t=400, n=7)
    config = tmp_path / "run.toml"
    config.write_text(f'[custom]\nseries = "{series}"\nlocations = "{locations}"\n[train]\ndevice = "cpu"\n')
    argv = ["federated", "--config", str(config), "--model", "lstm", "--output", str(tmp_path / "o"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
