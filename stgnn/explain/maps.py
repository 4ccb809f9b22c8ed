"""What a trained model learned about the graph: adaptive adjacency and attention maps.

* :func:`adaptive_adjacency` -- the learned adjacency of a model with an
  :class:`~stgnn.nn.AdaptiveAdjacency` (Graph WaveNet), and :func:`top_edges` its strongest
  entries between distinct sensors.
* :func:`average_attention` -- the attention maps of a model that records them, averaged over
  many windows.  The interface (shared by every attention model of :mod:`stgnn.models`): a
  model with an attribute ``record_attention`` sets, when it is ``True``, a dict
  ``attention_maps: dict[str, Tensor]`` on each forward, each map averaged over the batch and
  the heads (``[T, T]`` temporal, ``[N, N]`` spatial, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from stgnn.models import Batch, Forecaster
from stgnn.nn.adaptive import AdaptiveAdjacency

__all__ = ["adaptive_adjacency", "attention_recorder", "average_attention", "top_edges"]


def adaptive_adjacency(model: nn.Module) -> Tensor | None:
    """The dense ``[N, N]`` learned adjacency of ``model`` (its first
    :class:`~stgnn.nn.AdaptiveAdjacency`), or ``None`` when it has none.

    Entry ``[v, w]`` is the weight with which node ``w`` aggregates node ``v``
    (Graph WaveNet's ``nconv`` contracts the first index), i.e. an edge ``v -> w``; rows sum to one.
    """
    for module in model.modules():
        if isinstance(module, AdaptiveAdjacency):
            with torch.no_grad():
                adj = module()
            return (adj.to_dense() if adj.is_sparse else adj).detach().cpu()
    return None


def top_edges(adjacency: Tensor, node_ids: Sequence[str], k: int) -> list[tuple[str, str, float]]:
    """The ``k`` largest off-diagonal entries of ``adjacency`` as ``(source, target, weight)``, largest first.

    Raises:
        ValueError: ``k < 1`` or ``adjacency`` is not ``[N, N]`` for the ``N`` ids.

    Example:
        >>> top_edges(torch.tensor([[0.9, 0.1], [0.7, 0.3]]), ["a", "b"], 1)
        [('b', 'a', 0.699999988079071)]
    """
    n = len(node_ids)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if tuple(adjacency.shape) != (n, n):
        raise ValueError(f"adjacency {tuple(adjacency.shape)} does not fit {n} sensors")
    off = adjacency.clone().float()
    off.fill_diagonal_(float("-inf"))
    values, flat = off.flatten().topk(min(k, n * (n - 1)))
    return [(node_ids[i // n], node_ids[i % n], float(v)) for v, i in zip(values.tolist(), flat.tolist(), strict=True)]


def attention_recorder(model: nn.Module) -> nn.Module | None:
    """The module of ``model`` that follows the attention-map interface (has ``record_attention``):
    ``model`` itself or, for a model wrapped by another (e.g. a probabilistic head), the first
    submodule that does; ``None`` when there is none."""
    return next((m for m in model.modules() if hasattr(m, "record_attention")), None)


def average_attention(
    model: Forecaster,
    batches: Iterable[Batch],
    edge_index: Tensor,
    edge_weight: Tensor | None = None,
) -> tuple[dict[str, Tensor], int]:
    """Attention maps averaged over every window of ``batches`` (each batch weighted by its size).

    ``record_attention`` is switched on for the passes and restored afterwards.  Floating-point
    maps are averaged; other tensors (e.g. an integer node-to-patch assignment) must be the same
    in every pass and are returned as they are.  A model configured without attention (e.g. a
    ``fusion`` model with a recurrent encoder) stores no maps: the result is then empty.

    Args:
        model: A model that has, or wraps, a module with ``record_attention`` (see the module
            docstring and :func:`attention_recorder`); put in eval mode.
        batches: The windows of the period (on the model's device).
        edge_index: ``[2, E]`` graph.
        edge_weight: ``[E]`` weights or ``None``.

    Returns:
        ``(maps on the CPU, number of windows)``.

    Raises:
        ValueError: The model does not record attention, the passes store different maps (names
            or shapes), a non-float map changes, or ``batches`` is empty.
    """
    recorder: Any = attention_recorder(model)  # the interface is duck-typed (attributes, not a base class)
    if recorder is None:
        raise ValueError(f"{type(model).__name__} records no attention maps (it has no record_attention)")
    before = bool(recorder.record_attention)
    sums: dict[str, Tensor] = {}
    fixed: dict[str, Tensor] = {}
    names: set[str] | None = None
    windows = 0
    model.eval()
    recorder.record_attention = True
    try:
        with torch.no_grad():
            for batch in batches:
                recorder.attention_maps = {}
                model.forecast(batch, edge_index, edge_weight)
                maps: dict[str, Tensor] = recorder.attention_maps
                if names is not None and set(maps) != names:
                    raise ValueError(f"{type(model).__name__}: forwards stored different attention maps: "
                                     f"{sorted(names)} and {sorted(maps)}")
                names = set(maps)
                size = int(batch.x.shape[0])
                for key, value in maps.items():
                    value = value.detach().cpu()
                    if not value.is_floating_point():
                        if key in fixed and not torch.equal(fixed[key], value):
                            raise ValueError(f"attention map {key!r} ({value.dtype}) changed between windows")
                        fixed[key] = value
                        continue
                    if key in sums and sums[key].shape != value.shape:
                        raise ValueError(f"attention map {key!r} changed shape: {tuple(sums[key].shape)} -> "
                                         f"{tuple(value.shape)}")
                    weighted = value.double() * size
                    sums[key] = sums[key] + weighted if key in sums else weighted
                windows += size
    finally:
        recorder.record_attention = before
    if windows == 0:
        raise ValueError("no windows to average the attention maps over")
    return {**{k: (v / windows).float() for k, v in sums.items()}, **fixed}, windows
