"""The app's `/ai/*` REST contract, backed by the same graphs as the LangServe routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

from context_kit_service.configuration import PROVIDER_KEY
from context_kit_service.server.deps import StateDep
from context_kit_service.server.errors import ServiceError
from context_kit_service.server.graphs import served_runnable
from context_kit_service.server.schemas import (
    ApprovalIn,
    GenerateEntityMetadata,
    GenerateEntityRequest,
    GenerateEntityResponse,
    GenerationValidation,
    ProviderConfig,
    RagMetadata,
    RagQueryRequest,
    RagQueryResponse,
    RagSource,
    ToolExecuteMetadata,
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


def run_config(
    state: ServiceState, provider: ProviderConfig | None, **configurable: Any
) -> RunnableConfig:
    """The graph config of a REST request: server settings plus the app's provider `config`."""
    values: dict[str, Any] = {**configurable, **state.server_configurable()}
    if provider is not None:
        values |= {
            "provider": provider.provider,
            "model": provider.model,
            "temperature": provider.temperature,
            "max_tokens": provider.max_tokens,
            PROVIDER_KEY: {
                "endpoint": provider.endpoint,
                "api_key": provider.api_key,
                "api_version": provider.api_version,
            },
        }
    return {"configurable": values}


class ResumableRequest(Protocol):
    config: ProviderConfig | None
    thread_id: str | None
    approval: ApprovalIn | None


async def run_resumable(
    state: ServiceState, graph: str, payload: dict[str, Any], body: ResumableRequest
) -> dict[str, Any]:
    """Start a run of an approval-capable graph, or answer its pending approval."""
    if body.approval is not None:
        payload = {**payload, "approval": body.approval.model_dump()}
    config = run_config(state, body.config, thread_id=body.thread_id)
    output: dict[str, Any] = await run_bounded(
        served_runnable(state, graph).ainvoke(payload, config), state.settings
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


def _json(model: BaseModel) -> JSONResponse:
    return JSONResponse(model.model_dump(by_alias=True, exclude_none=True))


@router.post("/tools/execute", response_model=ToolExecuteResponse, response_model_exclude_none=True)
async def execute_tool(body: ToolExecuteRequest, state: StateDep) -> JSONResponse:
    """Run a repository tool. Tools that write pause for approval: the response then has
    `result.status == "pending_approval"` and a `metadata.threadId`; send the same request
    with `threadId` and `approval: {approved, arguments?}` to go ahead or reject."""
    started = time.perf_counter()
    payload: dict[str, Any] = {
        "tool_id": body.tool_id,
        "parameters": body.parameters,
        "repo_path": body.repo_path or "",
    }
    output = await run_resumable(state, "tool_execution", payload, body)
    status = output["status"]
    ran = status == "completed"
    result = output.get("result") if ran else None
    if status == "pending_approval":
        result = {"status": status, "approvalRequest": output["approval_request"]}
    elapsed = output["duration_ms"] if ran else (time.perf_counter() - started) * 1000
    metadata = ToolExecuteMetadata(
        duration_ms=round(elapsed, 3),
        tool_id=body.tool_id,
        tool=output.get("tool") or None,
        status=status,
        thread_id=output["thread_id"],
    )
    return _json(ToolExecuteResponse(result=result, error=output.get("error"), metadata=metadata))


@router.post("/rag/query", response_model=RagQueryResponse, response_model_exclude_none=True)
async def rag_query(body: RagQueryRequest, state: StateDep) -> JSONResponse:
    """Answer a question from the repository's content only, with sources and timings."""
    check_input_size(state.settings, query=body.query)
    payload = {
        "query": body.query,
        "repo_path": body.repo_path or "",
        "top_k": body.top_k,
        "entity_types": body.entity_types or [],
    }
    runnable = served_runnable(state, "rag")
    output = await run_bounded(
        runnable.ainvoke(payload, run_config(state, body.config)), state.settings
    )
    sources = [
        RagSource(
            entity_id=s.entity_id,
            entity_type=s.entity_type,
            relevance_score=s.relevance_score,
            excerpt=s.excerpt,
            file_path=s.file_path,
        )
        for s in output["sources"]
    ]
    metadata = RagMetadata(
        retrieval_time_ms=output["retrieval_ms"],
        generation_time_ms=output["generation_ms"],
        total_sources=len(sources),
        model=output["model"] or None,
    )
    return _json(RagQueryResponse(answer=output["answer"], sources=sources, metadata=metadata))


@router.post(
    "/generate-entity", response_model=GenerateEntityResponse, response_model_exclude_none=True
)
async def generate_entity(body: GenerateEntityRequest, state: StateDep) -> JSONResponse:
    """Write a schema-valid entity of any type, linked to `linkedFeatureId` when given. With
    `save: true` it pauses for approval like a write tool (answer with `threadId` and
    `approval`). A draft that never validates within the attempts gives 422 ENTITY_INVALID."""
    check_input_size(state.settings, userPrompt=body.user_prompt)
    payload: dict[str, Any] = {
        "entity_type": body.entity_type,
        "user_prompt": body.user_prompt,
        "linked_feature_id": body.linked_feature_id,
        "repo_path": body.repo_path or "",
        "save": body.save,
    }
    output = await run_resumable(state, "generation", payload, body)
    status = output["status"]
    if status == "error":
        raise ServiceError(422, "INVALID_REQUEST", output["error"])
    if status == "invalid":
        details = {"problems": output["problems"], "entity": output["entity"]}
        raise ServiceError(422, "ENTITY_INVALID", output["error"], details=details)
    metadata = GenerateEntityMetadata(
        prompt_tokens=output["prompt_tokens"],
        completion_tokens=output["completion_tokens"],
        duration_ms=output["duration_ms"],
        model=output["model"],
        provider=output["provider"] or None,
        attempts=output["attempts"],
        status=status,
        thread_id=output["thread_id"],
        saved_path=output.get("saved_path"),
    )
    return _json(
        GenerateEntityResponse(
            entity=output["entity"],
            yaml=output["yaml"],
            validation=GenerationValidation(valid=output["valid"], errors=output["problems"]),
            approval_request=output.get("approval_request"),
            metadata=metadata,
        )
    )
