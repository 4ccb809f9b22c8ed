"""The HTTP JSON API of ``stgnn serve`` (FastAPI): ``POST /predict``, ``GET /health``, ``GET /model``.

:func:`create_app` builds the app around a :class:`~stgnn.serving.model.ServedModel`; it needs no
socket (tests drive it in-process), and ``stgnn serve`` runs it with uvicorn.  The OpenAPI
schema is at ``/openapi.json`` and the interactive docs at ``/docs``.

``POST /predict`` takes the most recent window of readings, one row per timestamp and one column
per sensor, as in a readings CSV::

    {"sensor_ids": ["773869", "767541", ...],
     "timestamps": ["2012-03-07T07:05:00", ..., "2012-03-07T08:00:00"],
     "values": [[64.2, null, ...], ...]}

``null`` is a missing reading.  Every sensor of the model must be present (any order); a model
reading several features per sensor takes a list per cell.  The answer gives the forecast for the
next ``horizon`` steps in the same layout (rows = forecast timestamps, columns = the request's
sensors), in the units of the training data.

Bad input never reaches the model: wrong types and non-finite numbers are rejected by the
request schema (HTTP 422, pydantic's per-field errors), unknown / missing / duplicated sensors,
a wrong window length, unsorted, duplicated or wrongly spaced timestamps, ragged rows and an
interval asked of a point model get HTTP 422 with one message naming the field; a body larger
than ``max_body_bytes`` gets 413; a full request queue or a server shutting down gets 503.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stgnn.data.batch import Batch
from stgnn.serving.batching import BatchSettings, MicroBatcher, Overloaded
from stgnn.serving.model import Forecast, ServedModel
from stgnn.serving.window import WindowError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "PredictRequest", "PredictResponse", "create_app"]

DEFAULT_MAX_BODY_BYTES = 1 << 20
"""Largest accepted request body (1 MiB: a 12-step window of 2,000 sensors fits)."""

Number = Annotated[float, Strict(), AllowInfNan(False)]
Reading = Number | None
Cell = Reading | list[Reading]


class PredictRequest(BaseModel):
    """The recent window of readings to forecast from."""

    model_config = ConfigDict(extra="forbid")

    sensor_ids: list[str] = Field(min_length=1, description="Sensor ids, the columns of `values`; every sensor "
                                  "of the model exactly once, in any order.")
    timestamps: list[datetime] = Field(description="The last `input_len` timestamps, oldest first, one sampling "
                                       "interval apart, local time without UTC offset (as in the training data).")
    values: list[list[Cell]] = Field(description="Raw readings, one row per timestamp, one cell per sensor; null "
                                     "is missing; a list per cell when the model reads several features.")
    interval: float | None = Field(default=None, gt=0, lt=1, description="Central prediction-interval level "
                                   "(e.g. 0.9), probabilistic models only.")


class Interval(BaseModel):
    """A central prediction interval, in the layout of ``forecast``."""

    level: float
    lower: list[list[float]] | list[list[list[float]]]
    upper: list[list[float]] | list[list[list[float]]]


class PredictResponse(BaseModel):
    """The forecast for the next ``horizon`` steps."""

    model: str
    sensor_ids: list[str] = Field(description="The request's sensor ids: the columns of `forecast`.")
    origin: datetime = Field(description="The last timestamp of the input window.")
    timestamps: list[datetime] = Field(description="Forecast timestamps, the rows of `forecast`.")
    forecast: list[list[float]] | list[list[list[float]]] = Field(
        description="Forecasts in raw units, one row per forecast timestamp, one cell per sensor (a list per "
                    "cell when the model forecasts several features).")
    units: str | None = None
    interval: Interval | None = Field(default=None, description="The central interval asked for (probabilistic "
                                      "models); its bounds are quantiles of the forecast distribution.")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 (declared length or bytes received).

    Args:
        app: The wrapped app.
        max_bytes: The limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        body = JSONResponse({"detail": f"request body larger than the server's limit of {self.max_bytes} bytes "
                                       "(stgnn serve --max-body-bytes)"}, status_code=413)
        await send({"type": "http.response.start", "status": 413, "headers": body.raw_headers})
        await send({"type": "http.response.body", "body": body.body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        # read the whole body here (at most max_bytes are kept), then hand it on in one message:
        # an error raised inside the app's own body reading would turn into its generic 400
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _values_array(req: PredictRequest, n_features: int) -> np.ndarray:
    """``[T, N, F]`` float64 with NaN for null, from the request's rows (shape errors named)."""
    n = len(req.sensor_ids)
    out = np.full((len(req.values), n, n_features), np.nan)
    for t, row in enumerate(req.values):
        if len(row) != n:
            raise WindowError(f"values[{t}]: {len(row)} cells, but {n} sensor_ids")
        for j, cell in enumerate(row):
            if isinstance(cell, list):
                if len(cell) != n_features:
                    raise WindowError(f"values[{t}][{j}] (sensor {req.sensor_ids[j]}): {len(cell)} features, the "
                                      f"model reads {n_features}")
                out[t, j] = [math.nan if v is None else v for v in cell]
            elif n_features != 1:
                raise WindowError(f"values[{t}][{j}] (sensor {req.sensor_ids[j]}): the model reads {n_features} "
                                  "features per sensor: give a list of them")
            elif cell is not None:
                out[t, j, 0] = cell
    return out


