"""The app's `/ai/*` REST contract, backed by the same graphs as the LangServe routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from langchain_core.runnables import RunnableConfig

from context_kit_service.graphs.configuration import SETTINGS_KEY
from context_kit_service.server.deps import StateDep
from context_kit_service.server.errors import ServiceError
from context_kit_service.server.graphs import served_runnable
from context_kit_service.server.schemas import (
    ToolExecuteMetadata,
    ToolExecuteRequest,
    ToolExecuteResponse,
)
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


def _json(model: ToolExecuteResponse) -> JSONResponse:
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
    if body.approval is not None:
        payload["approval"] = body.approval.model_dump()
    config: RunnableConfig = {
        "configurable": {SETTINGS_KEY: state.settings, "thread_id": body.thread_id}
    }
    output = await run_bounded(
        served_runnable(state, "tool_execution").ainvoke(payload, config), state.settings
    )
    status = output["status"]
    ran = status == "completed"
    result = output.get("result") if ran else None
    if status == "pending_approval":
        result = {"status": status, "approvalRequest": output["approval_request"]}
    metadata = ToolExecuteMetadata(
        duration_ms=round(
            output["duration_ms"] if ran else (time.perf_counter() - started) * 1000, 3
        ),
        tool_id=body.tool_id,
        tool=output.get("tool") or None,
        status=status,
        thread_id=output["thread_id"],
    )
    return _json(ToolExecuteResponse(result=result, error=output.get("error"), metadata=metadata))
