"""`POST /ai/tools/execute` and the LangServe route, on a real SQLite checkpointer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from context_kit_service.server import create_app
from context_kit_service.tools.registry import known_tool_ids
from tests.conftest import SAMPLE_REPO
from tests.contract import ERROR_BODY, TOOL_EXECUTE_RESPONSE, assert_contract

TASK = "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"


@pytest.fixture
def client(make_settings) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as test_client:
        yield test_client


def execute(
    client: TestClient, tool_id: str, parameters: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body = {
        "toolId": tool_id,
        "parameters": parameters or {},
        "repoPath": str(SAMPLE_REPO),
        **extra,
    }
    response = client.post("/ai/tools/execute", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert_contract(payload, TOOL_EXECUTE_RESPONSE)
    return payload


def test_context_read_as_the_app_sends_it(client: TestClient) -> None:
    payload = execute(client, "context.read", {"path": TASK, "format": "text", "encoding": "utf-8"})
    assert payload["result"] == {
        "path": TASK,
        "contents": (SAMPLE_REPO / TASK).read_text(),
        "encoding": "utf-8",
    }
    metadata = payload["metadata"]
    assert set(metadata) == {"durationMs", "toolId", "tool", "status", "threadId"}
    assert (metadata["toolId"], metadata["tool"], metadata["status"]) == (
        "context.read",
        "read_context",
        "completed",
    )
    assert 0 < metadata["durationMs"] < 5000
    assert "error" not in payload


def test_context_search_and_pipeline_validate(client: TestClient) -> None:
    search = execute(client, "context.search", {"query": "passkey", "limit": 2})
    assert [(h["id"], h["score"]) for h in search["result"]["results"]] == [
        ("SPEC-001", 7),
        ("FEAT-001", 6),
    ]
    report = execute(client, "pipeline.validate")
    assert (report["result"]["valid"], report["result"]["entityCount"]) == (True, 46)


def test_snake_case_input_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/ai/tools/execute",
        json={
            "tool_id": "pipeline.next-id",
            "parameters": {"entity_type": "spec"},
            "repo_path": str(SAMPLE_REPO),
        },
    )
    assert response.json()["result"] == {"entityType": "spec", "id": "SPEC-007"}


def test_an_unknown_tool_lists_the_known_ones(client: TestClient) -> None:
    payload = execute(client, "context.delete")
    assert (
        payload["error"]
        == f"unknown tool 'context.delete'; known tools: {', '.join(known_tool_ids())}"
    )
    assert "result" not in payload
    assert payload["metadata"]["status"] == "error"
    assert "tool" in payload["metadata"]


def test_bad_arguments_name_the_argument(client: TestClient) -> None:
    assert execute(client, "pipeline.next-id")["error"] == "argument 'entity_type': Field required"
    assert execute(client, "pipeline.impact")["error"] == (
        "give exactly one of entity_id or changed_ids"
    )
    assert execute(client, "pipeline.impact", {"entity_id": "T-001", "max_depth": "deep"})[
        "error"
    ] == (
        "argument 'max_depth': Input should be a valid integer, unable to parse string as an integer"
    )
    assert execute(client, "context.read", {"file": "x"})["error"] == (
        "unknown argument 'file' for read_context; expected: encoding, entity_id, format, path"
    )


def test_a_malformed_request_is_a_422_with_the_contract_body(client: TestClient) -> None:
    response = client.post(
        "/ai/tools/execute", json={"toolId": "context.read", "parameters": ["not", "an", "object"]}
    )
    assert response.status_code == 422
    assert_contract(response.json(), ERROR_BODY)
    assert (
        response.json()["message"]
        == "invalid request: parameters: Input should be a valid dictionary"
    )


@pytest.fixture
def writable(make_settings, sample_copy: Path) -> Iterator[tuple[TestClient, Path]]:
    with TestClient(create_app(make_settings(allowed_repos=[sample_copy]))) as test_client:
        yield test_client, sample_copy


def _write(client: TestClient, repo: Path, **extra: Any) -> dict[str, Any]:
    body = {
        "toolId": "context.writePatch",
        "parameters": {"entity_id": "T-004", "changes": {"status": "doing"}},
        "repoPath": str(repo),
        **extra,
    }
    response = client.post("/ai/tools/execute", json=body)
    assert response.status_code == 200, response.text
    assert_contract(response.json(), TOOL_EXECUTE_RESPONSE)
    return response.json()


def test_a_write_waits_for_approval_then_applies(writable: tuple[TestClient, Path]) -> None:
    client, repo = writable
    before = (repo / TASK).read_text()
    pending = _write(client, repo)
    assert pending["result"] == {
        "status": "pending_approval",
        "approvalRequest": {
            "type": "approval",
            "tool": "patch_entity",
            "arguments": {"entity_id": "T-004", "changes": {"status": "doing"}},
            "repoPath": str(repo),
            "message": "patch_entity will change the repository. Approve?",
        },
    }
    assert (repo / TASK).read_text() == before
    done = _write(
        client, repo, threadId=pending["metadata"]["threadId"], approval={"approved": True}
    )
    assert done["metadata"]["status"] == "completed"
    assert done["result"]["entity"]["status"] == "doing"
    assert (repo / TASK).read_text() == before.replace("status: todo", "status: doing")


def test_a_rejected_write_changes_nothing(writable: tuple[TestClient, Path]) -> None:
    client, repo = writable
    before = (repo / TASK).read_text()
    pending = _write(client, repo)
    rejected = _write(
        client, repo, threadId=pending["metadata"]["threadId"], approval={"approved": False}
    )
    assert rejected["error"] == "the user rejected this change"
    assert rejected["metadata"]["status"] == "rejected"
    assert (repo / TASK).read_text() == before
    again = client.post(
        "/ai/tools/execute",
        json={
            "toolId": "context.writePatch",
            "threadId": pending["metadata"]["threadId"],
            "approval": {"approved": True},
        },
    )
    assert again.status_code == 409
    assert again.json()["code"] == "NO_PENDING_APPROVAL"


def test_an_approval_can_edit_the_arguments(writable: tuple[TestClient, Path]) -> None:
    client, repo = writable
    before = (repo / TASK).read_text()
    pending = _write(client, repo)
    edited = {"entity_id": "T-004", "changes": {"status": "blocked"}}
    done = _write(
        client,
        repo,
        threadId=pending["metadata"]["threadId"],
        approval={"approved": True, "arguments": edited},
    )
    assert done["result"]["entity"]["status"] == "blocked"
    assert (repo / TASK).read_text() == before.replace("status: todo", "status: blocked")


def test_repositories_outside_the_allow_list_are_refused(writable: tuple[TestClient, Path]) -> None:
    client, _ = writable
    body = {"toolId": "context.read", "parameters": {"path": TASK}, "repoPath": str(SAMPLE_REPO)}
    response = client.post("/ai/tools/execute", json=body)
    assert (response.status_code, response.json()["code"], response.json()["message"]) == (
        400,  # the same answer as on every other route
        "REPOSITORY_REFUSED",
        f"repository {SAMPLE_REPO} is outside the allowed roots (CKS_ALLOWED_REPOS)",
    )


def test_the_langserve_route_runs_the_same_graph(client: TestClient) -> None:
    invoke = client.post(
        "/graphs/tools/invoke",
        json={
            "input": {
                "tool_id": "pipeline.next-id",
                "parameters": {"entity_type": "task"},
                "repo_path": str(SAMPLE_REPO),
            },
            "config": {"configurable": {"thread_id": "lc-1"}},
        },
    )
    assert invoke.json()["output"] == {
        "status": "completed",
        "tool": "next_id",
        "result": {"entityType": "task", "id": "T-011"},
        "error": None,
        "duration_ms": invoke.json()["output"]["duration_ms"],
        "approval_request": None,
        "thread_id": "lc-1",
    }
    batch = client.post(
        "/graphs/tools/batch",
        json={
            "inputs": [
                {
                    "tool_id": "pipeline.next-id",
                    "parameters": {"entity_type": t},
                    "repo_path": str(SAMPLE_REPO),
                }
                for t in ("feature", "package")
            ]
        },
    )
    assert [o["result"]["id"] for o in batch.json()["output"]] == ["FEAT-009", "PKG-005"]
    schema = client.get("/graphs/tools/config_schema").json()
    assert set(schema["$defs"]["Configurable"]["properties"]) == {
        "thread_id",
        "provider",
        "model",
        "temperature",
        "max_tokens",
    }


def test_a_request_over_the_time_limit_is_a_504(make_settings) -> None:
    with TestClient(create_app(make_settings(request_timeout_s=0.000001))) as slow:
        response = slow.post(
            "/ai/tools/execute",
            json={"toolId": "pipeline.validate", "repoPath": str(SAMPLE_REPO)},
        )
    assert response.status_code == 504
    assert response.json() == {
        "error": "Gateway Timeout",
        "message": "the request took longer than 1e-06 s",
        "type": "server_error",
        "code": "TIMEOUT",
    }


def _thread_store_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("threads.sqlite*"))


def test_read_only_runs_leave_the_thread_store_as_it_was(
    make_settings, sample_copy: Path, tmp_path: Path
) -> None:
    """A run that cannot pause has nothing to resume: it runs without the checkpointer. A
    write still pauses on a thread and is resumed from it."""
    data_dir = tmp_path / "store"
    settings = make_settings(allowed_repos=[sample_copy], data_dir=data_dir)
    with TestClient(create_app(settings)) as client:
        next_id = {"toolId": "pipeline.next-id", "parameters": {"entity_type": "task"}}
        body = {**next_id, "repoPath": str(sample_copy)}
        expected = {"entityType": "task", "id": "T-011"}
        assert client.post("/ai/tools/execute", json=body).json()["result"] == expected
        before = _thread_store_bytes(data_dir)
        for _ in range(1000):
            response = client.post("/ai/tools/execute", json=body)
            assert response.json()["result"] == expected
        assert _thread_store_bytes(data_dir) == before
        assert client.get("/ai/threads").json()["threads"] == []

        pending = _write(client, sample_copy)
        assert pending["result"]["status"] == "pending_approval"
        thread = pending["metadata"]["threadId"]
        done = _write(client, sample_copy, threadId=thread, approval={"approved": True})
        assert done["result"]["entity"]["status"] == "doing"
        assert _thread_store_bytes(data_dir) > before
