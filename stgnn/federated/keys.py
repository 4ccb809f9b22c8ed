"""Which weights a model shares across networks, and which belong to its nodes.

Models take the graph at forward time, so most weights fit any network.  Some do not: a node
embedding (Graph WaveNet's adaptive adjacency) or a per-node layer norm (STGCN's default) has one
row per sensor.  Those are *per-node* state: they cannot be averaged across clients whose networks
differ, and they mean nothing on another network.  They are found by building the model for ``N``
and for ``N + 1`` nodes and comparing the shapes of every state entry, so no model has to
declare them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from stgnn.models import ModelSpec, build_model

__all__ = ["node_dependent_keys", "shared_state_keys"]


def node_dependent_keys(model: str, spec: ModelSpec, params: dict[str, Any] | None = None) -> set[str]:
    """State-dict keys of model ``model`` whose shape depends on the number of nodes.

    Args:
        model: Registered model name.
        spec: The sizes the model is built for.
        params: The model's hyper-parameters (``[model_params]``).

    Example:
        >>> from stgnn.models import ModelSpec
        >>> sorted(node_dependent_keys("gwnet", ModelSpec(num_nodes=5, in_channels=2, out_channels=1)))
        ['adaptive.source_embedding', 'adaptive.target_embedding']
        >>> node_dependent_keys("lstm", ModelSpec(num_nodes=5, in_channels=2, out_channels=1))
        set()
    """
    params = params or {}
    with torch.random.fork_rng(devices=[]):  # building models must not move the caller's RNG
        a = build_model(model, spec, **params).state_dict()
        b = build_model(model, dataclasses.replace(spec, num_nodes=spec.num_nodes + 1), **params).state_dict()
    return {k for k in a.keys() | b.keys() if k not in a or k not in b or a[k].shape != b[k].shape}


def shared_state_keys(model: str, spec: ModelSpec, params: dict[str, Any] | None = None) -> list[str]:
    """The floating-point state entries of ``model`` that do not depend on the nodes, in state-dict order.

    These are what federated averaging shares; everything else (per-node entries and integer
    counters) stays with its client.
    """
    per_node = node_dependent_keys(model, spec, params)
    with torch.random.fork_rng(devices=[]):
        state = build_model(model, spec, **(params or {})).state_dict()
    return [k for k, v in state.items() if k not in per_node and v.is_floating_point()]
