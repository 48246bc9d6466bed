"""Streaming benchmark (issue 7 targets), measured in this run:

- server overhead per streamed token, model yield -> client receipt, p50 (target <= 1 ms),
  against a bare StreamingResponse in the same server (the baseline);
- time to first token through the server with the embedded model and a short prompt
  (target <= 300 ms);
- concurrent streams one process holds with a fake model at 20 tokens/s each, before the p99
  lateness of a token (its gap beyond the nominal 50 ms) passes 50 ms (target >= 200). The
  client is a separate process reading raw sockets, on the same two cores, so it still shares
  the load it measures.

    .venv/bin/python bench/streaming.py
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
QUESTION = {"question": "Hi", "config": {"provider": "local", "temperature": 0, "maxTokens": 8}}


def spawn(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "streaming_server.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/health", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("benchmark server did not start")


async def stream_tokens(
    client: httpx.AsyncClient, url: str, body: dict
) -> list[tuple[float, float]]:
    """(yield time on the server, receipt time here) for every token event."""
    out = []
    async with client.stream("POST", url, json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith('data: {"type":"token"'):
                received = time.perf_counter()
                out.append((float(json.loads(line[6:])["token"]), received))
    return out


async def overhead(url: str) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        results = {}
        for name, path, body in [
            ("bare StreamingResponse", "/raw", {}),
            ("/ai/assist/stream", "/ai/assist/stream", {"question": "go"}),
        ]:
            samples: list[float] = []
            for _ in range(5):
                pairs = await stream_tokens(client, f"{url}{path}", body)
                samples += [(received - sent) * 1000 for sent, received in pairs]
            results[name] = statistics.median(samples)
            print(
                f"  {name:24} yield -> receipt p50 {results[name]:.3f} ms, "
                f"p99 {np.percentile(samples, 99):.3f} ms"
            )
    ours = results["/ai/assist/stream"]
    print(
        f"  service overhead per token p50 {ours:.3f} ms "
        f"(baseline {results['bare StreamingResponse']:.3f} ms); "
        f"target <= 1 ms: {'PASS' if ours <= 1 else 'FAIL'}"
    )


async def raw_stream(url: str, delay: float) -> list[tuple[float, float]]:
    """One `/ai/assist/stream` over a bare socket (httpx would cost the shared CPU more than
    the server does): (yield time on the server, receipt time here) per token."""
    await asyncio.sleep(delay)
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"question": "go"}'
    writer.write(
        b"POST /ai/assist/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    out = []
    while line := await reader.readline():
        if line.startswith(b'data: {"type":"token"'):
            out.append((float(json.loads(line[6:])["token"]), time.perf_counter()))
    writer.close()
    return out


async def concurrency(url: str, tokens: int) -> None:
    """Streams arrive over 2 s and each lasts tokens/20 s; lateness is measured while all of
    them are open (the steady state), and over the whole run."""
    for streams in (100, 200, 300, 400):
        runs = await asyncio.gather(*[raw_stream(url, 2.0 * i / streams) for i in range(streams)])
        all_open = max(pairs[0][1] for pairs in runs if pairs)
        first_done = min(pairs[-1][1] for pairs in runs if pairs)
        gaps = [(b[1], (b[1] - a[1]) * 1000 - 50) for p in runs for a, b in itertools.pairwise(p)]
        steady = [late for at, late in gaps if all_open <= at <= first_done]
        p99 = float(np.percentile(steady, 99))
        complete = sum(len(pairs) == tokens for pairs in runs)
        print(
            f"  {streams:4} streams at 20 tokens/s: p99 lateness {p99:6.1f} ms while all are "
            f"open ({float(np.percentile([g for _, g in gaps], 99)):6.1f} ms over the run), "
            f"{complete}/{streams} complete"
        )
        if p99 > 50:
            break


def start_service() -> tuple[subprocess.Popen[str], str]:
    """The real service on the embedded default, as the app runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKS_")}
    env |= {
        "CKS_DATA_DIR": tempfile.mkdtemp(),
        "HF_HUB_OFFLINE": "1",
        "CKS_REPO_PATH": str(HERE.parent / "examples/context-repo"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "context_kit_service.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())["url"]


async def first_token(url: str) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        timings = []
        for attempt in range(6):
            body = {**QUESTION, "question": f"Hi, question {attempt}"}
            started = time.perf_counter()
            async with client.stream("POST", f"{url}/ai/assist/stream", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith('data: {"type":"token"'):
                        if attempt:  # the first request loads the model
                            timings.append((time.perf_counter() - started) * 1000)
                        break
    p50 = statistics.median(timings)
    print(
        f"  embedded model, short prompt: p50 {p50:.0f} ms (target <= 300 ms): "
        f"{'PASS' if p50 <= 300 else 'FAIL'}"
    )


def main() -> None:
    print("per-token overhead (fake model, one stream, 100 tokens/s):")
    process, url = spawn("--interval", "0.01", "--tokens", "100")
    try:
        asyncio.run(overhead(url))
    finally:
        process.terminate()
    print("concurrent streams (fake model, 20 tokens/s, 200 tokens each; target >= 200):")
    process, url = spawn("--interval", "0.05", "--tokens", "200")
    try:
        asyncio.run(concurrency(url, 200))
    finally:
        process.terminate()
    print("time to first token through the server:")
    process, url = start_service()
    try:
        asyncio.run(first_token(url))
    finally:
        process.terminate()
        process.communicate(timeout=10)


if __name__ == "__main__":
    main()
