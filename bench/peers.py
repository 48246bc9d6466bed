"""The peer benchmark: the service's own tool, RAG and assistant graphs served four ways and
loaded the same way, in one run:

- `in-process`: the compiled graphs awaited directly (no HTTP: the floor);
- `bare`: a FastAPI route per graph, one `ainvoke` each, SSE tokens from `astream`
  (bench/peers_server.py);
- `langserve`: plain LangServe `add_routes` on the same graphs (`/invoke`, `/stream_events`);
- `service`: `context-kit-service serve`, through the app's routes (`/ai/tools/execute` with a
  read-only tool, `/ai/rag/query`, `/ai/assist/stream`).

Every target answers with one fake OpenAI-protocol model server (tests/fake_providers.py, its
deterministic `agent` model and embeddings, in a process of its own) over the sample
repository, watched for changes by every target as the service watches it. A closed-loop
load generator (raw HTTP/1.1 on keep-alive connections, one per client) runs each at 1 and
16 clients and reports req/s, p50/p99 latency, time to the first token of a stream, and the
server process's CPU per request (from /proc), each as a ratio to `bare` in the same run.
The issue 17 targets are checked at the end. (LangServe's time to first token is its first
`on_chat_model_stream` event, which a tool call's chunks also send: it comes before any
answer text.)

    .venv/bin/python bench/peers.py [--seconds 8] [--clients 1,16] [--graphs tools,rag,assistant]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake model server lives with the tests

TICK = os.sysconf("SC_CLK_TCK")
QUESTION = "What is FEAT-001 about?"
RAG_QUERY = "How are duplicate transactions detected?"
TOOL = {"tool_id": "pipeline.next-id", "parameters": {"entity_type": "task"}}


@dataclass(frozen=True)
class Call:
    """One request of a scenario on one target: path, JSON body, and the bytes that mark a
    token in a streamed answer (None: not streamed)."""

    path: str
    body: dict[str, Any]
    token: bytes | None = None


CALLS: dict[str, dict[str, Call]] = {
    "tools": {
        "bare": Call("/tools", TOOL),
        "langserve": Call("/tools/invoke", {"input": TOOL}),
        "service": Call(
            "/ai/tools/execute", {"toolId": TOOL["tool_id"], "parameters": TOOL["parameters"]}
        ),
    },
    "rag": {
        "bare": Call("/rag", {"query": RAG_QUERY}),
        "langserve": Call("/rag/invoke", {"input": {"query": RAG_QUERY}}),
        "service": Call("/ai/rag/query", {"query": RAG_QUERY}),
    },
    "assistant": {
        "bare": Call("/assist", {"question": QUESTION}, b'"type": "token"'),
        "langserve": Call(
            "/assistant/stream_events",
            {"input": {"messages": [{"type": "human", "content": QUESTION}]}},
            b"on_chat_model_stream",
        ),
        "service": Call("/ai/assist/stream", {"question": QUESTION}, b'"type":"token"'),
    },
}


@dataclass
class Result:
    requests: int
    seconds: float
    cpu_ms: float
    latencies: list[float]
    first_tokens: list[float]

    def __add__(self, other: Result) -> Result:
        return Result(
            self.requests + other.requests,
            self.seconds + other.seconds,
            self.cpu_ms + other.cpu_ms,
            self.latencies + other.latencies,
            self.first_tokens + other.first_tokens,
        )

    def row(self) -> dict[str, float]:
        ms = np.array(self.latencies) * 1000
        ttft = np.array(self.first_tokens) * 1000
        return {
            "rps": self.requests / self.seconds,
            "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)),
            "ttft": float(np.percentile(ttft, 50)) if len(ttft) else float("nan"),
            "cpu": self.cpu_ms / self.requests,
        }


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICK


# --- the load generator --------------------------------------------------------------------


async def http_call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, call: Call
) -> tuple[float, float | None]:
    """One request on a kept-alive connection: (latency, time to the first token)."""
    body = json.dumps(call.body).encode()
    head = (
        f"POST {call.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    writer.write(head + body)
    headers = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = int(headers.split(" ", 2)[1])
    first: float | None = None
    received = b""
    if "transfer-encoding: chunked" in headers:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            if call.token and first is None and call.token in data:
                first = time.perf_counter() - started
            received += data if status >= 400 else b""
    else:
        length = int(headers.split("content-length:", 1)[1].split("\r\n", 1)[0])
        received = await reader.readexactly(length)
    if status >= 400:
        raise RuntimeError(f"{call.path} answered {status}: {received[:300]!r}")
    return time.perf_counter() - started, first


async def closed_loop(
    clients: int, seconds: float, one: Callable[[], Awaitable[tuple[float, float | None]]]
) -> Result:
    latencies: list[float] = []
    first_tokens: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            latency, first = await one()
            latencies.append(latency)
            if first is not None:
                first_tokens.append(first)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Result(len(latencies), time.perf_counter() - started, 0.0, latencies, first_tokens)


async def load_http(url: str, pid: int, call: Call, clients: int, seconds: float) -> Result:
    host = url.removeprefix("http://")
    address, port = host.rsplit(":", 1)
    connections = [await asyncio.open_connection(address, int(port)) for _ in range(clients)]
    free = list(connections)

    async def one() -> tuple[float, float | None]:
        reader, writer = free.pop()
        try:
            return await http_call(reader, writer, host, call)
        finally:
            free.append((reader, writer))

    for _ in range(10):  # warm up
        await one()
    before = cpu_ms(pid)
    result = await closed_loop(clients, seconds, one)
    result.cpu_ms = cpu_ms(pid) - before
    for _, writer in connections:
        writer.close()
    return result


async def load_in_process(scenario: str, clients: int, seconds: float) -> Result:
    from langchain_core.messages import AIMessageChunk, HumanMessage

    from context_kit_service.checkpointer import open_checkpointer
    from context_kit_service.configuration import server_configurable
    from context_kit_service.graphs import assistant, rag, tool_execution
    from context_kit_service.repository.cache import repositories
    from context_kit_service.settings import load_settings

    settings = load_settings()
    configurable = server_configurable(settings)
    repositories.watch(True)
    async with open_checkpointer(settings) as saver:
        chat = assistant.builder.compile(checkpointer=saver)

        async def one() -> tuple[float, float | None]:
            started = time.perf_counter()
            if scenario == "tools":
                await tool_execution.graph.ainvoke(TOOL, {"configurable": configurable})
            elif scenario == "rag":
                await rag.graph.ainvoke({"query": RAG_QUERY}, {"configurable": configurable})
            else:
                config = {"configurable": {**configurable, "thread_id": uuid.uuid4().hex}}
                turn = {"messages": [HumanMessage(QUESTION)]}
                first = None
                stream = chat.astream(turn, config, stream_mode="messages", durability="exit")
                async for chunk, _ in stream:
                    if first is None and isinstance(chunk, AIMessageChunk) and chunk.text:
                        first = time.perf_counter() - started
                return time.perf_counter() - started, first
            return time.perf_counter() - started, None

        for _ in range(10):
            await one()
        before = cpu_ms(os.getpid())
        result = await closed_loop(clients, seconds, one)
        result.cpu_ms = cpu_ms(os.getpid()) - before
    repositories.watch(False)
    return result


# --- the servers -----------------------------------------------------------------------------


def launch(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert process.stdout is not None
    for line in process.stdout:  # LangServe prints a banner before the ready line
        if line.startswith("{"):
            return process, json.loads(line)
    raise RuntimeError(f"{command} did not start")


def fake_model_main() -> None:
    import uvicorn

    from context_kit_service.cli import _bind
    from tests.fake_providers import Recorder, build_app

    sock = _bind("127.0.0.1", 0)
    print(json.dumps({"url": f"http://127.0.0.1:{sock.getsockname()[1]}"}), flush=True)
    app = build_app(Recorder(requests=deque(maxlen=8)))  # type: ignore[arg-type]
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0, help="per target and load")
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--graphs", default="tools,rag,assistant")
    args = parser.parse_args()
    from tests.fake_providers import fake_service_env

    work = Path(tempfile.mkdtemp(prefix="cks-peers-"))
    repo = work / "repo"
    shutil.copytree(ROOT / "examples" / "context-repo", repo)
    processes: list[subprocess.Popen[str]] = []
    try:
        fake, ready = launch([sys.executable, __file__, "--fake-model"], dict(os.environ))
        processes.append(fake)
        fake_url = ready["url"]
        base = {k: v for k, v in os.environ.items() if not k.startswith("CKS_")}
        env = {
            **base,
            **fake_service_env(fake_url),
            "CKS_REPO_PATH": str(repo),
            "CKS_LOG_LEVEL": "warning",
        }
        targets: dict[str, tuple[str, int]] = {}
        for kind in ("bare", "langserve", "service"):
            target_env = {**env, "CKS_DATA_DIR": str(work / kind)}
            command = (
                [sys.executable, "-m", "context_kit_service.cli", "serve", "--port", "0"]
                if kind == "service"
                else [sys.executable, str(ROOT / "bench" / "peers_server.py"), kind]
            )
            process, ready = launch(command, target_env)
            processes.append(process)
            targets[kind] = (ready["url"], ready["pid"])
        os.environ.update(fake_service_env(fake_url))
        os.environ.update({"CKS_REPO_PATH": str(repo), "CKS_DATA_DIR": str(work / "in-process")})
        clients = [int(c) for c in args.clients.split(",")]
        graphs = args.graphs.split(",")
        rows = asyncio.run(run_all(targets, graphs, clients, args.seconds))
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    report(rows)


Rows = dict[tuple[str, int, str], dict[str, float]]


ROUNDS = 4
"""Each target's time is split into this many turns, the targets taking turns, so that a
drift of the machine's speed during the run weighs on every target alike."""


