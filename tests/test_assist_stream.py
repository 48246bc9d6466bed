"""`POST /ai/assist/stream` and the thread endpoints, with a scripted model, in-process."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessage
from pydantic import Field

from context_kit_service.server import create_app
from tests.conftest import SAMPLE_REPO
from tests.contract import ERROR_BODY, assert_contract
from tests.fake_providers import closed_port_url
from tests.fakes import ScriptedChatModel


def events(response: Any) -> list[Any]:
    """The `data:` payloads of an SSE body (JSON decoded, `[DONE]` kept as a string)."""
    out = []
    for block in response.text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.fixture
def client_for(make_settings) -> Iterator[Any]:
    opened: list[TestClient] = []

    def build(*replies: AIMessage, **settings: Any) -> tuple[TestClient, ScriptedChatModel]:
        model = ScriptedChatModel(messages=iter(replies))
        app = create_app(make_settings(repo_path=SAMPLE_REPO, **settings), chat_model=model)
        client = TestClient(app).__enter__()
        opened.append(client)
        return client, model

    yield build
    for client in opened:
        client.__exit__(None, None, None)


def test_tokens_then_complete_then_done(client_for) -> None:
    client, _ = client_for(AIMessage("Recovery links expire after fifteen minutes."))
    response = client.post(
        "/ai/assist/stream",
        json={"question": "How long is a recovery link valid?", "threadId": "t1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    sent = events(response)
    tokens = [e for e in sent[:-2] if e["type"] == "token"]
    assert [e["metadata"]["tokenIndex"] for e in tokens] == list(range(len(tokens)))
    assert "".join(e["token"] for e in tokens) == "Recovery links expire after fifteen minutes."
    assert len(tokens) > 1
    complete = sent[-2]
    assert (complete["type"], complete["fullContent"]) == (
        "complete",
        "Recovery links expire after fifteen minutes.",
    )
    assert set(complete["metadata"]) == {"totalTokens", "durationMs", "model", "threadId"}
    assert complete["metadata"]["threadId"] == "t1"
    assert sent[-1] == "[DONE]"
    assert len(sent) == len(tokens) + 2


def test_history_roles_map_to_message_types_and_the_snapshot_is_given(client_for) -> None:
    client, model = client_for(AIMessage("Yes."))
    history = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!", "timestamp": "2026-11-24T10:00:00Z"},
    ]
    client.post(
        "/ai/assist/stream",
        json={
            "question": "Anything blocked?",
            "conversationHistory": history,
            "contextSnapshot": {"openFile": "T-009"},
        },
    )
    prompt = model.prompts[0]
    thread = client.get("/ai/threads").json()["threads"][0]["threadId"]
    messages = client.get(f"/ai/threads/{thread}").json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", "Be terse."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "Anything blocked?"),
        ("assistant", "Yes."),
    ]
    assert prompt is None or prompt[1].content.startswith(
        "What the user has open in the app (JSON):"
    )


def test_a_thread_remembers_and_threads_do_not_mix(client_for) -> None:
    client, _ = client_for(
        AIMessage("First answer."), AIMessage("Second answer."), AIMessage("Other thread.")
    )
    client.post("/ai/assist/stream", json={"question": "First question", "threadId": "a"})
    client.post("/ai/assist/stream", json={"question": "Second question", "threadId": "a"})
    client.post("/ai/assist/stream", json={"question": "Unrelated", "threadId": "b"})
    a = [m["content"] for m in client.get("/ai/threads/a").json()["messages"]]
    b = [m["content"] for m in client.get("/ai/threads/b").json()["messages"]]
    assert a == ["First question", "First answer.", "Second question", "Second answer."]
    assert b == ["Unrelated", "Other thread."]
    assert sorted(t["threadId"] for t in client.get("/ai/threads").json()["threads"]) == ["a", "b"]
    assert client.delete("/ai/threads/a").status_code == 204
    missing = client.get("/ai/threads/a")
    assert (missing.status_code, missing.json()["code"]) == (404, "THREAD_NOT_FOUND")
    assert [t["threadId"] for t in client.get("/ai/threads").json()["threads"]] == ["b"]


def test_a_write_pauses_the_stream_for_approval(client_for, sample_copy) -> None:
    call = {
        "name": "patch_entity",
        "args": {"entity_id": "T-004", "changes": {"status": "doing"}},
        "id": "w1",
        "type": "tool_call",
    }
    client, _ = client_for(
        AIMessage("", tool_calls=[call]), AIMessage("Done: T-004 is in progress.")
    )
    task = sample_copy / "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"
    before = task.read_text()
    paused = events(
        client.post(
            "/ai/assist/stream",
            json={"question": "Start T-004", "threadId": "w", "repoPath": str(sample_copy)},
        )
    )
    # The app's client knows three event types: the pause is a `complete` that says so.
    assert [e["type"] for e in paused[:-1]] == ["complete"]
    assert paused[-2]["fullContent"] == (
        'I would like to change the repository: patch_entity with {"entity_id": "T-004", '
        '"changes": {"status": "doing"}}. Nothing has been changed yet; the change waits for '
        "your approval."
    )
    metadata = paused[-2]["metadata"]
    assert (metadata["status"], metadata["threadId"]) == ("pending_approval", "w")
    assert metadata["approvalRequest"]["toolCalls"] == [
        {"id": "w1", "tool": "patch_entity", "arguments": call["args"]}
    ]
    assert task.read_text() == before
    resumed = events(
        client.post(
            "/ai/assist/stream",
            json={"question": "approve", "threadId": "w", "approval": {"approved": True}},
        )
    )
    assert resumed[-2]["fullContent"] == "Done: T-004 is in progress."
    assert task.read_text() == before.replace("status: todo", "status: doing")


def test_an_approval_event_when_the_request_opts_in(client_for, sample_copy) -> None:
    call = {"name": "create_entity", "args": {}, "id": "c1", "type": "tool_call"}
    client, _ = client_for(AIMessage("", tool_calls=[call]))
    body = {"question": "Add a task", "repoPath": str(sample_copy), "approvalEvents": True}
    paused = events(client.post("/ai/assist/stream", json=body))
    assert [e["type"] for e in paused[:-1]] == ["approval"]
    assert paused[-2]["request"]["toolCalls"] == [
        {"id": "c1", "tool": "create_entity", "arguments": {}}
    ]
    assert paused[-1] == "[DONE]"


class ToolRecordingModel(ScriptedChatModel):
    bound: list[Any] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolRecordingModel:  # type: ignore[override]
        self.bound.append(tools)
        return self


def test_with_no_repository_known_the_assistant_answers_without_tools(make_settings) -> None:
    model = ToolRecordingModel(messages=iter([AIMessage("You have two features open.")]))
    app = create_app(make_settings(), chat_model=model)  # no CKS_REPO_PATH, no repoPath
    body = {"question": "What is open?", "contextSnapshot": {"features": ["FEAT-1", "FEAT-2"]}}
    with TestClient(app) as client:
        sent = events(client.post("/ai/assist/stream", json=body))
    assert [e["type"] for e in sent[:-1] if isinstance(e, dict)][-1] == "complete"
    assert sent[-2]["fullContent"] == "You have two features open."
    assert model.bound == []
    assert "FEAT-2" in model.prompts[0][1].content


def test_the_langserve_route_pauses_for_approval_and_resumes(client_for, sample_copy) -> None:
    call = {
        "name": "patch_entity",
        "args": {"entity_id": "T-004", "changes": {"status": "doing"}},
        "id": "w1",
        "type": "tool_call",
    }
    client, _ = client_for(AIMessage("", tool_calls=[call]), AIMessage("T-004 is in progress."))
    task = sample_copy / "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"
    before = task.read_text()
    config = {"configurable": {"thread_id": "lw"}}
    turn = {
        "messages": [{"type": "human", "content": "Start T-004"}],
        "repo_path": str(sample_copy),
    }
    paused = client.post("/graphs/assistant/invoke", json={"input": turn, "config": config})
    request = {
        "type": "approval",
        "toolCalls": [{"id": "w1", "tool": "patch_entity", "arguments": call["args"]}],
        "repoPath": str(sample_copy),
        "message": "The assistant wants to change the repository. Approve?",
    }
    assert paused.json()["output"] == {
        "answer": "",
        "transcript": [
            {"role": "user", "content": "Start T-004"},
            {
                "role": "assistant",
                "content": "",
                "toolCalls": [{"id": "w1", "name": "patch_entity", "args": call["args"]}],
            },
        ],
        "approval_request": request,
    }
    assert task.read_text() == before
    resume = {"input": {"approval": {"approved": True}}, "config": config}
    done = client.post("/graphs/assistant/invoke", json=resume).json()["output"]
    assert (done["answer"], done["approval_request"]) == ("T-004 is in progress.", None)
    assert [m["role"] for m in done["transcript"]] == ["user", "assistant", "tool", "assistant"]
    assert task.read_text() == before.replace("status: todo", "status: doing")
    again = client.post("/graphs/assistant/invoke", json=resume)
    assert (again.status_code, again.json()["code"]) == (409, "NO_PENDING_APPROVAL")


def test_a_provider_failure_is_an_error_event_with_a_code(make_settings) -> None:
    settings = make_settings(repo_path=SAMPLE_REPO, provider="ollama", base_url=closed_port_url())
    with TestClient(create_app(settings)) as client:
        sent = events(client.post("/ai/assist/stream", json={"question": "Hello there"}))
    assert sent == [
        {
            "type": "error",
            "message": "cannot reach the ollama provider; is it running and is the endpoint right?",
            "code": "PROVIDER_UNAVAILABLE",
        },
        "[DONE]",
    ]


def test_a_blank_question_is_a_422_before_any_event(client_for) -> None:
    client, _ = client_for()
    response = client.post("/ai/assist/stream", json={"question": "   "})
    assert response.status_code == 422
    assert_contract(response.json(), ERROR_BODY)
    assert response.json()["details"] == [
        {"field": "question", "message": "Value error, question must not be blank"}
    ]


def test_heartbeats_fill_silences(client_for) -> None:
    call = {"name": "validate_repository", "args": {}, "id": "v1", "type": "tool_call"}
    client, _ = client_for(
        AIMessage("", tool_calls=[call]), AIMessage("All valid."), heartbeat_s=0.001
    )
    response = client.post("/ai/assist/stream", json={"question": "Is the repository valid?"})
    assert ": heartbeat\n\n" in response.text
    sent = events(response)
    assert sent[-2]["fullContent"] == "All valid."
    assert sent[-1] == "[DONE]"


class SlowModel(ScriptedChatModel):
    """Streams a long answer one word every 20 ms and records how far it got."""

    produced: list[str]
    closed: list[bool]

    async def _astream(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        from langchain_core.messages import AIMessageChunk
        from langchain_core.outputs import ChatGenerationChunk

        scripted = next(self.messages, None)
        if scripted is not None:  # a scripted turn first (a tool call), then the long answer
            self.messages = itertools.chain([scripted], self.messages)
            for chunk in self._stream(messages, *args, **kwargs):
                yield chunk
            return
        try:
            for i in range(500):
                await asyncio.sleep(0.02)
                self.produced.append(f"w{i}")
                yield ChatGenerationChunk(message=AIMessageChunk(content=f"w{i} "))
        finally:
            self.closed.append(True)


def test_a_client_disconnect_stops_the_model(make_settings) -> None:
    model = SlowModel(messages=iter([]), produced=[], closed=[])
    app = create_app(make_settings(repo_path=SAMPLE_REPO), chat_model=model)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/ai/assist/stream"
    try:
        with httpx.stream(
            "POST", url, json={"question": "Tell me everything"}, timeout=30
        ) as response:
            tokens = 0
            for line in response.iter_lines():
                if line.startswith('data: {"type":"token"'):
                    tokens += 1
                    if tokens == 3:
                        break
        time.sleep(0.5)
        stopped_at = len(model.produced)
        time.sleep(0.5)
        assert len(model.produced) == stopped_at < 500  # nothing more after the client left
        assert model.closed == [True]
    finally:
        server.should_exit = True
        thread.join(10)


class SlowSearchEmbeddings(DeterministicFakeEmbedding):
    """Embeds documents at once and a search query in 1 s (a tool that takes a while)."""

    queries: list[str] = Field(default_factory=list)

    def embed_query(self, text: str) -> list[float]:
        self.queries.append("started")
        time.sleep(1.0)
        self.queries.append("finished")
        return super().embed_query(text)


@contextmanager
def serve_in_thread(app: Any) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """A real uvicorn server on its own event loop (which the test can inspect)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(server.serve(sockets=[sock]),), daemon=True
    )
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", loop
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()


