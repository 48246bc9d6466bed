"""What the running service holds, shared by the routes through `Depends`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from context_kit_service.server.health import HealthChecker
from context_kit_service.settings import Settings


@dataclass
class ServiceState:
    """Settings, start time and the components built once per process."""

    settings: Settings
    health: HealthChecker
    started_at: float = field(default_factory=time.monotonic)
