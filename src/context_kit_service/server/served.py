"""One adapter serves every graph: to LangServe, to the `/ai/*` REST routes and to the SSE route.

| graph            | LangServe path    | threads | pauses reported in the output       |
|------------------|-------------------|---------|-------------------------------------|
| `tool_execution` | /graphs/tools     | yes     | status, approval_request, thread_id |
| `rag`            | /graphs/rag       | no      | -                                   |
| `generation`     | /graphs/generate  | yes     | status, approval_request, thread_id |
| `assistant`      | /graphs/assistant | yes     | approval_request (its own field)    |

Each graph is compiled once, at import (`graphs/*.graph`); the lifespan attaches the
checkpointer to the graphs with threads (`graph.copy(update={"checkpointer": saver})`).
A run on a threaded graph gets a fresh `thread_id` unless it names one; every graph's threads
are kept under its own scope (`tools:`, `generate:`, `assistant:` before the client's id), so
no graph can read or resume another's thread by naming it. Clients cannot send a
LangGraph `Command`, so their input takes an optional `approval`: with it, the paused run on
the thread resumes with the approval as the interrupt's answer, and with nothing paused
there it is refused (`PendingApprovalError`, 409 NO_PENDING_APPROVAL) on every route.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForChainRun
from langchain_core.runnables import ConfigurableFieldSpec, Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel
from langgraph.types import Command, Durability
from pydantic import BaseModel, Field, create_model

from context_kit_service.configuration import check_run_config, configuration_specs
from context_kit_service.graphs import assistant, generation, rag, tool_execution
from context_kit_service.graphs.approval import Approval, PendingApprovalError

Graph = Pregel[Any, Any, Any, Any]


class NotStartedError(RuntimeError):
    """A threaded graph was run before the service's lifespan attached the checkpointer."""


@dataclass(frozen=True)
class GraphSpec:
    """One served graph: its module (`graph`, `InputState`, `OutputState`) and how it is served."""

    name: str
    path: str
    module: ModuleType
    threads: bool = True
    """Runs on checkpointed threads, and an `approval` input resumes a paused one."""
    reports_pause: bool = False
    """The output says `status: pending_approval`, the `approval_request` and the `thread_id`."""
    thread_scope: str = ""
    """Put before a client's thread id in the checkpointer, so graphs never share a thread."""
    may_pause: Callable[[dict[str, Any]], bool] | None = None
    """Whether a run of this input can stop for approval; one that cannot runs without a
    checkpointer and leaves nothing in the thread store (None: every run may)."""
    durability: Durability | None = None
    """When the checkpointer writes: "exit" only when the run ends or pauses."""
    write_node: str = ""
    """The node that applies an approved change: when it failed (a full or read-only disk),
    the approval may be sent again, and the run retries it (the journal applies it once)."""

    def input_model(self) -> type[BaseModel]:
        state: type[BaseModel] = self.module.InputState
        if not self.threads:
            return state
        return create_model(
            f"{self.name}_input",
            __base__=state,
            approval=(
                Approval | None,
                Field(
                    default=None, description="Answer to a pending approval (resumes the thread)."
                ),
            ),
        )

    def output_model(self) -> type[BaseModel]:
        state: type[BaseModel] = self.module.OutputState
        if not self.reports_pause:
            return state
        return create_model(
            f"{self.name}_output",
            __base__=state,
            approval_request=(
                dict[str, Any] | None,
                Field(
                    default=None, description="What waits for approval (status pending_approval)."
                ),
            ),
            thread_id=(str, Field(description="The thread of this run; send it back to approve.")),
        )


SPECS = (
    GraphSpec(
        "tool_execution",
        "/graphs/tools",
        tool_execution,
        reports_pause=True,
        thread_scope="tools:",
        may_pause=tool_execution.may_pause,
        durability="exit",
        write_node="execute_tool",
    ),
    GraphSpec("rag", "/graphs/rag", rag, threads=False),
    GraphSpec(
        "generation",
        "/graphs/generate",
        generation,
        reports_pause=True,
        thread_scope="generate:",
        may_pause=generation.may_pause,
        durability="exit",
        write_node="save_entity",
    ),
    GraphSpec(
        "assistant",
        "/graphs/assistant",
        assistant,
        thread_scope="assistant:",
        durability="exit",
        write_node="tools",
    ),
)


