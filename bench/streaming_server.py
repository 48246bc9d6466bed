"""Benchmark server: the real app with a paced scripted chat model, plus a bare streaming
route (the baseline). Each token carries the server's monotonic time when it was yielded.

    python bench/streaming_server.py --interval 0.05 --tokens 40   # prints the port
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi.responses import StreamingResponse
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from context_kit_service.cli import tune_gc
from context_kit_service.server import create_app
from context_kit_service.settings import load_settings

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "context-repo"


class PacedModel(GenericFakeChatModel):
    interval: float = 0.05
    tokens: int = 40

    async def _astream(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        for _ in range(self.tokens):
            await asyncio.sleep(self.interval)
            yield ChatGenerationChunk(message=AIMessageChunk(content=f"{time.perf_counter():.6f} "))

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--tokens", type=int, default=40)
    args = parser.parse_args()
    model = PacedModel(messages=iter([]), interval=args.interval, tokens=args.tokens)
    settings = load_settings(data_dir=Path(tempfile.mkdtemp()), repo_path=SAMPLE)
    app = create_app(settings, chat_model=model)

    @app.post("/raw")
    async def raw() -> StreamingResponse:
        async def tokens() -> Any:
            for _ in range(args.tokens):
                await asyncio.sleep(args.interval)
                yield f'data: {{"type":"token","token":"{time.perf_counter():.6f} "}}\n\n'

        return StreamingResponse(tokens(), media_type="text/event-stream")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    tune_gc()  # as `context-kit-service serve` does once it is up
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()
