"""One error policy: each known failure cause gets the same status and code on every route
family (REST, LangServe invoke, LangServe stream, the app's SSE route), and a disconnect
logs nothing at error level."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.server import create_app
from tests.conftest import SAMPLE_REPO
from tests.fake_providers import serve_fake_providers
from tests.fakes import replies
from tests.service_process import start

RELATIVE = "relative/repo"
REFUSED = (400, "REPOSITORY_REFUSED", "repository path must be absolute: relative/repo")
NOTHING_PENDING = (409, "NO_PENDING_APPROVAL", "has no change waiting for approval")
TOO_MANY_TOKENS = (
    422,
    "INVALID_CONFIG",
    "max_tokens must be between 1 and 4096 (CKS_MAX_TOKENS_LIMIT)",
)
CONFIG = {"provider": "openai", "model": "x", "endpoint": None}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from context_kit_service.settings import Settings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("policy"),
        allowed_hosts=["testserver"],
        repo_path=SAMPLE_REPO,
    )
    model = replies(*["See [FEAT-001]."] * 50)
    app = create_app(settings, chat_model=model, embeddings=DeterministicFakeEmbedding(size=32))
    with TestClient(app) as client:
        yield client


# (graph path, LangServe input, REST route, REST body) per cause; None where it does not apply.
def _cases() -> dict[str, list[tuple[str, dict[str, Any], str | None, dict[str, Any] | None]]]:
    tools_in = {"tool_id": "context.list", "repo_path": RELATIVE}
    rag_in = {"query": "Who owns the ledger?", "repo_path": RELATIVE}
    gen_in = {
        "entity_type": "task",
        "user_prompt": "Write a task about exports",
        "repo_path": RELATIVE,
    }
    assist_in = {"messages": [{"type": "human", "content": "hi"}], "repo_path": RELATIVE}
    return {
        "relative repository": [
            (
                "/graphs/tools",
                tools_in,
                "/ai/tools/execute",
                {"toolId": "context.list", "repoPath": RELATIVE},
            ),
            (
                "/graphs/rag",
                rag_in,
                "/ai/rag/query",
                {"query": "Who owns it?", "repoPath": RELATIVE},
            ),
            (
                "/graphs/generate",
                gen_in,
                "/ai/generate-entity",
                {
                    "entityType": "task",
                    "userPrompt": "Write a task about exports",
                    "repoPath": RELATIVE,
                },
            ),
            (
                "/graphs/assistant",
                assist_in,
                "/ai/assist/stream",
                {"question": "hi", "repoPath": RELATIVE},
            ),
        ],
        "approval with nothing pending": [
            (
                "/graphs/tools",
                {"tool_id": "context.list", "approval": {"approved": True}},
                "/ai/tools/execute",
                {"toolId": "context.list", "threadId": "t-none", "approval": {"approved": True}},
            ),
            (
                "/graphs/generate",
                {**gen_in, "repo_path": "", "approval": {"approved": True}},
                "/ai/generate-entity",
                {
                    "entityType": "task",
                    "userPrompt": "Write a task about exports",
                    "threadId": "t-none",
                    "approval": {"approved": True},
                },
            ),
            (
                "/graphs/assistant",
                {"approval": {"approved": True}},
                "/ai/assist/stream",
                {"question": "yes", "threadId": "t-none", "approval": {"approved": True}},
            ),
        ],
    }


EXPECTED = {"relative repository": REFUSED, "approval with nothing pending": NOTHING_PENDING}
FAMILIES = ["rest", "invoke", "stream"]


def _sse_error(text: str) -> dict[str, Any]:
    """The error event of a LangServe stream, or the app's SSE route."""
    if "event: error" in text:
        data = text.split("event: error", 1)[1].split("data: ", 1)[1].split("\r\n", 1)[0]
        return json.loads(data)  # type: ignore[no-any-return]
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert text.rstrip().endswith("data: [DONE]"), text
    (error,) = [e for e in events if e["type"] == "error"]
    return error  # type: ignore[no-any-return]


def _observe(http: TestClient, family: str, case: tuple[Any, ...]) -> tuple[int, str, str] | None:
    graph, graph_input, rest, rest_body = case
    if family == "rest":
        if rest is None:
            return None
        response = http.post(rest, json=rest_body)
        if rest.endswith("/stream"):
            event = _sse_error(response.text)
            return event.get("status_code", response.status_code), event["code"], event["message"]
    else:
        config = {"configurable": {"thread_id": "t-none"}}
        response = http.post(f"{graph}/{family}", json={"input": graph_input, "config": config})
        if family == "stream":
            event = _sse_error(response.text)
            return event["status_code"], event["code"], event["message"]
    body = response.json()
    return response.status_code, body["code"], body["message"]


@pytest.mark.parametrize("family", [*FAMILIES, "sse"])
@pytest.mark.parametrize("cause", list(EXPECTED))
def test_the_same_cause_gets_the_same_answer_everywhere(
    http: TestClient, cause: str, family: str
) -> None:
    status, code, message = EXPECTED[cause]
    cases = _cases()[cause]
    if family == "sse":
        cases = [c for c in cases if c[2] == "/ai/assist/stream"]
        family = "rest"
    elif family == "rest":
        cases = [c for c in cases if c[2] != "/ai/assist/stream"]
    for case in cases:
        seen = _observe(http, family, case)
        assert seen is not None
        seen_status, seen_code, seen_message = seen
        if case[2] == "/ai/assist/stream" and family == "rest":
            seen_status = status  # the app's SSE route carries the code in its error event
        assert (seen_status, seen_code) == (status, code), (case[0], family, seen)
        assert message in seen_message


