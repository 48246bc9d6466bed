"""`context-kit-service serve` as the Electron app runs it: a real subprocess."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fake_providers import serve_fake_providers
from tests.service_process import spawn, start


def test_ready_line_then_healthy_then_sigterm_exits_zero(tmp_path: Path) -> None:
    service = start(tmp_path / "data")
    ready = service.ready
    assert set(ready) == {"event", "url", "port", "pid", "_seconds"}
    assert ready["event"] == "ready"
    assert ready["pid"] == service.process.pid
    assert ready["url"] == f"http://127.0.0.1:{ready['port']}"
    assert ready["port"] > 0

    response = httpx.get(f"{service.url}/health", headers={"X-Request-ID": "trace-me-42"})
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"

    started = time.monotonic()
    code, out, err = service.finish(signal.SIGTERM)
    assert code == 0
    assert time.monotonic() - started < 5
    assert out == ""  # the ready line was the only line on stdout
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [entry for entry in logs if entry.get("requestId") == "trace-me-42"]
    assert [(entry["message"], entry["path"], entry["status"]) for entry in access] == [
        ("request", "/health", 200)
    ]


def test_sigint_also_shuts_down_gracefully(tmp_path: Path) -> None:
    service = start(tmp_path / "data")
    assert service.finish(signal.SIGINT, timeout=5)[0] == 0


def test_parent_pid_watchdog_exits_when_the_parent_dies(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        service = start(tmp_path / "data", "--parent-pid", str(parent.pid))
        assert httpx.get(f"{service.url}/health").status_code == 200
        parent.kill()
        parent.wait()
        gone = time.monotonic()
        code, _, _ = service.finish(timeout=10)
        assert time.monotonic() - gone < 2.0
        assert code == 0
    finally:
        parent.kill()


def test_a_dead_parent_pid_is_refused(tmp_path: Path) -> None:
    ghost = subprocess.Popen([sys.executable, "-c", "pass"])
    ghost.wait()
    process = spawn(tmp_path / "data", "--parent-pid", str(ghost.pid))
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out) == (2, "")
    assert err == f"error: --parent-pid {ghost.pid} is not a running process\n"


def test_non_loopback_host_without_token_is_refused(tmp_path: Path) -> None:
    process = spawn(tmp_path / "data", "--host", "0.0.0.0")
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out) == (2, "")
    assert err == (
        "error: refusing to bind 0.0.0.0 (not loopback) without an auth token; "
        "set CKS_AUTH_TOKEN or bind 127.0.0.1\n"
    )


def test_non_loopback_host_with_token_serves_only_with_the_token(tmp_path: Path) -> None:
    service = start(
        tmp_path / "data", "--host", "0.0.0.0", env={"CKS_AUTH_TOKEN": "abc123-long-enough-token"}
    )
    try:
        url = f"http://127.0.0.1:{service.ready['port']}"
        assert service.ready["url"] == f"http://0.0.0.0:{service.ready['port']}"
        assert httpx.get(f"{url}/health").status_code == 401
        authed = httpx.get(
            f"{url}/health", headers={"Authorization": "Bearer abc123-long-enough-token"}
        )
        assert authed.status_code == 200
    finally:
        assert service.stop() == 0


def test_port_zero_gives_distinct_free_ports(tmp_path: Path) -> None:
    first = start(tmp_path / "a")
    second = start(tmp_path / "b")
    try:
        assert first.ready["port"] != second.ready["port"]
    finally:
        assert first.stop() == 0
        assert second.stop() == 0


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    holder = start(tmp_path / "a")
    try:
        process = spawn(tmp_path / "b", "--port", str(holder.ready["port"]))
        out, err = process.communicate(timeout=30)
        assert (process.returncode, out) == (2, "")
        assert (
            err == f"error: cannot bind 127.0.0.1:{holder.ready['port']}: Address already in use\n"
        )
    finally:
        holder.stop()


def test_sigterm_cancels_an_in_flight_token_stream(tmp_path: Path) -> None:
    """A stream of 40 tokens 20 ms apart (the fake server's `tick` model) is cut short by
    SIGTERM after its third token, and the service exits at once. (The embedded model's answer
    is too short to be sure to be cut: under the citation grammar it may end in a few tokens.)"""
    from tests.conftest import SAMPLE_REPO

    with serve_fake_providers() as (fake_url, _):
        env = {
            "CKS_REPO_PATH": str(SAMPLE_REPO),
            "CKS_PROVIDER": "openai",
            "CKS_MODEL": "tick",
            "CKS_BASE_URL": f"{fake_url}/v1",
            "CKS_API_KEY": "test-key",
        }
        service = start(tmp_path / "data", env=env)
        try:
            request = {"input": {"query": "Describe every feature of the project in detail."}}
            tokens = 0
            with httpx.stream(
                "POST", f"{service.url}/graphs/rag/stream_events", json=request, timeout=120
            ) as response:
                lines = response.iter_lines()
                for line in lines:
                    if (
                        '"event": "on_chat_model_stream"' in line
                        or '"event":"on_chat_model_stream"' in line
                    ):
                        tokens += 1
                        if tokens == 3:
                            break
                assert tokens == 3
                signalled = time.monotonic()
                service.process.send_signal(signal.SIGTERM)
                after: list[str] = []
                with contextlib.suppress(httpx.HTTPError):
                    after.extend(lines)
            events = [line for line in after if line.startswith("event:")]
            assert "event: end" not in events  # the answer was cut short, not finished
            code, _, err = service.finish(timeout=15)
            assert code == 0, err[-2000:]
            assert time.monotonic() - signalled < 5
        finally:
            if service.process.returncode is None:  # an assertion failed before `finish`
                service.stop()
