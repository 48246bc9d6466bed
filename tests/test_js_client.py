"""The JavaScript side, run by node's test runner from `clients/js` (`make install` installs
its packages with `npm ci`): every graph through `@langchain/core`'s RemoteRunnable, the
Electron sidecar helper, and the LangServe playground in Debian's Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SAMPLE_REPO, AgentService

CLIENT = REPO_ROOT / "clients" / "js"
OUTPUT = REPO_ROOT / "test-results"


def run_node_tests(pattern: str, env: dict[str, str]) -> None:
    if not (CLIENT / "node_modules" / "@langchain" / "core").is_dir():
        pytest.fail("clients/js has no node_modules: run `make install` (npm ci)")
    node = shutil.which("node")
    assert node, "node is not on PATH"
    result = subprocess.run(
        [node, "--test", "--test-concurrency=1", "--test-reporter=spec", pattern],
        cwd=CLIENT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, f"node tests failed:\n{result.stdout}\n{result.stderr}"
    assert "# fail 0" in result.stdout or "\u2139 fail 0" in result.stdout, result.stdout


def service_env(service: AgentService) -> dict[str, str]:
    return {
        "CKS_E2E_URL": service.url,
        "CKS_E2E_TOKEN": service.token,
        "CKS_E2E_PROVIDER_URL": service.provider_url,
        "CKS_E2E_OUTPUT": str(OUTPUT),
    }


def test_every_graph_through_the_js_remote_runnable(agent_service: AgentService) -> None:
    run_node_tests("test/remote.test.js", service_env(agent_service))


def test_the_electron_sidecar_helper(agent_service: AgentService) -> None:
    command = Path(sys.executable).with_name("context-kit-service")
    env = {
        **service_env(agent_service),
        "CKS_SERVICE_COMMAND": str(command),
        "CKS_SAMPLE_REPO": str(SAMPLE_REPO),
        "HF_HUB_OFFLINE": "1",
    }
    run_node_tests("test/sidecar.test.js", env)


def test_the_playground_in_chromium(agent_service: AgentService) -> None:
    screenshot = OUTPUT / "playground-rag.png"
    screenshot.unlink(missing_ok=True)
    run_node_tests("test/playground.test.js", service_env(agent_service))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_typescript_declarations_match_the_service(agent_service: AgentService) -> None:
    run_node_tests("test/types.test.js", service_env(agent_service))