LOOP_TASKS = {"_shutdown_watcher"}
"""Started once per event loop by sse-starlette's first stream, not by a request."""


def running_tasks(loop: asyncio.AbstractEventLoop) -> list[str]:
    async def snapshot() -> list[str]:
        current = asyncio.current_task()
        names = (t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not current)
        return sorted(name for name in names if name not in LOOP_TASKS)

    return asyncio.run_coroutine_threadsafe(snapshot(), loop).result(5)


def test_a_disconnect_during_a_tool_cancels_the_run_and_leaves_no_task(make_settings) -> None:
    call = {"name": "search_context", "args": {"query": "budgets"}, "id": "s1", "type": "tool_call"}
    # After the tool, the model would talk for 10 s: a run left alive would still be going.
    model = SlowModel(messages=iter([AIMessage("", tool_calls=[call])]), produced=[], closed=[])
    embeddings = SlowSearchEmbeddings(size=16)
    settings = make_settings(repo_path=SAMPLE_REPO, heartbeat_s=0.1)
    app = create_app(settings, chat_model=model, embeddings=embeddings)
    with serve_in_thread(app) as (url, loop):
        idle = running_tasks(loop)
        with httpx.stream(
            "POST", f"{url}/ai/assist/stream", json={"question": "Budgets?"}, timeout=30
        ) as response:
            for line in response.iter_lines():
                if line == ": heartbeat" and embeddings.queries:  # the tool is running
                    break
        assert embeddings.queries == ["started"]
        time.sleep(1.5)  # the worker thread finishes the embedding it had started
        assert embeddings.queries == ["started", "finished"]
        assert model.produced == []  # the model was never asked again
        assert running_tasks(loop) == idle


