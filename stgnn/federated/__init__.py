"""Federated training across agencies that cannot share readings (Flower's FedAvg on loopback).

:mod:`stgnn.federated.fedavg` holds the Flower client and server, :mod:`stgnn.federated.compare`
the ``stgnn federated`` comparison; both need the ``federated`` extra (``pip install
'stgnn[federated]'``).
"""
