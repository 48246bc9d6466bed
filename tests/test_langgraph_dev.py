"""LangGraph Studio's server: `langgraph dev` loads every graph from `langgraph.json`, and
`langgraph-sdk` runs each on a thread with streamed values (the fake provider's `agent`
model answers)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.conftest import REPO_ROOT, SAMPLE_REPO, AgentService
from tests.fake_providers import AGENT_TASK

RUNS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tool_execution": (
        {"tool_id": "pipeline.next-id", "parameters": {"entity_type": "task"}},
        {"status": "completed", "tool": "next_id", "result": {"entityType": "task", "id": "T-011"}},
    ),
    "generation": (
        {
            "entity_type": "task",
            "user_prompt": "Index the budget lines so the view is fast",
            "linked_feature_id": "FEAT-003",
        },
        {
            "status": "completed",
            "valid": True,
            "entity": AGENT_TASK,
        },
    ),
    "rag": ({"query": "How do people sign in with a passkey?"}, {"answer": "See [FEAT-001]."}),
    "assistant": (
        {"messages": [{"type": "human", "content": "What is FEAT-001 about?"}]},
        {"answer": "See [FEAT-001]."},
    ),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def studio(agent_service: AgentService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKS_")}
    env |= {
        "CKS_PROVIDER": "openai",
        "CKS_MODEL": "agent",
        "CKS_BASE_URL": agent_service.provider_url,
        "CKS_API_KEY": "test-key",
        "CKS_REPO_PATH": str(SAMPLE_REPO),
        "CKS_DATA_DIR": str(tmp_path_factory.mktemp("studio")),
        "LANGSMITH_TRACING": "false",
    }
    command = Path(sys.executable).with_name("langgraph")
    assert shutil.which(str(command)), "langgraph-cli[inmem] is a development dependency"
    args = ["dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path_factory.mktemp("studio-log") / "langgraph-dev.log"
    with log.open("w") as output:  # a file, not a pipe nobody reads while the tests run
        process = subprocess.Popen(
            [str(command), *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            process.kill()
            process.wait()
            raise AssertionError(f"langgraph dev did not start:\n{log.read_text()}")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def test_studio_lists_every_graph(studio: str) -> None:
    async with get_client(url=studio) as client:
        assistants = await client.assistants.search(limit=20)
    assert sorted(a["graph_id"] for a in assistants) == sorted(RUNS)


@pytest.mark.parametrize("graph_id", list(RUNS))
async def test_studio_runs_each_graph_on_a_thread(studio: str, graph_id: str) -> None:
    payload, expected = RUNS[graph_id]
    async with get_client(url=studio) as client:
        thread = await client.threads.create()
        parts = [
            part
            async for part in client.runs.stream(
                thread["thread_id"], graph_id, input=payload, stream_mode="values"
            )
        ]
        state = await client.threads.get_state(thread["thread_id"])
    assert parts[0].event == "metadata"
    values = [part.data for part in parts if part.event == "values"]
    assert values, [part.event for part in parts]
    final = values[-1]
    assert {key: final.get(key) for key in expected} == expected
    assert {key: state["values"].get(key) for key in expected} == expected
