# mypy: disable-error-code="misc"
# (lambdas with default arguments bind loop variables; mypy cannot infer their types)
"""Numerical parity of stgnn's STGCN / DCRNN / Graph WaveNet with the authors' reference code.

The reference repositories are *not* part of this project; check them out anywhere and pass
their paths (nothing from them is copied into stgnn)::

    python experiments/parity.py \
        --ref-dir stgcn=/path/to/hazdzz/STGCN \
        --ref-dir dcrnn=/path/to/chnsh/DCRNN_PyTorch \
        --ref-dir gwnet=/path/to/nnzhan/Graph-WaveNet  [--nodes 207 --batch 8 --dtype float64 --time]

The reference models are built by ``experiments/references.py`` (shared with benchmark.py:
import adaptations, the scipy-1.17 support fix, key mappings, call adapters).
For each model the script builds the reference and ours on the same random directed, weighted
graph (self-loops included, like METR-LA's ``adj_mx``), perturbs every reference parameter (so
constant initialisations such as LayerNorm ones or DCRNN's bias 1.0 do not hide mapping
mistakes), copies the weights with the key mapping below (asserting the mapping is one-to-one
over the whole ``state_dict``), and prints the max abs difference of the outputs (eval mode) and
of the input/parameter gradients of ``out.sum()``.

Key mappings (reference -> stgnn; tensors are reshaped, never permuted, except where noted):

STGCN (hazdzz/STGCN ``STGCNChebGraphConv`` / ``STGCNGraphConv``; ours
``STGCN(spec, single_step=True, reference_compat=True)`` with ``horizon=1``)::

    st_blocks.{l}.tmp_conv{1,2}.causal_conv.{weight, bias} -> blocks.{l}.temporal{1,2}.{weight, bias}
                                                   ([2c, c_in, Kt, 1] -> [2c, c_in, Kt])
    st_blocks.{l}.tmp_conv{1,2}.align.align_conv.*  -> blocks.{l}.temporal{1,2}.align.conv.*  ([o,i,1,1] -> [o,i])
    st_blocks.{l}.graph_conv.align.align_conv.*    -> blocks.{l}.align.conv.*
    st_blocks.{l}.graph_conv.cheb_graph_conv.*     -> blocks.{l}.graph_conv.*   (graph_conv.graph_conv.* likewise)
    st_blocks.{l}.tc2_ln.*                         -> blocks.{l}.norm.*
    output.tmp_conv1.{causal_conv,align.align_conv} -> output.temporal.{.,align.conv}
    output.tc1_ln.* -> output.norm.*;  output.fc{1,2}.* -> output.fc{1,2}.*

DCRNN (chnsh/DCRNN_PyTorch ``DCRNNModel``, dual_random_walk; ours ``DCRNN(spec,
reference_compat=True)``; reference parameters are created lazily, so one forward runs first)::

    {encoder,decoder}_model.dcgru_layers.{l}.gconv_weight_((C+H)*M, 2H) -> {encoder,decoder}.{l}.gate_conv.weight
    {encoder,decoder}_model.dcgru_layers.{l}.gconv_biases_2H            -> {encoder,decoder}.{l}.gate_conv.bias
    {encoder,decoder}_model.dcgru_layers.{l}.gconv_weight_((C+H)*M, H)  -> {encoder,decoder}.{l}.candidate_conv.weight
    {encoder,decoder}_model.dcgru_layers.{l}.gconv_biases_H             -> {encoder,decoder}.{l}.candidate_conv.bias
    decoder_model.projection_layer.* -> projection.*

Graph WaveNet (nnzhan/Graph-WaveNet ``gwnet`` with ``Conv1d`` replaced by ``Conv2d`` while it is
built, as torch 2.x requires; ours ``GraphWaveNet(spec, reference_compat=True)``)::

    start_conv.* -> start_conv.*;  nodevec1 -> adaptive.source_embedding;  nodevec2 -> adaptive.target_embedding
    cat(filter_convs.{i}.weight, gate_convs.{i}.weight) -> layers.{i}.tcn.weight   (biases likewise)
    skip_convs.{i}.* -> layers.{i}.skip_conv.*;  residual_convs.{i}.* -> layers.{i}.residual_conv.*
    gconv.{i}.mlp.mlp.* -> layers.{i}.mlp.*;  bn.{i}.* -> layers.{i}.bn.* (running statistics too)
    end_conv_1.* -> end_conv1.*;  end_conv_2.* -> end_conv2.*

In float32 an input/parameter-gradient difference can be dominated by a ReLU whose
pre-activation lies within roundoff of 0 (e.g. -2e-7) and flips side: the outputs still agree to
~1e-6 while one gradient entry differs by O(1e-2).  The float64 run (``--dtype float64``) is the
meaningful gradient comparison.

``--time`` also times forward+backward of both implementations at ``--time-batch`` (default 64),
in the same process (same allocator settings).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from stgnn.models import ModelSpec
from stgnn.models.dcrnn import DCRNN
from stgnn.models.gwnet import GraphWaveNet
from stgnn.models.stgcn import STGCN
from stgnn.nn import to_edge_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
from references import (  # noqa: E402  (a sibling script module, not part of the package)
    dcrnn_call,
    dcrnn_key,
    dcrnn_reference,
    gwnet_call,
    gwnet_key,
    gwnet_reference,
    random_graph,
    stgcn_call,
    stgcn_key,
    stgcn_reference,
)


def perturb(module: nn.Module, scale: float = 0.1) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def copy_weights(ref: nn.Module, ours: nn.Module, mapping: Callable[[str], str | None], include_buffers: bool) -> None:
    """Copy every reference tensor onto ours; assert the mapping covers both sides exactly."""
    ref_sd = ref.state_dict() if include_buffers else dict(ref.named_parameters())
    our_sd = ours.state_dict() if include_buffers else dict(ours.named_parameters())
    done: dict[str, list[Tensor]] = {}
    for name, t in ref_sd.items():
        key = mapping(name)
        if key is None:
            continue
        if key not in our_sd:
            raise KeyError(f"{name} -> {key}: no such tensor in ours")
        done.setdefault(key, []).append(t)
    missing = set(our_sd) - set(done)
    if missing:
        raise KeyError(f"ours has unmapped tensors: {sorted(missing)}")
    with torch.no_grad():
        for key, parts in done.items():
            src = parts[0] if len(parts) == 1 else torch.cat(parts)
            our_sd[key].copy_(src.reshape(our_sd[key].shape))


GradPairs = Sequence[tuple[str, Any, Any]]  # (name, reference tensor, our tensor) with .grad


def compare(
    name: str,
    ref_fn: Callable[[Tensor], Tensor],
    our_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    grads: GradPairs | Callable[[], GradPairs],
) -> dict[str, float]:
    x_ref = x.clone().requires_grad_(True)
    x_our = x.clone().requires_grad_(True)
    out_ref = ref_fn(x_ref)
    out_our = our_fn(x_our)
    diff = (out_ref - out_our).abs().max().item()
    out_ref.sum().backward()
    out_our.sum().backward()
    gx = (x_ref.grad - x_our.grad).abs().max().item()  # type: ignore[operator]
    gx_scale = x_ref.grad.abs().max().item()  # type: ignore[union-attr]
    pairs = grads() if callable(grads) else grads
    # max|grad diff| over all parameters / max|grad| over all parameters (a per-parameter ratio
    # is meaningless for parameters whose exact gradient is 0, e.g. a bias right before a
    # training-mode batch norm)
    both = [(a.grad, b.grad) for _, a, b in pairs if a.grad is not None and b.grad is not None]
    one_sided = [k for k, a, b in pairs if (a.grad is None) != (b.grad is None)]
    if one_sided:
        raise AssertionError(f"gradient on one side only: {one_sided}")
    gmax = max((ga.abs().max().item() for ga, _ in both), default=float("nan"))
    gp = max(((ga - gb.reshape(ga.shape)).abs().max().item() for ga, gb in both), default=float("nan")) / gmax
    scale = out_ref.abs().max().item()
    print(
        f"  {name:44s} max|out diff| {diff:.2e} (max|out| {scale:.3g})  "
        f"max|dx diff| {gx:.2e} (max|dx| {gx_scale:.3g})  max|dparam diff|/max|dparam| {gp:.2e}"
    )
    return {"out": diff, "dx": gx, "dparam": gp}


def timed(fn: Callable[[], None], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def time_pair(
    label: str, ref_fn: Callable[[Tensor], Tensor], our_fn: Callable[[Tensor], Tensor], x: Tensor, reps: int
) -> None:
    def step(fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def run() -> None:
            fn(x).sum().backward()

        return run

    # interleaved, best of ``reps`` each (the machine may be shared)
    tr = to = float("inf")
    step(ref_fn)()
    step(our_fn)()
    for _ in range(reps):
        tr = min(tr, timed(step(ref_fn), 1))
        to = min(to, timed(step(our_fn), 1))
    print(f"  time fwd+bwd {label}: reference {tr:.0f} ms, stgnn {to:.0f} ms ({tr / to:.2f}x)")


# ------------------------------------------------------------------------------------ STGCN
def stgcn_parity(ref_dir: Path, w: np.ndarray, args: argparse.Namespace) -> None:
    n = w.shape[0]
    for conv in ("cheb", "first_order"):
        torch.manual_seed(args.seed)
        ref = stgcn_reference(ref_dir, w, conv=conv, dtype=args.dtype).eval()
        ours = STGCN(
            ModelSpec(n, 1, 1, 12, 1), single_step=True, reference_compat=True,
            graph_conv=conv,
        ).to(args.dtype).eval()  # fmt: skip
        n_ref = sum(p.numel() for p in ref.parameters())
        n_our = sum(p.numel() for p in ours.parameters())
        print(f"STGCN[{conv}] parameters: reference {n_ref:,}  stgnn {n_our:,}")
        perturb(ref)
        copy_weights(ref, ours, stgcn_key, include_buffers=True)
        ei, ew = to_edge_index(w)
        ew = ew.to(args.dtype)
        x = torch.randn(args.batch, 12, n, 1, dtype=args.dtype)
        ref_params = dict(ref.named_parameters())
        our_params = dict(ours.named_parameters())
        pairs = [(k, ref_params[k], our_params[stgcn_key(k)]) for k in ref_params]
        compare(
            f"STGCN[{conv}] (hazdzz) vs ours",
            lambda v, ref=ref: stgcn_call(ref, v),
            lambda v, ours=ours, ei=ei, ew=ew: ours(v, ei, ew),
            x,
            pairs,
        )
        if args.time and conv == "cheb":
            xt = torch.randn(args.time_batch, 12, n, 1, dtype=args.dtype)
            time_pair(
                f"STGCN B={args.time_batch}",
                lambda v, ref=ref: stgcn_call(ref, v),
                lambda v, ours=ours, ei=ei, ew=ew: ours(v, ei, ew),
                xt,
                args.reps,
            )


# ------------------------------------------------------------------------------------ DCRNN
def dcrnn_parity(ref_dir: Path, w: np.ndarray, args: argparse.Namespace) -> None:
    n = w.shape[0]
    torch.manual_seed(args.seed)
    ref, errors = dcrnn_reference(ref_dir, w, dtype=args.dtype)
    for err in errors:
        print(
            f"  reference DCGRUCell._build_sparse_matrix vs its formula: max|diff| {err:.3g}"
            + (
                "  <- values not reordered with the indices (scipy returns unsorted COO);"
                " parity uses the intended matrix"
                if err > 1e-6
                else ""
            )
        )
    perturb(ref)
    ei, ew = to_edge_index(w)
    ew = ew.to(args.dtype)
    x = torch.randn(args.batch, 12, n, 2, dtype=args.dtype)

    def ref_fn(v: Tensor) -> Tensor:
        return dcrnn_call(ref, v)

    ref_params = dict(ref.named_parameters())
    for compat in (True, False):
        torch.manual_seed(args.seed)
        ours = DCRNN(ModelSpec(n, 2, 1, 12, 12), reference_compat=compat).to(args.dtype).eval()
        if compat:
            n_ref = sum(p.numel() for p in ref.parameters())
            n_our = sum(p.numel() for p in ours.parameters())
            print(f"DCRNN parameters: reference {n_ref:,}  stgnn {n_our:,}")
        copy_weights(ref, ours, dcrnn_key, include_buffers=True)
        our_params = dict(ours.named_parameters())
        ref.zero_grad()
        compare(
            f"DCRNN (chnsh) vs ours reference_compat={compat}",
            ref_fn,
            lambda v, ours=ours: ours(v, ei, ew),
            x,
            [(k, p, our_params[dcrnn_key(k)]) for k, p in ref_params.items()],
        )
        if args.time and compat:
            xt = torch.randn(args.time_batch, 12, n, 2, dtype=args.dtype)
            time_pair(
                f"DCRNN B={args.time_batch}", ref_fn, lambda v, ours=ours: ours(v, ei, ew), xt, max(1, args.reps // 2)
            )


# ------------------------------------------------------------------------------------ GWNet
def gwnet_parity(ref_dir: Path, w: np.ndarray, args: argparse.Namespace) -> None:
    n = w.shape[0]
    torch.manual_seed(args.seed)
    ref: Any = gwnet_reference(ref_dir, w, dtype=args.dtype)
    ours = GraphWaveNet(ModelSpec(n, 2, 1, 12, 12), reference_compat=True).to(args.dtype)
    n_ref = sum(p.numel() for p in ref.parameters())
    n_our = sum(p.numel() for p in ours.parameters())
    print(f"GraphWaveNet parameters: reference {n_ref:,}  stgnn {n_our:,}")
    perturb(ref)
    with torch.no_grad():
        for m in ref.bn:
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)

    # filter before gate: state_dict order is filter_convs.*, gate_convs.* -> cat([filter, gate])
    copy_weights(ref, ours, gwnet_key, include_buffers=True)
    ei, ew = to_edge_index(w)
    ew = ew.to(args.dtype)
    x = torch.randn(args.batch, 12, n, 2, dtype=args.dtype)

    def ref_fn(v: Tensor) -> Tensor:
        return gwnet_call(ref, v)  # [B, 12, N, 1]

    def pairs() -> GradPairs:
        ours_p = dict(ours.named_parameters())
        out: list[tuple[str, Any, Any]] = []
        for k, p in ref.named_parameters():
            key = gwnet_key(k)
            if key is None or p.grad is None:
                continue
            q = ours_p[key]
            if "tcn" in key:  # our tcn weight holds [filter; gate]: compare the matching half
                half = q.size(0) // 2
                sl = slice(0, half) if k.startswith("filter") else slice(half, None)
                q_grad = q.grad[sl] if q.grad is not None else None
                out.append((k, p, SimpleNamespace(grad=q_grad)))
            else:
                out.append((k, p, q))
        return out

    ref.eval()
    ours.eval()
    compare("GraphWaveNet (nnzhan) vs ours, eval", ref_fn, lambda v: ours(v, ei, ew), x, pairs)
    # training mode with dropout off: batch-norm batch statistics
    ref.train()
    ours.train()
    for m in [ref, *ref.gconv, *ours.layers]:
        m.dropout = 0.0  # plain float attributes (F.dropout probabilities)
    ref.zero_grad()
    ours.zero_grad()
    compare("GraphWaveNet (nnzhan) vs ours, train, p=0", ref_fn, lambda v: ours(v, ei, ew), x, pairs)
    if args.time:
        xt = torch.randn(args.time_batch, 12, n, 2, dtype=args.dtype)
        time_pair(f"GraphWaveNet B={args.time_batch} (train mode)", ref_fn, lambda v: ours(v, ei, ew), xt, args.reps)


def bench_spmm(args: argparse.Namespace) -> None:
    """Time ``S @ x`` (forward, forward+backward w.r.t. ``x``) for the candidate kernels."""
    import warnings

    warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
    for n, f in ((207, 1024), (207, 4224), (207, 26624), (2000, 6656), (10000, 1536)):
        g = torch.Generator().manual_seed(args.seed)
        e = 8 * n
        src, dst = torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g)
        coo = torch.sparse_coo_tensor(torch.stack([dst, src]), torch.rand(e, generator=g), (n, n)).coalesce()
        csr = coo.to_sparse_csr()
        x = torch.randn(n, f, requires_grad=True)
        kernels: dict[str, Callable[[], Tensor]] = {
            "coo": lambda coo=coo, x=x: torch.sparse.mm(coo, x),
            "csr_mkl": lambda csr=csr, x=x: torch.sparse.mm(csr, x),
            "csr_native": lambda csr=csr, x=x: torch.sparse.mm(csr, x, "sum"),
        }
        if n <= 2000:
            dense = coo.to_dense()
            kernels["dense"] = lambda dense=dense, x=x: dense @ x
            src_i, dst_i, w = src, dst, coo.to_dense()[dst, src]
            kernels["index_add"] = lambda x=x, s=src_i, d=dst_i, w=w: torch.zeros_like(x).index_add(
                0, d, x[s] * w[:, None]
            )
        row = []
        for name, fn in kernels.items():
            fn().sum().backward()  # warm-up
            fwd = timed(lambda fn=fn: fn(), args.reps)
            both = timed(lambda fn=fn: fn().sum().backward(), args.reps)
            row.append(f"{name} {fwd:.2f}/{both:.2f}")
        print(f"N={n:5d} F={f:5d} (ms fwd/fwd+bwd): " + "  ".join(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--ref-dir",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="stgcn=..., dcrnn=..., gwnet=... (repeat); models without one are skipped",
    )
    parser.add_argument(
        "--adj",
        type=Path,
        default=None,
        help="use a real adjacency pickle (DCRNN adj_mx.pkl) instead of a random graph",
    )
    parser.add_argument("--nodes", type=int, default=207)
    parser.add_argument("--degree", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--time", action="store_true", help="also time fwd+bwd")
    parser.add_argument("--time-batch", type=int, default=64)
    parser.add_argument("--bench-spmm", action="store_true", help="only benchmark the sparse kernels")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: leave); use 1 on a shared machine, where idle "
        "OpenMP threads spinning against other processes distort timings",
    )
    args = parser.parse_args()
    args.dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bench_spmm:
        bench_spmm(args)
        return
    dirs = dict(item.split("=", 1) for item in args.ref_dir)
    unknown = set(dirs) - {"stgcn", "dcrnn", "gwnet"}
    if unknown:
        parser.error(f"unknown reference names {sorted(unknown)}")
    torch.manual_seed(args.seed)
    if args.adj is not None:
        from stgnn.data.safe_pickle import load_adj_pickle

        w = np.asarray(load_adj_pickle(args.adj)[2], dtype=np.float32)
    else:
        w = random_graph(args.nodes, args.degree, np.random.default_rng(args.seed))
    print(
        f"graph: {args.adj or 'random'}, {w.shape[0]} nodes, {int((w != 0).sum())} directed edges (self-loops incl.), "
        f"dtype {args.dtype}, batch {args.batch}"
    )
    if args.dtype == torch.float64:
        w = w.astype(np.float64)  # so that the references' numpy normalisations run in float64
        torch.set_default_dtype(torch.float64)  # DCRNN's lazily created weights and zero states
    for name, fn in (("stgcn", stgcn_parity), ("dcrnn", dcrnn_parity), ("gwnet", gwnet_parity)):
        if name in dirs:
            fn(Path(dirs[name]), w, args)


if __name__ == "__main__":
    main()
