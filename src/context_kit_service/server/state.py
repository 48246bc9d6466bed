"""What the running service holds, shared by the routes through `Depends`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel

from context_kit_service.configuration import EMBEDDINGS_KEY, MODEL_KEY, SETTINGS_KEY
from context_kit_service.server.health import HealthChecker
from context_kit_service.settings import Settings


class NotStartedError(RuntimeError):
    """A graph was needed before the service's lifespan compiled it."""


@dataclass
class ServiceState:
    """Settings, start time, and the graphs compiled once (with the checkpointer) at startup."""

    settings: Settings
    health: HealthChecker
    started_at: float = field(default_factory=time.monotonic)
    graphs: dict[str, Pregel[Any, Any, Any, Any]] = field(default_factory=dict)
    checkpointer: BaseCheckpointSaver[str] | None = None
    """Opened in the lifespan; threads of the assistant live there."""
    chat_model: BaseChatModel | None = None
    """A chat model passed in by whoever built the app; None means the configured providers."""
    embeddings: Embeddings | None = None
    """Embeddings passed in the same way; None means the configured provider."""

    def server_configurable(self) -> dict[str, Any]:
        """What the server adds to every run's `configurable` (clients cannot set these)."""
        values: dict[str, Any] = {SETTINGS_KEY: self.settings}
        if self.chat_model is not None:
            values[MODEL_KEY] = self.chat_model
        if self.embeddings is not None:
            values[EMBEDDINGS_KEY] = self.embeddings
        return values

    def graph(self, name: str) -> Pregel[Any, Any, Any, Any]:
        try:
            return self.graphs[name]
        except KeyError:
            raise NotStartedError(f"graph {name!r} is not ready; the service is starting") from None
