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