@pytest.mark.parametrize("family", ["rest", "invoke", "stream", "sse"])
def test_max_tokens_over_the_limit_is_the_same_422_everywhere(
    http: TestClient, family: str
) -> None:
    if family == "rest":
        response = http.post(
            "/ai/rag/query",
            json={
                "query": "Who owns it?",
                "config": {"provider": "openai", "model": "m", "maxTokens": 5000},
            },
        )
        seen = (response.status_code, response.json()["code"], response.json()["message"])
    elif family == "sse":
        response = http.post(
            "/ai/assist/stream",
            json={
                "question": "hi",
                "config": {"provider": "openai", "model": "m", "maxTokens": 5000},
            },
        )
        event = _sse_error(response.text)
        seen = (422, event["code"], event["message"])
    else:
        body = {
            "input": {"query": "Who owns it?"},
            "config": {"configurable": {"max_tokens": 5000}},
        }
        response = http.post(f"/graphs/rag/{family}", json=body)
        if family == "stream":
            event = _sse_error(response.text)
            seen = (event["status_code"], event["code"], event["message"])
        else:
            seen = (response.status_code, response.json()["code"], response.json()["message"])
    assert seen == TOO_MANY_TOKENS


def test_disconnects_log_nothing_at_error_level(tmp_path: Path) -> None:
    """Clients that close `/ai/assist/stream` mid-answer (the app's cancel) and LangServe streams
    early: the service log has no error line, and the service keeps serving."""
    log = tmp_path / "service.log"
    with serve_fake_providers() as (fake_url, _):
        env = {
            "CKS_PROVIDER": "openai",
            "CKS_MODEL": "slow",
            "CKS_BASE_URL": f"{fake_url}/v1",
            "CKS_API_KEY": "test-key",
            "CKS_REPO_PATH": str(SAMPLE_REPO),
        }
        service = start(tmp_path / "data", env=env, timeout=60, log=log)
        try:
            for n in range(10):
                path, body = (
                    ("/ai/assist/stream", {"question": f"Tell me about FEAT-00{n}"})
                    if n % 2 == 0
                    else (
                        "/graphs/assistant/stream_events",
                        {"input": {"messages": [{"type": "human", "content": "hi"}]}},
                    )
                )
                with httpx.stream(
                    "POST", f"{service.url}{path}", json=body, timeout=10
                ) as response:
                    assert response.status_code == 200
                    time.sleep(0.3)  # the model is still thinking; the client gives up
            time.sleep(1.0)
            assert httpx.get(f"{service.url}/ready", timeout=5).status_code == 200
        finally:
            service.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["level"] in ("error", "critical")]
    assert errors == []
    assert sum(1 for line in lines if line.get("message") == "request") >= 11
    assert "Traceback" not in log.read_text()


def test_a_graph_cannot_resume_another_graphs_paused_thread(http: TestClient) -> None:
    create = {
        "toolId": "context.create",
        "parameters": {"entity_type": "task", "fields": {"title": "Export"}},
        "threadId": "shared-thread",
    }
    paused = http.post("/ai/tools/execute", json=create).json()
    assert (paused["metadata"]["status"], paused["metadata"]["threadId"]) == (
        "pending_approval",
        "shared-thread",
    )
    approval = {"approved": True}
    for path, body in [
        (
            "/graphs/generate/invoke",
            {
                "input": {
                    "entity_type": "task",
                    "user_prompt": "A task about exports",
                    "approval": approval,
                }
            },
        ),
        ("/graphs/assistant/invoke", {"input": {"approval": approval}}),
    ]:
        body["config"] = {"configurable": {"thread_id": "shared-thread"}}
        response = http.post(path, json=body)
        assert (response.status_code, response.json()["code"]) == (409, "NO_PENDING_APPROVAL")
        assert response.json()["message"] == (
            "thread shared-thread has no change waiting for approval"
        )
    rejected = http.post(
        "/ai/tools/execute", json={**create, "approval": {"approved": False}}
    ).json()
    assert rejected["metadata"]["status"] == "rejected"


@pytest.mark.parametrize(
    "message",
    [
        {"content": "no type"},
        {"type": "chat", "role": "x", "content": "hi"},
        {"type": "function", "name": "f", "content": "hi"},
        {"type": "ai", "content": "", "tool_calls": [{"bad": 1}]},
    ],
)
@pytest.mark.parametrize("endpoint", ["invoke", "stream", "stream_events", "batch"])
def test_messages_the_assistant_cannot_take_are_a_422(
    http: TestClient, message: dict[str, Any], endpoint: str
) -> None:
    turn = {"messages": [message]}
    body = {"inputs": [turn]} if endpoint == "batch" else {"input": turn}
    response = http.post(f"/graphs/assistant/{endpoint}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert "messages[0]" in response.text
