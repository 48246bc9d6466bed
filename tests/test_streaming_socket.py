"""Tokens reach a single client as they are generated: the `serve` command's connections have
TCP_NODELAY, so no token waits for the client's delayed ACK (about 40 ms)."""

from __future__ import annotations

import itertools
import json
import socket
import time
from pathlib import Path

from context_kit_service.cli import _bind
from tests.fake_providers import TICK_S, TICKS, serve_fake_providers
from tests.service_process import start


def test_the_listening_socket_is_tcp_so_accepted_connections_get_nodelay() -> None:
    sock = _bind("127.0.0.1", 0)
    try:
        assert (sock.family, sock.type, sock.proto) == (
            socket.AF_INET,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
        )
    finally:
        sock.close()


def _arrivals(url: str, body: dict[str, object]) -> list[tuple[float, dict[str, object]]]:
    """POST with a raw socket (no client-side buffering) and time every SSE event's arrival."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    request = (
        f"POST /ai/assist/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + payload
    events: list[tuple[float, dict[str, object]]] = []
    buffer = b""
    with socket.create_connection((host, int(port)), timeout=30) as client:
        client.sendall(request)
        while chunk := client.recv(65536):
            now = time.perf_counter()
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                for line in block.split(b"\n"):
                    if line.startswith(b"data: {"):
                        events.append((now, json.loads(line[6:])))
    return events


def test_each_token_arrives_before_the_next_is_generated(tmp_path: Path) -> None:
    with serve_fake_providers() as (fake_url, _):
        env = {
            "CKS_PROVIDER": "openai",
            "CKS_MODEL": "tick",
            "CKS_BASE_URL": f"{fake_url}/v1",
            "CKS_API_KEY": "test-key",
        }
        service = start(tmp_path / "data", env=env, timeout=60)
        try:
            _arrivals(service.url, {"question": "warm up"})
            events = _arrivals(service.url, {"question": "Say hello"})
        finally:
            service.stop()
    tokens = [at for at, event in events if event["type"] == "token"]
    assert [event["type"] for _, event in events] == ["token"] * len(TICKS) + ["complete"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(tokens)]
    # Generated TICK_S apart, so received about TICK_S apart, never bunched together.
    assert all(gap > TICK_S * 0.6 for gap in gaps), gaps
