"""Startup benchmark: process start -> healthy, and idle RSS before the first model call.

Targets (issue 3): time to healthy <= 2 s, idle RSS <= 250 MB. As a baseline measured in the
same run, a bare FastAPI app under uvicorn is started the same way; the ratio shows what the
service adds on top of the web stack itself.

    .venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import psutil

BASELINE = """
import socket, sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/health")
async def health():
    return {"status": "healthy"}
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(128)
config = uvicorn.Config(app, log_level="warning")
server = uvicorn.Server(config)
import asyncio
async def main():
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.005)
    print('{"url": "http://127.0.0.1:%d"}' % sock.getsockname()[1], flush=True)
    await task
asyncio.run(main())
"""


def _wait_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        raise TimeoutError("no ready line")
    return process.stdout.readline()


def _measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds from spawn until /health answers 200, and RSS (MB) once idle."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        url = json.loads(_wait_line(process, 60))["url"]
        while httpx.get(f"{url}/health", timeout=5).status_code != 200:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        time.sleep(0.5)
        rss = psutil.Process(process.pid).memory_info().rss / 2**20
        return elapsed, rss
    finally:
        process.terminate()
        process.communicate(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CKS_")}
        env |= {"CKS_DATA_DIR": data_dir, "HF_HUB_OFFLINE": "1"}
        service = [sys.executable, "-m", "context_kit_service.cli", "serve", "--port", "0"]
        baseline = [sys.executable, "-c", BASELINE]
        rows = {"baseline (bare FastAPI)": [], "context-kit-service": []}
        for _ in range(args.runs):
            rows["baseline (bare FastAPI)"].append(_measure(baseline, env))
            rows["context-kit-service"].append(_measure(service, env))
    print(f"{'':26} {'to healthy p50':>15} {'max':>8} {'idle RSS':>10}")
    for name, samples in rows.items():
        times = [t for t, _ in samples]
        rss = max(r for _, r in samples)
        print(f"{name:26} {statistics.median(times):>13.3f} s {max(times):>6.3f} s {rss:>7.0f} MB")
    base = statistics.median(t for t, _ in rows["baseline (bare FastAPI)"])
    ours = statistics.median(t for t, _ in rows["context-kit-service"])
    ours_rss = max(r for _, r in rows["context-kit-service"])
    print(f"ratio to baseline: {ours / base:.2f}x")
    print(f"target time to healthy <= 2.0 s: {'PASS' if ours <= 2.0 else 'FAIL'} ({ours:.3f} s)")
    print(f"target idle RSS <= 250 MB: {'PASS' if ours_rss <= 250 else 'FAIL'} ({ours_rss:.0f} MB)")


if __name__ == "__main__":
    main()
