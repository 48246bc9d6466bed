"""Ending responses whose client stopped reading.

A client that opens a stream and never reads it fills the socket's buffers; the server's
flow control then holds the response's `send`, and with it the run that produces the
stream, the model call included, for as long as the connection stays open. Each body `send`
here may wait at most `stall_s`: past that the response is abandoned (`ClientStalled`), which
cancels the run and its model call, and the connection is dropped.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ClientStalled(ConnectionError):
    """The client read nothing for `stall_s` seconds while the response waited to be sent."""


class StalledClientMiddleware:
    def __init__(self, app: ASGIApp, stall_s: float) -> None:
        self.app = app
        self.stall_s = stall_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def bounded(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
                return
            try:
                async with asyncio.timeout(self.stall_s):
                    await send(message)
            except TimeoutError:
                raise ClientStalled(
                    f"the client read nothing for {self.stall_s:g} s; response abandoned"
                ) from None

        await self.app(scope, receive, bounded)
