"""Request and response models of the HTTP API (camelCase on the wire, snake_case accepted)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """camelCase on the wire; snake_case accepted on input; absent optionals are omitted."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class DependencyHealth(WireModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    detail: str


class HealthResponse(WireModel):
    status: Literal["healthy", "degraded", "unhealthy", "unknown"]
    version: str
    uptime_seconds: float = Field(ge=0)
    timestamp: str
    dependencies: dict[str, DependencyHealth]


class ErrorBody(WireModel):
    error: str
    message: str
    type: str | None = None
    code: str | None = None