def test_the_langserve_route_shares_threads_and_streams_tokens(client_for) -> None:
    client, _ = client_for(
        AIMessage("Hello Ada."), AIMessage("Your name is Ada."), AIMessage("Hi stranger.")
    )

    def turn(text: str, thread: str, endpoint: str = "invoke") -> Any:
        body = {
            "input": {"messages": [{"type": "human", "content": text}]},
            "config": {"configurable": {"thread_id": thread}},
        }
        return client.post(f"/graphs/assistant/{endpoint}", json=body)

    first = turn("I am Ada", "lc1").json()["output"]
    assert first == {
        "answer": "Hello Ada.",
        "transcript": [
            {"role": "user", "content": "I am Ada"},
            {"role": "assistant", "content": "Hello Ada."},
        ],
        "approval_request": None,
    }
    streamed = turn("Who am I?", "lc1", "stream_events").text
    tokens = [
        json.loads(line[6:])["data"]["chunk"]["content"]
        for line in streamed.splitlines()
        if line.startswith("data: ") and '"event":"on_chat_model_stream"' in line
    ]
    assert "".join(tokens) == "Your name is Ada."
    other = turn("Hello", "lc2").json()["output"]["transcript"]
    assert [m["content"] for m in other] == ["Hello", "Hi stranger."]
    remembered = client.get("/ai/threads/lc1").json()["messages"]
    assert [m["content"] for m in remembered] == [
        "I am Ada",
        "Hello Ada.",
        "Who am I?",
        "Your name is Ada.",
    ]
    schema = client.get("/graphs/assistant/config_schema").json()
    assert "thread_id" in schema["$defs"]["Configurable"]["properties"]
