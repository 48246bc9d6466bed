"""Every graph through LangServe's Python `RemoteRunnable`, against the real service process
(auth token on), answering with the fake provider's deterministic `agent` model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from langserve import RemoteRunnable

from context_kit_service.tools.registry import TOOLS_BY_NAME
from tests.conftest import SAMPLE_REPO, AgentService
from tests.fake_providers import AGENT_TASK

QUESTION = "How do people sign in with a passkey?"
TASK_REQUEST = {
    "entity_type": "task",
    "user_prompt": "Index the budget lines so the remaining view is fast",
    "linked_feature_id": "FEAT-003",
}


@asynccontextmanager
async def remote(service: AgentService, path: str, **options: Any) -> AsyncIterator[RemoteRunnable]:
    """A RemoteRunnable whose HTTP clients are closed on this event loop (LangServe otherwise
    closes them from a finalizer, on a loop of its own, after pytest's loop is gone)."""
    options.setdefault("headers", service.headers)
    runnable = RemoteRunnable(f"{service.url}{path}", timeout=120, **options)
    try:
        yield runnable
    finally:
        await runnable.async_client.aclose()
        runnable.sync_client.close()


async def tool_result(name: str, **args: Any) -> Any:
    return await TOOLS_BY_NAME[name].ainvoke({**args, "repo_root": str(SAMPLE_REPO)})


def without(output: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in output.items() if k not in keys}


async def expected_assistant_output() -> dict[str, Any]:
    feature = await tool_result("get_entity", entity_id="FEAT-001")
    return {
        "answer": "See [FEAT-001].",
        "transcript": [
            {"role": "user", "content": "What is FEAT-001 about?"},
            {
                "role": "assistant",
                "content": "",
                "toolCalls": [
                    {"id": "call_1", "name": "get_entity", "args": {"entity_id": "FEAT-001"}}
                ],
            },
            {
                "role": "tool",
                "content": json.dumps(feature, ensure_ascii=False),
                "toolCallId": "call_1",
            },
            {"role": "assistant", "content": "See [FEAT-001]."},
        ],
        "approval_request": None,
    }


def check_rag(output: dict[str, Any], completion_tokens: int) -> None:
    top = output["sources"][0]["entity_id"]
    assert without(output, "sources", "retrieval_ms", "generation_ms") == {
        "answer": f"See [{top}].",
        "cited_ids": [top],
        "model": "agent",
        "prompt_tokens": 11,
        "completion_tokens": completion_tokens,
        "index_stale": None,
    }
    assert [sorted(s) for s in output["sources"]] == [
        [
            "entity_id",
            "entity_type",
            "excerpt",
            "file_path",
            "relevance_score",
            "supporting",
            "title",
        ]
    ] * len(output["sources"])


def check_task(output: dict[str, Any], completion_tokens: int = 4) -> None:
    assert output["repository"] == str(SAMPLE_REPO)  # the service's repository was used
    assert without(output, "duration_ms", "thread_id", "yaml", "repository") == {
        "status": "completed",
        "entity": AGENT_TASK,
        "valid": True,
        "problems": [],
        "error": None,
        "attempts": 1,
        "saved_path": None,
        "prompt_tokens": 11,
        "completion_tokens": completion_tokens,
        "model": "agent",
        "provider": "openai",
        "linked_feature": "FEAT-003",
        "linked_by": "request",
        "unchecked": [],
        "approval_request": None,
    }


async def test_tool_execution_invoke_batch_stream_and_events(agent_service: AgentService) -> None:
    async with remote(agent_service, "/graphs/tools") as tools:
        request = {"tool_id": "pipeline.next-id", "parameters": {"entity_type": "task"}}
        expected = {
            "status": "completed",
            "tool": "next_id",
            "result": await tool_result("next_id", entity_type="task"),
            "error": None,
            "approval_request": None,
        }
        out = await tools.ainvoke(request)
        assert without(out, "duration_ms", "thread_id") == expected
        unknown = {"tool_id": "nope", "parameters": {}}
        batch = await tools.abatch([request, unknown])
        assert without(batch[0], "duration_ms", "thread_id") == expected
        assert batch[1]["status"] == "error"
        assert batch[1]["error"].startswith("unknown tool 'nope'; known tools: context.create")
        chunks = [c async for c in tools.astream(request)]
        assert [without(c, "duration_ms", "thread_id") for c in chunks] == [expected]
        events = [e async for e in tools.astream_events(request, version="v2")]
        assert (events[0]["event"], events[-1]["event"]) == ("on_chain_start", "on_chain_end")
        assert without(events[-1]["data"]["output"], "duration_ms", "thread_id") == expected


async def test_rag_invoke_batch_stream_and_events(agent_service: AgentService) -> None:
    async with remote(agent_service, "/graphs/rag") as rag:
        check_rag(await rag.ainvoke({"query": QUESTION}), completion_tokens=4)
        first, second = await rag.abatch([{"query": QUESTION}, {"query": QUESTION}])
        check_rag(first, completion_tokens=4)
        check_rag(second, completion_tokens=4)
        chunks = [c async for c in rag.astream({"query": QUESTION})]
        assert [list(c) for c in chunks] == [["check_request"], ["retrieve"], ["answer_question"]]
        events = [e async for e in rag.astream_events({"query": QUESTION}, version="v2")]
        tokens = [
            e["data"]["chunk"].content for e in events if e["event"] == "on_chat_model_stream"
        ]
        output = events[-1]["data"]["output"]
        check_rag(output, completion_tokens=2)
        top = output["sources"][0]["entity_id"]
        assert [t for t in tokens if t] == ["See ", f"[{top}]."]


async def test_generation_invoke_batch_stream_and_events(agent_service: AgentService) -> None:
    async with remote(agent_service, "/graphs/generate") as generate:
        check_task(await generate.ainvoke(TASK_REQUEST))
        for output in await generate.abatch([TASK_REQUEST, TASK_REQUEST]):
            check_task(output)
        chunks = [c async for c in generate.astream(TASK_REQUEST)]
        assert len(chunks) == 1
        check_task(chunks[0])
        events = [e async for e in generate.astream_events(TASK_REQUEST, version="v2")]
        # Streamed, the draft arrives word by word: the usage counts 13 chunks.
    check_task(events[-1]["data"]["output"], completion_tokens=13)


async def test_assistant_invoke_batch_stream_and_events(agent_service: AgentService) -> None:
    async with remote(agent_service, "/graphs/assistant") as assistant:
        turn = {"messages": [{"type": "human", "content": "What is FEAT-001 about?"}]}
        expected = await expected_assistant_output()
        assert await assistant.ainvoke(turn) == expected
        assert await assistant.abatch([turn, turn]) == [expected, expected]
        chunks = [c async for c in assistant.astream(turn)]
        assert [list(c) for c in chunks] == [
            ["prepare"],
            ["call_model"],
            ["tools"],
            ["call_model"],
            ["finish"],
        ]
        assert chunks[-1]["finish"] == expected
        events = [e async for e in assistant.astream_events(turn, version="v2")]
        tokens = [
            e["data"]["chunk"].content for e in events if e["event"] == "on_chat_model_stream"
        ]
        assert "".join(tokens) == "See [FEAT-001]."
        assert events[-1]["data"]["output"] == expected


async def test_assistant_threads_remember_and_stay_apart(agent_service: AgentService) -> None:
    async with remote(agent_service, "/graphs/assistant") as assistant:
        first = {"configurable": {"thread_id": "remote-a"}}
        await assistant.ainvoke({"messages": [{"type": "human", "content": "Hi"}]}, first)
        again = await assistant.ainvoke(
            {"messages": [{"type": "human", "content": "Again"}]}, first
        )
        other = await assistant.ainvoke(
            {"messages": [{"type": "human", "content": "Hello"}]},
            {"configurable": {"thread_id": "remote-b"}},
        )
        user_turns = [m["content"] for m in again["transcript"] if m["role"] == "user"]
        assert user_turns == ["Hi", "Again"]
        assert [m["content"] for m in other["transcript"] if m["role"] == "user"] == ["Hello"]


async def test_without_the_token_every_graph_is_refused(agent_service: AgentService) -> None:
    for path in ["/graphs/tools", "/graphs/rag", "/graphs/generate", "/graphs/assistant"]:
        async with remote(agent_service, path, headers={}) as anonymous:
            with pytest.raises(httpx.HTTPStatusError) as refused:
                await anonymous.ainvoke({})
        assert refused.value.response.status_code == 401


CONFIGURABLE = {
    "thread_id": {"type": "string"},
    "provider": {"type": "string", "enum": ["local", "ollama", "openai", "azure-openai"]},
    "model": {"type": "string"},
    "temperature": {"type": "number"},
    "max_tokens": {"type": "integer"},
}


@pytest.mark.parametrize("path", ["/graphs/tools", "/graphs/rag", "/graphs/generate"])
def test_config_schema_offers_only_the_documented_fields(
    agent_service: AgentService, path: str
) -> None:
    schema = httpx.get(f"{agent_service.url}{path}/config_schema", headers=agent_service.headers)
    properties = schema.json()["$defs"]["Configurable"]["properties"]
    # No null types or null defaults: the playground's form draws and accepts every field.
    assert {
        name: {k: v for k, v in field.items() if k in ("type", "enum")}
        for name, field in properties.items()
    } == CONFIGURABLE
    assert all("default" not in field for field in properties.values())


async def test_a_client_cannot_point_the_service_at_another_server(
    agent_service: AgentService,
) -> None:
    evil = {
        "base_url": "http://169.254.169.254/v1",
        "cks_provider": {"endpoint": "http://169.254.169.254/v1", "api_key": "stolen"},
        "cks_settings": {"base_url": "http://169.254.169.254/v1"},
    }
    async with remote(agent_service, "/graphs/rag") as rag:
        output = await rag.ainvoke({"query": QUESTION}, {"configurable": evil})
    check_rag(output, completion_tokens=4)


ENDPOINTS = ["invoke", "batch", "stream", "stream_log", "stream_events"]
SCHEMAS = ["input_schema", "output_schema", "config_schema"]
OUTPUT_FIELDS = {
    "/graphs/tools": {
        "status", "tool", "result", "error", "duration_ms", "approval_request", "thread_id",
    },
    "/graphs/rag": {
        "answer", "sources", "cited_ids", "retrieval_ms", "generation_ms", "model",
        "prompt_tokens", "completion_tokens", "index_stale",
    },
    "/graphs/generate": {
        "status", "entity", "yaml", "valid", "problems", "error", "attempts", "saved_path",
        "prompt_tokens", "completion_tokens", "duration_ms", "model", "provider",
        "repository", "linked_feature", "linked_by", "unchecked", "approval_request",
        "thread_id",
    },
    "/graphs/assistant": {"answer", "transcript", "approval_request"},
}  # fmt: skip


@pytest.mark.parametrize("path", list(OUTPUT_FIELDS))
def test_every_graph_has_the_whole_langserve_route_set(
    agent_service: AgentService, path: str
) -> None:
    openapi = httpx.get(f"{agent_service.url}/openapi.json", headers=agent_service.headers).json()
    assert {f"{path}/{name}" for name in ENDPOINTS} <= set(openapi["paths"])
    for name in SCHEMAS:
        response = httpx.get(f"{agent_service.url}{path}/{name}", headers=agent_service.headers)
        assert response.status_code == 200, name
    output = httpx.get(f"{agent_service.url}{path}/output_schema", headers=agent_service.headers)
    # Plain fields only: no `messages` key, which the JavaScript client would rewrite.
    assert set(output.json()["properties"]) == OUTPUT_FIELDS[path]
    page = httpx.get(f"{agent_service.url}{path}/playground/", headers=agent_service.headers)
    assert (page.status_code, page.headers["content-type"]) == (200, "text/html; charset=utf-8")
