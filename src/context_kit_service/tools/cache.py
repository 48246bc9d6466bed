"""Loaded repositories, reused until a file under them changes."""

from __future__ import annotations

import threading
from pathlib import Path

from context_kit_service.repository.model import Repository, load_repository, repository_signature


class RepositoryCache:
    """Keeps one loaded `Repository` per root; reloads it when its files' signature changes."""

    def __init__(self) -> None:
        self._loaded: dict[Path, Repository] = {}
        self._lock = threading.Lock()

    def get(self, root: Path) -> Repository:
        signature = repository_signature(root)
        with self._lock:
            cached = self._loaded.get(root)
            if cached is not None and cached.signature == signature:
                return cached
        repository = load_repository(root)
        repository.signature = signature
        with self._lock:
            self._loaded[root] = repository
        return repository


repositories = RepositoryCache()
