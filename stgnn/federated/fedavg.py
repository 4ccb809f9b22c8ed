"""Federated averaging with Flower: one client per region, server and clients on 127.0.0.1.

Each :class:`RegionClient` holds one region's :class:`~stgnn.training.trainer.Experiment` (its own
readings, graph, scaler and model) and trains it with the ordinary
:class:`~stgnn.training.trainer.Trainer`.  :func:`run_fedavg` starts Flower's gRPC server on a free
loopback port with its ``FedAvg`` strategy and connects every client to it from a thread of this
process, so the weights travel through Flower's own protocol, never beyond this machine.

Per round, every client loads the global shared weights, trains ``local_epochs`` epochs on its own
windows and sends back its shared weights with the number of its training examples (windows x
sensors); FedAvg replaces the global weights by the mean of the clients' weights weighted by those
numbers.  Only the entries :func:`shared_state_keys` names travel: per-node entries (node
embeddings, per-node norms: :func:`~stgnn.training.warm_start.per_node_tensors`) never leave their
client.  Every client then scores the
new global weights, with its own per-node entries, on its validation windows; the round whose
validation MAE (weighted like the training) is lowest gives each client its final model.

Clients take turns (one trains while the others wait), so a run is reproducible and does not
oversubscribe the CPU.  Flower's telemetry is switched off before its server starts.
"""

from __future__ import annotations

import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flwr.supercore.telemetry as flwr_telemetry
import numpy as np
import torch
from flwr.client import NumPyClient, start_client
from flwr.common import NDArrays, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import ServerConfig, start_server
from flwr.server.strategy import FedAvg
from flwr.server.strategy.aggregate import aggregate
from torch import Tensor, nn

from stgnn.models import ModelSpec
from stgnn.training.trainer import Experiment, Trainer
from stgnn.training.warm_start import per_node_tensors

__all__ = ["FedAvgResult", "FederatedError", "RegionClient", "run_fedavg", "shared_state_keys", "weighted_average"]


def shared_state_keys(build: Callable[[ModelSpec], nn.Module], spec: ModelSpec) -> list[str]:
    """The state entries of a model that federated averaging shares, in state-dict order.

    Those that are floating point and whose shape does not depend on the number of nodes; per-node
    entries (:func:`~stgnn.training.warm_start.per_node_tensors`) and integer counters stay with
    their client.  Batch-norm running statistics are shared (plain FedAvg).

    Args:
        build: Builds the model for a spec, as a run does (e.g.
            ``lambda s: build_forecaster(cfg, s)``, with the run's probabilistic head, if any).
        spec: The sizes of one client's model.

    Example:
        >>> from stgnn.models import build_model
        >>> spec = ModelSpec(num_nodes=5, in_channels=2, out_channels=1)
        >>> keys = shared_state_keys(lambda s: build_model("gwnet", s), spec)
        >>> [k for k in keys if "embedding" in k]
        []
    """
    per_node = per_node_tensors(build, spec)
    with torch.device("meta"):
        state = build(spec).state_dict()
    return [k for k, v in state.items() if k not in per_node and v.is_floating_point()]


class FederatedError(RuntimeError):
    """A client failed during federated training (the client and its error named)."""


