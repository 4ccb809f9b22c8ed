"""STGCN, DCRNN and Graph WaveNet: shapes, training behaviour, equivariance, parameter counts."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from stgnn.models import MODELS, Batch, ModelSpec, build_model
from stgnn.models.dcrnn import DCRNN
from stgnn.models.gwnet import GraphWaveNet
from stgnn.models.stgcn import STGCN

pytestmark = pytest.mark.usefixtures("single_thread")


N = 5
SPEC = ModelSpec(num_nodes=N, in_channels=2, out_channels=1, input_len=12, horizon=3)

# small hyper-parameters (dropout off so that overfitting and gradient checks are deterministic)
TINY: dict[str, dict[str, Any]] = {
    "stgcn": dict(channels=(8, 4, 8), output_channels=(16, 16), dropout=0.0),
    "dcrnn": dict(hidden_channels=8),
    "gwnet": dict(
        residual_channels=8,
        dilation_channels=8,
        skip_channels=16,
        end_channels=16,
        dropout=0.0,
        embedding_dim=4,
    ),  # fmt: skip
}
GRAPH_MODELS = list(TINY)


def graph(n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.arange(n).repeat_interleave(2)
    dst = torch.stack([(torch.arange(n) + 1) % n, (torch.arange(n) + 2) % n], 1).reshape(-1)
    ei = torch.stack([src, dst])
    return ei, torch.rand(ei.size(1), generator=g) + 0.1


def make(name: str, spec: ModelSpec = SPEC, **kw: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, spec, **{**TINY[name], **kw})


def batch(spec: ModelSpec = SPEC, b: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, spec.input_len, spec.num_nodes, spec.in_channels, generator=g)
    y = torch.randn(b, spec.horizon, spec.num_nodes, spec.out_channels, generator=g)
    return Batch(
        x=x, y=y, y_scaled=y, mask=torch.ones(b, spec.horizon, spec.num_nodes, dtype=torch.bool),
        start=torch.arange(b), slot=torch.zeros(b, spec.horizon, dtype=torch.long),
    )  # fmt: skip


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registry_names():
    assert MODELS["stgcn"] is STGCN and MODELS["dcrnn"] is DCRNN and MODELS["gwnet"] is GraphWaveNet


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_shapes_backward_and_dense_graph(name):
    model = make(name)
    ei, ew = graph()
    bt = batch()
    out = model(bt.x, ei, ew)
    assert out.shape == (4, SPEC.horizon, N, SPEC.out_channels)
    out.pow(2).mean().backward()
    # Graph WaveNet's last layer reaches the output through its skip only (as the reference)
    last = f"layers.{len(model.layers) - 1}." if name == "gwnet" else None
    for pname, p in model.named_parameters():
        if last and pname.startswith(last) and not pname.startswith((last + "tcn", last + "skip")):
            assert p.grad is None, pname
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model.eval()
    from stgnn.nn import to_dense_adjacency

    torch.testing.assert_close(model(bt.x, to_dense_adjacency(ei, ew, N)), model(bt.x, ei, ew), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_eval_is_deterministic(name):
    model = make(name, dropout=0.5) if name != "dcrnn" else make(name)
    model.eval()
    ei, ew = graph()
    bt = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(bt.x, ei, ew), model(bt.x, ei, ew), rtol=0, atol=0)


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_overfits_a_tiny_batch(name):
    model = make(name)
    ei, ew = graph()
    bt = batch(b=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = (model(bt.x, ei, ew) - bt.y).pow(2).mean()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first / 10, (first, loss.item())


def permute_graph(ei: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return inv[ei]  # node perm[i] of the new order is old node i -> new id inv[old]


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("stgcn", dict(per_node_norm=False)),
        ("stgcn", dict(graph_conv="first_order", per_node_norm=False)),
        ("dcrnn", {}),
        ("dcrnn", dict(reference_compat=True)),
    ],
)
def test_node_permutation_equivariance(name, kw):
    model = make(name, **kw).double().eval()
    with torch.no_grad():  # make sure no parameter is at a symmetric initial value
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ei, ew = graph()
    x = batch().x.double()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    out = model(x, ei, ew.double())
    out_p = model(x[:, :, perm], permute_graph(ei, perm), ew.double())
    torch.testing.assert_close(out_p, out[:, :, perm])


def test_stgcn_per_node_norm_is_equivariant_with_permuted_norm_parameters():
    model = make("stgcn").double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ei, ew = graph()
    x = batch().x.double()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    out = model(x, ei, ew.double())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                assert p.shape[0] == N
                p.copy_(p[perm])
    out_p = model(x[:, :, perm], permute_graph(ei, perm), ew.double())
    torch.testing.assert_close(out_p, out[:, :, perm])


def test_gwnet_is_not_permutation_equivariant_but_has_per_node_embeddings():
    model = make("gwnet").eval()
    assert model.adaptive is not None and model.adaptive.source_embedding.shape == (N, 4)


# ----------------------------------------------------------------------- parameter counts
def test_stgcn_parameter_counts():
    ref_spec = ModelSpec(num_nodes=207, in_channels=1, out_channels=1, input_len=12, horizon=1)
    ref = STGCN(ref_spec, single_step=True, reference_compat=True)
    assert n_params(ref) == 244_609  # hazdzz/STGCN STGCNChebGraphConv, METR-LA defaults
    assert n_params(STGCN(ref_spec, single_step=True)) == 244_609 - 14_784  # without dead aligns
    multi = STGCN(ModelSpec(207, 1, 1, 12, 12), reference_compat=True)
    assert n_params(multi) - n_params(ref) == 128 * 11 + 11  # only the last FC grows
    first = STGCN(ref_spec, single_step=True, reference_compat=True, graph_conv="first_order")
    assert n_params(first) == 243_585  # hazdzz STGCNGraphConv
    shared = STGCN(ref_spec, single_step=True, reference_compat=True, per_node_norm=False)
    assert n_params(ref) - n_params(shared) == 105_984 - 512


def test_dcrnn_parameter_count():
    assert n_params(DCRNN(ModelSpec(207, 2, 1, 12, 12))) == 372_353  # chnsh/DCRNN_PyTorch


def test_gwnet_parameter_count():
    spec = ModelSpec(207, 2, 1, 12, 12)
    assert n_params(GraphWaveNet(spec, reference_compat=True)) == 309_400  # nnzhan/Graph-WaveNet
    assert n_params(GraphWaveNet(spec)) == 309_400 - 8 * (32 * 32 + 32)  # without dead residuals


# --------------------------------------------------------------------------- model specifics
def test_stgcn_single_step_iterates_the_one_step_network():
    model = make("stgcn", single_step=True).eval()
    ei, ew = graph()
    x = batch().x
    out = model(x, ei, ew)
    assert out.shape == (4, 3, N, 1)
    window = x
    for h in range(3):
        y = model._one_pass(window, ei, ew)
        torch.testing.assert_close(out[:, h : h + 1], y)
        window = torch.cat([window[:, 1:], torch.cat([y, window[:, -1:, :, 1:]], -1)], 1)


def test_stgcn_rejects_short_input_and_bad_shapes():
    with pytest.raises(ValueError, match="too short"):
        STGCN(ModelSpec(N, 1, 1, input_len=8, horizon=3))
    model = make("stgcn")
    ei, ew = graph()
    with pytest.raises(ValueError, match="expected x"):
        model(torch.randn(2, 12, N, 3), ei, ew)


def test_gwnet_pads_short_and_crops_long_inputs():
    model = make("gwnet").eval()
    ei, ew = graph()
    x = torch.randn(2, 20, N, 2)
    torch.testing.assert_close(model(x, ei, ew), model(x[:, -13:], ei, ew))
    short = model(x[:, -6:], ei, ew)
    padded = torch.cat([torch.zeros(2, 7, N, 2), x[:, -6:]], 1)
    torch.testing.assert_close(short, model(padded, ei, ew))


def test_gwnet_sparse_adaptive_option_runs():
    model = make("gwnet", adaptive_top_k=2)
    ei, ew = graph()
    out = model(batch().x, ei, ew)
    out.sum().backward()
    assert model.adaptive is not None and model.adaptive.source_embedding.grad is not None


def test_dcrnn_no_teacher_forcing_in_eval():
    model = make("dcrnn")
    ei, ew = graph()
    bt = batch()
    other = torch.randn_like(bt.y)
    model.eval()
    base = model(bt.x, ei, ew)
    torch.testing.assert_close(model(bt.x, ei, ew, targets=bt.y, teacher_forcing=1.0), base)
    torch.testing.assert_close(model(bt.x, ei, ew, targets=other, teacher_forcing=1.0), base)
    torch.testing.assert_close(model.forecast(bt, ei, ew, teacher_forcing=1.0), base)
    model.train()
    free = model(bt.x, ei, ew)
    torch.testing.assert_close(free, base)  # no dropout: train == eval without targets
    forced = model(bt.x, ei, ew, targets=bt.y, teacher_forcing=1.0)
    assert not torch.allclose(forced, base)
    # the first step never sees targets; later ones do when forced
    torch.testing.assert_close(forced[:, 0], base[:, 0])
    torch.testing.assert_close(model.forecast(bt, ei, ew, teacher_forcing=1.0), forced)
    torch.testing.assert_close(model.forecast(bt, ei, ew, teacher_forcing=0.0), base)


def test_dcrnn_rejects_bad_targets():
    model = make("dcrnn")
    ei, ew = graph()
    with pytest.raises(ValueError, match="targets"):
        model(batch().x, ei, ew, targets=torch.zeros(4, 2, N, 1), teacher_forcing=1.0)


def test_models_run_on_pyg_data_and_another_graph():
    from torch_geometric.data import Data

    ei, ew = graph()
    data = Data(edge_index=ei, edge_attr=ew[:, None], num_nodes=N)
    for name in ("stgcn", "dcrnn"):
        kw = dict(per_node_norm=False) if name == "stgcn" else {}
        model = make(name, **kw).eval()
        x = batch().x
        torch.testing.assert_close(model(x, data.edge_index, data.edge_attr), model(x, ei, ew))
        # a trained model runs on a graph of another size (no per-node parameters)
        x7 = torch.randn(2, 12, 7, 2)
        assert model(x7, *graph(7)).shape == (2, 3, 7, 1)


def test_dcrnn_checkpoint_same_numbers():
    """Gradient checkpointing per step (a memory option) gives the same outputs and gradients."""
    torch.manual_seed(0)
    spec = ModelSpec(num_nodes=5, in_channels=2, out_channels=1, input_len=4, horizon=3)
    plain = DCRNN(spec, hidden_channels=6, reference_compat=True).double()
    ckpt = DCRNN(spec, hidden_channels=6, reference_compat=True, checkpoint=True).double()
    ckpt.load_state_dict(plain.state_dict())
    ei = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 0, 2]])
    x = torch.randn(3, 4, 5, 2, dtype=torch.float64)
    y = torch.randn(3, 3, 5, 1, dtype=torch.float64)
    outs, grads = [], []
    for model in (plain, ckpt):
        model.train()
        torch.manual_seed(1)  # same teacher-forcing draws
        out = model(x, ei, targets=y, teacher_forcing=0.5)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(outs[0], outs[1])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # no gradient: the plain path
        torch.testing.assert_close(ckpt.eval()(x, ei), plain.eval()(x, ei))


def test_stgcn_one_step_training_predicts_each_step_from_the_true_window():
    """``single_step_training="one_step"`` (the paper's training): while training, output ``h`` is
    the one-step prediction from the input shifted by ``h`` steps with the true values appended."""
    model = make("stgcn", single_step=True, single_step_training="one_step").train()
    ei, ew = graph()
    bt = batch()
    out = model.forecast(bt, ei, ew)
    assert out.shape == (4, 3, N, 1)
    window = bt.x
    for h in range(3):
        torch.testing.assert_close(out[:, h : h + 1], model._one_pass(window, ei, ew))
        true_next = torch.cat([bt.y_scaled[:, h : h + 1], bt.x[:, -1:, :, 1:]], -1)
        window = torch.cat([window[:, 1:], true_next], 1)
    # the targets reach steps h >= 1 only, and only while training
    other = Batch(**{**vars(bt), "y_scaled": bt.y_scaled + 1.0})
    changed = model.forecast(other, ei, ew)
    torch.testing.assert_close(changed[:, 0], out[:, 0])
    assert not torch.allclose(changed[:, 1:], out[:, 1:])
    model.eval()
    torch.testing.assert_close(model.forecast(other, ei, ew), model(bt.x, ei, ew))  # iterated at inference
    # the default keeps the rollout loss: training forecasts ignore the targets
    rollout = make("stgcn", single_step=True).train()
    torch.testing.assert_close(rollout.forecast(other, ei, ew), rollout(bt.x, ei, ew))


def test_stgcn_one_step_training_rejects_bad_settings():
    with pytest.raises(ValueError, match="needs single_step=True"):
        make("stgcn", single_step_training="one_step")
    with pytest.raises(ValueError, match="'rollout' or 'one_step'"):
        make("stgcn", single_step=True, single_step_training="teacher")
    model = make("stgcn", single_step=True)
    ei, ew = graph()
    with pytest.raises(ValueError, match=r"expected targets \[4, 3, 5, 1\]"):
        model(batch().x, ei, ew, targets=torch.zeros(4, 2, N, 1))
    with pytest.raises(ValueError, match="need single_step=True"):
        make("stgcn")(batch().x, ei, ew, targets=batch().y_scaled)
