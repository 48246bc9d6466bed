"""`GET /health` (the app's liveness and status probe) and `GET /ready` (for orchestration)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from context_kit_service import __version__
from context_kit_service.server.deps import StateDep
from context_kit_service.server.health import overall
from context_kit_service.server.schemas import DEPENDENCY_STATES, DependencyHealth, HealthResponse
from context_kit_service.server.state import ServiceState

router = APIRouter(tags=["health"])


async def _health(state: ServiceState) -> HealthResponse:
    results = await state.health.results()
    settings = state.settings
    located = settings.health_details or settings.auth_token is not None
    return HealthResponse(
        status=overall(results),
        version=__version__,
        uptime_seconds=round(time.monotonic() - state.started_at, 3),
        timestamp=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        dependencies={name: DEPENDENCY_STATES[result.status] for name, result in results.items()},
        dependency_details={
            name: DependencyHealth(status=result.status, detail=result.described(located))
            for name, result in results.items()
        },
    )


@router.get("/health", response_model=HealthResponse, response_model_by_alias=True)
async def health(state: StateDep) -> JSONResponse:
    """Status from real checks. 200 while the service can work (healthy or degraded), else 503."""
    body = await _health(state)
    return JSONResponse(
        body.model_dump(by_alias=True, exclude_none=True),
        status_code=503 if body.status == "unhealthy" else 200,
    )


@router.get("/ready")
async def ready(state: StateDep) -> JSONResponse:
    """200 once the service can serve requests, 503 otherwise (for load balancers)."""
    body = await _health(state)
    is_ready = body.status != "unhealthy"
    return JSONResponse(
        {"ready": is_ready, "status": body.status}, status_code=200 if is_ready else 503
    )
