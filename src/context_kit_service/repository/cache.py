"""Loaded repositories, reused until a file under them changes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from context_kit_service.repository.model import (
    Repository,
    Signature,
    load_repository,
    repository_signature,
)
from context_kit_service.repository.watch import Watch

MAX_WATCHED = 16
"""Repositories watched at once; the least recently used beyond that is scanned instead."""


class RepositoryCache:
    """Keeps one loaded `Repository` per root; reloads it when its files' signature changes.

    While watching is on (the service's lifespan turns it on), a repository's signature comes
    from a `Watch` and is recomputed only after a file event under it; otherwise every
    `signature` call scans the repository's files.
    """

    def __init__(self) -> None:
        self._loaded: dict[Path, Repository] = {}
        self._watches: OrderedDict[Path, Watch] = OrderedDict()
        self._watchers = 0
        """How many running services asked for watching (each app's lifespan counts once)."""
        self._lock = threading.Lock()

    def signature(self, root: Path) -> Signature:
        """The signature of `root`'s files as they are now."""
        evicted = None
        with self._lock:
            watch = self._watches.get(root) if self._watchers else None
            if self._watchers and watch is None:
                watch = self._watches[root] = Watch(root)
                if len(self._watches) > MAX_WATCHED:
                    evicted = self._watches.popitem(last=False)[1]
            if watch is not None:
                self._watches.move_to_end(root)
        if evicted is not None:
            evicted.close()  # outside the lock: it waits for its thread
        return watch.signature() if watch is not None else repository_signature(root)

    def get(self, root: Path, signature: Signature | None = None) -> Repository:
        """The repository as it is now; pass `signature` when it was just computed."""
        signature = self.signature(root) if signature is None else signature
        with self._lock:
            cached = self._loaded.get(root)
            if cached is not None and cached.signature == signature:
                return cached
        repository = load_repository(root)  # outside the lock: loading can take a while
        repository.signature = signature
        with self._lock:
            self._loaded[root] = repository
        return repository

    def current(self, root: Path) -> Repository:
        """The repository as its files are this moment, by a scan that does not trust the
        watch. For writers, under the write lock: another process may have written a moment
        ago, before its change reached this process's watch (ids allocated from such a stale
        snapshot were handed out twice)."""
        return self.get(root, repository_signature(root))

    def forget(self, root: Path) -> None:
        """Drop the snapshot of `root`: the next `get` loads it again (called after a write)."""
        with self._lock:
            self._loaded.pop(root, None)
            watch = self._watches.get(root)
        if watch is not None:
            watch.mark_changed()

    def peek(self, root: Path) -> Repository:
        """The last loaded snapshot (no freshness check); loads it when there is none."""
        with self._lock:
            cached = self._loaded.get(root)
        return cached if cached is not None else self.get(root)

    def watch(self, on: bool) -> None:
        """Turn watching on (a service starts) or off (it stops; when no service is left
        running, every watch is closed)."""
        with self._lock:
            self._watchers = max(0, self._watchers + (1 if on else -1))
            watches = [] if self._watchers else list(self._watches.values())
            if not self._watchers:
                self._watches.clear()
        for watch in watches:
            watch.close()


repositories = RepositoryCache()
