"""A small HTTP server that speaks the OpenAI, Azure OpenAI and Ollama protocols.

The provider tests drive the real client libraries against it. Model names pick behaviour:
`slow` answers after 3 s (for timeouts), `deny` answers 401, `tick` streams 40 tokens 20 ms
apart (like a model generating them), `long` streams a very long answer and records how each
stream ended (`Recorder.streams`), and `agent` behaves like a small
deterministic model for end-to-end tests of every graph (see `agent_reply`). Every request body
is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

REPLY = ["Hello", " from", " fake", "!"]
PROMPT_TOKENS = 11


def fake_vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 255, 4) for byte in digest[:4]]


@dataclass
class Recorder:
    requests: list[dict[str, Any]] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    """How each stream of the `long` model ended: "finished", or "cancelled" at the time the
    client went away (seconds on the event loop's clock)."""

    def last(self) -> dict[str, Any]:
        return self.requests[-1]


def _openai_completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(REPLY)},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": len(REPLY),
            "total_tokens": PROMPT_TOKENS + len(REPLY),
        },
    }


TICK_S = 0.02
"""Seconds between the tokens of the `tick` model."""
TICKS = [f" tick{i}" for i in range(40)]
"""The `tick` model's reply: long enough to outlast the quick ACKs of a new connection."""


LONG_TOKEN_S = 0.02
"""Seconds between the `long` model's tokens: it writes `max_completion_tokens` of them,
500 characters each (so a few hundred fill the buffers between it and a client), 50 a
second."""


async def _long_stream(recorder: Recorder, tokens: int) -> AsyncIterator[str]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "long"}
    ended = "cancelled"
    try:
        for index in range(tokens):
            delta = {"content": f" {index:>8} " + "x" * 490}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
            await asyncio.sleep(LONG_TOKEN_S)
        stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
        yield f"data: {json.dumps({**base, 'choices': [stop]})}\n\ndata: [DONE]\n\n"
        ended = "finished"
    finally:
        recorder.streams.append(ended)


async def _openai_stream(model: str) -> AsyncIterator[str]:
    tokens = TICKS if model == "tick" else REPLY
    async for line in _sse(model, [{"content": token} for token in tokens], "stop"):
        if model == "tick" and '"content"' in line and '" tick0"' not in line:
            await asyncio.sleep(TICK_S)
        yield line


async def _sse(model: str, deltas: list[dict[str, Any]], finish: str) -> AsyncIterator[str]:
    """An OpenAI chat-completion stream: the deltas, the finish reason, the usage, [DONE]."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model}
    for index, delta in enumerate(deltas):
        delta = {**delta, **({"role": "assistant"} if index == 0 else {})}
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
    stop = {"index": 0, "delta": {}, "finish_reason": finish}
    yield f"data: {json.dumps({**base, 'choices': [stop]})}\n\n"
    usage = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": len(deltas),
        "total_tokens": PROMPT_TOKENS + len(deltas),
    }
    yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


AGENT_TASK_DRAFT = {
    "title": "Add an index on budget lines",
    "status": "todo",
    "steps": ["Write the migration"],
}
AGENT_TASK = {
    "id": "T-011",
    **AGENT_TASK_DRAFT,
    "related": {"feature": "FEAT-003"},
}
"""The entity the generation graph makes of the draft, linked to FEAT-003 in the sample."""
AGENT_DRAFTS: dict[str, dict[str, Any]] = {
    "task": AGENT_TASK_DRAFT,
    "feature": {"title": "Budget export", "status": "proposed"},
    "userstory": {"asA": "member", "iWant": "to export my budget", "soThat": "I can share it"},
    "spec": {"title": "Export file format", "type": "data"},
    "service": {"name": "Export service", "type": "backend"},
    "package": {"name": "csv-writer", "version": "1.2.0", "type": "npm"},
    "governance": {
        "name": "Data policy",
        "version": "1.0.0",
        "status": "draft",
        "ratifiedOn": "2026-01-01",
        "principles": ["Privacy first"],
        "governance": {"owners": "core team", "reviewCadence": "quarterly"},
        "compliance": {"rules": "GDPR"},
    },
}
"""What the `agent` model drafts for each entity type (the schema's title names the type)."""


def _draft_type(response_format: dict[str, Any]) -> str:
    """The entity type a structured-output request is for (its schema's name or title)."""
    named = response_format.get("json_schema") or {}
    schema = named.get("schema") or {}
    for name in (named.get("name"), schema.get("title")):
        if name in AGENT_DRAFTS:
            return str(name)
    return "task"


AGENT_TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_entity", "arguments": json.dumps({"entity_id": "FEAT-001"})},
}
AGENT_WRITE_CALL = {
    "id": "call_w",
    "type": "function",
    "function": {
        "name": "create_entity",
        "arguments": json.dumps({"entity_type": "task", "fields": AGENT_TASK_DRAFT}),
    },
}
"""What the `agent` model calls for a user turn that starts with "Create"."""
ENTITY_ID = re.compile(r"\b(?:FEAT|US|SPEC|T|SVC|PKG|CONST)-\d{3}\b")


