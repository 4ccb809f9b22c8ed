"""Our layers against torch-geometric-temporal's on identical weights (pygt extra only).

Where the two compute the same function:

* ``DiffusionConv(K=2)`` (paper mode) equals ``DConv(K=3)`` on an unweighted, symmetric graph.
  They differ otherwise, for three reasons in DConv: edge weights enter only through the
  degrees (messages are unweighted); its reverse direction indexes the in-degree normaliser
  with the forward edge order, which is wrong on a directed graph; and for ``K > 3`` its
  recursion keeps ``x`` as ``T_{k-2}`` instead of the previous term.
* The Chebyshev graph convolution inside ``STConv`` (PyG ``ChebConv``, sym normalisation,
  lambda_max = 2) equals our ``ChebGraphConv(lambda_max=2)``.  The blocks as a whole differ by
  design: STConv's temporal gate is ``relu(P * sigmoid(Q) + conv(x))`` where STGCN's is
  ``(P + x) * sigmoid(Q)``, and STConv normalises with BatchNorm over nodes where STGCN uses
  LayerNorm over ``[N, C]``.
"""

import pytest
import torch

pytest.importorskip("torch_geometric_temporal", reason="pygt extra not installed")

from torch_geometric_temporal.nn.attention import STConv  # noqa: E402
from torch_geometric_temporal.nn.recurrent.dcrnn import DConv  # noqa: E402

from stgnn.nn import ChebGraphConv, DiffusionConv, STConvBlock  # noqa: E402


def _symmetric_graph(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, n, generator=g) < 0.4).float()
    a = torch.triu(a, 1)
    a = a + a.T
    a[0, 1] = a[1, 0] = 1.0  # no isolated node 0
    for i in range(n):  # every node has a neighbour (DConv divides by the degree)
        if a[i].sum() == 0:
            a[i, (i + 1) % n] = a[(i + 1) % n, i] = 1.0
    ei = a.nonzero().T.contiguous()  # row-major, as DConv's dense_to_sparse orders them
    return ei, torch.ones(ei.shape[1])


def _load_dconv_weights(ours: DiffusionConv, theirs: DConv) -> None:
    w = theirs.weight.detach()  # [2, K+1, in, out]
    m = ours.num_matrices
    weight = torch.empty(ours.in_channels, m, ours.out_channels)
    weight[:, 0] = w[0, 0] + w[1, 0]
    weight[:, 1], weight[:, 2] = w[0, 1], w[0, 2]
    weight[:, 3], weight[:, 4] = w[1, 1], w[1, 2]
    with torch.no_grad():
        ours.weight.copy_(weight.reshape(-1, ours.out_channels))
        ours.bias.copy_(theirs.bias)


def test_diffusion_conv_matches_dconv_on_unweighted_symmetric_graph():
    torch.manual_seed(0)
    ei, ew = _symmetric_graph()
    theirs = DConv(3, 5, K=3)
    torch.nn.init.normal_(theirs.bias)
    ours = DiffusionConv(3, 5, K=2)
    _load_dconv_weights(ours, theirs)
    x = torch.randn(7, 3)
    torch.testing.assert_close(ours(x, ei, ew), theirs(x, ei, ew), rtol=1e-5, atol=1e-5)


def test_diffusion_conv_differs_from_dconv_on_weighted_graph():
    torch.manual_seed(0)
    ei, _ = _symmetric_graph()
    ew = torch.rand(ei.shape[1]) + 0.1
    theirs = DConv(3, 5, K=3)
    ours = DiffusionConv(3, 5, K=2)
    _load_dconv_weights(ours, theirs)
    x = torch.randn(7, 3)
    assert not torch.allclose(ours(x, ei, ew), theirs(x, ei, ew), atol=1e-3)


def test_cheb_conv_inside_stconv_matches_ours():
    torch.manual_seed(0)
    ei, ew = _symmetric_graph()
    block = STConv(num_nodes=7, in_channels=2, hidden_channels=4, out_channels=3, kernel_size=3, K=3)
    theirs = block._graph_conv
    ours = ChebGraphConv(4, 4, K=3, lambda_max=2.0)
    with torch.no_grad():
        for k, lin in enumerate(theirs.lins):
            ours.weight[k].copy_(lin.weight.T)
        ours.bias.copy_(torch.randn(4))
        theirs.bias.copy_(ours.bias)
    x = torch.randn(6, 7, 4)  # [B*T, N, C]
    expected = torch.stack([theirs(xi, ei, ew) for xi in x])
    torch.testing.assert_close(ours(x, ei, ew), expected, rtol=1e-5, atol=1e-5)


def test_stconv_block_is_a_different_function():
    # Same shapes in and out, different gate and normalisation (see the module docstring).
    torch.manual_seed(0)
    ei, ew = _symmetric_graph()
    x = torch.randn(2, 12, 7, 2)
    theirs = STConv(num_nodes=7, in_channels=2, hidden_channels=16, out_channels=8, kernel_size=3, K=3)
    ours = STConvBlock(2, 16, 4, 8, num_nodes=7)
    assert theirs(x, ei, ew).shape[:3] == (2, 8, 7)
    assert ours(x, ei, ew).shape[:3] == (2, 8, 7)
