"""T-GCN, GRU and GCN (T-GCN paper): shapes, the cell against its equations, graph use, training."""

from __future__ import annotations

import pytest
import torch

from stgnn.models import MODELS, ModelSpec, build_model
from stgnn.models.tgcn import GCN, GRU, TGCN, TGCNCell

pytestmark = pytest.mark.usefixtures("single_thread")

N = 5
SPEC = ModelSpec(num_nodes=N, in_channels=1, out_channels=1, input_len=6, horizon=3)
EI = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4, 0], [1, 0, 2, 1, 3, 2, 4, 3, 0]])  # path + a self-loop at 0
EW = torch.tensor([1.0, 1.0, 0.5, 0.5, 2.0, 2.0, 1.0, 1.0, 1.0])


def a_hat() -> torch.Tensor:
    """The authors' ``calculate_laplacian``: D^-1/2 (A + I) D^-1/2, I added on top of existing loops."""
    a = torch.zeros(N, N)
    a[EI[0], EI[1]] = EW
    a = a + torch.eye(N)
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


def test_registered() -> None:
    assert MODELS["tgcn"] is TGCN and MODELS["gru"] is GRU and MODELS["gcn"] is GCN


@pytest.mark.parametrize("name", ["tgcn", "gru", "gcn"])
def test_shapes_and_backward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, SPEC, hidden_channels=8)
    x = torch.randn(4, 6, N, 1, requires_grad=True)
    out = model(x, EI, EW)
    assert out.shape == (4, 3, N, 1)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())


def test_cell_follows_the_paper_equations() -> None:
    torch.manual_seed(0)
    cell = TGCNCell(1, 4, reference_gates=False)
    x, h = torch.randn(2, N, 1), torch.randn(2, N, 4)
    A = a_hat()
    wg, bg = cell.gates.weight, cell.gates.bias
    wc, bc = cell.candidate.weight, cell.candidate.bias
    gates = torch.sigmoid(A @ torch.cat([x, h], -1) @ wg + bg)
    r, u = gates[..., :4], gates[..., 4:]
    c = torch.tanh(A @ torch.cat([x, r * h], -1) @ wc + bc)
    torch.testing.assert_close(cell(x, h, EI, EW), u * h + (1 - u) * c)
    torch.testing.assert_close(cell.gates.bias, torch.ones(8))  # authors' gate bias 1.0
    # the authors' code splits the flattened [B, N * 2H] gate output into halves instead
    flat = gates.reshape(2, N * 8)
    r_ref, u_ref = flat[:, : N * 4].reshape(2, N, 4), flat[:, N * 4 :].reshape(2, N, 4)
    c_ref = torch.tanh(A @ torch.cat([x, r_ref * h], -1) @ wc + bc)
    cell.reference_gates = True
    torch.testing.assert_close(cell(x, h, EI, EW), u_ref * h + (1 - u_ref) * c_ref)


def test_reference_gates_equal_paper_gates_on_one_node() -> None:
    torch.manual_seed(0)
    paper, ref = TGCNCell(1, 4, reference_gates=False), TGCNCell(1, 4)
    ref.load_state_dict(paper.state_dict())
    x, h, ei = torch.randn(3, 1, 1), torch.randn(3, 1, 4), torch.tensor([[0], [0]])
    torch.testing.assert_close(ref(x, h, ei), paper(x, h, ei))
    x, h = torch.randn(3, N, 1), torch.randn(3, N, 4)
    assert not torch.allclose(ref(x, h, EI, EW), paper(x, h, EI, EW))


def test_gcn_baseline_formula() -> None:
    torch.manual_seed(0)
    m = GCN(SPEC, hidden_channels=7)
    x = torch.randn(2, 6, N, 1)
    feats = x[..., 0].transpose(1, 2)  # [B, N, T]
    expected = torch.tanh(a_hat() @ feats @ m.conv.weight) @ m.out.weight.T  # [B, N, H]
    torch.testing.assert_close(m(x, EI, EW), expected.transpose(1, 2).unsqueeze(-1))
    with pytest.raises(ValueError, match="steps"):
        m(torch.randn(2, 5, N, 1), EI, EW)


def test_graph_use() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 6, N, 1)
    other = torch.tensor([[0, 4], [4, 0]])
    gru = GRU(SPEC, hidden_channels=8)
    torch.testing.assert_close(gru(x, EI, EW), gru(x, other))  # GRU ignores the graph
    tgcn = TGCN(SPEC, hidden_channels=8)  # cached=True: a changed graph must not be served from the cache
    assert not torch.allclose(tgcn(x, EI, EW), tgcn(x, other))
    fresh = TGCN(SPEC, hidden_channels=8, cached=False)
    fresh.load_state_dict(tgcn.state_dict())
    torch.testing.assert_close(tgcn(x, other), fresh(x, other))
    torch.testing.assert_close(tgcn(x, EI, EW), fresh(x, EI, EW))


@pytest.mark.parametrize("name", ["tgcn", "gru", "gcn"])
def test_node_permutation_equivariance(name: str) -> None:
    torch.manual_seed(0)  # (the authors' gate split is not equivariant: test the paper's gates)
    m = build_model(name, SPEC, hidden_channels=8, **({} if name == "gcn" else {"reference_gates": False}))
    x = torch.randn(2, 6, N, 1)
    perm = torch.randperm(N)
    inv = torch.argsort(perm)
    out = m(x[:, :, perm], inv[EI], EW)
    torch.testing.assert_close(out, m(x, EI, EW)[:, :, perm])


def test_overfits_a_tiny_batch() -> None:
    torch.manual_seed(0)
    m = TGCN(SPEC, hidden_channels=16)
    x, y = torch.rand(8, 6, N, 1), torch.rand(8, 3, N, 1)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    first = None
    for _ in range(200):
        loss = (m(x, EI, EW) - y).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
