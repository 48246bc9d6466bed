"""Requests that cross threads, send messages of the wrong shape, or fish for paths: each
graph's threads are its own (a foreign id is 409, never a resume), every non-object message
is a 422 naming it on every assistant route, and no answer names the service's folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.server import create_app
from context_kit_service.settings import Settings
from tests.fakes import replies

THREAD = "shared-7"


@pytest.fixture
def http(tmp_path: Path, sample_copy: Path) -> Iterator[TestClient]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "data",
        allowed_hosts=["testserver"],
        repo_path=sample_copy,
    )
    model = replies(*[{"title": "Export the budget", "status": "todo"}] * 5)
    app = create_app(settings, chat_model=model, embeddings=DeterministicFakeEmbedding(size=32))
    with TestClient(app) as client:
        yield client


def _pause_tools(http: TestClient, thread: str) -> dict[str, Any]:
    body = {
        "toolId": "context.create",
        "parameters": {"entityType": "task", "fields": {"title": "Paused", "status": "todo"}},
        "threadId": thread,
    }
    paused: dict[str, Any] = http.post("/ai/tools/execute", json=body).json()
    assert paused["metadata"]["status"] == "pending_approval"
    return body


APPROVAL = {"approved": True}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/graphs/assistant/invoke", {"input": {"approval": APPROVAL}}),
        (
            "/graphs/generate/invoke",
            {
                "input": {
                    "approval": APPROVAL,
                    "entity_type": "task",
                    "user_prompt": "A task about exports",
                }
            },
        ),
        ("/graphs/tools/invoke", {"input": {"approval": APPROVAL, "tool_id": "context.create"}}),
    ],
    ids=["assistant", "generate", "tools"],
)
@pytest.mark.parametrize("foreign", ["tools:", "generate:", "assistant:"])
def test_no_graph_resumes_another_graphs_thread(
    http: TestClient, sample_copy: Path, path: str, body: dict[str, Any], foreign: str
) -> None:
    tools_body = _pause_tools(http, THREAD)
    before = sorted(p.name for p in (sample_copy / "contexts" / "tasks").iterdir())
    body = {**body, "config": {"configurable": {"thread_id": foreign + THREAD}}}
    response = http.post(path, json=body)
    assert (response.status_code, response.json()["code"]) == (409, "NO_PENDING_APPROVAL")
    assert sorted(p.name for p in (sample_copy / "contexts" / "tasks").iterdir()) == before
    still = http.post("/ai/tools/execute", json={**tools_body, "approval": APPROVAL}).json()
    assert still["metadata"]["status"] == "completed"


def test_the_assistant_threads_route_reads_only_assistant_threads(http: TestClient) -> None:
    _pause_tools(http, THREAD)
    assert http.get("/ai/threads").json() == {"threads": []}
    for thread in (THREAD, f"tools:{THREAD}"):
        assert http.get(f"/ai/threads/{thread}").status_code == 404


SHAPES = {"string": "hi", "number": 3, "null": None, "boolean": True, "list": ["hi"]}
KINDS = {
    "string": "a string",
    "number": "a number",
    "null": "null",
    "boolean": "a boolean",
    "list": "a list",
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("endpoint", ["invoke", "stream", "stream_events", "stream_log", "batch"])
def test_a_message_that_is_not_an_object_is_a_422_naming_it(
    http: TestClient, shape: str, endpoint: str
) -> None:
    turn = {"messages": [{"type": "human", "content": "hi"}, SHAPES[shape]]}
    body = {"inputs": [turn]} if endpoint == "batch" else {"input": turn}
    response = http.post(f"/graphs/assistant/{endpoint}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert (
        f"messages[1]: must be an object with a type and content, not {KINDS[shape]}"
        in response.json()["message"]
    )


@pytest.mark.parametrize("repo_path", ["/proc/self/cwd", "/proc/self/root/proc/self/cwd"])
def test_an_error_never_names_the_services_own_folder(http: TestClient, repo_path: str) -> None:
    for path, body in [
        ("/ai/tools/execute", {"toolId": "context.list", "repoPath": repo_path}),
        ("/ai/rag/query", {"query": "Who owns the ledger?", "repoPath": repo_path}),
    ]:
        response = http.post(path, json=body)
        assert response.status_code == 400
        assert response.json()["message"] == (
            f"{repo_path} is not a context repository: it has no contexts or .context folder"
        )
        assert os.getcwd() not in response.text