def create_app(
    model: ServedModel,
    *,
    batching: BatchSettings | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI app serving ``model``.

    Args:
        model: The model (:func:`~stgnn.serving.model.load_served_model`).
        batching: Micro-batching and queue bounds (default :class:`BatchSettings`).
        max_body_bytes: Largest request body accepted (413 above it).

    Returns:
        The app; its lifespan starts the batcher and, at shutdown, finishes the queued requests.
    """
    settings = batching or BatchSettings()
    spec = model.spec
    state: dict[str, MicroBatcher[tuple[Batch, float | None], Forecast]] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher: MicroBatcher[tuple[Batch, float | None], Forecast] = MicroBatcher(model.forecast_many, settings)
        batcher.start()
        state["batcher"] = batcher
        try:
            yield
        finally:
            await batcher.close()

    app = FastAPI(
        title="stgnn forecast server",
        summary=f"{spec.model} trained on {spec.dataset}: {spec.horizon}-step forecasts for {spec.num_nodes} sensors",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def schema_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each offending input, and a NaN / Infinity input cannot be
        # written as JSON (it would turn the 422 into a 500): echo a short repr instead
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", ""),
                   "input": repr(e.get("input"))[:80]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(WindowError)
    async def window_error(request: Request, exc: WindowError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and the request queue."""
        batcher = state.get("batcher")
        return {"status": "ok" if batcher is not None else "starting", "queued": batcher.queued if batcher else 0,
                "batches_run": batcher.batches_run if batcher else 0,
                "requests_run": batcher.items_run if batcher else 0}

    @app.get("/model")
    async def describe() -> dict[str, Any]:
        """Name, dataset, graph size, config, test metrics and data fingerprint of the served model."""
        return {**model.info, "batching": asdict(settings), "max_body_bytes": max_body_bytes}

    @app.post("/predict", response_model=PredictResponse)
    async def predict(req: PredictRequest) -> PredictResponse:
        """Forecast the next ``horizon`` steps from the recent window."""
        if req.interval is not None and not model.covers(req.interval):
            if model.head == "point":
                raise WindowError(f"interval: {spec.model} gives point forecasts only; prediction intervals need a "
                                  "model trained with a probabilistic head ([head] kind = gaussian or quantile)")
            raise WindowError(f"interval: {req.interval} needs quantiles {(1 - req.interval) / 2:g} and "
                              f"{(1 + req.interval) / 2:g}, outside the model's levels {spec.config.head.quantiles}")
        if any(t.tzinfo is not None for t in req.timestamps):
            raise WindowError("timestamps: carry a UTC offset, but the model's data has local timestamps without "
                              "one (the time-of-day covariate depends on it): send local times without offset")
        stamps = pd.DatetimeIndex(req.timestamps)
        spec.check_timestamps(stamps)
        if len(req.values) != len(stamps):
            raise WindowError(f"values: {len(req.values)} rows, but {len(stamps)} timestamps (one row per timestamp)")
        values = _values_array(req, len(spec.input_features))
        batch = spec.batch(req.sensor_ids, stamps, values)
        try:
            result = await state["batcher"].submit((batch, req.interval))
        except Overloaded as exc:
            raise HTTPException(503, str(exc)) from exc
        parts = [t for t in result if t is not None]
        if not all(bool(torch.isfinite(t).all()) for t in parts):
            raise HTTPException(500, f"{spec.model} produced non-finite forecasts for this window")
        # model node order -> the request's column order
        position = {s: i for i, s in enumerate(spec.sensor_ids)}
        cols = [position[s] for s in req.sensor_ids]

        def layout(t: torch.Tensor) -> Any:
            out = t[0][:, cols]  # [H, N_request, F_out]
            return out[..., 0].tolist() if out.shape[-1] == 1 else out.tolist()

        interval = None
        if req.interval is not None and result.lower is not None and result.upper is not None:
            interval = Interval(level=req.interval, lower=layout(result.lower), upper=layout(result.upper))
        units = (model.info.get("test_metrics") or {}).get("units")
        return PredictResponse(model=spec.model, sensor_ids=req.sensor_ids, origin=stamps[-1].to_pydatetime(),
                               timestamps=[t.to_pydatetime() for t in spec.forecast_timestamps(stamps[-1])],
                               forecast=layout(result.point), units=units, interval=interval)

    return app
