"""One persistent FAISS index per repository, kept in step with the repository's files.

`sync` re-embeds only the files whose chunks changed (and drops removed files); a changed
embedding model or dimension rebuilds everything. `ensure_fresh` is the cheap check before a
query: a stat of every file, and a sync only when something changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from context_kit_service.repository.cache import repositories
from context_kit_service.repository.files import data_name
from context_kit_service.repository.model import Signature, repository_signature
from context_kit_service.retrieval.documents import file_hash, repository_chunks
from context_kit_service.retrieval.store import FaissStore

EMBED_BATCH = 64
Progress = Callable[[int], None]


@dataclass(frozen=True)
class SyncStats:
    files: int
    chunks: int
    changed_files: int
    removed_files: int
    embedded_chunks: int
    rebuilt: bool
    seconds: float


def index_directory(data_dir: Path, root: Path) -> Path:
    return data_dir / "indexes" / data_name(root)


class RepositoryIndex:
    """The index of one repository under one embeddings model."""

    def __init__(self, root: Path, data_dir: Path, embeddings: Embeddings, model_id: str) -> None:
        self.root = root.resolve()
        self.directory = index_directory(data_dir, self.root)
        self.embeddings = embeddings
        self.model_id = model_id
        self.store: FaissStore | None = None
        self.files: dict[str, str] = {}
        self.signature: Signature | None = None
        self._lock = threading.Lock()
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        loaded = FaissStore.load(self.directory, self.embeddings)
        if loaded is None:
            return
        store, manifest = loaded
        if manifest.get("embeddingModel") != self.model_id:
            return  # another model: rebuild on the next sync
        self.store, self.files = store, dict(manifest.get("files", {}))

    def _embed(self, documents: list[Document], progress: Progress | None) -> np.ndarray:
        parts = []
        for start in range(0, len(documents), EMBED_BATCH):
            batch = documents[start : start + EMBED_BATCH]
            parts.append(
                np.asarray(self.embeddings.embed_documents([d.page_content for d in batch]))
            )
            if progress is not None:
                progress(len(batch))
        return np.vstack(parts) if parts else np.zeros((0, 0), dtype="float32")

    def sync(
        self,
        progress: Progress | None = None,
        signature: Signature | None = None,
    ) -> SyncStats:
        """Bring the index in line with the repository's files, embedding only what changed."""
        started = time.perf_counter()
        with self._lock:
            self._load()
            signature = repository_signature(self.root) if signature is None else signature
            chunks = repository_chunks(repositories.get(self.root, signature))
            hashes = {path: file_hash(docs) for path, docs in chunks.items()}
            rebuilt = self.store is None
            changed = [p for p, h in hashes.items() if self.files.get(p) != h or rebuilt]
            removed = [p for p in self.files if p not in hashes]
            new_docs = [doc for path in changed for doc in chunks[path]]
            vectors = self._embed(new_docs, progress)
            if self.store is None:
                dimension = (
                    vectors.shape[1] if len(new_docs) else len(self.embeddings.embed_query("x"))
                )
                self.store = FaissStore(self.embeddings, dimension)
            stale = set(changed) | set(removed)
            if stale and not rebuilt:
                self.store.delete(
                    [str(i) for i, d in self.store.docs.items() if d.metadata["filePath"] in stale]
                )
            self.store.add_vectors(new_docs, vectors)
            if changed or removed or rebuilt:
                self.files = hashes
                self.store.save(
                    self.directory,
                    {
                        "embeddingModel": self.model_id,
                        "repository": str(self.root),
                        "files": hashes,
                    },
                )
            self.signature = signature
            return SyncStats(
                files=len(hashes),
                chunks=len(self.store),
                changed_files=len(changed),
                removed_files=len(removed),
                embedded_chunks=len(new_docs),
                rebuilt=rebuilt,
                seconds=time.perf_counter() - started,
            )

    def ensure_fresh(self, signature: Signature | None = None) -> SyncStats | None:
        """Sync when any file changed since the last sync (a stat per file otherwise)."""
        signature = repository_signature(self.root) if signature is None else signature
        if self.signature is not None and signature == self.signature:
            return None
        return self.sync(signature=signature)

    def search(
        self,
        query_vector: list[float],
        *,
        k: int,
        entity_types: list[str] | None = None,
        mmr: bool = False,
        fetch_k: int = 20,
    ) -> list[tuple[Document, float]]:
        assert self.store is not None, "sync() before searching"
        allowed = set(entity_types or [])
        keep: Callable[[Document], bool] | None = (
            (lambda d: d.metadata["entityType"] in allowed) if allowed else None
        )
        if mmr:
            return self.store.mmr_with_scores(query_vector, k, max(fetch_k, k), 0.5, keep)
        return [(d, s) for _, d, s in self.store.search_by_vector(query_vector, k, keep=keep)]


class IndexRegistry:
    """One `RepositoryIndex` per (repository, embeddings model), built once and reused."""

    def __init__(self) -> None:
        self._indexes: dict[tuple[Path, Path, str], RepositoryIndex] = {}
        self._lock = threading.Lock()

    def get(
        self, root: Path, data_dir: Path, embeddings: Embeddings, model_id: str
    ) -> RepositoryIndex:
        key = (root.resolve(), data_dir.resolve(), model_id)
        with self._lock:
            if key not in self._indexes:
                self._indexes[key] = RepositoryIndex(root, data_dir, embeddings, model_id)
            return self._indexes[key]

    def clear(self) -> None:
        with self._lock:
            self._indexes.clear()


indexes = IndexRegistry()


def embeddings_model_id(spec: Any) -> str:
    return f"{spec.provider}:{spec.model or 'default'}"
