# mypy: disable-error-code="misc"
"""Build the authors' reference models from their checkouts (shared by parity.py and benchmark.py).

The reference repositories are *not* part of this project and nothing from them is copied here:
each builder imports the model from a checkout whose path is passed in (hazdzz/STGCN,
chnsh/DCRNN_PyTorch, nnzhan/Graph-WaveNet), with the few adaptations today's libraries need:

* STGCN: the graph shift operator is built with the reference's own ``calc_gso`` /
  ``calc_chebynet_gso`` and passed dense, as hazdzz's ``main.py`` does.
* DCRNN: ``lib/utils.py`` imports TensorFlow (unused by the PyTorch model), so a stub module
  stands in while importing.  With scipy >= 1.13 (1.17 here) ``DCGRUCell._build_sparse_matrix``
  re-sorts the COO indices but not the values (scipy no longer returns sorted COO), which
  scrambles the supports; :func:`dcrnn_reference` replaces them with the matrices the reference's
  formula intends (same sparsity, so the same cost) and reports the as-built error.
* Graph WaveNet: ``model.py`` creates ``nn.Conv1d`` layers with 2-D kernels, which torch 2.x
  rejects; ``nn.Conv1d`` is ``nn.Conv2d`` while the model is built (the same layers torch 1.x built).

Each builder comes with the key mapping of the reference ``state_dict`` onto stgnn's (see
parity.py's docstring) and a call adapter from stgnn's ``[B, T, N, F]`` input layout.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "REFERENCES",
    "dcrnn_call",
    "dcrnn_key",
    "dcrnn_reference",
    "gwnet_call",
    "gwnet_key",
    "gwnet_reference",
    "random_edges",
    "random_graph",
    "reference_path",
    "stgcn_call",
    "stgcn_key",
    "stgcn_reference",
]

#: the reference implementations, by the names used on the command lines
REFERENCES = {
    "stgcn": "hazdzz/STGCN",
    "dcrnn": "chnsh/DCRNN_PyTorch",
    "gwnet": "nnzhan/Graph-WaveNet",
}

_REF_TOPLEVEL = ("model", "lib", "script", "util", "engine")


@contextlib.contextmanager
def reference_path(path: Path | str) -> Iterator[None]:
    """Import from ``path`` and forget its modules afterwards (the repos reuse names)."""

    def purge() -> None:
        for name in list(sys.modules):
            if name.split(".")[0] in _REF_TOPLEVEL:
                del sys.modules[name]

    purge()
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        sys.path.remove(str(path))
        purge()


def random_edges(n: int, deg: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(source, target, weight)`` of a random directed graph: ``deg`` distinct out-neighbours
    per node (weights uniform in [0.1, 1)) plus a unit self-loop on every node (replacing a drawn
    one), sorted by (source, target); memory ``O(n deg)``."""
    src = np.repeat(np.arange(n), deg)
    dst = np.empty(n * deg, dtype=np.int64)
    w = np.empty(n * deg, dtype=np.float32)
    for i in range(n):
        dst[i * deg : (i + 1) * deg] = rng.choice(n, size=deg, replace=False)
        w[i * deg : (i + 1) * deg] = rng.uniform(0.1, 1.0, size=deg)
    keep = src != dst
    src = np.concatenate([src[keep], np.arange(n)])
    dst = np.concatenate([dst[keep], np.arange(n)])
    w = np.concatenate([w[keep], np.ones(n, dtype=np.float32)])
    order = np.lexsort((dst, src))
    return src[order], dst[order], w[order]


def random_graph(n: int, deg: int, rng: np.random.Generator) -> np.ndarray:
    """Dense ``[n, n]`` adjacency of :func:`random_edges` (the same draws)."""
    src, dst, w = random_edges(n, deg, rng)
    out = np.zeros((n, n), dtype=np.float32)
    out[src, dst] = w
    return out


