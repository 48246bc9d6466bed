"""The LangGraph checkpointer: SQLite in the data directory, or PostgreSQL when configured;
and thread retention, pruned in the background while the service runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from context_kit_service.settings import Settings

log = logging.getLogger(__name__)

LATEST_CHECKPOINTS = (
    "SELECT thread_id, MAX(checkpoint_id) AS latest FROM checkpoints "
    "WHERE checkpoint_ns = '' GROUP BY thread_id"
)
"""Each thread's newest checkpoint id: the same table and columns in both savers."""
_UUID_EPOCH = 0x01B21DD213814000
"""100-ns intervals from 1582-10-15 (the UUID epoch) to 1970-01-01."""


@asynccontextmanager
async def open_checkpointer(settings: Settings) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """Open (and set up) the configured checkpointer for the lifetime of the context."""
    if settings.database_url:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(settings.database_url) as saver:
            await saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(settings.sqlite_path)) as saver:
            await saver.setup()
            yield saver


def checkpoint_time(checkpoint_id: str) -> float:
    """When a checkpoint was written (Unix seconds), read from its id: LangGraph's checkpoint
    ids are UUIDv6, whose leading 60 bits are the time in 100-ns steps."""
    value = uuid.UUID(checkpoint_id).int
    ticks = ((value >> 80) << 12) | ((value >> 64) & 0x0FFF)
    return (ticks - _UUID_EPOCH) / 10_000_000


async def thread_times(saver: BaseCheckpointSaver[str]) -> dict[str, float]:
    """Every thread with the time of its newest checkpoint (one query, no checkpoint read)."""
    conn: Any = getattr(saver, "conn", None)
    lock: Any = getattr(saver, "lock", None)
    if conn is None or lock is None:
        raise TypeError(f"thread retention does not know {type(saver).__name__}")
    async with lock:
        cursor = await conn.execute(LATEST_CHECKPOINTS)
        rows = await cursor.fetchall()
    pairs = ((r["thread_id"], r["latest"]) if isinstance(r, dict) else tuple(r) for r in rows)
    return {thread: checkpoint_time(latest) for thread, latest in pairs}


def expired(times: dict[str, float], max_age_s: float, max_count: int, now: float) -> list[str]:
    """The threads retention deletes: older than `max_age_s` (0: no age limit), then the least
    recently used beyond `max_count` (0: no count limit)."""
    newest_first = sorted(times, key=times.__getitem__, reverse=True)
    young = [t for t in newest_first if not max_age_s or now - times[t] <= max_age_s]
    kept = set(young[:max_count] if max_count else young)
    return [t for t in newest_first if t not in kept]


async def prune_threads(saver: BaseCheckpointSaver[str], settings: Settings) -> list[str]:
    """Delete the threads the retention settings no longer keep; returns their ids."""
    times = await thread_times(saver)
    max_age_s = settings.thread_max_age_days * 86_400
    doomed = expired(times, max_age_s, settings.thread_max_count, time.time())
    for thread_id in doomed:
        await saver.adelete_thread(thread_id)
    if doomed:
        log.info("deleted %d threads past retention", len(doomed))
    return doomed


@asynccontextmanager
async def pruning(saver: BaseCheckpointSaver[str], settings: Settings) -> AsyncIterator[None]:
    """Prune threads now and every `thread_prune_interval_s` in the background, for the
    lifetime of the context."""

    async def loop() -> None:
        while True:
            try:
                await prune_threads(saver, settings)
            except Exception:
                log.exception("pruning threads failed; trying again later")
            await asyncio.sleep(settings.thread_prune_interval_s)

    task = asyncio.create_task(loop(), name="prune threads")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
