"""A runnable standing in for a graph that is compiled later (in the lifespan, with the
checkpointer), so LangServe routes can be mounted when the app is built."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.runnables import ConfigurableFieldSpec, Runnable, RunnableConfig
from langgraph.pregel import Pregel
from pydantic import BaseModel

from context_kit_service.configuration import configuration_specs
from context_kit_service.graphs.resumable import start_run

Graph = Pregel[Any, Any, Any, Any]


class DeferredGraph(Runnable[Any, Any]):
    """Delegates every call to `get_graph()`; schemas come from the checkpoint-free `template`.
    A run without a `thread_id` gets a fresh one (a one-off conversation). With an
    `input_model` that has an `approval` field (`graphs.resumable.approvable_input`), an input
    holding an approval resumes the thread's paused run instead of starting one. In `stream_events`,
    the run's final output holds only the output schema's fields, as `invoke` returns it
    (LangGraph reports the whole state there, internal fields and LangChain messages included,
    which the JavaScript RemoteRunnable would rewrite)."""

    def __init__(
        self,
        name: str,
        template: Graph,
        get_graph: Callable[[], Graph],
        input_model: type[BaseModel] | None = None,
    ) -> None:
        self.name = name
        self.template = template
        self._get_graph = get_graph
        self._input_model = input_model

    @property
    def InputType(self) -> Any:
        return self.template.InputType

    @property
    def OutputType(self) -> Any:
        return self.template.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self._input_model or self.template.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self.template.get_output_schema(config)

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return configuration_specs()

    async def _start(self, input: Any, config: RunnableConfig | None) -> tuple[Any, RunnableConfig]:
        return await start_run(self._get_graph(), input, config)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        raise TypeError(f"{self.name} runs asynchronously; call ainvoke/astream instead")

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        payload, config = await self._start(input, config)
        result = await self._get_graph().ainvoke(payload, config, **kwargs)
        if isinstance(result, dict):
            result.pop("__interrupt__", None)
        return result

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        payload, config = await self._start(input, config)
        async for item in self._get_graph().astream(payload, config, **kwargs):
            yield item

    async def astream_events(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        fields = set(self.get_output_schema().model_fields)
        root = None
        payload, config = await self._start(input, config)
        async for event in self._get_graph().astream_events(payload, config, **kwargs):
            root = root or event["run_id"]
            output = event["data"].get("output")
            if (
                event["run_id"] == root
                and event["event"] == "on_chain_end"
                and isinstance(output, dict)
            ):
                event["data"]["output"] = {k: v for k, v in output.items() if k in fields}
            yield event

    async def astream_log(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        payload, config = await self._start(input, config)
        async for patch in self._get_graph().astream_log(payload, config, **kwargs):
            yield patch
