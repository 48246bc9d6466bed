"""Tokens reach a single client as they are generated: the `serve` command's connections have
TCP_NODELAY, so no small write waits for the client's delayed ACK (about 40 ms)."""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
import socket
import statistics
import time
from pathlib import Path

from tests.fake_providers import TICK_S, TICKS, serve_fake_providers
from tests.service_process import start

SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438


def _server_fd(pid: int, client_port: int) -> int:
    """The descriptor, in process `pid`, of the connection whose peer is `client_port`."""
    sockets = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
        if match := re.fullmatch(r"socket:\[(\d+)\]", link):
            sockets[match.group(1)] = int(fd)
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == client_port and fields[9] in sockets:
            return sockets[fields[9]]
    raise LookupError(f"no connection from port {client_port} in process {pid}")


def _nodelay_in(pid: int, fd: int) -> int:
    """TCP_NODELAY of another process's socket, read through a copy of its descriptor."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    assert pidfd >= 0, os.strerror(ctypes.get_errno())
    try:
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        assert copy >= 0, os.strerror(ctypes.get_errno())
        with socket.socket(fileno=copy) as sock:
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        os.close(pidfd)


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


def test_every_accepted_connection_has_tcp_nodelay(tmp_path: Path) -> None:
    service = start(tmp_path / "data", timeout=60)
    try:
        host, port = service.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as client:
            client.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert client.recv(12) == b"HTTP/1.1 200"
            pid = int(service.ready["pid"])
            fd = _server_fd(pid, client.getsockname()[1])
            assert _nodelay_in(pid, fd) == 1
    finally:
        service.stop()


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
    assert gaps[0] > TICK_S / 2, gaps  # the first token did not wait for the second
    assert statistics.median(gaps) > TICK_S * 0.75, gaps  # they arrive as generated
