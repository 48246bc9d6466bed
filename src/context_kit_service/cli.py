"""Command line: `context-kit-service serve | doctor | index | eval`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from context_kit_service import __version__
from context_kit_service.settings import Settings, SettingsError, load_settings

logger = logging.getLogger("context_kit_service.cli")

PARENT_POLL_S = 0.25
GRACEFUL_SHUTDOWN_S = 3
KEEP_ALIVE_S = 5
"""An idle kept-alive connection is closed after this (uvicorn has no header-read timeout;
a slow request's body is bounded by the request timeout)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="context-kit-service", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; CKS_HOST)")
    serve.add_argument("--port", type=int, help="port (0 picks a free one; CKS_PORT)")
    serve.add_argument("--repo", type=Path, help="default context repository (CKS_REPO_PATH)")
    serve.add_argument(
        "--parent-pid", type=int, help="exit within 2 s once this process is gone (Electron)"
    )

    commands.add_parser("doctor", help="check every configured component and say how to fix it")

    index = commands.add_parser("index", help="build or update a repository's retrieval index")
    index.add_argument("repo", type=Path, help="the context repository")
    index.add_argument(
        "--explain",
        action="store_true",
        help="first have the chat model explain, in plain words, each entity not yet explained "
        "(once per entity; better retrieval of questions asked in other words)",
    )
    index.add_argument("--model", help="chat model for --explain (as CKS_MODEL)")
    index.add_argument(
        "--concurrency", type=int, default=1, help="explanations written at once (--explain)"
    )

    from context_kit_service.evaluation import command as evaluation

    evaluation.add_parser(commands)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {"host": args.host, "port": args.port, "repo_path": args.repo}
    return {key: value for key, value in pairs.items() if value is not None}


SEND_BUFFER_BYTES = 32 * 1024
"""The kernel's send buffer of each connection (Linux doubles it), fixed rather than grown
to megabytes: a client that stops reading then holds little, and its stream soon waits on
it, which CKS_STREAM_STALL_S bounds."""


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, whose options its connections inherit. Made with `IPPROTO_TCP` so
    that the event loop sets TCP_NODELAY on every connection it accepts: without it each small
    response and each SSE token waits for the client's delayed ACK (about 40 ms), and tokens
    reach the app bunched."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    return sock


def _parent_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _watch_parent(server: Any, pid: int) -> None:
    while not server.should_exit:
        if not _parent_alive(pid):
            logger.warning("parent process is gone; shutting down", extra={"parentPid": pid})
            server.should_exit = True
            server.force_exit = True
            return
        await asyncio.sleep(PARENT_POLL_S)


async def _announce_ready(server: Any, url: str, settings: Settings) -> None:
    """Print the one ready line once the running server reports itself healthy over HTTP, then
    take what start-up left alive out of the garbage collector's reach (`tune_gc`)."""
    import httpx

    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    headers = {}
    if settings.auth_token is not None:
        headers["Authorization"] = f"Bearer {settings.auth_token.get_secret_value()}"
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        while not server.should_exit:
            response = await client.get("/health")
            if response.status_code == 200:
                line = {
                    "event": "ready",
                    "url": url,
                    "port": int(url.rsplit(":", 1)[1]),
                    "pid": os.getpid(),
                }
                sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
                sys.stdout.flush()
                tune_gc()
                return
            logger.warning("not healthy yet", extra={"health": response.json()})
            await asyncio.sleep(1.0)


def tune_gc() -> None:
    """Keep garbage collection from pausing streams: move everything alive after start-up
    (imports, graphs) out of the collector's reach, and collect the young generation less
    often. A full collection of a loaded process otherwise stops the event loop for 100-200 ms,
    which stalls every open token stream at once (bench/streaming.py measures it)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _serve(settings: Settings, sock: socket.socket, parent_pid: int | None) -> None:
    import uvicorn

    from context_kit_service.server import create_app

    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=KEEP_ALIVE_S,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    helpers = [asyncio.create_task(_announce_ready(server, url, settings))]
    if parent_pid is not None:
        helpers.append(asyncio.create_task(_watch_parent(server, parent_pid)))
    try:
        await server.serve(sockets=[sock])
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)


def serve(args: argparse.Namespace) -> int:
    settings = load_settings(**_overrides(args))
    from context_kit_service.server.logging import configure_logging

    configure_logging(settings.log_level)
    if not settings.host_is_loopback and settings.auth_token is None:
        print(
            f"error: refusing to bind {settings.host} (not loopback) without an auth token; "
            "set CKS_AUTH_TOKEN or bind 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    if args.parent_pid is not None and not _parent_alive(args.parent_pid):
        print(f"error: --parent-pid {args.parent_pid} is not a running process", file=sys.stderr)
        return 2
    try:
        sock = _bind(settings.host, settings.port)
    except OSError as exc:
        print(
            f"error: cannot bind {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr
        )
        return 2
    # uvicorn re-raises the signal that stopped it once shut down; a no-op handler lets the
    # process exit 0 after a graceful SIGTERM/SIGINT instead of dying by the signal.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(settings, sock, args.parent_pid))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it is, through uvicorn[standard]): the faster event loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def doctor(args: argparse.Namespace) -> int:
    from context_kit_service.server.health import CHECKS

    settings = load_settings()
    failed = 0
    print(
        f"context-kit-service {__version__}: provider={settings.provider}, "
        f"embeddings={settings.embeddings_provider}, data={settings.data_dir}"
    )
    for name, check in CHECKS.items():
        result = check(settings)
        mark = {"healthy": "ok  ", "degraded": "warn", "unhealthy": "FAIL"}[result.status]
        failed += result.status == "unhealthy"
        print(f"[{mark}] {name}: {result.described(True)}")
    if not settings.host_is_loopback and settings.auth_token is None:
        failed += 1
        print(f"[FAIL] auth: {settings.host} is not loopback; set CKS_AUTH_TOKEN")
    print("all good" if not failed else f"{failed} problem(s) found")
    return 1 if failed else 0


def index(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from context_kit_service.providers import embeddings_spec, get_embeddings
    from context_kit_service.repository.cache import repositories
    from context_kit_service.retrieval import explanations
    from context_kit_service.retrieval.documents import repository_chunks
    from context_kit_service.retrieval.index import (
        RepositoryIndex,
        embeddings_model_id,
        sync_failure,
    )
    from context_kit_service.tools.confinement import RepositoryRefused, resolve_repository

    settings = load_settings()
    try:
        root = resolve_repository(str(args.repo.expanduser().resolve()), settings)
    except RepositoryRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.explain and (args.model or args.concurrency != 1):
        print("error: --model and --concurrency apply to --explain", file=sys.stderr)
        return 2
    if args.concurrency < 1:
        print("error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    started = time.perf_counter()
    if args.explain and not _explain(root, settings, args):
        return 1
    # Through the cache: the sync below finds the repository already loaded.
    chunks = repository_chunks(repositories.get(root), explanations.finder(settings.data_dir))
    total = sum(len(docs) for docs in chunks.values())
    spec = embeddings_spec(settings)
    target = RepositoryIndex(
        root, settings.data_dir, get_embeddings(spec), embeddings_model_id(spec)
    )
    try:
        with tqdm(total=total, unit="chunk", desc="embedding", file=sys.stderr) as bar:
            stats = target.sync(progress=bar.update)
    except Exception as exc:  # a disk, a provider: one line, the previous index kept
        print(f"error: the index was not updated ({sync_failure(exc)})", file=sys.stderr)
        return 1
    print(
        f"indexed {root}: {stats.files} files, {stats.chunks} chunks; "
        f"re-embedded {stats.embedded_chunks} chunks from {stats.changed_files} changed files, "
        f"removed {stats.removed_files} files; "
        f"{stats.seconds:.2f} s sync, {time.perf_counter() - started:.2f} s total"
    )
    print(f"index: {target.directory}")
    return 0


def _explain(root: Path, settings: Settings, args: argparse.Namespace) -> bool:
    """`index --explain`: explain the entities not yet explained; False after saying why it
    could not."""
    from tqdm import tqdm

    from context_kit_service.graphs import explanation
    from context_kit_service.provider_errors import as_provider_error
    from context_kit_service.providers import chat_spec, get_chat_model, model_name
    from context_kit_service.repository.cache import repositories

    spec = chat_spec(settings, model=args.model, temperature=0.0, max_tokens=explanation.MAX_TOKENS)
    repo = repositories.get(root)
    try:
        with tqdm(
            total=len(repo.entities), unit="entity", desc="explaining", file=sys.stderr
        ) as bar:
            stats = explanation.explain(
                repo,
                settings.data_dir,
                get_chat_model(spec),
                model_name(spec),
                concurrency=args.concurrency,
                progress=bar.update,
            )
    except Exception as exc:
        failure = as_provider_error(exc, spec.provider)
        print(f"error: {failure.code}: {failure.message}", file=sys.stderr)
        return False
    print(
        f"explained {stats.explained} of {stats.entities} entities with {model_name(spec)}; "
        f"{stats.already} were explained before"
    )
    return True


def evaluate(args: argparse.Namespace) -> int:
    from context_kit_service.evaluation import command as evaluation

    return evaluation.run(args)


COMMANDS = {"serve": serve, "doctor": doctor, "index": index, "eval": evaluate}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
