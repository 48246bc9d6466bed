"""Every writing route, fed hostile ids and entity paths, creates or changes nothing outside the
repository's entity folders (and, since every one of these writes is refused, nothing inside).

Routes: `/ai/tools/execute` (create, patch, and an id edited in the approval), the same through
LangServe `/graphs/tools/invoke`, `/ai/generate-entity` and `/graphs/generate/invoke` with an
approval whose fields carry the id, and assistant tool calls through `/graphs/assistant/invoke`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from context_kit_service.server import create_app
from tests.conftest import SAMPLE_REPO
from tests.fakes import replies

HOSTILE_IDS = [
    "../../../../outside/PWN",
    "../outside/PWN",
    "../../.git/hooks/pre-commit",
    ".git/hooks/post-checkout",
    "/tmp/cks-abs/PWN",
    "/etc/cron.d/pwn",
    "..",
    ".",
    "PKG-001/../../../PWN",
    "contexts/../../PWN",
    "..\\..\\PWN",
    "PKG-9\x00",
    "%2e%2e%2fPWN",
    "~/PWN",
    "~root/PWN",
    "PKG-900/",
    "PKG-900.yaml/../../PWN",
    "a" * 500,
    "PKG-901\n",
    " PKG-902",
    "PKG-903;rm -rf ~",
    "C:\\PWN",
    "\\\\server\\share\\PWN",
    "-rf",
    "PKG-904/x",
    "PKG-001",  # exists already
]
PACKAGE = {"name": "evil", "version": "1.0.0", "type": "npm"}


def snapshot(base: Path) -> dict[str, str]:
    """Every path under `base` (links not followed) with a hash of what it is."""
    seen = {}
    for directory, dirs, names in os.walk(base):
        for name in dirs + names:
            path = Path(directory) / name
            if path.is_symlink():
                seen[str(path)] = "link:" + os.readlink(path)
            elif path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[str(path)] = "dir"
    return seen


class ToolCallFromQuestion(BaseChatModel):
    """Calls the tool the last user turn names (as JSON `{"tool", "args"}`); after a tool
    result, answers "done"."""

    @property
    def _llm_type(self) -> str:
        return "tool-call-from-question"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        last = messages[-1]
        if isinstance(last, HumanMessage):
            asked = json.loads(str(last.content))
            call = {"name": asked["tool"], "args": asked["args"], "id": "c1", "type": "tool_call"}
            reply = AIMessage("", tool_calls=[call])
        else:
            reply = AIMessage("done")
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallFromQuestion:  # type: ignore[override]
        return self


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("confined")
    (base / "outside").mkdir()
    (base / "outside" / "keep.txt").write_text("untouched")
    repo = base / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    os.makedirs(repo / ".git" / "hooks")
    return base, repo


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from context_kit_service.settings import Settings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("data"),
        allowed_hosts=["testserver"],
    )
    app = create_app(
        settings, chat_model=ToolCallFromQuestion(), embeddings=DeterministicFakeEmbedding(size=64)
    )
    with TestClient(app) as client:
        yield client


@pytest.fixture
def unchanged(world: tuple[Path, Path]) -> Iterator[Path]:
    base, repo = world
    before = snapshot(base)
    yield repo
    assert snapshot(base) == before


def _tools(http: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/ai/tools/execute", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _approve_rest(http: TestClient, request: dict[str, Any], approval: dict[str, Any]) -> str:
    paused = _tools(http, request)
    assert paused["metadata"]["status"] == "pending_approval"
    thread = paused["metadata"]["threadId"]
    done = _tools(http, {**request, "threadId": thread, "approval": approval})
    assert done["metadata"]["status"] == "error", done
    return str(done["error"])


@pytest.mark.parametrize("entity_id", HOSTILE_IDS)
def test_rest_create_with_a_hostile_id(http: TestClient, unchanged: Path, entity_id: str) -> None:
    request = {
        "toolId": "context.create",
        "parameters": {"entity_type": "package", "fields": {"id": entity_id, **PACKAGE}},
        "repoPath": str(unchanged),
    }
    error = _approve_rest(http, request, {"approved": True})
    assert error.startswith(("id ", "package is not valid"))


@pytest.mark.parametrize("entity_id", HOSTILE_IDS)
def test_rest_create_with_a_hostile_id_edited_into_the_approval(
    http: TestClient, unchanged: Path, entity_id: str
) -> None:
    request = {
        "toolId": "context.create",
        "parameters": {"entity_type": "package", "fields": PACKAGE},
        "repoPath": str(unchanged),
    }
    edited = {"entity_type": "package", "fields": {"id": entity_id, **PACKAGE}}
    error = _approve_rest(http, request, {"approved": True, "arguments": edited})
    assert error.startswith("id ")


@pytest.mark.parametrize("entity_id", HOSTILE_IDS[:-1])
def test_rest_patch_of_a_hostile_entity_id(
    http: TestClient, unchanged: Path, entity_id: str
) -> None:
    request = {
        "toolId": "context.writePatch",
        "parameters": {"entity_id": entity_id, "changes": {"name": "evil"}},
        "repoPath": str(unchanged),
    }
    error = _approve_rest(http, request, {"approved": True})
    assert error.startswith("no entity with id ")


@pytest.mark.parametrize("entity_id", HOSTILE_IDS)
def test_langserve_tools_create_with_a_hostile_id(
    http: TestClient, unchanged: Path, entity_id: str
) -> None:
    payload = {
        "tool_id": "create_entity",
        "parameters": {
            "entity_type": "service",
            "fields": {"id": entity_id, "name": "x", "type": "backend"},
        },
        "repo_path": str(unchanged),
    }
    config = {"configurable": {"thread_id": f"ls-{hashlib.md5(entity_id.encode()).hexdigest()}"}}
    paused = http.post("/graphs/tools/invoke", json={"input": payload, "config": config}).json()
    assert paused["output"]["status"] == "pending_approval"
    done = http.post(
        "/graphs/tools/invoke",
        json={"input": {**payload, "approval": {"approved": True}}, "config": config},
    ).json()
    assert done["output"]["status"] == "error"
    assert done["output"]["error"].startswith(("id ", "service is not valid"))


def _generation(http: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("entity_id", HOSTILE_IDS)
def test_rest_generation_save_with_a_hostile_id_in_the_approval(
    http: TestClient, unchanged: Path, entity_id: str
) -> None:
    draft = {"name": "evil", "version": "1.0.0", "type": "npm"}
    app = http.app
    app.state.service.chat_model = replies(draft)  # type: ignore[attr-defined]
    try:
        request = {
            "entityType": "package",
            "userPrompt": "A package that tries to escape the repository",
            "repoPath": str(unchanged),
            "save": True,
        }
        paused = _generation(http, "/ai/generate-entity", request)
        assert paused["metadata"]["status"] == "pending_approval"
        edited = {"entity_type": "package", "fields": {**paused["entity"], "id": entity_id}}
        response = http.post(
            "/ai/generate-entity",
            json={
                **request,
                "threadId": paused["metadata"]["threadId"],
                "approval": {"approved": True, "arguments": edited},
            },
        )
    finally:
        app.state.service.chat_model = ToolCallFromQuestion()  # type: ignore[attr-defined]
    assert response.status_code == 422
    assert response.json()["message"].startswith(("id ", "package is not valid"))


@pytest.mark.parametrize("entity_id", HOSTILE_IDS)
def test_langserve_generation_save_with_a_hostile_id_in_the_approval(
    http: TestClient, unchanged: Path, entity_id: str
) -> None:
    app = http.app
    app.state.service.chat_model = replies({"name": "x", "type": "backend"})  # type: ignore[attr-defined]
    config = {"configurable": {"thread_id": f"gen-{hashlib.md5(entity_id.encode()).hexdigest()}"}}
    payload = {
        "entity_type": "service",
        "user_prompt": "A service that tries to escape the repository",
        "repo_path": str(unchanged),
        "save": True,
    }
    try:
        paused = _generation(http, "/graphs/generate/invoke", {"input": payload, "config": config})
    finally:
        app.state.service.chat_model = ToolCallFromQuestion()  # type: ignore[attr-defined]
    assert paused["output"]["status"] == "pending_approval"
    fields = {**paused["output"]["entity"], "id": entity_id}
    approval = {"approved": True, "arguments": {"entity_type": "service", "fields": fields}}
    done = _generation(
        http,
        "/graphs/generate/invoke",
        {"input": {**payload, "approval": approval}, "config": config},
    )
    assert done["output"]["status"] == "error"
    assert done["output"]["error"].startswith(("id ", "service is not valid"))


@pytest.mark.parametrize("entity_id", HOSTILE_IDS)
def test_assistant_tool_calls_with_a_hostile_id(
    http: TestClient, unchanged: Path, entity_id: str
) -> None:
    question = json.dumps(
        {
            "tool": "create_entity",
            "args": {"entity_type": "package", "fields": {"id": entity_id, **PACKAGE}},
        }
    )
    config = {"configurable": {"thread_id": f"as-{hashlib.md5(entity_id.encode()).hexdigest()}"}}
    payload = {"messages": [{"type": "human", "content": question}], "repo_path": str(unchanged)}
    paused = _generation(http, "/graphs/assistant/invoke", {"input": payload, "config": config})
    assert paused["output"]["approval_request"] is not None
    done = _generation(
        http,
        "/graphs/assistant/invoke",
        {"input": {"approval": {"approved": True}, "repo_path": str(unchanged)}, "config": config},
    )
    tool_turn = done["output"]["transcript"][-2]
    assert tool_turn["role"] == "tool"
    assert "id " in tool_turn["content"] or "not valid" in tool_turn["content"]
    assert done["output"]["answer"] == "done"


NEW_ENTITIES = {
    "feature": {"title": "Receipt scanning", "status": "proposed"},
    "package": {"name": "ledgerly-ocr", "version": "0.1.0", "type": "npm"},
    "service": {"name": "ocr-worker", "type": "backend"},
    "governance": {
        "name": "Second constitution",
        "version": "1.0.0",
        "status": "draft",
        "ratifiedOn": "2026-01-01",
        "principles": ["Keep it small"],
        "governance": {"owners": ["core"], "reviewCadence": "yearly"},
        "compliance": {"rules": ["Review every change"]},
    },
}


@pytest.mark.parametrize("kind", list(NEW_ENTITIES))
def test_creating_an_entity_without_a_feature_link_succeeds(
    http: TestClient, sample_copy: Path, kind: str
) -> None:
    """These types have no back-link; creating one used to write the file and then answer 500."""
    request = {
        "toolId": "context.create",
        "parameters": {"entity_type": kind, "fields": NEW_ENTITIES[kind]},
        "repoPath": str(sample_copy),
    }
    paused = _tools(http, request)
    approval = {"threadId": paused["metadata"]["threadId"], "approval": {"approved": True}}
    done = _tools(http, {**request, **approval})
    assert done["metadata"]["status"] == "completed", done
    expected_id = {"feature": "FEAT-009", "package": "PKG-005", "service": "SVC-006"}.get(
        kind, "CONST-002"
    )
    assert done["result"]["id"] == expected_id
    assert done["result"]["updated"] == []
    assert (sample_copy / done["result"]["path"]).is_file()


def test_a_write_is_checked_again_against_the_repository_as_it_is_when_approved(
    http: TestClient, sample_copy: Path
) -> None:
    fields = {"title": "Late task", "status": "todo", "related": {"feature": "FEAT-002"}}
    request = {
        "toolId": "context.create",
        "parameters": {"entity_type": "task", "fields": fields},
        "repoPath": str(sample_copy),
    }
    paused = _tools(http, request)
    (sample_copy / "contexts/features/FEAT-002-bank-statement-import.yaml").unlink()
    approval = {"threadId": paused["metadata"]["threadId"], "approval": {"approved": True}}
    done = _tools(http, {**request, **approval})
    assert done["error"] == (
        "task is not valid: related.feature: related.feature links to FEAT-002, which does not exist"
    )
    assert sorted(p.name for p in (sample_copy / "contexts/tasks").iterdir()) == sorted(
        p.name for p in (SAMPLE_REPO / "contexts/tasks").iterdir()
    )
