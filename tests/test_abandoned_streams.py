"""Clients that open a stream and never read it: the service abandons each response within
CKS_STREAM_STALL_S, which stops its run and its model call (the fake provider sees every
stream cancelled, none read to the end), and its memory returns to within 100 MB of where it
was before the streams."""

from __future__ import annotations

import json
import socket
import time

import psutil

from tests.fake_providers import fake_service_env, serve_fake_providers
from tests.service_process import start

CLIENTS = 20
STALL_S = 1.0
GRACE_S = 45.0
"""Buffers fill (a few seconds, more on a busy machine), then the stall bound runs out, then the cancellation reaches
the provider: long before the `long` model's 4096 tokens would have ended (80 s)."""
MEMORY_BYTES = 100 * 1024 * 1024


def _open_and_never_read(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = json.dumps({"question": "Tell me everything about every feature."}).encode()
    head = (
        f"POST /ai/assist/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def test_streams_nobody_reads_are_abandoned_and_their_model_calls_stop(tmp_path) -> None:
    with serve_fake_providers() as (fake_url, recorder):
        env = fake_service_env(
            fake_url, model="long", STREAM_STALL_S=str(STALL_S), MAX_TOKENS="4096"
        )
        service = start(tmp_path / "data", env=env, timeout=60)
        try:
            process = psutil.Process(service.process.pid)
            before = process.memory_info().rss
            sockets = [_open_and_never_read(service.url) for _ in range(CLIENTS)]
            try:
                deadline = time.monotonic() + GRACE_S + STALL_S
                while len(recorder.streams) < CLIENTS and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert recorder.streams == ["cancelled"] * CLIENTS
                time.sleep(1.0)
                assert process.memory_info().rss - before < MEMORY_BYTES
            finally:
                for sock in sockets:
                    sock.close()
        finally:
            service.stop()
