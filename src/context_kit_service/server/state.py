"""What the running service holds, shared by the routes through `Depends`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from context_kit_service.configuration import server_configurable
from context_kit_service.server.health import HealthChecker
from context_kit_service.server.served import ServedGraph, served_graphs
from context_kit_service.settings import Settings


@dataclass
class ServiceState:
    """Settings, start time, and the served graphs (their checkpointer attached at startup)."""

    settings: Settings
    health: HealthChecker
    started_at: float = field(default_factory=time.monotonic)
    served: dict[str, ServedGraph] = field(default_factory=served_graphs)
    """Every graph behind its adapter, by name."""
    checkpointer: BaseCheckpointSaver[str] | None = None
    """Opened in the lifespan; threads of the assistant live there."""
    chat_model: BaseChatModel | None = None
    """A chat model passed in by whoever built the app; None means the configured providers."""
    embeddings: Embeddings | None = None
    """Embeddings passed in the same way; None means the configured provider."""

    def attach(self, checkpointer: BaseCheckpointSaver[str] | None) -> None:
        """Give every threaded graph the checkpointer (None when the service stops)."""
        self.checkpointer = checkpointer
        for served in self.served.values():
            served.attach(checkpointer)

    def run_config(self, config: RunnableConfig | None = None) -> RunnableConfig:
        """`config` with the server's own `configurable` keys added (clients cannot set them)."""
        configurable = {
            **((config or {}).get("configurable") or {}),
            **server_configurable(self.settings, self.chat_model, self.embeddings),
        }
        return {**(config or {}), "configurable": configurable}