class _Coordinator:
    """What the clients of one run share: a turn lock, and the first error (then they stand by)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.failed: str | None = None


class RegionClient(NumPyClient):
    """A Flower client that trains one region's model on that region's readings only.

    Args:
        name: The region's name (in messages and results).
        exp: The region's experiment (data, scaler, model).
        shared_keys: State entries averaged across clients (the same list, in the same order,
            on every client; see :func:`shared_state_keys`).
        local_epochs: Training epochs per round.
        log: Where progress lines go (default: nowhere).

    Attributes:
        snapshots: ``round -> state dict`` after that round's aggregation (global shared
            entries with this client's per-node entries), for choosing the final model.
        sent: The shared weights and example count this client sent in the last round.
    """

    def __init__(
        self,
        name: str,
        exp: Experiment,
        shared_keys: list[str],
        *,
        local_epochs: int = 1,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if local_epochs < 1:
            raise ValueError(f"local_epochs: must be >= 1, got {local_epochs}")
        state = exp.model.state_dict()
        unknown = [k for k in shared_keys if k not in state]
        if unknown:
            raise ValueError(f"{name}: shared keys not in the {exp.config.model} model: {', '.join(unknown)}")
        self.name = name
        self.exp = exp
        self.shared_keys = list(shared_keys)
        self.local_epochs = local_epochs
        # the trainer's folder is never written: train_epoch only trains
        self.trainer = Trainer(exp, Path(name), progress=False, log=lambda _: None)
        self.examples = exp.data.num_windows("train") * exp.spec.num_nodes
        self.val_examples = exp.data.num_windows("val") * exp.spec.num_nodes
        self.epoch = 0
        self.snapshots: dict[int, dict[str, Tensor]] = {}
        self.sent: tuple[NDArrays, int] | None = None
        self._log = log or (lambda _: None)
        self._coordinator = _Coordinator()

    # ------------------------------------------------------------------ weights
    def shared_weights(self) -> NDArrays:
        """The shared entries of the current model, as numpy arrays in ``shared_keys`` order."""
        state = self.exp.model.state_dict()
        return [state[k].detach().cpu().numpy().copy() for k in self.shared_keys]

    def load_shared(self, parameters: NDArrays) -> None:
        """Load global shared weights; the per-node entries are left as they are.

        Raises:
            ValueError: The arrays do not fit the shared entries (count or shapes named).
        """
        if len(parameters) != len(self.shared_keys):
            raise ValueError(f"{self.name}: received {len(parameters)} arrays for {len(self.shared_keys)} shared "
                             "entries")
        state = self.exp.model.state_dict()
        update = {}
        for key, array in zip(self.shared_keys, parameters, strict=True):
            if tuple(array.shape) != tuple(state[key].shape):
                raise ValueError(f"{self.name}: shared entry {key} has shape {tuple(state[key].shape)}, received "
                                 f"{tuple(array.shape)}")
            update[key] = torch.as_tensor(array, dtype=state[key].dtype)
        self.exp.model.load_state_dict(update, strict=False)

    # ------------------------------------------------------------------ Flower
    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        """The shared weights (Flower asks for them only when no initial weights were given)."""
        return self.shared_weights()

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Train ``local_epochs`` epochs from the global weights; send back the shared weights."""
        with self._turn() as ok:
            if not ok:
                return parameters, self.examples, {}
            self.load_shared(parameters)
            losses = []
            for _ in range(self.local_epochs):
                self.epoch += 1
                losses.append(self.trainer.train_epoch(self.epoch))
            weights = self.shared_weights()
            self.sent = (weights, self.examples)
            loss = float(np.mean(losses))
            self._log(f"round {int(config.get('server_round', 0))}: {self.name} train_loss {loss:.4f}")
            return weights, self.examples, {"train_loss": loss}
        return parameters, self.examples, {}  # an earlier error: the run is being wound down

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[float, int, dict[str, Scalar]]:
        """Validation MAE of the global shared weights with this client's per-node entries."""
        with self._turn() as ok:
            if not ok:
                return math.inf, self.val_examples, {}
            self.load_shared(parameters)
            val = self.exp.evaluate("val", self.exp.config.train.eval_batch_size).compute()["average"]
            mae = math.inf if val["mae"] is None else float(val["mae"])
            server_round = int(config.get("server_round", len(self.snapshots) + 1))
            self.snapshots[server_round] = {k: v.detach().clone() for k, v in self.exp.model.state_dict().items()}
            self._log(f"round {server_round}: {self.name} val_mae {mae:.4f}")
            return mae, self.val_examples, {"mae": mae}
        return math.inf, self.val_examples, {}

    @contextmanager
    def _turn(self) -> Iterator[bool]:
        """One client at a time; an error is kept (and raised by :func:`run_fedavg`), not sent to Flower."""
        with self._coordinator.lock:
            if self._coordinator.error is not None:
                yield False
                return
            try:
                yield True
            except Exception as exc:  # the gRPC client would die and leave the server waiting
                self._coordinator.error, self._coordinator.failed = exc, self.name


