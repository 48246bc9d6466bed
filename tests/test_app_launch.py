"""The service started exactly as the desktop app starts it: `python -m uvicorn
context_kit_service.main:app --host 127.0.0.1 --port N` from the repository root (no
repository, no token, no other flag), and `python -m context_kit_service.main`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from context_kit_service.repository import load_repository
from tests.conftest import SAMPLE_REPO

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(
    url: str, process: subprocess.Popen[bytes], timeout: float = 60
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited"
        try:
            return httpx.get(f"{url}/health", timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"{url}/health did not answer within {timeout} s")


@pytest.mark.parametrize("launch", ["uvicorn", "module"])
def test_the_apps_launch_command_serves_the_service(tmp_path: Path, launch: str) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKS_")}
    env |= {"CKS_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    command = {
        "uvicorn": [
            *(sys.executable, "-m", "uvicorn", "context_kit_service.main:app"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        "module": [sys.executable, "-m", "context_kit_service.main"],
    }[launch]
    if launch == "module":
        env["CKS_PORT"] = str(port)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        health = _wait_healthy(url, process)
        assert health.status_code == 200
        assert set(health.json()["dependencies"].values()) <= {"available", "degraded"}
        listed = httpx.post(
            f"{url}/ai/tools/execute",
            json={"toolId": "context.list", "repoPath": str(SAMPLE_REPO)},
            timeout=30,
        ).json()
        entities = len(load_repository(SAMPLE_REPO).entities)
        assert (listed["metadata"]["status"], listed["result"]["count"]) == ("completed", entities)
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_bad_input_is_answered_as_the_apps_own_suite_expects(tmp_path: Path) -> None:
    """The app's integration suite, launched as the app launches the service (uvicorn, no
    repository), with a provider configured: an unknown tool is the tool's answer whatever
    the repository; a spec linked to a feature id of another form is kept as given when no
    repository can check it, with one model call; the entity says its type."""
    from tests.fake_providers import fake_service_env, serve_fake_providers

    port = _free_port()
    with serve_fake_providers() as (fake_url, recorder):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CKS_")}
        env |= {"CKS_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
        env |= fake_service_env(fake_url)
        command = [sys.executable, "-m", "uvicorn", "context_kit_service.main:app"]
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, process)
            unknown = httpx.post(
                f"{url}/ai/tools/execute",
                json={"toolId": "no.such.tool", "parameters": {}, "repoPath": "/path/to/repo"},
                timeout=30,
            )
            assert unknown.status_code == 200, unknown.text
            body = unknown.json()
            assert body["error"].startswith("unknown tool 'no.such.tool'; known tools: ")
            assert body["metadata"]["toolId"] == "no.such.tool"
            assert body["metadata"]["durationMs"] >= 0
            calls_before = len(recorder.requests)
            spec = httpx.post(
                f"{url}/ai/generate-entity",
                json={
                    "entityType": "spec",
                    "userPrompt": "Specify the passkey sign-in flow",
                    "linkedFeatureId": "feature-auth-001",
                },
                timeout=60,
            )
            assert spec.status_code == 200, spec.text
            out = spec.json()
            assert out["entity"] == {
                "id": "SPEC-001",
                "title": "Export file format",
                "type": "data",
                "related": {"features": ["feature-auth-001"]},
            }
            assert out["entityType"] == "spec"
            assert out["validation"] == {
                "valid": True,
                "errors": [],
                "unchecked": ["related.features.0: kept as given, not checked (no repository)"],
            }
            assert len(recorder.requests) - calls_before == 1
            story = httpx.post(
                f"{url}/ai/generate-entity",
                json={"entityType": "userstory", "userPrompt": "Members export their budget"},
                timeout=60,
            ).json()
            assert (story["entity"]["type"], story["entityType"]) == ("userstory", "userstory")
        finally:
            process.terminate()
            process.wait(timeout=15)
