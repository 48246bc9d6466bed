"""The contract's error body for every error; details go to the logs, never to the client."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from context_kit_service.graphs.approval import PendingApprovalError
from context_kit_service.provider_errors import ProviderError
from context_kit_service.repository.journal import StorageError, as_storage_error
from context_kit_service.repository.writes import WriteRefused
from context_kit_service.repository.yaml_io import BoundsExceeded
from context_kit_service.server.logging import request_id_var
from context_kit_service.server.served import NotStartedError
from context_kit_service.tools.confinement import ConfinementError, RepositoryRefused

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


def validation_details(exc: RequestValidationError | ValidationError) -> list[dict[str, str]]:
    """Each problem as `{field, message}`; LangServe also raises plain-string errors."""
    if isinstance(exc, ValidationError):
        return [
            {"field": ".".join(str(p) for p in e["loc"]) or "input", "message": str(e["msg"])}
            for e in exc.errors()
        ]
    details = []
    for error in exc.errors():
        if isinstance(error, dict):
            loc = tuple(error.get("loc") or ())
            details.append({"field": _field_path(loc), "message": str(error.get("msg", error))})
        else:
            details.append({"field": "body", "message": str(error)})
    return details


_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
}


@dataclass(frozen=True)
class Classified:
    status: int
    code: str
    message: str
    details: Any | None = None

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, code=self.code, details=self.details)


def _summary(details: list[dict[str, str]], prefix: str) -> str:
    return prefix + "; ".join(f"{item['field']}: {item['message']}" for item in details[:5])


def original(exc: BaseException) -> BaseException:
    """What was raised, through the wrappers of a started stream: its task group, and
    Starlette's "Caught handled exception, but response already started"."""
    while True:
        if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        elif isinstance(exc, RuntimeError) and "response already started" in str(exc):
            if exc.__cause__ is None:
                return exc
            exc = exc.__cause__
        else:
            return exc


def classify(exc: BaseException) -> Classified:
    """The one error policy: what a client is told about `exc`, on every route and stream."""
    exc = original(exc)
    if isinstance(exc, ServiceError):
        return Classified(exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, ProviderError):
        return Classified(exc.status, exc.code, exc.message)
    if isinstance(exc, RequestValidationError):
        details = validation_details(exc)
        return Classified(422, "VALIDATION_ERROR", _summary(details, "invalid request: "), details)
    if isinstance(exc, ValidationError):
        details = validation_details(exc)
        return Classified(422, "VALIDATION_ERROR", _summary(details, "invalid input: "), details)
    if isinstance(exc, StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return Classified(
            exc.status_code, _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}"), message
        )
    if isinstance(exc, PendingApprovalError):
        return Classified(409, "NO_PENDING_APPROVAL", str(exc))
    if isinstance(exc, NotStartedError):
        return Classified(503, "NOT_READY", str(exc))
    if isinstance(exc, RepositoryRefused):
        return Classified(400, exc.code, str(exc))
    if isinstance(exc, ConfinementError):
        return Classified(400, "PATH_REFUSED", str(exc))
    if isinstance(exc, WriteRefused):
        return Classified(422, "WRITE_REFUSED", str(exc))
    if (storage := as_storage_error(exc)) is not None:
        return Classified(storage.status, storage.code, str(storage))
    if isinstance(exc, BoundsExceeded):
        return Classified(422, "VALIDATION_ERROR", f"invalid input: {exc}")
    return Classified(
        500,
        "INTERNAL_ERROR",
        f"internal error; the service log has the details under request id {request_id_var.get()}",
    )


def log_error(exc: BaseException, classified: Classified) -> None:
    """Unexpected errors with their traceback; expected ones as one line."""
    exc = original(exc)
    expected = isinstance(exc, ProviderError | NotStartedError) or as_storage_error(exc)
    if classified.status >= 500 and not expected:
        logger.error("unhandled error", exc_info=exc)
    else:
        logger.info(
            "request refused", extra={"code": classified.code, "detail": classified.message}
        )


async def _handler(request: Request, exc: Exception) -> JSONResponse:
    classified = classify(exc)
    log_error(exc, classified)
    headers = exc.headers if isinstance(exc, StarletteHTTPException) else None
    return JSONResponse(classified.body(), classified.status, headers=headers)


HANDLED: tuple[type[Exception], ...] = (
    RequestValidationError,
    ValidationError,
    StarletteHTTPException,
    ServiceError,
    ProviderError,
    PendingApprovalError,
    NotStartedError,
    ConfinementError,
    RepositoryRefused,
    WriteRefused,
    StorageError,
    BoundsExceeded,
    Exception,
)


def install_error_handlers(app: FastAPI) -> None:
    for kind in HANDLED:
        app.add_exception_handler(kind, _handler)
