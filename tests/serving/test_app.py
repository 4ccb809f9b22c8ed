"""The FastAPI app in-process (no socket): endpoints, validation, body limit, batching."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from conftest import load_experiment
from fastapi.testclient import TestClient

from stgnn.serving.app import create_app
from stgnn.serving.batching import BatchSettings
from stgnn.serving.model import load_served_model


def request_for(exp, start: int) -> dict:
    """The JSON body for the window at ``start`` (sensors reversed, missing readings as null)."""
    ds = exp.dataset
    idx = slice(start, start + exp.spec.input_len)
    values = ds.series[idx, :, 0].numpy().astype(float)
    mask = ds.mask[idx].numpy()
    order = list(range(ds.num_nodes))[::-1]
    rows = [[float(values[t, j]) if mask[t, j] else None for j in order] for t in range(values.shape[0])]
    return {"sensor_ids": [ds.node_ids[j] for j in order],
            "timestamps": [t.isoformat() for t in ds.timestamps[idx]], "values": rows}


@pytest.fixture(scope="module")
def exp(lstm_checkpoint):
    return load_experiment(lstm_checkpoint)


@pytest.fixture(scope="module")
def client(lstm_checkpoint, exp):
    model = load_served_model(lstm_checkpoint, experiment=exp)
    with TestClient(create_app(model, max_body_bytes=20_000)) as c:
        yield c


def test_predict_gives_the_models_forecast_in_the_requests_layout(client, exp):
    start = int(exp.data.splits["test"][2])
    body = request_for(exp, start)
    body["values"][3][1] = None  # a missing reading
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["sensor_ids"] == body["sensor_ids"]
    assert len(out["timestamps"]) == exp.spec.horizon
    assert out["timestamps"][0] == exp.dataset.timestamps[start + exp.spec.input_len].isoformat()
    batch = exp.data.batch(torch.tensor([start]))
    node = exp.dataset.num_nodes - 2  # request column 1, sensors reversed
    batch.x[0, 3, node, 0] = exp.data.scaler.transform(torch.zeros(1))[0]
    batch.x_mask[0, 3, node] = False
    want = exp.predict(batch)[0, :, :, 0].numpy()[:, ::-1]
    np.testing.assert_allclose(np.array(out["forecast"]), want, rtol=1e-5, atol=1e-5)


def test_health_model_and_openapi(client, exp):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/model").json()
    assert info["model"] == "lstm" and info["num_nodes"] == 4 and info["num_edges"] == int(exp.edge_index.shape[1])
    assert info["sensor_ids"] == list(exp.dataset.node_ids)
    assert info["data_fingerprint"]["sensor_ids"] == list(exp.dataset.node_ids)
    assert info["config"]["model"] == "lstm" and info["test_metrics"]["horizons"]["average"]["mae"] > 0
    schema = client.get("/openapi.json").json()
    assert "/predict" in schema["paths"] and "PredictRequest" in schema["components"]["schemas"]


def _bad(exp, change):
    body = request_for(exp, int(exp.data.splits["test"][0]))
    change(body)
    return body


@pytest.mark.parametrize("change, status, message", [
    (lambda b: b["sensor_ids"].__setitem__(0, "X9"), 422, "unknown to the model: 'X9'"),
    (lambda b: b.update(timestamps=b["timestamps"][1:], values=b["values"][1:]), 422, "last 12 steps, got 11"),
    (lambda b: b["timestamps"].reverse(), 422, "not sorted"),
    (lambda b: b["timestamps"].__setitem__(1, b["timestamps"][0]), 422, "duplicated"),
    (lambda b: b["values"][2].__setitem__(0, "fast"), 422, "valid number"),
    (lambda b: b["values"][2].__setitem__(0, True), 422, "valid number"),
    (lambda b: b["values"][2].pop(), 422, "values[2]: 3 cells, but 4 sensor_ids"),
    (lambda b: b["values"].pop(), 422, "11 rows, but 12 timestamps"),
    (lambda b: b.update(interval=0.9), 422, "point forecasts only"),
    (lambda b: b.update(interval=1.5), 422, "less than 1"),
    (lambda b: b.update(extra=1), 422, "Extra inputs"),
])
def test_bad_requests_get_4xx_with_a_message(client, exp, change, status, message):
    r = client.post("/predict", json=_bad(exp, change))
    assert r.status_code == status
    assert message in r.text
    assert client.get("/health").status_code == 200  # the server lives on


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(client, exp, literal):
    text = json.dumps(request_for(exp, 0)).replace("[[", f"[[{literal}, ", 1)
    body = json.loads(text)
    body["values"][0].pop(1)
    r = client.post("/predict", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 422 and "finite" in r.text


def test_oversize_bodies_get_413(client, exp):
    body = request_for(exp, 0)
    body["padding"] = "x" * 30_000
    assert client.post("/predict", json=body).status_code == 413
    payload = json.dumps(body).encode()
    chunks = (payload[i : i + 4096] for i in range(0, len(payload), 4096))  # no content-length: counted
    r = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "20000 bytes" in r.text


def test_concurrent_requests_are_batched_and_equal_unbatched(lstm_checkpoint, exp):
    model = load_served_model(lstm_checkpoint, experiment=exp)
    starts = [int(s) for s in exp.data.splits["test"][:12]]
    release = threading.Event()
    forward = model.forward
    sizes: list[int] = []

    def gated(batch):  # hold the first pass until every request is in it or queued, so they batch
        sizes.append(batch.x.shape[0])
        release.wait(20)
        return forward(batch)

    model.forward = gated
    results: dict[int, dict] = {}
    with TestClient(create_app(model, batching=BatchSettings(max_batch=8, max_wait_ms=50))) as c:
        def call(s):
            results[s] = c.post("/predict", json=request_for(exp, s)).json()
        threads = [threading.Thread(target=call, args=(s,)) for s in starts]
        for t in threads:
            t.start()
        for _ in range(2000):
            if sum(sizes) + c.get("/health").json()["queued"] == len(starts):
                break
            threading.Event().wait(0.01)
        release.set()
        for t in threads:
            t.join(30)
        health = c.get("/health").json()
    assert health["requests_run"] == len(starts) and max(sizes) > 1 and health["batches_run"] < len(starts)
    assert max(sizes) <= 8
    for s in starts:
        want = exp.predict(exp.data.batch(torch.tensor([s])))[0, :, :, 0].numpy()[:, ::-1]
        np.testing.assert_allclose(np.array(results[s]["forecast"]), want, rtol=1e-5, atol=1e-5)


def test_intervals_of_a_probabilistic_model(quantile_checkpoint):
    exp = load_experiment(quantile_checkpoint)
    model = load_served_model(quantile_checkpoint, experiment=exp)
    start = int(exp.data.splits["test"][1])
    body = {**request_for(exp, start), "interval": 0.8}
    with TestClient(create_app(model)) as c:
        info = c.get("/model").json()
        r = c.post("/predict", json=body)
        too_wide = c.post("/predict", json={**body, "interval": 0.95})
        plain = c.post("/predict", json={k: v for k, v in body.items() if k != "interval"})
    assert info["head"] == {"kind": "quantile", "quantiles": [0.05, 0.5, 0.95]}
    assert r.status_code == 200, r.text
    out = r.json()
    dist = exp.predict_distribution(exp.data.batch(torch.tensor([start])))
    low, high = dist.interval(0.8)
    for got, want in ((out["forecast"], dist.point), (out["interval"]["lower"], low),
                      (out["interval"]["upper"], high)):
        np.testing.assert_allclose(np.array(got), want[0, :, :, 0].numpy()[:, ::-1], rtol=1e-5, atol=1e-5)
    assert out["interval"]["level"] == 0.8
    assert (np.array(out["interval"]["lower"]) <= np.array(out["interval"]["upper"])).all()
    assert too_wide.status_code == 422 and "outside the model's levels" in too_wide.text
    assert plain.status_code == 200 and plain.json()["interval"] is None