def agent_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The `agent` model: a task draft when asked for structured output; with tools, a
    `get_entity` call for FEAT-001 on a user turn and `See [FEAT-001].` after its result; otherwise a sentence citing the first
    entity id in the last message (`See [ID].`) or, with none, `No sources.`"""
    messages = body["messages"]
    if body.get("response_format"):
        draft = AGENT_DRAFTS.get(_draft_type(body["response_format"]), AGENT_TASK_DRAFT)
        return {"role": "assistant", "content": json.dumps(draft)}
    if body.get("tools") and messages[-1]["role"] == "user":
        writes = str(messages[-1].get("content") or "").startswith("Create")
        call = AGENT_WRITE_CALL if writes else AGENT_TOOL_CALL
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if messages[-1]["role"] == "tool":
        return {"role": "assistant", "content": "See [FEAT-001]."}
    found = ENTITY_ID.search(json.dumps(messages[-1]))
    return {"role": "assistant", "content": f"See [{found[0]}]." if found else "No sources."}


def _agent_completion(body: dict[str, Any]) -> dict[str, Any]:
    reply = agent_reply(body)
    completion = _openai_completion(body["model"])
    finish = "tool_calls" if reply.get("tool_calls") else "stop"
    completion["choices"] = [{"index": 0, "message": reply, "finish_reason": finish}]
    return completion


async def _agent_stream(body: dict[str, Any]) -> AsyncIterator[str]:
    reply = agent_reply(body)
    deltas: list[dict[str, Any]] = [
        {"content": word} for word in re.findall(r"\S+\s*", reply["content"] or "")
    ]
    deltas += [
        {"tool_calls": [{**call, "index": i}]} for i, call in enumerate(reply.get("tool_calls", []))
    ]
    finish = "tool_calls" if reply.get("tool_calls") else "stop"
    async for line in _sse(body["model"], deltas, finish):
        yield line


def _embedding(text: str, encoding: str | None) -> list[float] | str:
    vector = fake_vector(text)
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def build_app(recorder: Recorder) -> FastAPI:
    app = FastAPI()

    async def gate(request: Request, model: str) -> JSONResponse | None:
        body = await request.body()
        recorder.requests.append(
            {
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "body": json.loads(body or b"{}"),
            }
        )
        if model == "deny":
            return JSONResponse({"error": {"message": "bad key", "type": "auth"}}, 401)
        if model == "slow":
            await asyncio.sleep(3)
        return None

    async def openai_chat(request: Request, model: str) -> Any:
        body = await request.json()
        if (denied := await gate(request, model)) is not None:
            return denied
        if model == "agent" and body.get("stream"):
            return StreamingResponse(_agent_stream(body), media_type="text/event-stream")
        if model == "long":
            tokens = body.get("max_completion_tokens") or 512
            stream = _long_stream(recorder, tokens)
            return StreamingResponse(stream, media_type="text/event-stream")
        if model == "agent":
            return _agent_completion(body)
        if body.get("stream"):
            return StreamingResponse(_openai_stream(model), media_type="text/event-stream")
        return _openai_completion(model)

    async def openai_embeddings(request: Request, model: str) -> Any:
        body = await request.json()
        if (denied := await gate(request, model)) is not None:
            return denied
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": _embedding(t, body.get("encoding_format")),
            }
            for i, t in enumerate(texts)
        ]
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await openai_chat(request, (await request.json())["model"])

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        return await openai_embeddings(request, (await request.json())["model"])

    @app.post("/openai/deployments/{deployment}/chat/completions")
    async def azure_chat(request: Request, deployment: str) -> Any:
        return await openai_chat(request, deployment)

    @app.post("/openai/deployments/{deployment}/embeddings")
    async def azure_embeddings(request: Request, deployment: str) -> Any:
        return await openai_embeddings(request, deployment)

    @app.post("/api/chat")
    async def ollama_chat(request: Request) -> Any:
        body = await request.json()
        if (denied := await gate(request, body["model"])) is not None:
            return denied

        def line(content: str, done: bool) -> str:
            item: dict[str, Any] = {
                "model": body["model"],
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": content},
                "done": done,
            }
            if done:
                item |= {
                    "done_reason": "stop",
                    "prompt_eval_count": PROMPT_TOKENS,
                    "eval_count": len(REPLY),
                }
            return json.dumps(item) + "\n"

        if body.get("stream", True):

            async def lines() -> AsyncIterator[str]:
                for token in REPLY:
                    yield line(token, False)
                yield line("", True)

            return StreamingResponse(lines(), media_type="application/x-ndjson")
        return json.loads(line("".join(REPLY), True))

    @app.post("/api/embed")
    async def ollama_embed(request: Request) -> Any:
        body = await request.json()
        if (denied := await gate(request, body["model"])) is not None:
            return denied
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return {"model": body["model"], "embeddings": [fake_vector(t) for t in texts]}

    @app.get("/api/tags")
    async def tags() -> Any:
        return {"models": []}

    return app


@contextmanager
def serve_fake_providers() -> Iterator[tuple[str, Recorder]]:
    """Run the fake server on a free loopback port in a background thread."""
    recorder = Recorder()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(build_app(recorder), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", recorder
    finally:
        server.should_exit = True
        thread.join(10)


def closed_port_url() -> str:
    """A loopback URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def fake_service_env(fake_url: str, model: str = "agent", **extra: str) -> dict[str, str]:
    """`CKS_*` variables for a service answering with this server's `model` and embeddings;
    `extra` adds more by name without the prefix (`AUTH_TOKEN="..."`)."""
    return {
        "CKS_PROVIDER": "openai",
        "CKS_MODEL": model,
        "CKS_BASE_URL": f"{fake_url}/v1",
        "CKS_API_KEY": "test-key",
        "CKS_EMBEDDINGS_PROVIDER": "openai",
        "CKS_EMBEDDINGS_MODEL": "fake-embed",
        **{f"CKS_{name}": value for name, value in extra.items()},
    }
