"""Load test of ``stgnn serve`` on 127.0.0.1: requests/s and p50 / p99 latency, with and without batching.

For each setting the script starts ``stgnn serve`` as a child process on a free loopback port,
waits for ``/health``, then keeps ``--concurrency`` requests in flight (each a real test window of
the checkpoint's data) until ``--requests`` have been answered or ``--seconds`` have passed,
stops the server (SIGINT, graceful) and moves on.  It never talks to anything but 127.0.0.1 and
stops by itself.  Usage (from the repository root)::

    OMP_NUM_THREADS=1 python experiments/serve_load.py --checkpoint runs/stgcn/checkpoint.pt \\
        --data-dir /work/shared/data --requests 400 --concurrency 16 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from stgnn.training.trainer import experiment_from_checkpoint

RESULTS = Path(__file__).resolve().parent / "results" / "SERVING.md"
HOST = "127.0.0.1"


def bodies(checkpoint: str, data_dir: str | None, count: int) -> list[dict[str, Any]]:
    """Request bodies for the first ``count`` test windows (missing readings as null)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp, _ = experiment_from_checkpoint(checkpoint, data_dir, "cpu")
    ds = exp.dataset
    out = []
    for start in exp.data.splits["test"][:count].tolist():
        idx = slice(start, start + exp.spec.input_len)
        values = ds.series[idx, :, 0].numpy().astype(float)
        mask = ds.mask[idx].numpy()
        rows = [[float(v) if m else None for v, m in zip(values[t], mask[t], strict=True)]
                for t in range(values.shape[0])]
        out.append({"sensor_ids": list(ds.node_ids), "timestamps": [t.isoformat() for t in ds.timestamps[idx]],
                    "values": rows})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def load(url: str, payloads: list[dict[str, Any]], total: int, concurrency: int,
               seconds: float) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        async def worker() -> None:
            nonlocal sent, errors
            while sent < total and time.perf_counter() < deadline:
                body = payloads[sent % len(payloads)]
                sent += 1
                start = time.perf_counter()
                r = await client.post("/predict", json=body)
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


def serve(args: argparse.Namespace, port: int, max_batch: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "stgnn", "serve", "--checkpoint", args.checkpoint, "--host", HOST, "--port",
           str(port), "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms), "--quiet",
           "--no-download"]
    if args.onnx:
        cmd += ["--onnx", args.onnx]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"stgnn serve exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            r = httpx.get(f"{url}/health", timeout=2)
            if r.status_code == 200:
                return dict(httpx.get(f"{url}/model", timeout=5).json())
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"stgnn serve did not answer within {timeout:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--onnx", help="serve this ONNX export instead of the PyTorch model")
    ap.add_argument("--data-dir", default=os.environ.get("STGNN_DATA"))
    ap.add_argument("--requests", type=int, default=400, help="requests per setting (default 400)")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    ap.add_argument("--seconds", type=float, default=60, help="time limit per setting (default 60)")
    ap.add_argument("--max-batch", type=int, default=32, help="batch size of the batching setting (default 32)")
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--output", default=str(RESULTS))
    args = ap.parse_args()
    payloads = bodies(args.checkpoint, args.data_dir, 64)
    rows = []
    info: dict[str, Any] = {}
    for label, max_batch in (("no batching (--max-batch 1)", 1), (f"batching (--max-batch {args.max_batch}, "
                                                                   f"--max-wait-ms {args.max_wait_ms:g})",
                                                                   args.max_batch)):
        port = free_port()
        url = f"http://{HOST}:{port}"
        proc = serve(args, port, max_batch)
        try:
            info = wait_healthy(url, proc)
            asyncio.run(load(url, payloads, 2 * args.concurrency, args.concurrency, 30))  # warm-up
            latencies, errors, wall = asyncio.run(load(url, payloads, args.requests, args.concurrency, args.seconds))
            health = httpx.get(f"{url}/health", timeout=5).json()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        ms = np.array(latencies) * 1000
        row = {"setting": label, "answered": len(latencies), "errors": errors, "wall": wall,
               "rps": len(latencies) / wall, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
               "mean_batch": health["requests_run"] / max(health["batches_run"], 1)}
        rows.append(row)
        print(f"{label}: {row['answered']} answered, {errors} errors in {wall:.1f} s: {row['rps']:.1f} req/s, "
              f"p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, mean batch {row['mean_batch']:.1f}", flush=True)
    lines = [
        "# Serving load test (loopback)",
        "",
        f"`stgnn serve` with {info.get('model')} ({info.get('backend')}) trained on {info.get('dataset')} "
        f"({info.get('num_nodes')} sensors, {info.get('input_len')} steps in, {info.get('horizon')} out), "
        f"{args.concurrency} requests in flight from one asyncio client on the same machine, each a real test "
        f"window; at most {args.requests} requests or {args.seconds:g} s per setting, after a warm-up. Server and "
        "client share a 2-core machine that other processes were also using: the numbers compare the settings "
        "with each other, not with other machines.",
        "",
        "| setting | answered | errors | requests/s | p50 latency (ms) | p99 latency (ms) | mean windows per forward |",
        "|---|---|---|---|---|---|---|",
        *(f"| {r['setting']} | {r['answered']} | {r['errors']} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | "
          f"{r['mean_batch']:.1f} |" for r in rows),
        "",
        "Produced by:",
        "",
        "```bash",
        "OMP_NUM_THREADS=1 python experiments/serve_load.py " + shlex.join(sys.argv[1:]),
        "```",
        "",
    ]
    Path(args.output).write_text("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
