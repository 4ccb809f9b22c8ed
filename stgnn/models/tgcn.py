"""T-GCN (Zhao et al., IEEE T-ITS 2020) and the two neural baselines of its Table I (GRU, GCN).

All three follow the authors' TensorFlow code (github.com/lehaifeng/T-GCN, ``T-GCN/T-GCN-TensorFlow``:
``tgcn.py``, ``gru.py``, ``gcn.py``, ``main.py``), take the graph at forward time like every other
model of :data:`stgnn.models.MODELS`, and use :class:`stgnn.nn.GraphConv` for
``D~^{-1/2} (A + I) D~^{-1/2}`` (the authors' ``calculate_laplacian``: ``I`` is added even where
``A`` already has a self-loop, as Los-loop's ``los_adj.csv`` does on its diagonal).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from stgnn.models.base import Forecaster, ModelSpec
from stgnn.nn.graph_conv import GraphConv

__all__ = ["GCN", "GRU", "TGCN", "TGCNCell"]


class _NodeLinear(nn.Linear):
    """``nn.Linear`` with the graph-layer call signature (the graph is ignored): the GRU baseline's
    gate transform, applied to every node with shared weights."""

    def forward(self, x: Tensor, edge_index: Tensor | None = None, edge_weight: Tensor | None = None) -> Tensor:
        return super().forward(x)


def _glorot(weight: Tensor) -> None:
    nn.init.xavier_uniform_(weight)


class TGCNCell(nn.Module):
    r"""The T-GCN cell: a GRU whose gate and candidate transforms are graph convolutions.

    Zhao et al., "T-GCN: A Temporal Graph Convolutional Network for Traffic Prediction",
    IEEE T-ITS 21(9), 2020, https://arxiv.org/abs/1811.05320, Eq. 3-6:

    .. math::
        [r, u] = \sigma(\hat A [x_t, h_{t-1}] W_g + b_g),\quad
        c = \tanh(\hat A [x_t, r \odot h_{t-1}] W_c + b_c),\quad
        h_t = u \odot h_{t-1} + (1 - u) \odot c,

    with :math:`\hat A = \tilde D^{-1/2} (A + I) \tilde D^{-1/2}`.  With ``graph=False`` the two
    transforms are per-node linear maps shared by all nodes: the GRU baseline of the paper
    (authors' ``gru.py``).  Initialisation as the authors' code: Glorot-uniform weights, gate bias
    1.0, candidate bias 0.

    **Gate split (deviation of the authors' code from the paper, kept by default).**  The authors'
    TensorFlow cell (and the PyTorch re-implementation martinwhl/T-GCN-PyTorch) computes the gate
    output as one ``[B, N * 2H]`` row per sample and splits it into halves along that axis, so
    ``r`` and ``u`` of node ``i`` are consecutive blocks of ``H`` values of the flattened output
    (half of node ``i // 2``'s ``2H`` channels for ``r``), not the two channel halves of node
    ``i``.  The published numbers come from that code, so ``reference_gates=True`` (default)
    reproduces it (the last hidden state equals martinwhl's ``TGCN`` to 0.0 in float64 with copied
    weights); ``reference_gates=False`` follows the paper's equations per node (and, unlike the
    reference, is equivariant to node permutations).

    Args:
        in_channels: Input features per node.
        hidden_channels: GRU units per node.
        graph: Use graph convolutions (T-GCN, default) or node-wise linear maps (GRU).
        reference_gates: Split the gates as the authors' code (default ``True``) or per node.
        cached: Reuse the graph operator while the graph passed in is unchanged (see
            :class:`~stgnn.nn.GraphConv`). Default ``False``.

    Shapes:
        ``x [B, N, in_channels]``, ``h [B, N, hidden_channels]``, ``edge_index [2, E]``,
        ``edge_weight [E]`` -> ``[B, N, hidden_channels]``.

    Example:
        >>> cell = TGCNCell(1, 4)
        >>> ei = torch.tensor([[0, 1], [1, 0]])
        >>> cell(torch.randn(3, 2, 1), torch.zeros(3, 2, 4), ei).shape
        torch.Size([3, 2, 4])
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        *,
        graph: bool = True,
        reference_gates: bool = True,
        cached: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.graph = graph
        self.reference_gates = reference_gates
        size = in_channels + hidden_channels
        self.gates: GraphConv | _NodeLinear
        self.candidate: GraphConv | _NodeLinear
        if graph:
            self.gates = GraphConv(size, 2 * hidden_channels, cached=cached)
            self.candidate = GraphConv(size, hidden_channels, cached=cached)
        else:
            self.gates = _NodeLinear(size, 2 * hidden_channels)
            self.candidate = _NodeLinear(size, hidden_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights, gate bias 1.0, candidate bias 0 (as the authors' code)."""
        for layer, bias in ((self.gates, 1.0), (self.candidate, 0.0)):
            _glorot(layer.weight)
            assert layer.bias is not None
            nn.init.constant_(layer.bias, bias)

    def forward(self, x: Tensor, h: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """One step of the recurrence (see the class docstring for shapes)."""
        gates = torch.sigmoid(self.gates(torch.cat([x, h], dim=-1), edge_index, edge_weight))  # [B, N, 2H]
        if self.reference_gates:
            # the authors' split of the flattened [B, N * 2H] output into halves: r and u take
            # consecutive blocks of H values across node boundaries, not channels of one node
            r, u = (part.reshape(h.shape) for part in gates.flatten(-2).chunk(2, dim=-1))
        else:
            r, u = gates.chunk(2, dim=-1)
        c = torch.tanh(self.candidate(torch.cat([x, r * h], dim=-1), edge_index, edge_weight))
        return u * h + (1.0 - u) * c

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.hidden_channels}, graph={self.graph}, "
                f"reference_gates={self.reference_gates}")


class TGCN(Forecaster):
    """T-GCN: one :class:`TGCNCell` over the input window, then a linear map of the last state.

    Zhao et al., IEEE T-ITS 2020, https://arxiv.org/abs/1811.05320, as in the authors' code
    (``main.py``): the cell runs over the ``T`` input steps from a zero state; the last hidden
    state of each node goes through one linear layer ``hidden -> H * F_out`` shared by all nodes
    (weights drawn from ``Normal(1, 1)`` and bias from ``Normal(0, 1)``, as the authors'
    ``tf.random_normal(..., mean=1.0)``).  Paper hyper-parameters: 64 hidden units on Los-loop,
    100 on SZ-taxi.

    Args:
        spec: Sizes derived from the data.
        hidden_channels: GRU units per node (default 64, the paper's Los-loop value).
        reference_gates: The authors' gate split (default ``True``); see :class:`TGCNCell`.
        cached: Reuse the graph operator while the graph passed in is unchanged. Default ``True``.

    Shapes:
        forward: ``x [B, T, N, F_in]`` -> ``[B, H, N, F_out]``.

    Example:
        >>> m = TGCN(ModelSpec(num_nodes=3, in_channels=1, out_channels=1, horizon=3), hidden_channels=8)
        >>> ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> m(torch.randn(2, 12, 3, 1), ei).shape
        torch.Size([2, 3, 3, 1])
    """

    uses_graph: ClassVar[bool] = True

    def __init__(
        self, spec: ModelSpec, hidden_channels: int = 64, reference_gates: bool = True, cached: bool = True
    ) -> None:
        super().__init__()
        self.spec = spec
        self.hidden_channels = hidden_channels
        self.cell = TGCNCell(spec.in_channels, hidden_channels, graph=self.uses_graph,
                             reference_gates=reference_gates, cached=cached)
        self.proj = nn.Linear(hidden_channels, spec.horizon * spec.out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise as the authors' code (see the class docstring)."""
        self.cell.reset_parameters()
        nn.init.normal_(self.proj.weight, mean=1.0, std=1.0)
        nn.init.normal_(self.proj.bias, mean=0.0, std=1.0)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Run the cell over the window and map the last state to ``H`` steps."""
        b, t, n, _ = x.shape
        h = x.new_zeros(b, n, self.hidden_channels)
        for step in range(t):  # recurrent by definition
            h = self.cell(x[:, step], h, edge_index, edge_weight)
        out = self.proj(h)  # [B, N, H * F_out]
        return rearrange(out, "b n (h f) -> b h n f", h=self.spec.horizon, f=self.spec.out_channels)


class GRU(TGCN):
    """The GRU baseline of the T-GCN paper: :class:`TGCN` without the graph convolutions.

    Each node's series runs through the same GRU (the authors' ``gru.py``: gates are linear maps of
    ``[x_t, h_{t-1}]`` shared by all nodes, gate bias 1.0), then the same output layer as T-GCN.
    The graph passed to ``forward`` is ignored.  The default of 100 hidden units is the value of
    the PyTorch re-implementation endorsed by the authors (martinwhl/T-GCN-PyTorch ``configs/gru.yaml``).

    Args:
        spec: Sizes derived from the data.
        hidden_channels: GRU units (default 100).
        reference_gates: The authors' gate split (default ``True``); see :class:`TGCNCell`.

    Shapes:
        forward: ``x [B, T, N, F_in]`` -> ``[B, H, N, F_out]``.

    Example:
        >>> m = GRU(ModelSpec(num_nodes=3, in_channels=1, out_channels=1, horizon=3), hidden_channels=8)
        >>> m(torch.randn(2, 12, 3, 1), torch.empty(2, 0, dtype=torch.long)).shape
        torch.Size([2, 3, 3, 1])
    """

    uses_graph: ClassVar[bool] = False

    def __init__(self, spec: ModelSpec, hidden_channels: int = 100, reference_gates: bool = True) -> None:
        super().__init__(spec, hidden_channels, reference_gates, cached=False)


class GCN(Forecaster):
    r"""The GCN baseline of the T-GCN paper: one graph convolution over the whole input window.

    As the authors' ``gcn.py``: the ``T`` input steps of a node are its features;
    ``Y = \tanh(\hat A X W_1) W_2`` with Glorot-uniform ``W_1 [T * F_in, hidden]`` and
    ``W_2 [hidden, H * F_out]`` and no biases.  It sees space but no recurrence.  The default of 100
    hidden units is martinwhl/T-GCN-PyTorch's ``configs/gcn.yaml``.

    Args:
        spec: Sizes derived from the data.
        hidden_channels: Hidden units (default 100).
        cached: Reuse the graph operator while the graph passed in is unchanged. Default ``True``.

    Shapes:
        forward: ``x [B, T, N, F_in]`` -> ``[B, H, N, F_out]``.

    Example:
        >>> m = GCN(ModelSpec(num_nodes=3, in_channels=1, out_channels=1, horizon=3), hidden_channels=8)
        >>> m(torch.randn(2, 12, 3, 1), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([2, 3, 3, 1])
    """

    def __init__(self, spec: ModelSpec, hidden_channels: int = 100, cached: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.hidden_channels = hidden_channels
        self.conv = GraphConv(spec.input_len * spec.in_channels, hidden_channels, bias=False, cached=cached)
        self.out = nn.Linear(hidden_channels, spec.horizon * spec.out_channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights (the authors' ``weight_variable_glorot``)."""
        _glorot(self.conv.weight)
        _glorot(self.out.weight)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """``tanh(A X W1) W2`` with the window as node features."""
        if x.shape[1] != self.spec.input_len:
            raise ValueError(f"GCN: input has {x.shape[1]} steps, the model was built for {self.spec.input_len}")
        h = torch.tanh(self.conv(rearrange(x, "b t n f -> b n (t f)"), edge_index, edge_weight))
        return rearrange(self.out(h), "b n (h f) -> b h n f", h=self.spec.horizon, f=self.spec.out_channels)
