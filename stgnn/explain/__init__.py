"""Explanations of trained models: integrated gradients, learned adjacency, attention maps.

:mod:`stgnn.explain.attribution` and :mod:`stgnn.explain.maps` work on a model and tensors;
:mod:`stgnn.explain.report` writes the PNG / CSV files of ``stgnn explain``.
"""

from stgnn.explain.attribution import Attribution, integrated_gradients
from stgnn.explain.maps import adaptive_adjacency, attention_recorder, average_attention, top_edges

__all__ = [
    "Attribution",
    "adaptive_adjacency",
    "attention_recorder",
    "average_attention",
    "integrated_gradients",
    "top_edges",
]
