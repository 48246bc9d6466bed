"""FastAPI dependencies: the service's state and settings (overridable in tests)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from context_kit_service.server.state import ServiceState
from context_kit_service.settings import Settings


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def get_settings(request: Request) -> Settings:
    return get_state(request).settings


StateDep = Annotated[ServiceState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
