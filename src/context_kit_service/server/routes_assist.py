"""`POST /ai/assist/stream` (the app's SSE contract) and the assistant's thread endpoints."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Response
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import StreamMode
from sse_starlette import EventSourceResponse, ServerSentEvent

from context_kit_service.graphs.assistant import ANSWER_TAG, describe_proposal, plain_message
from context_kit_service.server.deps import StateDep
from context_kit_service.server.errors import ServiceError, classify, log_error
from context_kit_service.server.routes_ai import check_input_size
from context_kit_service.server.schemas import AssistRequest, ThreadList, ThreadMessages, ThreadRef
from context_kit_service.server.served import Graph, ServedGraph
from context_kit_service.server.state import ServiceState

router = APIRouter(prefix="/ai", tags=["assistant"])

DONE = ServerSentEvent(data="[DONE]", sep="\n")


def sse(payload: dict[str, Any]) -> ServerSentEvent:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return ServerSentEvent(data=text, sep="\n")


def heartbeat() -> ServerSentEvent:
    return ServerSentEvent(comment="heartbeat", sep="\n")


async def _start(
    assistant: ServedGraph, body: AssistRequest, config: RunnableConfig
) -> tuple[Graph, Any, RunnableConfig]:
    """The turn (or the approval's answer) on the request's thread, through the adapter: the
    request's one read of the thread's state (does the service know it already?)."""
    stored = assistant.stored_thread(config["configurable"]["thread_id"])
    thread: RunnableConfig = {"configurable": {"thread_id": stored}}
    known = body.approval is None and bool(
        (await assistant.graph.aget_state(thread)).values.get("messages")
    )
    return await assistant.start(body.graph_input(thread_known=known), config)


def _last_event(
    body: AssistRequest,
    thread_id: str,
    values: dict[str, Any],
    interrupts: tuple[Any, ...],
    tokens: int,
    started: float,
) -> ServerSentEvent:
    """`complete` with the final reply, or for a paused write `complete` saying in words what
    waits for approval (an `approval` event when the request opted in). `values` is the
    run's last state and `interrupts` its pause, both from the stream itself."""
    final = values["messages"][-1]
    usage = getattr(final, "usage_metadata", None) or {}
    metadata = {
        "totalTokens": int(usage.get("output_tokens", tokens)),
        "durationMs": round((time.perf_counter() - started) * 1000, 3),
        "threadId": thread_id,
    }
    if values.get("model"):  # an optional field is left out, never null
        metadata["model"] = values["model"]
    if not interrupts:
        return sse({"type": "complete", "fullContent": final.text, "metadata": metadata})
    request = interrupts[0].value
    if body.approval_events:
        thread = {"threadId": metadata["threadId"]}
        return sse({"type": "approval", "request": request, "metadata": thread})
    metadata |= {"status": "pending_approval", "approvalRequest": request}
    text = describe_proposal(request)
    return sse({"type": "complete", "fullContent": text, "metadata": metadata})


_END = object()


async def in_own_task(stream: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """`stream`'s items, the stream itself consumed by a task of its own. When the consumer
    stops early (the client left: the response's task group cancels it), that task is
    cancelled the plain asyncio way, and LangGraph then cancels the graph's running nodes.
    (Inside the response's cancelled task group every await is cancelled again, which cuts
    the graph's own clean-up short and leaves a model call running.)"""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)

    async def pump() -> None:
        try:
            async for item in stream:
                await queue.put(item)
        except Exception as exc:
            await queue.put(exc)
        finally:  # cancelled while waiting to put (no reader): the graph stops too
            if (close := getattr(stream, "aclose", None)) is not None:
                await close()
        await queue.put(_END)

    task = asyncio.create_task(pump())
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        task.cancel()


def _is_answer(chunk: Any, meta: dict[str, Any]) -> bool:
    """A piece of the reply: text from the model call the assistant tags as its answer."""
    return isinstance(chunk, AIMessageChunk) and bool(chunk.text) and ANSWER_TAG in meta["tags"]


async def stream_answer(
    assistant: ServedGraph, body: AssistRequest, config: RunnableConfig
) -> AsyncIterator[ServerSentEvent]:
    """token… then complete (or approval), or one error event (classified like every other
    route's errors: its `code` and message say what to fix), then [DONE]. Closing the
    connection, or a client that stops reading (CKS_STREAM_STALL_S), cancels the graph, and
    with it the model call and any running tool."""
    started = time.perf_counter()
    try:
        thread_id = config["configurable"]["thread_id"]
        graph, payload, config = await _start(assistant, body, config)
        index, interrupts = 0, ()
        values: dict[str, Any] = {}
        modes: list[StreamMode] = ["messages", "values"]
        stream = graph.astream(payload, config, stream_mode=modes, **assistant.options(graph))
        async with aclosing(in_own_task(stream)) as items:  # closed with this generator too
            async for mode, item in items:
                if mode == "values":
                    interrupts = item.get("__interrupt__", ())
                    values = values if interrupts else item
                elif _is_answer(*item):
                    token = {"tokenIndex": index}
                    yield sse({"type": "token", "token": item[0].text, "metadata": token})
                    index += 1
        yield _last_event(body, thread_id, values, interrupts, index, started)
    except Exception as exc:
        classified = classify(exc)
        log_error(exc, classified)
        yield sse({"type": "error", "message": classified.message, "code": classified.code})
    yield DONE


@router.post("/assist/stream")
async def assist_stream(body: AssistRequest, state: StateDep) -> EventSourceResponse:
    """Stream the assistant's answer as Server-Sent Events (`data: <json>` lines), with
    comment heartbeats while nothing streams (a tool is running)."""
    check_input_size(state.settings, question=body.question)
    configurable = {**body.configurable(), "thread_id": body.thread_id or uuid.uuid4().hex}
    config = state.run_config({"configurable": configurable})
    return EventSourceResponse(
        stream_answer(state.served["assistant"], body, config),
        ping=state.settings.heartbeat_s,
        ping_message_factory=heartbeat,
        sep="\n",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _thread_ids(state: ServiceState) -> list[str]:
    assert state.checkpointer is not None
    assistant = state.served["assistant"]
    seen: dict[str, None] = {}
    async for item in state.checkpointer.alist(None):
        thread = assistant.client_thread(item.config["configurable"]["thread_id"])
        if thread is not None and "messages" in item.checkpoint.get("channel_values", {}):
            seen.setdefault(thread, None)
    return list(seen)


@router.get("/threads", response_model=ThreadList)
async def list_threads(state: StateDep) -> ThreadList:
    """The assistant's conversation threads, most recent first."""
    return ThreadList(threads=[ThreadRef(thread_id=t) for t in await _thread_ids(state)])


async def _thread_messages(state: ServiceState, thread_id: str) -> list[BaseMessage]:
    """The messages of an assistant thread (its latest checkpoint only); 404 when none."""
    assistant = state.served["assistant"]
    stored = assistant.stored_thread(thread_id)
    snapshot = await assistant.graph.aget_state({"configurable": {"thread_id": stored}})
    messages: list[BaseMessage] | None = snapshot.values.get("messages")
    if not messages:
        raise ServiceError(404, "THREAD_NOT_FOUND", f"no thread {thread_id!r}")
    return messages


@router.get("/threads/{thread_id}", response_model=ThreadMessages, response_model_exclude_none=True)
async def get_thread(thread_id: str, state: StateDep) -> ThreadMessages:
    """A thread's messages."""
    messages = [plain_message(m) for m in await _thread_messages(state, thread_id)]
    return ThreadMessages.model_validate({"threadId": thread_id, "messages": messages})


@router.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(thread_id: str, state: StateDep) -> Response:
    """Forget a thread and all its checkpoints."""
    await _thread_messages(state, thread_id)
    assert state.checkpointer is not None
    await state.checkpointer.adelete_thread(state.served["assistant"].stored_thread(thread_id))
    return Response(status_code=204)
