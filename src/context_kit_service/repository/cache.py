"""Loaded repositories, reused until a file under them changes."""

from __future__ import annotations

import threading
from pathlib import Path

from context_kit_service.repository.model import (
    Repository,
    Signature,
    load_repository,
    repository_signature,
)


class RepositoryCache:
    """Keeps one loaded `Repository` per root; reloads it when its files' signature changes."""

    def __init__(self) -> None:
        self._loaded: dict[Path, Repository] = {}
        self._lock = threading.Lock()

    def get(self, root: Path, signature: Signature | None = None) -> Repository:
        """The repository as it is now; pass `signature` when it was just computed."""
        signature = repository_signature(root) if signature is None else signature
        with self._lock:
            cached = self._loaded.get(root)
            if cached is not None and cached.signature == signature:
                return cached
        repository = load_repository(root)  # outside the lock: loading can take a while
        repository.signature = signature
        with self._lock:
            self._loaded[root] = repository
        return repository

    def forget(self, root: Path) -> None:
        """Drop the snapshot of `root`: the next `get` loads it again (called after a write)."""
        with self._lock:
            self._loaded.pop(root, None)

    def peek(self, root: Path) -> Repository:
        """The last loaded snapshot (no freshness check); loads it when there is none."""
        with self._lock:
            cached = self._loaded.get(root)
        return cached if cached is not None else self.get(root)


repositories = RepositoryCache()