async def run_all(
    targets: dict[str, tuple[str, int]], graphs: list[str], clients: list[int], seconds: float
) -> Rows:
    """Every scenario on every target, in one event loop (the in-process graphs' model
    clients are made once and belong to it)."""
    rows: Rows = {}
    for scenario in graphs:
        calls = CALLS[scenario]
        for count in clients:
            totals: dict[str, Result] = {}
            for _ in range(ROUNDS):
                turn = seconds / ROUNDS
                results = {"in-process": await load_in_process(scenario, count, turn)}
                for kind, (url, pid) in targets.items():
                    results[kind] = await load_http(url, pid, calls[kind], count, turn)
                for kind, result in results.items():
                    totals[kind] = totals[kind] + result if kind in totals else result
            for kind, total in totals.items():
                rows[scenario, count, kind] = total.row()
    return rows


def report(rows: Rows) -> None:
    print(
        f"{'graph':<10}{'clients':>8}  {'target':<11}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'TTFT ms':>9}{'CPU ms':>8}{'CPU/bare':>9}{'p50/bare':>9}"
    )
    for (scenario, clients, target), row in rows.items():
        bare = rows[scenario, clients, "bare"]
        print(
            f"{scenario:<10}{clients:>8}  {target:<11}{row['rps']:>8.0f}{row['p50']:>9.2f}"
            f"{row['p99']:>9.2f}{row['ttft']:>9.2f}{row['cpu']:>8.2f}"
            f"{row['cpu'] / bare['cpu']:>8.2f}x{row['p50'] / bare['p50']:>8.2f}x"
        )

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    if ("tools", 1, "bare") in rows:
        tools = rows["tools", 1, "service"]["p50"] - rows["tools", 1, "bare"]["p50"]
        print(
            f"tool route p50 over bare, 1 client: {tools:+.2f} ms (<= 3 ms): {verdict(tools <= 3)}"
        )
    for scenario, peer, limit in (
        ("tools", "langserve", 1.3),
        ("assistant", "bare", 1.3),
        ("rag", "bare", 1.1),
    ):
        for clients in sorted({c for s, c, _ in rows if s == scenario}):
            ratio = rows[scenario, clients, "service"]["cpu"] / rows[scenario, clients, peer]["cpu"]
            print(
                f"{scenario} CPU per request, {clients} clients: {ratio:.2f}x {peer} "
                f"(<= {limit}x): {verdict(ratio <= limit)}"
            )


if __name__ == "__main__":
    if sys.argv[1:] == ["--fake-model"]:
        fake_model_main()
    else:
        main()
