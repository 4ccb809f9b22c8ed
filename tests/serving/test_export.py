"""stgnn export (ONNX checked with onnxruntime, int8, TorchScript) and serving an ONNX export."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import load_experiment
from test_app import request_for

import stgnn.serving.export as export_module
from stgnn.cli import main
from stgnn.serving.export import export_model, onnx_metadata
from stgnn.serving.model import load_served_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stgcn_onnx(stgcn_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "stgcn.onnx"
    assert main(["export", "--checkpoint", str(stgcn_checkpoint), "--format", "onnx", "--output", str(out),
                 "--quiet"]) == 0
    return out


def test_onnx_export_matches_pytorch_on_the_test_windows(stgcn_checkpoint, stgcn_onnx, capsys):
    exp = load_experiment(stgcn_checkpoint)
    exp.model.eval()
    meta = onnx_metadata(stgcn_onnx)
    assert meta["model"] == "stgcn" and meta["num_nodes"] == "4" and len(meta["checkpoint_sha256"]) == 64
    session = ort.InferenceSession(str(stgcn_onnx), providers=["CPUExecutionProvider"])
    for starts in (exp.data.splits["test"][:1], exp.data.splits["test"][:37]):  # the batch size is dynamic
        batch = exp.data.batch(starts)
        got = session.run(None, {"x": batch.x.numpy()})[0]
        with torch.no_grad():
            want = exp.model(batch.x, exp.edge_index, exp.edge_weight).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


@pytest.fixture
def reuse_onnx(stgcn_onnx, monkeypatch):
    """The export's tracing replaced by a copy of the module's ONNX file (tracing takes seconds)."""
    monkeypatch.setattr(export_module, "_trace_program", lambda exp, sample: None)
    monkeypatch.setattr(export_module, "_write_onnx", lambda program, path: shutil.copy(stgcn_onnx, path))


def test_a_mismatch_beyond_the_tolerance_fails_the_export_and_writes_nothing(stgcn_checkpoint, tmp_path,
                                                                             monkeypatch, reuse_onnx):
    exp = load_experiment(stgcn_checkpoint)
    monkeypatch.setattr(export_module, "ONNX_TOLERANCE", 0.0)
    reference = export_module._scaled_reference
    monkeypatch.setattr(export_module, "_scaled_reference", lambda e, b: reference(e, b) + 1e-3)
    with pytest.raises(ValueError, match=r"differs from the PyTorch model by up to 0\.001 "):
        export_model(exp, tmp_path / "m.onnx", "onnx", check_windows=8)
    assert list(tmp_path.iterdir()) == []


def test_int8_dynamic_quantization_reports_the_metric_change(stgcn_checkpoint, tmp_path, reuse_onnx):
    exp = load_experiment(stgcn_checkpoint)
    report = export_model(exp, tmp_path / "q.onnx", "onnx", quantize="dynamic", check_windows=16,
                          latency_repeats=2)
    assert report.quantized and report.path.is_file() and report.windows == 16
    assert set(report.metrics) == {"exported int8", "pytorch float32"}
    assert abs(report.metrics["exported int8"]["mae"] - report.metrics["pytorch float32"]["mae"]) < 1.0
    assert onnx_metadata(report.path)["quantized"] == "dynamic"
    assert any("int8 dynamic" in line for line in report.lines())


def test_torchscript_export_of_a_model_without_graph_layers(lstm_checkpoint, tmp_path, capsys):
    out = tmp_path / "lstm.pt"
    assert main(["export", "--checkpoint", str(lstm_checkpoint), "--format", "torchscript", "--output", str(out),
                 "--check-windows", "20", "--quiet"]) == 0
    assert "max |exported - pytorch|" in capsys.readouterr().out
    exp = load_experiment(lstm_checkpoint)
    module = torch.jit.load(str(out))
    batch = exp.data.batch(exp.data.splits["test"][:5])
    with torch.no_grad():
        torch.testing.assert_close(module(batch.x), exp.model(batch.x, exp.edge_index, exp.edge_weight))


@pytest.mark.parametrize("args, message", [
    (["--format", "torchscript"], "stgcn cannot be exported to TorchScript: its graph layers refuse torch.jit.trace"),
    (["--format", "torchscript", "--quantize", "dynamic"], "--quantize: int8 dynamic quantization"),
    (["--format", "onnx", "--check-windows", "0"], "--check-windows: must be >= 1"),
])
def test_export_refusals_are_one_line_errors(stgcn_checkpoint, tmp_path, capsys, args, message):
    assert main(["export", "--checkpoint", str(stgcn_checkpoint), "--output", str(tmp_path / "m"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_model_with_data_dependent_sizes_gets_a_one_line_onnx_refusal(tmp_path, capsys):
    """stpatch reads its graph's values at every call (partition check, attention lists): the ONNX
    export names the model and the reason (no raw tracing exception), and writes nothing."""
    from conftest import _train

    checkpoint = _train(tmp_path, "stpatch", channels=8, heads=2, ffn_channels=16, cluster_size=2)
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "stpatch cannot be exported to ONNX: its forward pass reads the graph's values at every call" in err
    assert "Traceback" not in err and not out.exists()


def test_statistical_baselines_are_not_exported(tmp_path):
    from training.tiny_runs import make_config, trainer, write_data

    series, locations = write_data(tmp_path / "data", t=400, n=4)
    trainer(make_config(series, locations, model="ha"), tmp_path / "run").fit()
    exp = load_experiment(tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ValueError, match="ha cannot be exported: ha is a statistical baseline"):
        export_model(exp, tmp_path / "ha.onnx", "onnx")


def test_onnx_backend_serves_the_same_forecasts(stgcn_checkpoint, stgcn_onnx, lstm_checkpoint):
    exp = load_experiment(stgcn_checkpoint)
    served = load_served_model(stgcn_checkpoint, onnx=stgcn_onnx)
    assert served.backend == "onnx" and served.info["num_edges"] == int(exp.edge_index.shape[1])
    batch = exp.data.batch(exp.data.splits["test"][:6])
    torch.testing.assert_close(served.forward(batch).point, exp.predict(batch), rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="was exported from a checkpoint with sha256"):
        load_served_model(lstm_checkpoint, onnx=stgcn_onnx)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_stgnn_serve_onnx_from_the_command_line(stgcn_checkpoint, stgcn_onnx):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "stgnn", "serve", "--checkpoint", str(stgcn_checkpoint),
                             "--onnx", str(stgcn_onnx), "--port", str(port), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        exp = load_experiment(stgcn_checkpoint)
        start = int(exp.data.splits["test"][0])
        r = httpx.post(f"{url}/predict", json=request_for(exp, start), timeout=30)
        assert r.status_code == 200, r.text
        want = exp.predict(exp.data.batch(torch.tensor([start])))[0, :, :, 0].numpy()[:, ::-1]
        np.testing.assert_allclose(np.array(r.json()["forecast"]), want, rtol=0, atol=1e-3)
        assert httpx.get(f"{url}/model").json()["backend"] == "onnx"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "serving stgcn (onnx)" in out
