"""Pure ASGI middleware: request ids and access logs, cross-site defences, bearer auth, and a
request-size cap."""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from context_kit_service.repository.yaml_io import BoundsExceeded, check_bounds
from context_kit_service.server.errors import classify, error_body, log_error, original
from context_kit_service.server.logging import request_id_var
from context_kit_service.server.stalled_clients import ClientStalled

logger = logging.getLogger("context_kit_service.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


async def send_error(send: Send, status: int, message: str, code: str, **headers: str) -> None:
    body = json.dumps(error_body(status, message, code=code)).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(key.encode(), value.encode()) for key, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class _Answer:
    """One request's answer on its way out: its status, the request id header, and
    LangServe's generic stream error event, held back until the exception says what it was."""

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self.request_id = request_id
        self.status = 0
        self.held: bytes | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = [*message.get("headers", []), (b"x-request-id", self.request_id.encode())]
            message["headers"] = headers
        elif message["type"] == "http.response.body" and _LANGSERVE_ERROR in message.get(
            "body", b""
        ):
            self.held = message["body"]
            return
        await self._send(message)

    async def fail(self, exc: Exception) -> None:
        """Answer `exc` under the error policy: an error body, or the stream's last event
        (nothing to a client that stopped reading: the connection is dropped)."""
        if isinstance(original(exc), ClientStalled):
            self.held = None
            logger.info("client stalled", extra={"detail": str(original(exc))})
            return
        classified = classify(exc)
        log_error(exc, classified)
        if self.status == 0:
            await send_error(self.send, classified.status, classified.message, classified.code)
        elif self.held is not None:
            event = {"status_code": classified.status, **classified.body()}
            body = f"event: error\r\ndata: {json.dumps(event)}\r\n\r\n".encode()
            self.held = None
            await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def release(self) -> None:
        """Send a held event that no exception explained, as LangServe wrote it."""
        if self.held is not None:
            held, self.held = self.held, None
            await self._send({"type": "http.response.body", "body": held, "more_body": True})


class RequestContextMiddleware:
    """Assigns (or accepts) an `X-Request-ID`, echoes it, writes one access log line, and
    answers any error that escaped the routes under the error policy (`classify`): a 500 keeps
    its request id, and an error inside a started LangServe stream ends the stream with the
    classified `error` event instead of LangServe's bare "Internal Server Error"."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        answer = _Answer(send, request_id)
        try:
            await self.app(scope, receive, answer.send)
        except Exception as exc:
            await answer.fail(exc)
        finally:
            await answer.release()
            elapsed = round((time.perf_counter() - started) * 1000, 2)
            details = {"method": scope["method"], "path": scope["path"], "durationMs": elapsed}
            logger.info("request", extra={**details, "status": answer.status})
            request_id_var.reset(token)


_LANGSERVE_ERROR = b'{"status_code": 500, "message": "Internal Server Error"}'


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(header: str) -> str:
    """`Host` header -> bare lower-case name: `[::1]:8000` -> `::1`, `a.b:80` -> `a.b`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class CrossSiteMiddleware:
    """What keeps a web page out of a service with no token: only known `Host` names (a
    DNS-rebinding page sends its own) and only `application/json` POST bodies (a cross-site
    form or `text/plain` fetch cannot send that without a CORS preflight)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = host_name(_header(scope, b"host") or "")
        if "*" not in self.hosts and host not in self.hosts:
            await send_error(
                send,
                421,
                f"this service does not answer to host {host[:100]!r}; add it to "
                "CKS_ALLOWED_HOSTS if it is yours",
                "HOST_NOT_ALLOWED",
            )
            return
        if scope["method"] == "POST":
            media = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if media != "application/json":
                await send_error(
                    send,
                    415,
                    "send the request body as JSON with 'Content-Type: application/json'",
                    "UNSUPPORTED_MEDIA_TYPE",
                )
                return
        await self.app(scope, receive, send)


class AuthMiddleware:
    """Requires `Authorization: Bearer <token>` on every HTTP request (constant-time compare),
    OPTIONS included; only a CORS preflight from a configured origin passes without it
    (browsers send no credentials on a preflight)."""

    def __init__(self, app: ASGIApp, token: str, cors_origins: frozenset[str]) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.cors_origins = cors_origins

    def _is_allowed_preflight(self, scope: Scope) -> bool:
        return (
            scope["method"] == "OPTIONS"
            and _header(scope, b"access-control-request-method") is not None
            and _header(scope, b"origin") in self.cors_origins
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_allowed_preflight(scope):
            await self.app(scope, receive, send)
            return
        given = (_header(scope, b"authorization") or "").encode("latin-1")
        if not hmac.compare_digest(given, self.expected):
            await send_error(
                send,
                401,
                "missing or wrong bearer token (send 'Authorization: Bearer <CKS_AUTH_TOKEN>')",
                "UNAUTHORIZED",
                **{"www-authenticate": "Bearer"},
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses request bodies larger than `limit` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body larger than {self.limit} bytes (CKS_MAX_REQUEST_BYTES)"
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await send_error(send, 413, message, "PAYLOAD_TOO_LARGE")
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            incoming = await receive()
            if incoming["type"] == "http.request":
                received += len(incoming.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, message)
            return incoming

        await self.app(scope, counting_receive, send)


GRAPH_ENDPOINTS = frozenset({"invoke", "batch", "stream", "stream_log", "stream_events"})


def graph_body_problem(endpoint: str, body: bytes) -> tuple[int, str, str] | None:
    """What is wrong with a LangServe request body, before LangServe parses it (it answers 500
    to bodies it cannot parse): (status, code, message), or None when it is well formed."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return 400, "INVALID_JSON", "the request body is not UTF-8 text"
    except (ValueError, RecursionError) as exc:
        return 400, "INVALID_JSON", f"the request body is not valid JSON ({str(exc)[:80]})"
    try:
        check_bounds(data)
    except BoundsExceeded as exc:
        return 422, "VALIDATION_ERROR", f"invalid request: {exc}"
    if not isinstance(data, dict):
        return 422, "VALIDATION_ERROR", "invalid request: the body must be a JSON object"
    if endpoint == "batch":
        if not isinstance(data.get("inputs"), list):
            return 422, "VALIDATION_ERROR", "invalid request: inputs must be a list of inputs"
        configs = data.get("config", {})
        configs = configs if isinstance(configs, list) else [configs]
    else:
        if "input" not in data:
            return 422, "VALIDATION_ERROR", "invalid request: input: Field required"
        configs = [data.get("config", {})]
    for config in configs:
        if not isinstance(config, dict) or not isinstance(config.get("configurable", {}), dict):
            return 422, "VALIDATION_ERROR", "invalid request: config must be an object (or absent)"
    return None


class GraphBodyMiddleware:
    """Checks every LangServe POST body (`/graphs/<name>/<endpoint>`) with `graph_body_problem`,
    then hands the body it read on unchanged."""

    def __init__(self, app: ASGIApp, prefix: str = "/graphs/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        endpoint = path.rsplit("/", 1)[-1]
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not path.startswith(self.prefix)
            or endpoint not in GRAPH_ENDPOINTS
        ):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = graph_body_problem(endpoint, body)
        if problem is not None:
            status, code, text = problem
            await send_error(send, status, text, code)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
