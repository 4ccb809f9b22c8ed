"""``stgnn federated``: a network cut into regions, trained federated, local-only and centralised.

The network is cut by :func:`~stgnn.data.partition.partition_graph` into regions of nearly equal
size; each region is one client that sees only its own sensors, readings and the edges among them.
Three ways of training are compared on every region's test windows (same model, config, seed and
number of training epochs):

* **federated**: FedAvg with Flower (:mod:`stgnn.federated.fedavg`), ``rounds`` rounds of
  ``local_epochs`` epochs each; shared weights averaged, per-node weights kept by each client;
* **local-only**: each region trains alone for ``rounds * local_epochs`` epochs;
* **centralised**: one model trained on the whole network (all readings pooled, every edge kept)
  for ``rounds * local_epochs`` epochs, scored on each region's sensors.

Local-only and centralised runs are ordinary run folders (``--resume`` and ``evaluate`` work on
the centralised one) and stop early with the config's ``patience``; the federated run keeps the
round with the best weighted validation MAE.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stgnn.data.dataset import TrafficDataset
from stgnn.data.partition import partition_graph, region_dataset
from stgnn.federated.fedavg import FedAvgResult, RegionClient, run_fedavg, shared_state_keys
from stgnn.training.checkpoint import atomic_write_text, save_checkpoint, write_json
from stgnn.training.config import RunConfig
from stgnn.training.trainer import Experiment, Trainer, build_forecaster
from stgnn.training.warm_start import per_node_tensors

__all__ = ["Region", "make_regions", "run_comparison", "train_federated"]


@dataclass(frozen=True)
class Region:
    """One client's part of the network.

    Attributes:
        name: ``region-1``, ``region-2``, ...
        sensor_ids: Its sensors, in the network's node order.
        index: Their node indices in the whole network.
    """

    name: str
    sensor_ids: tuple[str, ...]
    index: torch.Tensor


def make_regions(dataset: TrafficDataset, parts: int, seed: int = 0) -> list[Region]:
    """Cut ``dataset``'s graph into ``parts`` balanced regions (see :func:`partition_graph`)."""
    position = {s: i for i, s in enumerate(dataset.node_ids)}
    return [
        Region(f"region-{k}", tuple(ids), torch.tensor([position[s] for s in ids], dtype=torch.long))
        for k, ids in enumerate(partition_graph(dataset.graph, parts, seed=seed), start=1)
    ]


def train_federated(
    cfg: RunConfig,
    dataset: TrafficDataset,
    regions: list[Region],
    *,
    rounds: int,
    local_epochs: int = 1,
    log: Callable[[str], None] | None = None,
    verbose: bool = False,
) -> tuple[list[RegionClient], FedAvgResult]:
    """Federated training of ``cfg``'s model over ``regions`` of ``dataset``.

    Returns:
        The clients, each holding its model with the weights of the best round, and the run's
        per-round record.

    Raises:
        ValueError: A model that is not trained by gradient, or a split without validation windows.
        FederatedError: A client failed.
    """
    exps = [Experiment.build(cfg, dataset=region_dataset(dataset, r.sensor_ids, f"{dataset.name}-{r.name}"))
            for r in regions]
    if not exps[0].model.trainable:
        raise ValueError(f"--model: {cfg.model} is not trained by gradient descent; federated training needs a "
                         "trained model (lstm, stgcn, dcrnn, gwnet, ...)")
    if exps[0].data.num_windows("val") == 0:
        raise ValueError(f"{dataset.source}: the split has no validation windows; federated training needs them "
                         "to choose its best round (give data.split a validation fraction)")
    shared = shared_state_keys(lambda s: build_forecaster(cfg, s), exps[0].spec)
    clients = [RegionClient(r.name, exp, shared, local_epochs=local_epochs, log=log)
               for r, exp in zip(regions, exps, strict=True)]
    result = run_fedavg(clients, rounds, verbose=verbose)
    for client in clients:
        client.exp.model.load_state_dict(client.snapshots[result.best_round])
    return clients, result


