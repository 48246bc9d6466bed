"""A paced fake model server for bench/streaming.py: the OpenAI chat-completions protocol,
streamed, on plain asyncio (so that it costs the shared cores little).

The model name sets the pace: `paced:<seconds between tokens>:<tokens>`. Every token is the
server's `time.perf_counter()` when it was sent (CLOCK_MONOTONIC, the same clock in every
process of the machine), so a client can tell how long each token took to reach it.

    python bench/paced_model.py    # prints {"url": ...}
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

BASE = {"id": "chatcmpl-paced", "object": "chat.completion.chunk", "created": 0}


def chunk(model: str, delta: dict[str, object], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    data = f"data: {json.dumps({**BASE, 'model': model, 'choices': [choice]})}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


async def answer(writer: asyncio.StreamWriter, body: dict[str, object]) -> None:
    model = str(body.get("model", "paced:0.05:10"))
    _, interval, tokens = model.split(":")
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunk(model, {"role": "assistant", "content": ""})
    )
    for _ in range(int(tokens)):
        await asyncio.sleep(float(interval))
        writer.write(chunk(model, {"content": f"{time.perf_counter():.6f} "}))
        await writer.drain()
    done = b"data: [DONE]\n\n"
    writer.write(chunk(model, {}, "stop") + b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
    await writer.drain()


MODELS = json.dumps({"object": "list", "data": [{"id": "paced", "object": "model"}]}).encode()
"""What `GET /v1/models` answers (the service's health check asks it)."""


async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            if not head.startswith("post"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(MODELS), MODELS)
                )
                continue
            length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
            await answer(writer, json.loads(await reader.readexactly(length)))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(connection, sock=sock, backlog=1024)
    print(json.dumps({"url": f"http://127.0.0.1:{sock.getsockname()[1]}"}), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
