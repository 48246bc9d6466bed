"""The served graphs: compiled with the checkpointer at startup, mounted as LangServe routes.

| path             | graph                                  |
|------------------|----------------------------------------|
| /graphs/tools    | tool execution (with write approvals)  |
| /graphs/rag      | RAG query (retrieve, answer with ids)  |
| /graphs/generate | entity generation (save needs approval) |
| /graphs/assistant | the assistant (thread_id in configurable) |

The assistant is also served at `POST /ai/assist/stream` (the app's SSE contract).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from langchain_core.runnables import Runnable
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import StateGraph
from langserve import add_routes

from context_kit_service.graphs import assistant, generation, rag, tool_execution
from context_kit_service.graphs.resumable import (
    ResumableGraph,
    approvable_input,
    served_models,
)
from context_kit_service.server.deferred import DeferredGraph
from context_kit_service.server.state import ServiceState


@dataclass(frozen=True)
class ServedGraph:
    name: str
    path: str
    builder: StateGraph[Any, Any, Any, Any] | None
    """Compiled with the checkpointer at startup; None when the graph needs no checkpointer."""
    served: Callable[[ServiceState], Runnable[Any, Any]]


def _resumable(name: str, module: Any) -> Callable[[ServiceState], Runnable[Any, Any]]:
    input_model, output_model = served_models(name, module.InputState, module.OutputState)
    return lambda state: ResumableGraph(name, lambda: state.graph(name), input_model, output_model)


SERVED_GRAPHS = [
    ServedGraph(
        "tool_execution",
        "/graphs/tools",
        tool_execution.builder,
        _resumable("tool_execution", tool_execution),
    ),
    ServedGraph(
        "rag", "/graphs/rag", None, lambda state: DeferredGraph("rag", rag.graph, lambda: rag.graph)
    ),
    ServedGraph(
        "generation", "/graphs/generate", generation.builder, _resumable("generation", generation)
    ),
    ServedGraph(
        "assistant",
        "/graphs/assistant",
        assistant.builder,
        lambda state: DeferredGraph(
            "assistant",
            assistant.graph,
            lambda: state.graph("assistant"),
            approvable_input("assistant", assistant.InputState),
        ),
    ),
]


def compile_graphs(state: ServiceState, checkpointer: BaseCheckpointSaver[str]) -> None:
    for served in SERVED_GRAPHS:
        if served.builder is not None:
            state.graphs[served.name] = served.builder.compile(
                checkpointer=checkpointer, name=served.name
            )
    state.checkpointer = checkpointer


def served_runnable(state: ServiceState, name: str) -> Runnable[Any, Any]:
    return next(g.served(state) for g in SERVED_GRAPHS if g.name == name)


def mount_graphs(app: FastAPI, state: ServiceState) -> None:
    async def add_server_config(config: dict[str, Any], request: Request) -> dict[str, Any]:
        configurable = {**(config.get("configurable") or {}), **state.server_configurable()}
        return {**config, "configurable": configurable}

    for served in SERVED_GRAPHS:
        add_routes(
            app,
            served.served(state),
            path=served.path,
            per_req_config_modifier=add_server_config,
        )
