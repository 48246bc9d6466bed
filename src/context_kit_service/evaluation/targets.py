"""Where an evaluation runs its graphs: in this process, or on a running service over HTTP
(LangServe's RemoteRunnable, with the service's token)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from pydantic_core import to_jsonable_python

from context_kit_service.configuration import server_configurable
from context_kit_service.graphs import assistant, generation, rag, tool_execution
from context_kit_service.graphs.assistant import plain_message
from context_kit_service.settings import Settings

GraphName = Literal["rag", "generation", "assistant", "tool_execution"]


class Target(Protocol):
    name: str

    async def invoke(
        self, graph: GraphName, payload: dict[str, Any], thread_id: str | None = None
    ) -> dict[str, Any]:
        """Run a graph once; `thread_id` keeps memory between calls."""

    async def transcript(self, thread_id: str) -> list[dict[str, Any]]:
        """An assistant thread's messages as plain JSON (also when a run paused)."""

    async def aclose(self) -> None: ...


def _overrides(
    provider: str | None, model: str | None, temperature: float | None
) -> dict[str, Any]:
    chosen = {"provider": provider, "model": model, "temperature": temperature}
    return {k: v for k, v in chosen.items() if v is not None and v != ""}


@dataclass
class LocalTarget:
    """The graphs in this process, with an in-memory checkpointer for threads; the provider
    and model are the settings' (CKS_PROVIDER, CKS_MODEL)."""

    settings: Settings
    temperature: float | None = None
    chat_model: BaseChatModel | None = None
    """A model instance to use instead of the configured one (scripted evaluations)."""
    name: str = "local"
    _graphs: dict[str, Pregel[Any, Any, Any, Any]] = field(default_factory=dict)

    def _graph(self, name: GraphName) -> Pregel[Any, Any, Any, Any]:
        if name not in self._graphs:
            module = {
                "rag": rag,
                "generation": generation,
                "assistant": assistant,
                "tool_execution": tool_execution,
            }[name]
            self._graphs[name] = module.builder.compile(checkpointer=InMemorySaver(), name=name)
        return self._graphs[name]

    def _config(self, thread_id: str | None) -> RunnableConfig:
        configurable: dict[str, Any] = {
            **_overrides(None, None, self.temperature),
            **server_configurable(self.settings, self.chat_model),
            "thread_id": thread_id or uuid.uuid4().hex,
        }
        return {"configurable": configurable}

    async def invoke(
        self, graph: GraphName, payload: dict[str, Any], thread_id: str | None = None
    ) -> dict[str, Any]:
        result = await self._graph(graph).ainvoke(payload, self._config(thread_id))
        result.pop("__interrupt__", None)
        plain: dict[str, Any] = to_jsonable_python(result)  # as a client would receive it
        return plain

    async def transcript(self, thread_id: str) -> list[dict[str, Any]]:
        state = await self._graph("assistant").aget_state(self._config(thread_id))
        return [plain_message(m) for m in state.values.get("messages", [])]

    async def aclose(self) -> None:
        self._graphs.clear()


@dataclass
class HttpTarget:
    """A running service: LangServe routes through RemoteRunnable, threads through `/ai`."""

    url: str
    token: str | None = None
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    timeout_s: float = 600
    name: str = ""
    _clients: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.name = self.name or self.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _remote(self, graph: GraphName) -> Any:
        from langserve import RemoteRunnable

        from context_kit_service.server.served import SPECS

        if graph not in self._clients:
            self._clients[graph] = RemoteRunnable(
                f"{self.url}{next(g.path for g in SPECS if g.name == graph)}",
                headers=self.headers,
                timeout=self.timeout_s,
            )
        return self._clients[graph]

    async def invoke(
        self, graph: GraphName, payload: dict[str, Any], thread_id: str | None = None
    ) -> dict[str, Any]:
        configurable = _overrides(self.provider, self.model, self.temperature)
        if thread_id:
            configurable["thread_id"] = thread_id
        result: dict[str, Any] = await self._remote(graph).ainvoke(
            payload, {"configurable": configurable}
        )
        return result

    async def transcript(self, thread_id: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(headers=self.headers, timeout=self.timeout_s) as client:
            response = await client.get(f"{self.url}/ai/threads/{thread_id}")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages

    async def aclose(self) -> None:
        for remote in self._clients.values():
            await remote.async_client.aclose()
            remote.sync_client.close()
        self._clients.clear()
