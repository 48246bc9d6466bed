"""A runnable standing in for a graph that is compiled later (in the lifespan, with the
checkpointer), so LangServe routes can be mounted when the app is built."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.runnables import ConfigurableFieldSpec, Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config
from langgraph.pregel import Pregel
from pydantic import BaseModel

from context_kit_service.graphs.configuration import configuration_specs

Graph = Pregel[Any, Any, Any, Any]


class DeferredGraph(Runnable[Any, Any]):
    """Delegates every call to `get_graph()`; schemas come from the checkpoint-free `template`.
    A run without a `thread_id` gets a fresh one (a one-off conversation). In `stream_events`,
    the run's final output holds only the output schema's fields, as `invoke` returns it
    (LangGraph reports the whole state there, internal fields and LangChain messages included,
    which the JavaScript RemoteRunnable would rewrite)."""

    def __init__(self, name: str, template: Graph, get_graph: Callable[[], Graph]) -> None:
        self.name = name
        self.template = template
        self._get_graph = get_graph

    @property
    def InputType(self) -> Any:
        return self.template.InputType

    @property
    def OutputType(self) -> Any:
        return self.template.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self.template.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self.template.get_output_schema(config)

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return configuration_specs()

    @staticmethod
    def _threaded(config: RunnableConfig | None) -> RunnableConfig:
        configurable = dict((config or {}).get("configurable") or {})
        configurable.setdefault("thread_id", None)
        configurable["thread_id"] = configurable["thread_id"] or uuid.uuid4().hex
        return patch_config(config, configurable=configurable)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        raise TypeError(f"{self.name} runs asynchronously; call ainvoke/astream instead")

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._get_graph().ainvoke(input, self._threaded(config), **kwargs)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for item in self._get_graph().astream(input, self._threaded(config), **kwargs):
            yield item

    async def astream_events(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        fields = set(self.get_output_schema().model_fields)
        root = None
        async for event in self._get_graph().astream_events(
            input, self._threaded(config), **kwargs
        ):
            root = root or event["run_id"]
            output = event["data"].get("output")
            if (
                event["run_id"] == root
                and event["event"] == "on_chain_end"
                and isinstance(output, dict)
            ):
                event["data"]["output"] = {k: v for k, v in output.items() if k in fields}
            yield event

    def astream_log(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._get_graph().astream_log(input, self._threaded(config), **kwargs)