class ServedGraph(Runnable[dict[str, Any], dict[str, Any]]):
    """A compiled graph as every route runs it: threads, approvals, plain-JSON output."""

    def __init__(self, spec: GraphSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self._template: Graph = spec.module.graph
        self._graph: Graph | None = None if spec.threads else self._template
        self._input_model = spec.input_model()
        self._output_model = spec.output_model()
        self._output_fields = frozenset(self._output_model.model_fields)

    def attach(self, checkpointer: BaseCheckpointSaver[str] | None) -> None:
        """Give the threaded graph its checkpointer (None: back to not started)."""
        if self.spec.threads:
            update = {"checkpointer": checkpointer}
            self._graph = None if checkpointer is None else self._template.copy(update=update)

    def stored_thread(self, thread_id: str) -> str:
        """The checkpointer's name for the client's `thread_id` (this graph's scope before it)."""
        return self.spec.thread_scope + thread_id

    def client_thread(self, stored: str) -> str | None:
        """The client's id of a stored thread; None when it is another graph's."""
        scope = self.spec.thread_scope
        return stored.removeprefix(scope) if stored.startswith(scope) else None

    @property
    def graph(self) -> Graph:
        if self._graph is None:
            raise NotStartedError(f"graph {self.name!r} is not ready; the service is starting")
        return self._graph

    @property
    def InputType(self) -> type[dict[str, Any]]:
        return dict

    @property
    def OutputType(self) -> type[dict[str, Any]]:
        return dict

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self._input_model

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self._output_model

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return configuration_specs()

    async def start(
        self, input: Any, config: RunnableConfig | None
    ) -> tuple[Graph, Any, RunnableConfig]:
        """What to run: the graph (with the checkpointer unless the run cannot pause), and the
        input on its thread (a fresh one when none is given), or the Command that answers the
        thread's pending approval (or, after an approved change failed to apply, nothing: the
        failed step is retried); and the config."""
        await check_run_config(config)
        payload = input.model_dump() if isinstance(input, BaseModel) else input
        if not self.spec.threads:
            return self._template, payload, patch_config(config)
        configurable = dict((config or {}).get("configurable") or {})
        thread_id = configurable.get("thread_id") or uuid.uuid4().hex
        configurable["thread_id"] = self.stored_thread(thread_id)
        config = patch_config(config, configurable=configurable)
        if not isinstance(payload, dict) or payload.get("approval") is None:
            if isinstance(payload, dict):
                payload = {k: v for k, v in payload.items() if k != "approval"}
            pauses = self.spec.may_pause is None or self.spec.may_pause(payload)
            return (self.graph if pauses else self._template), payload, config
        approval = Approval.model_validate(payload["approval"]).model_dump()
        snapshot = await self.graph.aget_state(config)
        if snapshot.interrupts:
            return self.graph, Command(resume=approval), config
        if approval["approved"] and any(
            task.name == self.spec.write_node and task.error for task in snapshot.tasks
        ):
            return self.graph, None, config  # the approved change failed: retry it
        raise PendingApprovalError(f"thread {thread_id} has no change waiting for approval")

    def options(self, graph: Graph) -> dict[str, Any]:
        """How `graph` runs: the spec's durability, when it has a checkpointer to write."""
        durable = self.spec.durability and graph.checkpointer
        return {"durability": self.spec.durability} if durable else {}

    def plain_output(self, result: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        """The run's result as the output schema has it."""
        return {k: v for k, v in result.items() if k in self._output_fields}

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        raise TypeError(f"{self.name} runs asynchronously; call ainvoke/astream instead")

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        graph, payload, config = await self.start(input, config)
        result = await graph.ainvoke(payload, config, **self.options(graph))
        return self.plain_output(result, config)

    async def astream(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        graph, payload, config = await self.start(input, config)
        stream = graph.astream(payload, config, **self.options(graph), **kwargs)
        async with aclosing(
            cast(AsyncGenerator[Any, None], stream)
        ) as items:  # closed with this one: the graph stops too
            async for item in items:
                yield item

    async def astream_log(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        graph, payload, config = await self.start(input, config)
        log = graph.astream_log(payload, config, **self.options(graph), **kwargs)
        async with aclosing(cast(AsyncGenerator[Any, None], log)) as patches:
            async for patch in patches:
                yield patch

    async def astream_events(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """The graph's events; the run's own final output is the output schema's, as `ainvoke`
        returns it (LangGraph reports the whole state there, LangChain messages included,
        which the JavaScript RemoteRunnable would rewrite)."""
        graph, payload, config = await self.start(input, config)
        root = None
        events = graph.astream_events(payload, config, **self.options(graph), **kwargs)
        async with aclosing(events) as each:
            async for event in each:
                root = root or event["run_id"]
                output = event["data"].get("output")
                if (
                    event["run_id"] == root
                    and event["event"] == "on_chain_end"
                    and isinstance(output, dict)
                ):
                    event["data"]["output"] = self.plain_output(output, config)
                yield event


class ReportingGraph(ServedGraph):
    """A graph whose pauses are part of its output (`status`, `approval_request`,
    `thread_id`). It answers as a whole: `astream` yields that one output, and the event
    streams are those of the run that produces it, the graph's own events inside."""

    def plain_output(self, result: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        kept = super().plain_output(result, config)
        interrupts = result.get("__interrupt__")
        if interrupts:
            kept |= {"status": "pending_approval", "approval_request": interrupts[0].value}
        kept["thread_id"] = config["configurable"]["thread_id"].removeprefix(self.spec.thread_scope)
        output: dict[str, Any] = self._output_model.model_validate(kept).model_dump()
        return output

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return await self._acall_with_config(self._run, input, config, **kwargs)

    async def _run(
        self, input: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> dict[str, Any]:
        graph, payload, config = await self.start(input, config)
        config = patch_config(config, callbacks=run_manager.get_child())
        result = await graph.ainvoke(payload, config, **self.options(graph))
        return self.plain_output(result, config)

    async def astream(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        yield await self.ainvoke(input, config, **kwargs)

    def astream_log(self, *args: Any, **kwargs: Any) -> Any:
        return Runnable.astream_log(self, *args, **kwargs)

    def astream_events(self, *args: Any, **kwargs: Any) -> Any:
        return Runnable.astream_events(self, *args, **kwargs)


def served_graphs() -> dict[str, ServedGraph]:
    """One adapter per graph, by name."""
    return {
        spec.name: (ReportingGraph if spec.reports_pause else ServedGraph)(spec) for spec in SPECS
    }
