"""The speed-motivated rewrites compute what the straightforward formulations compute."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from stgnn.nn import DCGRUCell, GatedTemporalConv, diffusion_basis, diffusion_series, make_operator, propagate
from stgnn.nn.dropout import Dropout, dropout
from stgnn.nn.temporal import glu, tanh_sigmoid_gate, temporal_conv


@pytest.fixture
def ops() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 12, (2, 40), generator=g)
    ew = torch.rand(40, generator=g, dtype=torch.float64)
    return [make_operator(k, ei, ew, 12, dtype=torch.float64) for k in ("random_walk", "reverse_random_walk")]


def test_dropout_statistics_and_gradient():
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    y = dropout(x, 0.3)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.3) < 0.01
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(x * mask * scale)/dx = mask * scale
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.count_nonzero(dropout(x, 1.0)) == 0
    with pytest.raises(ValueError, match="probability"):
        dropout(x, 1.5)
    half = dropout(x, 0.5)  # the fair-coin path
    assert abs((half == 0).float().mean().item() - 0.5) < 0.01
    assert set(half.unique().tolist()) == {0.0, 2.0}
    module = Dropout(0.5)
    assert isinstance(module, torch.nn.Dropout)
    assert module.eval()(x) is x


def test_glu_and_tanh_sigmoid_gate_values_and_all_order_gradients():
    torch.manual_seed(0)
    h = torch.randn(3, 5, 4, 8, dtype=torch.float64, requires_grad=True)
    f, g = h[..., :4], h[..., 4:]
    torch.testing.assert_close(glu(h), f * torch.sigmoid(g))
    torch.testing.assert_close(tanh_sigmoid_gate(h), torch.tanh(f) * torch.sigmoid(g))
    for gate in (glu, tanh_sigmoid_gate):
        assert torch.autograd.gradcheck(gate, (h,))
        assert torch.autograd.gradgradcheck(gate, (h,))
        assert torch.autograd.gradcheck(gate, (h,), check_forward_ad=True, check_backward_ad=False)


@pytest.mark.parametrize(("c_in", "c_out"), [(2, 6), (6, 6), (6, 3)])
def test_folded_glu_gradients(c_in, c_out):
    """The residual folded into the weight: gradients reach the weight and the 1x1 align conv."""
    torch.manual_seed(0)
    conv = GatedTemporalConv(c_in, c_out, kernel_size=3, time_dim=-2).double()
    x = torch.randn(4, 2, 6, c_in, dtype=torch.float64, requires_grad=True)

    def explicit(v: torch.Tensor) -> torch.Tensor:
        h = temporal_conv(v, conv.weight, conv.bias, 1, -2)
        p, q = h.split(c_out, dim=-1)
        return (p + conv.align(v[:, :, 2:])) * torch.sigmoid(q)

    torch.testing.assert_close(conv(x), explicit(x))
    params = [x, *conv.parameters()]
    got = torch.autograd.grad(conv(x).square().sum(), params)
    want = torch.autograd.grad(explicit(x).square().sum(), params)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dilation", [1, 2])
def test_temporal_conv_single_output_step(dilation):
    """``T_out == 1`` takes the GEMM path; it must equal the convolution."""
    torch.manual_seed(0)
    k = 3
    t = (k - 1) * dilation + 1
    x = torch.randn(5, 2, t, 4, dtype=torch.float64)
    w = torch.randn(7, 4, k, dtype=torch.float64)
    b = torch.randn(7, dtype=torch.float64)
    out = temporal_conv(x, w, b, dilation, time_dim=-2)
    ref = F.conv1d(x.reshape(-1, t, 4).transpose(1, 2), w, b, dilation=dilation)  # [M, 7, 1]
    assert out.shape == (5, 2, 1, 7)
    torch.testing.assert_close(out.reshape(-1, 7), ref[..., 0])


@pytest.mark.parametrize(
    ("mode", "order", "n_ops"), list(itertools.product(["power", "chebyshev", "dcrnn_reference"], [0, 1, 2, 3], [1, 2]))
)
def test_diffusion_basis_spans_series(ops, mode, order, n_ops):
    torch.manual_seed(0)
    x = torch.randn(12, 3, dtype=torch.float64)
    operators = (ops * 2)[:n_ops]
    terms = diffusion_series(x, operators, order, mode)
    basis, coeff = diffusion_basis(x, operators, order, mode)
    assert coeff.shape == (len(terms), len(basis))
    stacked = torch.stack(basis)  # [M, N, C]
    for m, term in enumerate(terms):
        torch.testing.assert_close(torch.einsum("j,jnc->nc", coeff[m], stacked), term)


def test_csr_product_backward_uses_transpose(ops):
    x = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    dense = ops[0].to_dense()
    out = propagate(ops[0], x)
    torch.testing.assert_close(out, dense @ x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(grad, dense.t() @ (2 * out.detach()))
    assert torch.autograd.gradcheck(lambda v: propagate(ops[1], v), (x,))


@pytest.mark.parametrize("compat", [False, True])
def test_dcgru_zero_state_matches_explicit_zeros(compat):
    torch.manual_seed(0)
    cell = DCGRUCell(2, 4, K=2, reference_compat=compat).double()
    ei = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    x = torch.randn(3, 4, 2, dtype=torch.float64)
    torch.testing.assert_close(cell(x, ei), cell(x, ei, h=torch.zeros(3, 4, 4, dtype=torch.float64)))
