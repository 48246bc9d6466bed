"""What the running service holds, shared by the routes through `Depends`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from langgraph.pregel import Pregel

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

    def graph(self, name: str) -> Pregel[Any, Any, Any, Any]:
        try:
            return self.graphs[name]
        except KeyError:
            raise NotStartedError(f"graph {name!r} is not ready; the service is starting") from None
