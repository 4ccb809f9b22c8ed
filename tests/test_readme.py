"""The README's own-data example and PyG layer example run as written."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_pyg_layer_example_runs():
    (code,) = [b for b in _blocks("python") if "from stgnn.nn import" in b]
    exec(compile(code, "README.md", "exec"), {})


def test_own_data_example_runs(tmp_path, shared_data):
    (block,) = [b for b in _blocks("bash") if "make_example.py" in b]
    repo = Path(__file__).resolve().parents[1]
    for line in block.strip().splitlines():
        args = shlex.split(line)
        args = [str(shared_data) if a == "../shared/data" else a for a in args]
        if args[0] == "python":
            args[0] = sys.executable
            args[1] = str(repo / args[1])
        elif args[0] == "stgnn":
            args = [sys.executable, "-m", "stgnn.cli", *args[1:], "--max-batches", "2", "--quiet"]
        subprocess.run(args, cwd=tmp_path, check=True, capture_output=True)
    metrics = tmp_path / "runs" / "own" / "metrics.json"
    assert metrics.is_file()
