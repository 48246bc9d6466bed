"""The contract's error body for every error; details go to the logs, never to the client."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from context_kit_service.graphs.resumable import PendingApprovalError
from context_kit_service.providers import ProviderError
from context_kit_service.server.state import NotStartedError
from context_kit_service.tools.confinement import ConfinementError

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error with a status, a stable code and a message meant for the client."""

    def __init__(self, status: int, code: str, message: str, *, details: Any | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_body(
    status: int, message: str, *, code: str | None = None, details: Any | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": HTTPStatus(status).phrase,
        "message": message,
        "type": "client_error" if status < 500 else "server_error",
    }
    if code is not None:
        body["code"] = code
    if details is not None:
        body["details"] = details
    return body


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: Any | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(status, message, code=code, details=details), status, headers=headers
    )


def _field_path(loc: tuple[Any, ...]) -> str:
    """`("body", "config", "temperature")` -> `config.temperature` (the first item is where)."""
    return ".".join(str(part) for part in loc[1:]) or str(loc[0] if loc else "body")


def validation_details(exc: RequestValidationError) -> list[dict[str, str]]:
    return [
        {"field": _field_path(tuple(error["loc"])), "message": str(error["msg"])}
        for error in exc.errors()
    ]


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc)
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in details[:5])
    return error_response(
        422, f"invalid request: {summary}", code="VALIDATION_ERROR", details=details
    )


async def _graph_input_handler(request: Request, exc: Exception) -> JSONResponse:
    """A graph refused its input (a LangServe body that passed the schema's types)."""
    assert isinstance(exc, ValidationError)
    details = [
        {"field": ".".join(str(p) for p in e["loc"]) or "input", "message": str(e["msg"])}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in details[:5])
    return error_response(
        422, f"invalid input: {summary}", code="VALIDATION_ERROR", details=details
    )


_HTTP_CODES = {
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
}


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(
        exc.status_code,
        message,
        code=_HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}"),
        headers=exc.headers,
    )


async def _service_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.message, code=exc.code, details=exc.details)


async def _provider_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProviderError)
    logger.warning("provider error", extra={"code": exc.code, "detail": exc.message})
    return error_response(exc.status, exc.message, code=exc.code)


async def _pending_handler(request: Request, exc: Exception) -> JSONResponse:
    return error_response(409, str(exc), code="NO_PENDING_APPROVAL")


async def _not_started_handler(request: Request, exc: Exception) -> JSONResponse:
    return error_response(503, str(exc), code="NOT_READY")


async def _confinement_handler(request: Request, exc: Exception) -> JSONResponse:
    return error_response(400, str(exc), code="REPOSITORY_REFUSED")


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=exc)
    return error_response(500, "internal error; see the service log", code="INTERNAL_ERROR")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(ValidationError, _graph_input_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(ServiceError, _service_handler)
    app.add_exception_handler(ProviderError, _provider_handler)
    app.add_exception_handler(PendingApprovalError, _pending_handler)
    app.add_exception_handler(NotStartedError, _not_started_handler)
    app.add_exception_handler(ConfinementError, _confinement_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
