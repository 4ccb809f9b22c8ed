"""Layering: the data package stands on its own."""

import os
import subprocess
import sys
from pathlib import Path

import stgnn


def test_import_stgnn_data_loads_no_model_module_and_not_pyg() -> None:
    root = Path(stgnn.__file__).resolve().parent.parent
    code = (
        "import sys, stgnn.data\n"
        "heavy = ('stgnn.models', 'stgnn.training', 'torch_geometric')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(heavy))\n"
        "print(','.join(loaded))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "", f"import stgnn.data loaded {out.stdout.strip()}"


def test_batch_is_one_class_reexported_by_models() -> None:
    from stgnn.data import Batch
    from stgnn.models import Batch as ModelsBatch

    assert ModelsBatch is Batch
    assert Batch.__module__ == "stgnn.data.batch"


def test_messages_show_lists_through_one_helper() -> None:
    # one place for "the first few items, and how many": stgnn.data.preview
    import re

    from stgnn.data.preview import preview

    assert preview(["a", "b"]) == "'a', 'b'"
    assert preview(list(range(7))) == "0, 1, 2, 3, 4, ... (7 in all)"
    assert preview(list(range(7)), limit=2) == "0, 1, ... (7 in all)"
    root = Path(stgnn.__file__).resolve().parent
    own = [str(p.relative_to(root)) for p in root.rglob("*.py")
           if p.name != "preview.py" and re.search(r"def _?preview\b|^_?SHOWN = ", p.read_text(), re.M)]
    assert own == [], f"modules with their own list preview: {own}"
