"""The app's `/ai/*` REST contract, run by the same adapters as the LangServe routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter

from context_kit_service.server.deps import StateDep
from context_kit_service.server.errors import ServiceError
from context_kit_service.server.schemas import (
    GenerateEntityRequest,
    GenerateEntityResponse,
    RagQueryRequest,
    RagQueryResponse,
    ToolExecuteRequest,
    ToolExecuteResponse,
)
from context_kit_service.server.state import ServiceState
from context_kit_service.settings import Settings

T = TypeVar("T")

router = APIRouter(prefix="/ai", tags=["ai"])


async def run_bounded(work: Awaitable[T], settings: Settings) -> T:
    """Await `work`, giving up after CKS_REQUEST_TIMEOUT_S with a 504 TIMEOUT."""
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            return await work
    except TimeoutError:
        raise ServiceError(
            504, "TIMEOUT", f"the request took longer than {settings.request_timeout_s:g} s"
        ) from None


async def run(
    state: ServiceState, graph: str, payload: dict[str, Any], configurable: dict[str, Any]
) -> dict[str, Any]:
    """One run of a served graph for a REST request (a resume when `payload` has an approval)."""
    config = state.run_config({"configurable": configurable})
    output: dict[str, Any] = await run_bounded(
        state.served[graph].ainvoke(payload, config), state.settings
    )
    return output


def check_input_size(settings: Settings, **texts: str) -> None:
    for name, text in texts.items():
        if len(text) > settings.max_input_chars:
            raise ServiceError(
                422,
                "INPUT_TOO_LONG",
                f"{name} is longer than {settings.max_input_chars} characters "
                "(CKS_MAX_INPUT_CHARS)",
            )


@router.post("/tools/execute", response_model=ToolExecuteResponse, response_model_exclude_none=True)
async def execute_tool(body: ToolExecuteRequest, state: StateDep) -> ToolExecuteResponse:
    """Run a repository tool. Tools that write pause for approval: the response then has
    `result.status == "pending_approval"` and a `metadata.threadId`; send the same request
    with `threadId` and `approval: {approved, arguments?}` to go ahead or reject."""
    started = time.perf_counter()
    output = await run(state, "tool_execution", body.graph_input(), body.configurable())
    return ToolExecuteResponse.from_output(output, body.tool_id, started)


@router.post("/rag/query", response_model=RagQueryResponse, response_model_exclude_none=True)
async def rag_query(body: RagQueryRequest, state: StateDep) -> RagQueryResponse:
    """Answer a question from the repository's content only, with sources and timings."""
    check_input_size(state.settings, query=body.query)
    payload = body.graph_input()
    output = await run(state, "rag", payload, body.configurable())
    return RagQueryResponse.from_output(output, top_k=payload["top_k"])


@router.post(
    "/generate-entity", response_model=GenerateEntityResponse, response_model_exclude_none=True
)
async def generate_entity(body: GenerateEntityRequest, state: StateDep) -> GenerateEntityResponse:
    """Write a schema-valid entity of any type, linked to `linkedFeatureId` when given. With
    `save: true` it pauses for approval like a write tool (answer with `threadId` and
    `approval`). A draft that never validates within the attempts gives 422 ENTITY_INVALID."""
    check_input_size(state.settings, userPrompt=body.user_prompt)
    output = await run(state, "generation", body.graph_input(), body.configurable())
    if output["status"] == "error":
        raise ServiceError(422, "INVALID_REQUEST", body.in_wire_names(output["error"]))
    if output["status"] == "invalid":
        details = {"problems": output["problems"], "entity": output["entity"]}
        raise ServiceError(422, "ENTITY_INVALID", output["error"], details=details)
    return GenerateEntityResponse.from_output(output, body.entity_type)
