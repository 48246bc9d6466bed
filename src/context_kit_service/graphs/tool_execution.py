"""Tool execution: validate the tool and its arguments, ask for approval before a write,
run it, and shape the result with its duration.

    validate_request -> (request_approval) -> execute_tool -> shape_result
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, ToolException
from langgraph.graph import END, START, StateGraph
from pydantic import AfterValidator, BaseModel, Field

from context_kit_service.configuration import Configuration, service_settings
from context_kit_service.graphs.approval import ask_approval
from context_kit_service.repository.yaml_io import bounded
from context_kit_service.tools.confinement import resolve_repository
from context_kit_service.tools.registry import WRITE_TOOLS, check_arguments, resolve_tool

Status = Literal["completed", "error", "rejected", "pending_approval"]


class InputState(BaseModel):
    tool_id: str = Field(default="", description="The app's tool id (`context.read`) or a name.")
    parameters: Annotated[dict[str, Any], AfterValidator(bounded)] = Field(
        default_factory=dict, description="The tool's arguments."
    )
    repo_path: str = Field(
        default="", description="Absolute path of the repository; empty means the default."
    )


class OutputState(BaseModel):
    status: Status = Field(default="completed", description="How the run ended.")
    tool: str = Field(default="", description="The tool that ran (or was asked for).")
    result: dict[str, Any] | None = Field(default=None, description="What the tool returned.")
    error: str | None = Field(default=None, description="Why it did not run, or failed.")
    duration_ms: float = Field(default=0.0, description="How long the tool itself ran.")


class State(InputState, OutputState):
    arguments: dict[str, Any] = Field(default_factory=dict, description="Validated arguments.")
    repo_root: str = Field(default="", description="The checked repository root.")
    approval_key: str = Field(default="", description="The pause that approved the write.")


# --- nodes -----------------------------------------------------------------------------------


async def validate_request(state: State, config: RunnableConfig) -> dict[str, Any]:
    """The tool first (an unknown tool is the tool's answer, whatever the repository), then
    the repository, then the arguments."""
    try:
        tool = resolve_tool(state.tool_id, state.parameters)
    except ToolException as exc:
        return {"status": "error", "error": str(exc), "tool": state.tool_id}
    root = resolve_repository(state.repo_path, service_settings(config))
    try:
        arguments = check_arguments(tool.name, state.parameters)
    except ToolException as exc:
        return {"status": "error", "error": str(exc), "tool": state.tool_id}
    return {"tool": tool.name, "arguments": arguments, "repo_root": str(root)}


async def request_approval(state: State, config: RunnableConfig) -> dict[str, Any]:
    request = {
        "type": "approval",
        "tool": state.tool,
        "arguments": state.arguments,
        "repoPath": state.repo_root,
        "message": f"{state.tool} will change the repository. Approve?",
    }
    decision, key = ask_approval(request, config)
    if not decision.approved:
        return {"status": "rejected", "error": "the user rejected this change"}
    if decision.arguments is None:
        return {"approval_key": key}
    try:
        return {"arguments": check_arguments(state.tool, decision.arguments), "approval_key": key}
    except ToolException as exc:
        return {"status": "error", "error": str(exc)}


async def execute_tool(state: State, config: RunnableConfig) -> dict[str, Any]:
    tool = resolve_tool(state.tool)
    started = time.perf_counter()
    injected = {"repo_root": state.repo_root, "approval_key": state.approval_key}
    try:
        output = await tool.ainvoke({**state.arguments, **_accepted(tool, injected)}, config)
    except ToolException as exc:
        return {"status": "error", "error": str(exc), "duration_ms": _since(started)}
    return {"status": "completed", "result": output, "duration_ms": _since(started)}


async def shape_result(state: State) -> dict[str, Any]:
    result = state.result if isinstance(state.result, dict) else {"value": state.result}
    return {"result": result, "duration_ms": round(state.duration_ms, 3)}


def _accepted(tool: BaseTool, injected: dict[str, Any]) -> dict[str, Any]:
    """The injected values `tool` takes (every tool takes the repository; writes the key)."""
    takes = getattr(tool.get_input_schema(), "model_fields", {})
    return {k: v for k, v in injected.items() if k in takes}


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def may_pause(payload: dict[str, Any]) -> bool:
    """Whether a run of this input can stop for approval: only a tool that writes does (an
    unknown tool ends with an error before any pause)."""
    try:
        tool = resolve_tool(str(payload.get("tool_id", "")), payload.get("parameters") or {})
    except ToolException:
        return False
    return tool.name in WRITE_TOOLS


# --- routing ---------------------------------------------------------------------------------


async def route_after_validation(
    state: State,
) -> Literal["request_approval", "execute_tool", "__end__"]:
    if state.status == "error":
        return "__end__"
    return "request_approval" if state.tool in WRITE_TOOLS else "execute_tool"


async def route_after_approval(state: State) -> Literal["execute_tool", "__end__"]:
    return "__end__" if state.status in ("rejected", "error") else "execute_tool"


async def route_after_execution(state: State) -> Literal["shape_result", "__end__"]:
    return "__end__" if state.status == "error" else "shape_result"


# --- graph -----------------------------------------------------------------------------------

builder = StateGraph(
    State, input_schema=InputState, output_schema=OutputState, context_schema=Configuration
)
builder.add_node(validate_request)
builder.add_node(request_approval)
builder.add_node(execute_tool)
builder.add_node(shape_result)
builder.add_edge(START, "validate_request")
builder.add_conditional_edges("validate_request", route_after_validation)
builder.add_conditional_edges("request_approval", route_after_approval)
builder.add_conditional_edges("execute_tool", route_after_execution)
builder.add_edge("shape_result", END)

graph = builder.compile(name="tool_execution")
"""Checkpointer-free, for LangGraph Studio; the server compiles `builder` with its checkpointer."""
