"""Reusable spatio-temporal layers (PyG conventions: ``forward(x, edge_index, edge_weight=None)``).

Graph layers take node features with the node axis at ``node_dim`` (default ``-2``, i.e.
``[..., N, C]``) and the graph as ``edge_index [2, E]`` (row 0 = source) plus optional
``edge_weight [E]`` (a PyG ``edge_attr [E, 1]`` works too), a dense or ``torch.sparse``
``[N, N]`` adjacency, or a ``SparseTensor`` ``adj_t``; ``cached=True`` reuses a static graph's
operators, as in PyG.
Temporal layers take ``[..., T, ..., C]`` with time at ``time_dim`` (default ``-3``, i.e.
``[B, T, N, C]``).  All graph normalisations live in :mod:`stgnn.nn.graph_ops`.

PyG's helpers (``torch_geometric.utils``) are imported inside the functions that use them:
importing them loads ``torch._dynamo`` (~2 s, ~180 MB), which a model without graph attention,
batch-wise normalisation or partitions never needs.
"""

from stgnn.nn.adaptive import AdaptiveAdjacency
from stgnn.nn.attention import AxisSelfAttention, GraphAttention, TransformerLayer
from stgnn.nn.blocks import GraphWaveNetLayer, NodeLayerNorm, STConvBlock
from stgnn.nn.diffusion import DCGRUCell, DiffusionConv
from stgnn.nn.dropout import Dropout
from stgnn.nn.graph_conv import ChebGraphConv, GraphConv
from stgnn.nn.graph_ops import (
    Operator,
    OperatorCache,
    diffusion_basis,
    diffusion_coefficients,
    diffusion_series,
    get_operator,
    graph_to_coo,
    make_operator,
    propagate,
    to_dense_adjacency,
    to_edge_index,
    transpose_operator,
)
from stgnn.nn.partition import cluster_graph, neighbourhood_partition
from stgnn.nn.temporal import ChannelAlign, GatedTCN, GatedTemporalConv

__all__ = [
    "AdaptiveAdjacency",
    "AxisSelfAttention",
    "ChannelAlign",
    "ChebGraphConv",
    "DCGRUCell",
    "DiffusionConv",
    "Dropout",
    "GatedTCN",
    "GatedTemporalConv",
    "GraphAttention",
    "GraphConv",
    "GraphWaveNetLayer",
    "NodeLayerNorm",
    "Operator",
    "OperatorCache",
    "STConvBlock",
    "TransformerLayer",
    "cluster_graph",
    "diffusion_basis",
    "diffusion_coefficients",
    "diffusion_series",
    "get_operator",
    "graph_to_coo",
    "make_operator",
    "neighbourhood_partition",
    "propagate",
    "to_dense_adjacency",
    "to_edge_index",
    "transpose_operator",
]
