# mypy: disable-error-code="misc"
"""The work one training step does, as a load-independent record for comparing two versions.

Wall-clock benchmarks on a shared machine move by 10-25% between runs (see BENCHMARKS.md), which
hides a few-percent regression.  This script records what does not depend on the machine's load:

* ``kernels``: every torch operator one training step (forward + masked MAE + backward + Adam)
  runs at METR-LA size (the real METR-LA graph, batch ``--batch``), counted per operator *and*
  input shapes (``torch.profiler`` with ``record_shapes``).  Two versions that run the same
  multiset of (operator, shapes) do the same arithmetic.
* ``overhead_ms``: the Python/dispatch cost per step, measured on benchmark.py's random graph
  with 8 nodes and batch 1 (where arithmetic is negligible) as the minimum CPU time
  (``time.process_time``) of ``--repeats`` steps, single-threaded; the minimum is the least load-sensitive statistic.

Usage (the version measured is the ``stgnn`` that Python imports; the models are built by the
``benchmark.py`` of that checkout)::

    PYTHONPATH=/checkout/of/old python experiments/step_profile.py --model dcrnn --out old.json
    PYTHONPATH=.                python experiments/step_profile.py --model dcrnn --out new.json
    python experiments/step_profile.py --compare old.json new.json

``--compare`` lists the (operator, shapes) whose counts differ and the overhead ratio.  Run the
two profiles alternately a few times and compare the minima of ``overhead_ms``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any


def _experiments_dir() -> Path:
    """The ``experiments/`` folder beside the imported ``stgnn`` (its ``benchmark.py`` builds the
    models the way that version does), else this script's folder."""
    spec = importlib.util.find_spec("stgnn")
    if spec is not None and spec.origin is not None:
        beside = Path(spec.origin).resolve().parent.parent / "experiments"
        if (beside / "benchmark.py").is_file():
            return beside
    return Path(__file__).resolve().parent


sys.path.insert(0, str(_experiments_dir()))

MODELS = ("stgcn", "dcrnn", "gwnet")


def _training_step(model_name: str, nodes: int, batch: int, adj: str | None) -> Any:
    """A closure running one training step of ``model_name`` as ``benchmark.py`` measures it."""
    import torch
    from benchmark import _build

    from stgnn.metrics import masked_mae_loss

    try:
        from stgnn.training.schedules import inverse_sigmoid_teacher_forcing as schedule
    except ImportError:  # a checkout before the schedule moved out of the DCRNN class
        from stgnn.models.dcrnn import DCRNN

        schedule = DCRNN.teacher_forcing_ratio
    spec = dict(model=model_name, impl="ours", nodes=nodes, graph="metr-la" if adj else "random", adj=adj,
                teacher_forcing=schedule(1))
    torch.manual_seed(0)
    model, fwd, f_in, steps, _ = _build(spec)
    x = torch.randn(batch, 12, nodes, f_in)
    y = torch.randn(batch, steps, nodes, 1).abs_() + 0.1
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        masked_mae_loss(fwd(x, y, True), y).backward()
        opt.step()

    return step


def record(model_name: str, adj: str, batch: int, repeats: int) -> dict[str, Any]:
    """Kernel counts of one METR-LA-size step and the per-step overhead on a tiny graph."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    import stgnn
    from stgnn.data.graph import SensorGraph

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # METR-LA's isolated sensor
        nodes = SensorGraph.from_adj_pickle(adj).num_nodes
    step = _training_step(model_name, nodes, batch, adj)
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    kernels: Counter[str] = Counter()
    for ev in prof.events():
        if ev.name.startswith("aten::"):
            kernels[f"{ev.name} {ev.input_shapes}"] += 1
    tiny = _training_step(model_name, 8, 1, None)
    for _ in range(3):
        tiny()
    cpu = []
    for _ in range(repeats):
        t = time.process_time()
        tiny()
        cpu.append(time.process_time() - t)
    return {
        "model": model_name,
        "stgnn": str(Path(stgnn.__file__).resolve().parent),
        "batch": batch,
        "kernels": dict(kernels),
        "overhead_ms": 1e3 * min(cpu),
    }


LARGE = 10_000  # elements: smaller inputs are graph-sized checks, scalars and views, not the arithmetic


def _largest_input(key: str) -> int:
    """Elements of the largest input of a ``"aten::op [[shape], ...]"`` key."""
    shapes = json.loads(key.split(" ", 1)[1]) if " " in key else []
    sizes = [math.prod(s) for s in shapes if isinstance(s, list) and s and all(isinstance(d, int) for d in s)]
    return max(sizes, default=0)


def compare(a_path: Path, b_path: Path) -> str:
    """A text report of the differences between two records."""
    a, b = json.loads(a_path.read_text()), json.loads(b_path.read_text())
    ka, kb = Counter(a["kernels"]), Counter(b["kernels"])
    lines = [
        f"{a['model']}: A = {a['stgnn']}, B = {b['stgnn']}",
        f"aten calls per step: A {sum(ka.values())}, B {sum(kb.values())}",
        f"per-step overhead on an 8-node graph: A {a['overhead_ms']:.2f} ms, B {b['overhead_ms']:.2f} ms "
        f"(B/A {b['overhead_ms'] / a['overhead_ms']:.3f})",
    ]
    diff = sorted(k for k in set(ka) | set(kb) if ka[k] != kb[k])
    large = [k for k in diff if _largest_input(k) >= LARGE]
    if not diff:
        lines.append("identical (operator, input shapes) multisets: the same arithmetic")
    else:
        lines.append(
            f"{len(diff)} (operator, shapes) entries differ, {len(large)} of them on inputs of >= {LARGE:,} elements"
            + ("" if large else ": only small tensors differ (graph checks, scalars, views)")
        )
    for k in diff:
        lines.append(f"  {ka[k]:6d} -> {kb[k]:6d}  {k}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODELS, default="dcrnn")
    parser.add_argument("--adj", default="datasets/metr-la/adj_mx.pkl", help="METR-LA adj_mx.pkl")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return
    if args.out is None:
        parser.error("--out FILE is required unless --compare is given")
    rec = record(args.model, args.adj, args.batch, args.repeats)
    args.out.write_text(json.dumps(rec, indent=1))
    calls = sum(rec["kernels"].values())
    print(f"{args.model}: {calls} aten calls, overhead {rec['overhead_ms']:.2f} ms -> {args.out}")


if __name__ == "__main__":
    main()
