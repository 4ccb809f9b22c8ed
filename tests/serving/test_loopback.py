"""The server through real HTTP on 127.0.0.1 (uvicorn): concurrent requests, graceful shutdown."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from conftest import load_experiment
from test_app import request_for

from stgnn.serving.app import create_app
from stgnn.serving.batching import BatchSettings
from stgnn.serving.model import load_served_model


class _Running:
    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(1000):
            if self.server.started:
                break
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture(scope="module")
def exp(lstm_checkpoint):
    return load_experiment(lstm_checkpoint)


def test_concurrent_http_requests_equal_single_window_forecasts(lstm_checkpoint, exp):
    model = load_served_model(lstm_checkpoint, experiment=exp)
    starts = [int(s) for s in exp.data.splits["test"][:10]]
    app = create_app(model, batching=BatchSettings(max_batch=4, max_wait_ms=20))
    results: dict[int, httpx.Response] = {}
    with _Running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").json()["status"] == "ok"

        def call(s):
            results[s] = client.post("/predict", json=request_for(exp, s))

        threads = [threading.Thread(target=call, args=(s,)) for s in starts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert client.get("/model").json()["backend"] == "pytorch"
    for s in starts:
        assert results[s].status_code == 200, results[s].text
        want = exp.predict(exp.data.batch(torch.tensor([s])))[0, :, :, 0].numpy()[:, ::-1]
        np.testing.assert_allclose(np.array(results[s].json()["forecast"]), want, rtol=1e-5, atol=1e-5)


def test_shutdown_finishes_the_request_in_flight(lstm_checkpoint, exp):
    model = load_served_model(lstm_checkpoint, experiment=exp)
    entered, release = threading.Event(), threading.Event()
    forward = model.forward

    def held(batch):
        entered.set()
        release.wait(10)
        return forward(batch)

    model.forward = held
    running = _Running(create_app(model))
    url = running.__enter__()
    answer: list[httpx.Response] = []
    t = threading.Thread(target=lambda: answer.append(httpx.post(f"{url}/predict", json=request_for(exp, 0),
                                                                 timeout=30)))
    t.start()
    assert entered.wait(10)
    running.server.should_exit = True  # what Ctrl-C / SIGTERM does
    time.sleep(0.2)
    release.set()
    t.join(20)
    running.thread.join(20)
    assert not running.thread.is_alive()
    assert answer and answer[0].status_code == 200 and len(answer[0].json()["forecast"]) == exp.spec.horizon
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)
