"""Federated training across agencies that cannot share readings (Flower's FedAvg on loopback).

The Flower parts live in :mod:`stgnn.federated.fedavg` and need the ``federated`` extra
(``pip install 'stgnn[federated]'``); :func:`shared_state_keys` does not.
"""

from stgnn.federated.keys import node_dependent_keys, shared_state_keys

__all__ = ["node_dependent_keys", "shared_state_keys"]
