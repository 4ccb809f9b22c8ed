"""experiments/large/scale.py: the sensors part at a tiny size, with a per-model evaluation limit."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_sensors_part_times_full_graph_evaluation_only_up_to_each_models_limit(tmp_path):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(REPO / "experiments/large/scale.py"), "--part", "sensors", "--models", "stgcn",
           "gwnet", "--sensors", "24", "--days", "3", "--steps", "2", "--threads", "1", "--workdir", str(tmp_path),
           "--eval-max-nodes", '{"stgcn": 24}', "--full-max-nodes", '{"stgcn": 0, "gwnet": 0}',
           "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    rows = json.loads(out.read_text())
    assert [(r["model"], r["sampling"], "skipped" in r) for r in rows] == [
        ("stgcn", "full", True), ("stgcn", "partition", False), ("gwnet", "full", True), ("gwnet", "partition", False)]
    for r in (r for r in rows if "skipped" not in r):
        assert "error" not in r, r["error"]
        timed = r["eval_batch"] is not None
        assert timed == (r["model"] == "stgcn"), r  # a model the JSON does not name gets no evaluation
        assert r["rss_eval"] >= r["rss_train"] > 0
