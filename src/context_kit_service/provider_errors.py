"""Provider failures as `ProviderError`, with a stable `code` clients can act on.

Its own module, below `providers` and `local_models`, so both can raise it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator


class ProviderError(Exception):
    """A model provider failed or was misconfigured. `code` is stable and machine readable."""

    def __init__(self, code: str, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status_code(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


_STATUS_CODES = {
    401: ("PROVIDER_AUTH_FAILED", "the provider rejected the credentials (HTTP 401)"),
    403: ("PROVIDER_AUTH_FAILED", "the provider refused access (HTTP 403)"),
    404: ("MODEL_NOT_FOUND", "the provider does not know this model or deployment (HTTP 404)"),
    429: ("PROVIDER_RATE_LIMITED", "the provider is rate limiting requests (HTTP 429)"),
}


def as_provider_error(exc: BaseException, provider: str) -> ProviderError:
    """Translate any exception raised while calling a provider into a `ProviderError`."""
    import httpx

    for cause in _chain(exc):
        if isinstance(cause, ProviderError):
            return cause
        name = type(cause).__name__
        if isinstance(cause, TimeoutError | asyncio.TimeoutError | httpx.TimeoutException) or (
            name == "APITimeoutError"
        ):
            return ProviderError(
                "TIMEOUT", f"the {provider} provider did not answer in time", status=504
            )
        status = _status_code(cause)
        if status is not None and status in _STATUS_CODES:
            code, text = _STATUS_CODES[status]
            return ProviderError(code, f"{provider}: {text}", status=502)
        if status is not None and status >= 400:
            return ProviderError(
                "PROVIDER_ERROR", f"the {provider} provider failed (HTTP {status})", status=502
            )
        if isinstance(cause, httpx.ConnectError | ConnectionError) or name == "APIConnectionError":
            return ProviderError(
                "PROVIDER_UNAVAILABLE",
                f"cannot reach the {provider} provider; is it running and is the endpoint right?",
                status=503,
            )
    return ProviderError("PROVIDER_ERROR", f"the {provider} provider failed", status=502)