# ------------------------------------------------------------------------------------ STGCN
def stgcn_reference(
    ref_dir: Path | str,
    w: np.ndarray,
    *,
    conv: str = "cheb",
    dtype: torch.dtype = torch.float32,
    n_his: int = 12,
    droprate: float = 0.5,
) -> nn.Module:
    """hazdzz/STGCN ``STGCNChebGraphConv`` (``conv="cheb"``) or ``STGCNGraphConv``
    (``"first_order"``) at the paper configuration (Kt = Ks = 3, blocks 64-16-64 x 2, output
    128-128, one input and one output feature, GLU) on the dense adjacency ``w``."""
    n = w.shape[0]
    with reference_path(ref_dir):
        ref_models = importlib.import_module("model.models")
        utility = importlib.import_module("script.utility")
        gso_type, cls_name = {
            "cheb": ("sym_norm_lap", "STGCNChebGraphConv"),
            "first_order": ("sym_renorm_adj", "STGCNGraphConv"),
        }[conv]
        gso = utility.calc_gso(w, gso_type)
        if conv == "cheb":
            gso = utility.calc_chebynet_gso(gso)
        gso_t = torch.from_numpy(gso.toarray()).to(dtype)  # hazdzz: dense, cast to float32
        ns = SimpleNamespace(
            Kt=3, Ks=3, n_his=n_his, act_func="glu",
            graph_conv_type="cheb_graph_conv" if conv == "cheb" else "graph_conv",
            gso=gso_t, enable_bias=True, droprate=droprate,
        )  # fmt: skip
        blocks = [[1], [64, 16, 64], [64, 16, 64], [128, 128], [1]]
        return getattr(ref_models, cls_name)(ns, blocks, n).to(dtype)


def stgcn_key(name: str) -> str:
    """hazdzz/STGCN ``state_dict`` key -> stgnn ``STGCN(reference_compat=True)`` key."""
    rules = [
        (r"st_blocks\.(\d+)\.tmp_conv(\d)\.causal_conv\.", r"blocks.\1.temporal\2."),
        (r"st_blocks\.(\d+)\.tmp_conv(\d)\.align\.align_conv\.", r"blocks.\1.temporal\2.align.conv."),
        (r"st_blocks\.(\d+)\.graph_conv\.align\.align_conv\.", r"blocks.\1.align.conv."),
        (r"st_blocks\.(\d+)\.graph_conv\.(cheb_graph_conv|graph_conv)\.", r"blocks.\1.graph_conv."),
        (r"st_blocks\.(\d+)\.tc2_ln\.", r"blocks.\1.norm."),
        (r"output\.tmp_conv1\.causal_conv\.", "output.temporal."),
        (r"output\.tmp_conv1\.align\.align_conv\.", "output.temporal.align.conv."),
        (r"output\.tc1_ln\.", "output.norm."),
    ]
    for pat, rep in rules:
        if re.match(pat, name):
            return re.sub(pat, rep, name)
    return name


