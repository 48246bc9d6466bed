"""Thread retention: old and surplus threads are deleted, in SQLite and PostgreSQL, and the
running service prunes in the background."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

from context_kit_service.checkpointer import (
    checkpoint_time,
    expired,
    open_checkpointer,
    prune_threads,
    thread_times,
)
from context_kit_service.server import create_app
from context_kit_service.settings import Settings

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
DAY = 86_400.0


def checkpoint_id(at: float) -> str:
    """A UUIDv6 checkpoint id written at `at` (Unix seconds), as LangGraph makes them."""
    ticks = int(at * 10_000_000) + 0x01B21DD213814000
    value = ((ticks >> 12) << 80) | (0x6 << 76) | ((ticks & 0x0FFF) << 64)
    value |= (0x2 << 62) | random.getrandbits(62)
    return str(uuid.UUID(int=value))


async def put_thread(saver: BaseCheckpointSaver[str], thread_id: str, at: float) -> None:
    checkpoint = {**empty_checkpoint(), "id": checkpoint_id(at)}
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    metadata: Any = {"source": "input", "step": -1, "parents": {}}
    await saver.aput(config, checkpoint, metadata, {})  # type: ignore[arg-type]


def test_a_checkpoint_time_is_read_from_langgraph_s_own_ids() -> None:
    before = time.time()
    written = checkpoint_time(str(uuid6(clock_seq=3)))
    assert before - 0.01 <= written <= time.time() + 0.01
    assert checkpoint_time(checkpoint_id(1_700_000_000.5)) == pytest.approx(1_700_000_000.5)


def test_retention_drops_old_threads_then_the_least_recent_beyond_the_count() -> None:
    now = 1_000 * DAY
    times = {"old": now - 100 * DAY, "a": now - 3, "b": now - 2, "c": now - 1}
    assert expired(times, 90 * DAY, 2, now) == ["a", "old"]
    assert expired(times, 90 * DAY, 0, now) == ["old"]
    assert expired(times, 0, 1, now) == ["b", "a", "old"]
    assert expired(times, 0, 0, now) == []


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A database of its own, dropped afterwards: other tests' threads are never pruned."""
    name = f"cks_retention_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@asynccontextmanager
async def store_settings(store: str, make_settings: Callable[..., Settings]) -> AsyncIterator[Any]:
    if store == "sqlite":
        yield make_settings
        return
    async with postgres_database() as url:
        yield lambda **kw: make_settings(database_url=url, **kw)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_pruning_deletes_exactly_the_threads_retention_drops(
    store: str, make_settings: Callable[..., Settings]
) -> None:
    async with store_settings(store, make_settings) as settings_for:
        settings = settings_for(thread_max_age_days=90, thread_max_count=2)
        now = time.time()
        async with open_checkpointer(settings) as saver:
            for thread, age in {"old": 100 * DAY, "a": 30, "b": 20, "c": 10}.items():
                await put_thread(saver, thread, now - age)
            assert sorted(await thread_times(saver)) == ["a", "b", "c", "old"]
            assert await prune_threads(saver, settings) == ["a", "old"]
            assert sorted(await thread_times(saver)) == ["b", "c"]
            assert await saver.aget_tuple({"configurable": {"thread_id": "a"}}) is None
            assert await prune_threads(saver, settings) == []


async def test_the_running_service_prunes_in_the_background(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(thread_max_count=1, thread_prune_interval_s=0.05)
    async with open_checkpointer(settings) as saver:
        await put_thread(saver, "older", time.time() - 60)
        await put_thread(saver, "newer", time.time() - 30)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        saver = app.state.service.checkpointer
        for _ in range(100):
            if list(await thread_times(saver)) == ["newer"]:
                break
            await asyncio.sleep(0.02)
        assert list(await thread_times(saver)) == ["newer"]
        await put_thread(saver, "newest", time.time())
        for _ in range(100):
            if list(await thread_times(saver)) == ["newest"]:
                break
            await asyncio.sleep(0.02)
        assert list(await thread_times(saver)) == ["newest"]
