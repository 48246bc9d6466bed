"""The service's own graphs served the two plain ways bench/peers.py compares against, on the
same socket, loop and garbage-collector setup as `context-kit-service serve`:

- `bare`: a FastAPI app with one route per graph, each a single `ainvoke` (SSE tokens from
  `astream(stream_mode="messages")` for the assistant);
- `langserve`: LangServe's `add_routes` on the same compiled graphs.

Both read the same `CKS_*` settings as the service and, like it, watch the repository instead
of scanning it before each query; the assistant keeps its threads in SQLite (a temporary data
directory), written when a run ends, as the service does.

    python bench/peers_server.py bare|langserve    # prints {"url": ..., "pid": ...}
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from langchain_core.messages import AIMessageChunk, HumanMessage

from context_kit_service.checkpointer import open_checkpointer
from context_kit_service.cli import _bind, _loop_factory, tune_gc
from context_kit_service.configuration import server_configurable
from context_kit_service.graphs import assistant, rag, tool_execution
from context_kit_service.repository.cache import repositories
from context_kit_service.settings import load_settings


def bare_app(configurable: dict[str, Any], chat: Any) -> FastAPI:
    app = FastAPI()

    @app.post("/tools")
    async def tools(body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await tool_execution.graph.ainvoke(
            body, {"configurable": configurable}
        )
        return result

    @app.post("/rag")
    async def answer(body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await rag.graph.ainvoke(body, {"configurable": configurable})
        return result

    @app.post("/assist")
    async def assist(body: dict[str, Any]) -> StreamingResponse:
        config = {"configurable": {**configurable, "thread_id": uuid.uuid4().hex}}
        turn = {"messages": [HumanMessage(body["question"])]}

        async def events() -> AsyncIterator[str]:
            stream = chat.astream(turn, config, stream_mode="messages", durability="exit")
            async for chunk, _ in stream:
                if isinstance(chunk, AIMessageChunk) and chunk.text:
                    yield f"data: {json.dumps({'type': 'token', 'token': chunk.text})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def langserve_app(configurable: dict[str, Any], chat: Any) -> FastAPI:
    from langserve import add_routes

    app = FastAPI()

    async def server_config(config: dict[str, Any], request: Request) -> dict[str, Any]:
        extra = {"thread_id": uuid.uuid4().hex}
        return {
            **config,
            "configurable": {**config.get("configurable", {}), **configurable, **extra},
        }

    for path, graph in (
        ("/tools", tool_execution.graph),
        ("/rag", rag.graph),
        ("/assistant", chat),
    ):
        add_routes(app, graph, path=path, per_req_config_modifier=server_config)
    return app


async def main(kind: str) -> None:
    settings = load_settings()
    configurable = server_configurable(settings)
    sock = _bind("127.0.0.1", 0)
    repositories.watch(True)
    async with open_checkpointer(settings) as saver:
        chat = assistant.builder.compile(checkpointer=saver)
        app = (bare_app if kind == "bare" else langserve_app)(configurable, chat)
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))

        async def announce() -> None:
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag only
                await asyncio.sleep(0.01)
            port = sock.getsockname()[1]
            print(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": os.getpid()}), flush=True)
            tune_gc()

        announcer = asyncio.create_task(announce())
        await server.serve(sockets=[sock])
        await announcer


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main(sys.argv[1]))