def stgcn_call(ref: nn.Module, x: Tensor) -> Tensor:
    """``x [B, T, N, 1]`` -> the reference's one-step forecast ``[B, 1, N, 1]``."""
    return ref(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


# ------------------------------------------------------------------------------------ DCRNN
def dcrnn_reference(
    ref_dir: Path | str,
    w: np.ndarray,
    *,
    dtype: torch.dtype = torch.float32,
    input_dim: int = 2,
    output_dim: int = 1,
    seq_len: int = 12,
    horizon: int = 12,
    fix_supports: bool = True,
) -> tuple[nn.Module, list[float]]:
    """chnsh/DCRNN_PyTorch ``DCRNNModel`` at the paper configuration (2 x 64 units, K = 2,
    ``dual_random_walk``, curriculum learning with ``cl_decay_steps = 2000``).

    Its parameters are created lazily; one forward on zeros materialises them.  Returns the model
    and, per support, ``max|as built - intended|`` (non-zero where scipy's unsorted COO scrambles
    ``_build_sparse_matrix``); with ``fix_supports`` the intended matrices are used.
    """
    n = w.shape[0]
    # lib/utils imports tensorflow (unused by the PyTorch model): a stub while importing only,
    # since einops probes sys.modules["tensorflow"]
    stub = "tensorflow" not in sys.modules
    if stub:
        sys.modules["tensorflow"] = types.ModuleType("tensorflow")
    with contextlib.ExitStack() as stack:
        if stub:
            stack.callback(sys.modules.pop, "tensorflow", None)
        stack.enter_context(reference_path(ref_dir))
        ref_mod = importlib.import_module("model.pytorch.dcrnn_model")
        # the reference picks CUDA at import when present; build on the CPU (see to_device)
        ref_mod.device = torch.device("cpu")
        importlib.import_module("model.pytorch.dcrnn_cell").device = torch.device("cpu")
        kw = dict(
            num_nodes=n, rnn_units=64, max_diffusion_step=2, filter_type="dual_random_walk",
            num_rnn_layers=2, input_dim=input_dim, output_dim=output_dim, seq_len=seq_len,
            horizon=horizon, use_curriculum_learning=True, cl_decay_steps=2000,
        )  # fmt: skip
        adj = w.astype(np.float64) if dtype == torch.float64 else w
        ref = ref_mod.DCRNNModel(adj, logging.getLogger("dcrnn-ref"), **kw).eval()
        utils = importlib.import_module("lib.utils")
        intended = [
            utils.calculate_random_walk_matrix(adj).T.tocoo(),
            utils.calculate_random_walk_matrix(adj.T).T.tocoo(),
        ]
        cells = list(ref.encoder_model.dcgru_layers) + list(ref.decoder_model.dcgru_layers)
        errors = []
        for s, m in zip(cells[0]._supports, intended, strict=True):
            diff = (s.to(torch.float64) - _torch_coo(m, torch.float64)).coalesce().values()
            errors.append(float(diff.abs().max()) if diff.numel() else 0.0)
        if fix_supports:
            fixed = [_torch_coo(m, dtype) for m in intended]
            for cell in cells:
                cell._supports = fixed
        ref.to(dtype)
        with torch.no_grad():  # materialise the lazily created parameters
            ref(torch.zeros(seq_len, 1, n * input_dim, dtype=dtype))
        ref.to(dtype)
    return ref, errors


def _torch_coo(m: object, dtype: torch.dtype) -> Tensor:
    row, col, data, shape = m.row, m.col, m.data, m.shape  # type: ignore[attr-defined]
    idx = torch.from_numpy(np.vstack([row, col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(np.asarray(data)), shape).coalesce().to(dtype)


def dcrnn_key(name: str, hidden: int = 64) -> str:
    """chnsh/DCRNN_PyTorch ``state_dict`` key -> stgnn ``DCRNN`` key."""
    m = re.match(r"(encoder|decoder)_model\.dcgru_layers\.(\d+)\.gconv_(weight|biases)_(.*)", name)
    if m:
        part, layer, kind, shape = m.groups()
        out = int(shape.strip("()").split(",")[-1])
        conv = "gate_conv" if out == 2 * hidden else "candidate_conv"
        return f"{part}.{layer}.{conv}.{'weight' if kind == 'weight' else 'bias'}"
    return name.replace("decoder_model.projection_layer.", "projection.")


def dcrnn_call(ref: nn.Module, x: Tensor, labels: Tensor | None = None, batches_seen: int | None = None) -> Tensor:
    """``x [B, T, N, F]`` (and ``labels [B, H, N, F_out]`` for curriculum learning) -> ``[B, H, N, F_out]``."""
    b, t, n, f = x.shape
    lab = None
    if labels is not None:
        lab = labels.permute(1, 0, 2, 3).reshape(labels.size(1), b, -1)
    out = ref(x.permute(1, 0, 2, 3).reshape(t, b, n * f), lab, batches_seen)
    return out.reshape(out.size(0), b, n, -1).permute(1, 0, 2, 3)


# ------------------------------------------------------------------------------------ GWNet
def gwnet_reference(
    ref_dir: Path | str,
    w: np.ndarray,
    *,
    dtype: torch.dtype = torch.float32,
    in_dim: int = 2,
    out_dim: int = 12,
    dropout: float = 0.3,
) -> nn.Module:
    """nnzhan/Graph-WaveNet ``gwnet`` at the paper configuration (``--gcn_bool --addaptadj
    --randomadj``, ``doubletransition`` supports, 32/32/256/512 channels)."""
    n = w.shape[0]
    with reference_path(ref_dir):
        util = importlib.import_module("util")
        ref_mod = importlib.import_module("model")
        supports = [
            torch.tensor(np.asarray(util.asym_adj(w)), dtype=dtype),
            torch.tensor(np.asarray(util.asym_adj(np.transpose(w))), dtype=dtype),
        ]
        conv1d = nn.Conv1d
        nn.Conv1d = nn.Conv2d  # type: ignore[assignment]  # the reference's Conv1d with 2-D kernels
        try:
            ref = ref_mod.gwnet(
                "cpu", n, dropout, supports=supports, gcn_bool=True, addaptadj=True, aptinit=None,
                in_dim=in_dim, out_dim=out_dim, residual_channels=32, dilation_channels=32,
                skip_channels=256, end_channels=512,
            ).to(dtype)  # fmt: skip
        finally:
            nn.Conv1d = conv1d
    return ref


def to_device(ref: nn.Module, device: torch.device | str) -> nn.Module:
    """Move a reference model built by this module to ``device``, with the tensors it keeps outside
    its parameters: hazdzz's ``gso`` attributes, Graph WaveNet's ``supports`` list, DCRNN's
    ``_supports`` lists and the module-level ``device`` DCRNN creates its zero states on."""
    device = torch.device(device)
    ref.to(device)
    for module in ref.modules():
        if isinstance(getattr(module, "gso", None), Tensor):
            module.gso = module.gso.to(device)
        for name in ("supports", "_supports"):
            value = getattr(module, name, None)
            if isinstance(value, list) and all(isinstance(t, Tensor) for t in value):
                setattr(module, name, [t.to(device) for t in value])
        init_globals = getattr(type(module).__init__, "__globals__", {})
        if isinstance(init_globals.get("device"), torch.device):  # DCRNN's module-level device
            init_globals["device"] = device
    return ref


def gwnet_key(name: str) -> str | None:
    """nnzhan/Graph-WaveNet ``state_dict`` key -> stgnn ``GraphWaveNet(reference_compat=True)`` key.

    ``filter_convs.{i}`` and ``gate_convs.{i}`` both map onto ``layers.{i}.tcn`` (concatenated,
    filter first, which is their ``state_dict`` order).
    """
    rules = [
        (r"nodevec1$", "adaptive.source_embedding"),
        (r"nodevec2$", "adaptive.target_embedding"),
        (r"(filter|gate)_convs\.(\d+)\.", r"layers.\2.tcn."),
        (r"skip_convs\.(\d+)\.", r"layers.\1.skip_conv."),
        (r"residual_convs\.(\d+)\.", r"layers.\1.residual_conv."),
        (r"gconv\.(\d+)\.mlp\.mlp\.", r"layers.\1.mlp."),
        (r"bn\.(\d+)\.", r"layers.\1.bn."),
        (r"end_conv_(\d)\.", r"end_conv\1."),
    ]
    for pat, rep in rules:
        if re.match(pat, name):
            return re.sub(pat, rep, name)
    return name


def gwnet_call(ref: nn.Module, x: Tensor) -> Tensor:
    """``x [B, T, N, F]`` -> ``[B, out_dim, N, 1]`` (the reference reads ``[B, F, N, T]``)."""
    return ref(x.permute(0, 3, 2, 1))
