"""The OpenAPI document, made honest: every status code a route can answer, with the error body,
and streaming routes documented as `text/event-stream`.

FastAPI documents only 200 and 422, and LangServe documents its streams as JSON. The codes
added here come from the layers every request passes (middleware, the error policy in
`errors.classify`), so the document says what a client will really see.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "type": {"type": "string", "enum": ["client_error", "server_error"]},
        "code": {"type": "string"},
        "details": {},
    },
    "required": ["error", "message", "type", "code"],
}
EVERY_REQUEST = {
    400: "Malformed request (body, JSON, repository, config hash); see `code`.",
    421: "The `Host` header is not one this service answers to (CKS_ALLOWED_HOSTS).",
    422: "The request does not validate; `details` lists each problem.",
    500: "Internal error; the log has the details under the request id.",
    503: "The service is starting or a dependency is unavailable.",
}
WITH_TOKEN = {401: "Missing or wrong bearer token (CKS_AUTH_TOKEN)."}
WITH_BODY = {
    413: "The body is larger than CKS_MAX_REQUEST_BYTES.",
    415: "The body is not `application/json`.",
}
RUNS = {
    403: "A provider endpoint or repository this request may not use.",
    409: "An approval for a thread with nothing waiting for one.",
    502: "The model provider failed; `code` says how.",
    504: "The request or the provider took too long.",
}
THREADS = {404: "No such thread."}
STREAM_ENDPOINTS = ("/stream", "/stream_log", "/stream_events", "/assist/stream")
SSE_EVENT = {
    "type": "object",
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
    "required": ["data"],
}
"""One Server-Sent Event; `data` holds JSON (LangServe) or the app's event object."""
SSE_CONTENT = {"text/event-stream": {"schema": SSE_EVENT}}


def _error(description: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _codes(path: str, method: str, with_token: bool) -> dict[int, str]:
    codes = dict(EVERY_REQUEST)
    if with_token:
        codes |= WITH_TOKEN
    if method == "post":
        codes |= WITH_BODY
    if path.startswith(("/ai/", "/graphs/")) and not path.startswith("/ai/threads"):
        codes |= RUNS
    if path.startswith("/ai/threads/"):
        codes |= THREADS
    return codes


def document(schema: dict[str, Any], *, with_token: bool) -> dict[str, Any]:
    """Add the error responses and SSE content types to a generated OpenAPI document."""
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = ERROR_SCHEMA
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status, description in _codes(path, method, with_token).items():
                responses[str(status)] = _error(description)
            if method == "post" and path.endswith(STREAM_ENDPOINTS):
                ok = responses.setdefault("200", {"description": HTTPStatus.OK.phrase})
                ok["content"] = SSE_CONTENT
    return schema


def install_openapi(app: FastAPI, *, with_token: bool) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            generated = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = document(generated, with_token=with_token)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