def weighted_average(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """The mean of the clients' arrays weighted by their example counts (what FedAvg computes).

    Delegates to Flower's own ``aggregate``.
    """
    return aggregate(results)


@dataclass
class FedAvgResult:
    """What :func:`run_fedavg` returns.

    Attributes:
        val_mae: Per round, the clients' validation MAE weighted by their validation examples.
        best_round: The round with the lowest ``val_mae`` (1-based).
        global_weights: Per round, the aggregated shared weights the server sent out.
        seconds: Wall time of the federated run.
        address: The loopback address the server listened on.
    """

    val_mae: list[float]
    best_round: int
    global_weights: dict[int, NDArrays] = field(default_factory=dict)
    seconds: float = 0.0
    address: str = ""


class _RecordingFedAvg(FedAvg):
    """Flower's FedAvg, keeping each round's aggregated weights."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rounds: dict[int, NDArrays] = {}

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        if parameters is not None:
            self.rounds[server_round] = parameters_to_ndarrays(parameters)
        return parameters, metrics


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _quiet_flower(verbose: bool) -> Iterator[None]:
    """No telemetry; Flower's log lines only with ``verbose``; signal handlers restored afterwards."""
    flwr_telemetry.FLWR_TELEMETRY_ENABLED = "0"  # read when each event is sent
    logger = logging.getLogger("flwr")
    level = logger.level
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if not verbose:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def run_fedavg(clients: list[RegionClient], rounds: int, *, verbose: bool = False) -> FedAvgResult:
    """Run ``rounds`` rounds of FedAvg over ``clients`` with Flower on 127.0.0.1.

    Must be called from the main thread (Flower's server installs signal handlers).  The initial
    global weights are the first client's shared weights (every client builds its model from the
    same seed; per-node entries are drawn for each client's own sensors).

    Args:
        clients: Two or more clients whose models share the same entries.
        rounds: Federated rounds.
        verbose: Show Flower's own log lines.

    Raises:
        ValueError: Fewer than two clients, ``rounds < 1``, or clients whose shared entries differ.
        FederatedError: A client failed (its name and error given).
    """
    if len(clients) < 2:
        raise ValueError(f"federated training needs at least 2 clients, got {len(clients)}")
    if rounds < 1:
        raise ValueError(f"rounds: must be >= 1, got {rounds}")
    first = clients[0]
    for other in clients[1:]:
        if other.shared_keys != first.shared_keys or [w.shape for w in other.shared_weights()] != [
            w.shape for w in first.shared_weights()
        ]:
            raise ValueError(f"{other.name} and {first.name} do not share the same weights (different models or "
                             "hyper-parameters)")
    coordinator = _Coordinator()
    for client in clients:
        client._coordinator = coordinator
    k = len(clients)
    strategy = _RecordingFedAvg(
        fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=k, min_evaluate_clients=k,
        min_available_clients=k, accept_failures=False,
        initial_parameters=ndarrays_to_parameters(first.shared_weights()),
        on_fit_config_fn=lambda r: {"server_round": r},
        on_evaluate_config_fn=lambda r: {"server_round": r},
        fit_metrics_aggregation_fn=_weighted_metrics,
        evaluate_metrics_aggregation_fn=_weighted_metrics,
    )
    address = f"127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    with _quiet_flower(verbose):
        threads = [
            threading.Thread(target=_connect, args=(address, c, coordinator), name=f"flower-client-{c.name}",
                             daemon=True)
            for c in clients
        ]
        for thread in threads:
            thread.start()
        history = start_server(server_address=address, config=ServerConfig(num_rounds=rounds), strategy=strategy)
        for thread in threads:
            thread.join(timeout=10)
    if coordinator.error is not None:
        raise FederatedError(f"client {coordinator.failed}: {coordinator.error}") from coordinator.error
    losses = dict(history.losses_distributed)
    val_mae = [float(losses.get(r, math.inf)) for r in range(1, rounds + 1)]
    best = int(np.argmin(val_mae)) + 1
    return FedAvgResult(val_mae, best, strategy.rounds, time.perf_counter() - start, address)


def _connect(address: str, client: RegionClient, coordinator: _Coordinator, timeout: float = 60.0) -> None:
    """Connect ``client`` to the server at ``address`` once it listens (Flower's client does not wait)."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                break
        except OSError:
            if time.monotonic() > deadline:
                with coordinator.lock:
                    coordinator.error = TimeoutError(f"no Flower server listening on {address} after {timeout:g} s")
                    coordinator.failed = client.name
                return
            time.sleep(0.05)
    start_client(server_address=address, client=client.to_client(), insecure=True)


def _weighted_metrics(metrics: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    total = sum(n for n, _ in metrics)
    keys = set.intersection(*(set(m) for _, m in metrics)) if metrics else set()
    return {k: sum(n * float(m[k]) for n, m in metrics) / max(total, 1) for k in sorted(keys)}