def run_comparison(
    cfg: RunConfig,
    dataset: TrafficDataset,
    output: str | Path,
    *,
    parts: int,
    rounds: int,
    local_epochs: int = 1,
    baselines: bool = True,
    command: str = "",
    log: Callable[[str], None] = print,
    verbose: bool = False,
) -> dict[str, Any]:
    """Federated (and, with ``baselines``, local-only and centralised) training; results written to ``output``.

    Files: ``federated.json`` (regions, per-round validation MAE, best round, test metrics per
    region and method), ``comparison.md`` (the per-region table with ``command``), one
    ``<region>.pt`` per client (its sensors, scaler and weights of the best round), and with
    ``baselines`` the run folders ``local/<region>/`` and ``centralised/``.

    Returns:
        The ``federated.json`` content.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    regions = make_regions(dataset, parts, seed=cfg.train.seed)
    log(f"{len(regions)} regions: " + ", ".join(f"{r.name} ({len(r.sensor_ids)} sensors)" for r in regions))
    clients, fed = train_federated(cfg, dataset, regions, rounds=rounds, local_epochs=local_epochs, log=log,
                                   verbose=verbose)
    log(f"federated: best round {fed.best_round} of {rounds} (weighted val MAE {fed.val_mae[fed.best_round - 1]:.4f}),"
        f" {fed.seconds:.1f}s on {fed.address}")
    metrics: dict[str, dict[str, Any]] = {"federated": {}, "local": {}, "centralised": {}}
    for client in clients:
        metrics["federated"][client.name] = client.exp.evaluate("test", cfg.train.eval_batch_size).compute()
        save_checkpoint({"region": client.name, "sensor_ids": list(client.exp.dataset.node_ids),
                         "config": cfg.to_dict(), "scaler": client.exp.data.scaler.state_dict(),
                         "model": client.exp.model.state_dict(), "best_round": fed.best_round},
                        output / f"{client.name}.pt")
    seconds = {"federated": fed.seconds}
    if baselines:
        long_cfg = cfg.model_copy(deep=True)
        long_cfg.train.epochs = rounds * local_epochs
        seconds["local"] = 0.0
        for region in regions:
            log(f"local-only: {region.name}")
            exp = Experiment.build(long_cfg, dataset=region_dataset(dataset, region.sensor_ids,
                                                                    f"{dataset.name}-{region.name}"))
            result = Trainer(exp, output / "local" / region.name, progress=False, log=log).fit()
            metrics["local"][region.name] = result["horizons"]
            seconds["local"] += result["train_seconds"]
        log("centralised: the whole network")
        exp = Experiment.build(long_cfg, dataset=dataset)
        result = Trainer(exp, output / "centralised", progress=False, log=log).fit()
        seconds["centralised"] = result["train_seconds"]
        for region in regions:
            metrics["centralised"][region.name] = exp.evaluate("test", cfg.train.eval_batch_size,
                                                               nodes=region.index).compute()
    spec = clients[0].exp.spec
    record = {
        "model": cfg.model,
        "dataset": dataset.name,
        "command": command,
        "rounds": rounds,
        "local_epochs": local_epochs,
        "epochs_equivalent": rounds * local_epochs,
        "regions": [{"name": r.name, "num_sensors": len(r.sensor_ids), "sensor_ids": list(r.sensor_ids)}
                    for r in regions],
        "shared_keys": clients[0].shared_keys,
        "local_keys": sorted(per_node_tensors(lambda s: build_forecaster(cfg, s), spec)),
        "val_mae_by_round": fed.val_mae,
        "best_round": fed.best_round,
        "train_seconds": seconds,
        "metrics": {k: v for k, v in metrics.items() if v},
        "config": cfg.to_dict(),
    }
    write_json(output / "federated.json", record)
    atomic_write_text(output / "comparison.md", federated_table(record))
    return record


def federated_table(record: dict[str, Any]) -> str:
    """The per-region Markdown table of a ``federated.json`` record (12-step average on the test windows)."""
    methods = [m for m in ("local", "federated", "centralised") if m in record["metrics"]]
    titles = {"local": "local-only", "federated": "federated", "centralised": "centralised"}
    lines = [
        f"{record['model']} on {record['dataset']}, {len(record['regions'])} regions: test MAE / RMSE / MAPE % "
        f"(12-step average, masked); {record['rounds']} rounds x {record['local_epochs']} local epochs, "
        f"baselines {record['epochs_equivalent']} epochs; best federated round {record['best_round']}.",
        "",
        "| region | sensors | " + " | ".join(titles[m] for m in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for region in record["regions"]:
        cells = []
        for m in methods:
            avg = record["metrics"][m][region["name"]]["average"]
            cells.append(" / ".join(_fmt(avg[k]) for k in ("mae", "rmse", "mape")))
        lines.append(f"| {region['name']} | {region['num_sensors']} | " + " | ".join(cells) + " |")
    lines += ["", f"Per-node entries kept by each client: {', '.join(record['local_keys']) or 'none'}."]
    seconds = record["train_seconds"]
    lines.append("Training time: " + ", ".join(f"{titles[k]} {v:.0f}s" for k, v in seconds.items()) + ".")
    if record["command"]:
        lines += ["", "```bash", record["command"], "```"]
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"
