"""`POST /ai/assist/stream` (the app's SSE contract) and the assistant's thread endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, StreamingResponse
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel

from context_kit_service.configuration import chat_model_for
from context_kit_service.graphs.assistant import plain_message
from context_kit_service.graphs.resumable import start_run
from context_kit_service.providers import model_name
from context_kit_service.server.deps import StateDep
from context_kit_service.server.errors import ServiceError, classify, log_error
from context_kit_service.server.routes_ai import check_input_size, run_config
from context_kit_service.server.schemas import AssistRequest
from context_kit_service.server.state import ServiceState

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/ai", tags=["assistant"])

ROLES: dict[str, type[BaseMessage]] = {
    "user": HumanMessage,
    "assistant": AIMessage,
    "system": SystemMessage,
}
DONE = "data: [DONE]\n\n"
HEARTBEAT = ": heartbeat\n\n"
Graph = Pregel[Any, Any, Any, Any]


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'), ensure_ascii=False)}\n\n"


async def _input(graph: Graph, body: AssistRequest, config: RunnableConfig) -> Any:
    if body.approval is not None:  # NO_PENDING_APPROVAL when the thread waits for nothing
        start, _ = await start_run(graph, {"approval": body.approval.model_dump()}, config)
        return start
    known = (await graph.aget_state(config)).values.get("messages")
    history = [] if known else [ROLES[t.role](t.content) for t in body.conversation_history]
    return {
        "messages": [*history, HumanMessage(body.question)],
        "repo_path": body.repo_path or "",
        "context_snapshot": body.context_snapshot,
    }


async def stream_answer(
    graph: Graph, body: AssistRequest, config: RunnableConfig, heartbeat_s: float
) -> AsyncIterator[str]:
    """token… then complete, or one error event (classified like every other route's errors:
    its `code` and message say what to fix), then [DONE]; comment heartbeats while nothing
    streams (a tool is running). Closing the connection cancels the graph, and with it the
    model call and any running tool."""
    try:
        payload = await _input(graph, body, config)
    except Exception as exc:
        yield _error_event(exc)
        yield DONE
        return
    started = time.perf_counter()
    index = 0
    stream = graph.astream(payload, config, stream_mode="messages")
    iterator = stream.__aiter__()
    pending: asyncio.Future[Any] = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=heartbeat_s)
            if not done:
                yield HEARTBEAT
                continue
            try:
                chunk, meta = pending.result()
            except StopAsyncIteration:
                break
            pending = asyncio.ensure_future(anext(iterator))
            if (
                meta.get("langgraph_node") == "call_model"
                and isinstance(chunk, AIMessageChunk)
                and chunk.text
            ):
                yield sse({"type": "token", "token": chunk.text, "metadata": {"tokenIndex": index}})
                index += 1
        snapshot = await graph.aget_state(config)
        thread_id = config["configurable"]["thread_id"]
        if snapshot.interrupts:
            request = snapshot.interrupts[0].value
            yield sse({"type": "approval", "request": request, "metadata": {"threadId": thread_id}})
            yield DONE
            return
        final = snapshot.values["messages"][-1]
        usage = getattr(final, "usage_metadata", None) or {}
        metadata = {
            "totalTokens": int(usage.get("output_tokens", index)),
            "durationMs": round((time.perf_counter() - started) * 1000, 3),
            "model": model_name(chat_model_for(config)[1]),
            "threadId": thread_id,
        }
        yield sse({"type": "complete", "fullContent": final.text, "metadata": metadata})
        yield DONE
    except Exception as exc:
        yield _error_event(exc)
        yield DONE
    finally:
        pending.cancel()
        # The cancelled step may still be inside the stream; it then ends with the step.
        with contextlib.suppress(RuntimeError):
            await stream.aclose()  # type: ignore[attr-defined]


def _error_event(exc: BaseException) -> str:
    classified = classify(exc)
    log_error(exc, classified)
    return sse({"type": "error", "message": classified.message, "code": classified.code})


@router.post("/assist/stream")
async def assist_stream(body: AssistRequest, state: StateDep) -> StreamingResponse:
    """Stream the assistant's answer as Server-Sent Events (`data: <json>` lines)."""
    check_input_size(state.settings, question=body.question)
    thread_id = body.thread_id or uuid.uuid4().hex
    config = run_config(state, body.config, thread_id=thread_id)
    graph = state.graph("assistant")
    return StreamingResponse(
        stream_answer(graph, body, config, state.settings.heartbeat_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _thread_ids(state: ServiceState) -> list[str]:
    assert state.checkpointer is not None
    seen: dict[str, None] = {}
    async for item in state.checkpointer.alist(None):
        if "messages" in item.checkpoint.get("channel_values", {}):
            seen.setdefault(item.config["configurable"]["thread_id"], None)
    return list(seen)


@router.get("/threads")
async def list_threads(state: StateDep) -> JSONResponse:
    """The assistant's conversation threads, most recent first."""
    return JSONResponse({"threads": [{"threadId": t} for t in await _thread_ids(state)]})


async def _thread_messages(state: ServiceState, thread_id: str) -> list[BaseMessage]:
    """The messages of an assistant thread (its latest checkpoint only); 404 when none."""
    snapshot = await state.graph("assistant").aget_state({"configurable": {"thread_id": thread_id}})
    messages: list[BaseMessage] | None = snapshot.values.get("messages")
    if not messages:
        raise ServiceError(404, "THREAD_NOT_FOUND", f"no thread {thread_id!r}")
    return messages


@router.get("/threads/{thread_id}")
async def get_thread(thread_id: str, state: StateDep) -> JSONResponse:
    """A thread's messages."""
    messages = await _thread_messages(state, thread_id)
    return JSONResponse({"threadId": thread_id, "messages": [plain_message(m) for m in messages]})


@router.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(thread_id: str, state: StateDep) -> Response:
    """Forget a thread and all its checkpoints."""
    await _thread_messages(state, thread_id)
    assert state.checkpointer is not None
    await state.checkpointer.adelete_thread(thread_id)
    return Response(status_code=204)
