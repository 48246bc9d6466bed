"""One persistent index per repository, dense (FAISS) and lexical (FTS5), kept in step with
the repository's files.

`sync` re-embeds and re-indexes only the files whose chunks changed (and drops removed
files) and writes both indexes into one new generation, so they always load as a consistent
pair; a changed embedding model or dimension rebuilds everything. `ensure_fresh` is the
cheap check before a query: the repository's signature (from its watch while the service
runs, else a stat of every file), and a sync only when something changed.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from context_kit_service.providers import EmbeddingsSpec, embeddings_model_name
from context_kit_service.repository.cache import repositories
from context_kit_service.repository.files import data_name
from context_kit_service.repository.journal import as_storage_error
from context_kit_service.repository.model import Signature
from context_kit_service.retrieval import explanations, generations
from context_kit_service.retrieval.documents import file_hash, repository_chunks
from context_kit_service.retrieval.lexical import FILENAME as LEXICAL_FILE
from context_kit_service.retrieval.lexical import TOKENIZER, LexicalIndex
from context_kit_service.retrieval.names import Names
from context_kit_service.retrieval.store import FaissStore

logger = logging.getLogger(__name__)

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


SYNC_RETRY_S = 10.0
"""How long a failed sync of unchanged files waits before it is tried again."""


def sync_failure(exc: BaseException) -> str:
    """Why a sync failed, in a few words: a disk that refused the write says so (recognised
    as the write path recognises it, `journal.as_storage_error`)."""
    storage = as_storage_error(exc)
    if storage is not None:
        if storage.code == "INSUFFICIENT_STORAGE":
            return "the data dir's disk is full"
        return "the data dir is read-only or not writable"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class RepositoryIndex:
    """The index of one repository under one embeddings model."""

    def __init__(self, root: Path, data_dir: Path, embeddings: Embeddings, model_id: str) -> None:
        self.root = root.resolve()
        self.data_dir = data_dir
        self.directory = index_directory(data_dir, self.root)
        self.embeddings = embeddings
        self.model_id = model_id
        self.store: FaissStore | None = None
        self.lexical: LexicalIndex | None = None
        self.files: dict[str, str] = {}
        self.signature: Signature | None = None
        self.chunks_of: dict[str, list[int]] = {}
        """Each entity's (or document's) own passages (chunk ids, not views), in order."""
        self.names = Names()
        """The entities' ids and titles, for the ones a question names exactly."""
        self._lock = threading.Lock()
        """One sync at a time."""
        self._view_lock = threading.Lock()
        """Searches, and a sync's switch to its new generation, one at a time."""
        self._loaded = False
        self.stale: str | None = None
        """Why the index serves an older generation: the last sync failed (None: current)."""
        self._failed: tuple[Signature, float] | None = None
        """The repository state whose sync failed, and when: retried after SYNC_RETRY_S."""

    @contextlib.contextmanager
    def searching(self) -> Iterator[None]:
        """Hold the index still while searching it: a sync changes the store, the lexical
        database and the chunk map together, between searches, never during one."""
        with self._view_lock:
            yield

    # --- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        found = generations.current(self.directory)
        if found is None:
            return
        folder, manifest = found
        if manifest.get("embeddingModel") != self.model_id:
            return  # another model: rebuild on the next sync
        store = FaissStore.read(folder, manifest, self.embeddings)
        if store is None:
            return
        self.store, self.files = store, dict(manifest.get("files", {}))
        if (manifest.get("lexical") or {}).get("tokenizer") == TOKENIZER:
            with contextlib.suppress(sqlite3.Error):  # gone: a replica's save removed it
                self.lexical = LexicalIndex(folder / LEXICAL_FILE)
        self._map_chunks()

    def _map_chunks(self) -> None:
        assert self.store is not None
        docs = self.store.docs
        owners: dict[str, list[int]] = {}
        for doc_id in sorted(docs, key=lambda i: docs[i].metadata["chunk"]):
            if not docs[doc_id].metadata.get("view"):
                owners.setdefault(docs[doc_id].metadata["entityId"], []).append(doc_id)
        self.chunks_of = owners
        titles = ((owner, docs[chunks[0]].metadata) for owner, chunks in owners.items())
        self.names = Names.of(
            (owner, meta["title"]) for owner, meta in titles if meta["entityType"] != "document"
        )

    def _forget(self) -> None:
        """Drop what is in memory: the next sync reads the index from disk again."""
        with self._view_lock:
            if self.lexical is not None:
                self.lexical.close()
            self.store, self.lexical, self.files = None, None, {}
            self.signature, self.chunks_of, self._loaded = None, {}, False
            self.names = Names()

    # --- keeping in step -------------------------------------------------------------------

    def _embed(self, documents: list[Document], progress: Progress | None) -> np.ndarray:
        """Vectors of `documents`, in their order. Texts are embedded shortest first, so a
        batch holds texts of about one length (views and passages differ a lot) and little of
        it is padding."""
        order = sorted(range(len(documents)), key=lambda i: len(documents[i].page_content))
        parts = []
        for start in range(0, len(order), EMBED_BATCH):
            batch = [documents[i].page_content for i in order[start : start + EMBED_BATCH]]
            parts.append(np.asarray(self.embeddings.embed_documents(batch)))
            if progress is not None:
                progress(len(batch))
        if not parts:
            return np.zeros((0, 0), dtype="float32")
        stacked = np.vstack(parts)
        vectors = np.empty_like(stacked)
        vectors[order] = stacked
        return vectors

    def sync(
        self,
        progress: Progress | None = None,
        signature: Signature | None = None,
    ) -> SyncStats:
        """Bring both indexes in line with the repository's files, embedding only what
        changed, and write them as one new generation."""
        started = time.perf_counter()
        with self._lock:
            self._load()
            signature = repositories.signature(self.root) if signature is None else signature
            repo = repositories.get(self.root, signature)
            chunks = repository_chunks(repo, explanations.finder(self.data_dir))
            hashes = {path: file_hash(docs) for path, docs in chunks.items()}
            rebuilt = self.store is None
            changed = [p for p, h in hashes.items() if self.files.get(p) != h or rebuilt]
            removed = [p for p in self.files if p not in hashes]
            new_docs = [doc for path in changed for doc in chunks[path]]
            if changed or removed or rebuilt or self.lexical is None:
                try:
                    self._write(new_docs, set(changed) | set(removed), hashes, progress)
                except Exception as exc:
                    self._fall_back(signature, exc)
                    raise
            assert self.store is not None
            self.signature, self.stale, self._failed = signature, None, None
            return SyncStats(
                files=len(hashes),
                chunks=len(self.store),
                changed_files=len(changed),
                removed_files=len(removed),
                embedded_chunks=len(new_docs),
                rebuilt=rebuilt,
                seconds=time.perf_counter() - started,
            )

    def _write(
        self,
        new_docs: list[Document],
        stale_files: set[str],
        hashes: dict[str, str],
        progress: Progress | None,
    ) -> None:
        vectors = self._embed(new_docs, progress)  # the slow part: searches go on meanwhile
        with self._view_lock:
            if self.store is None:
                dimension = vectors.shape[1] if new_docs else len(self.embeddings.embed_query("x"))
                self.store = FaissStore(self.embeddings, dimension)
            store = self.store
            stale = [i for i, d in store.docs.items() if d.metadata["filePath"] in stale_files]
            removed = [(i, store.docs[i]) for i in stale]
            store.delete([str(i) for i in stale])
            ids = store.add_vectors(new_docs, vectors)
            added = [(int(i), d) for i, d in zip(ids, new_docs, strict=True)]
            reader = self._save(store, removed, added, hashes)
            if self.lexical is not None:
                self.lexical.close()
            self.files = hashes
            self.lexical = reader
            self._map_chunks()

    def _save(
        self,
        store: FaissStore,
        removed: list[tuple[int, Document]],
        added: list[tuple[int, Document]],
        hashes: dict[str, str],
    ) -> LexicalIndex:
        """Write the store and the lexical database (the previous one changed by `removed`
        and `added`) as the new generation; returns the new lexical database, open."""
        staging = generations.stage(self.directory)
        previous = self.lexical
        lexical = LexicalIndex.create(staging / LEXICAL_FILE, source=previous)
        try:
            if previous is None:  # new, or no lexical index yet: every passage
                lexical.apply([], _passages(store.docs.items()))
            else:
                lexical.apply(_passages(removed), _passages(added))
        finally:
            lexical.close()
        manifest: dict[str, Any] = {
            "embeddingModel": self.model_id,
            "repository": str(self.root),
            "files": hashes,
            "lexical": {"file": LEXICAL_FILE, "tokenizer": TOKENIZER},
            **store.write(staging),
        }
        # Opened before the commit: a replica sharing the data dir may commit next and remove
        # this generation's folder before this process would open the file there.
        reader = LexicalIndex(staging / LEXICAL_FILE)
        try:
            generations.commit(staging, manifest)
        except BaseException:
            reader.close()
            raise
        return reader

    def _fall_back(self, signature: Signature, exc: Exception) -> None:
        """After a failed sync: the last complete generation from disk (what was in memory
        was half changed), marked stale with the reason."""
        self._forget()
        with self._view_lock:
            self._load()
        self._failed = (signature, time.monotonic())
        self.stale = (
            f"the index could not be updated ({sync_failure(exc)}); "
            "answers come from its last complete version"
        )

    def ensure_fresh(self, signature: Signature | None = None) -> SyncStats | None:
        """Sync when any file changed since the last sync. When a sync fails and an earlier
        generation is there, that one keeps serving (`stale` says why) and the sync is tried
        again after SYNC_RETRY_S, or at once when the files change again."""
        signature = repositories.signature(self.root) if signature is None else signature
        if self.signature is not None and signature == self.signature:
            return None
        if self._failed is not None and self.store is not None:
            failed_signature, when = self._failed
            if signature == failed_signature and time.monotonic() - when < SYNC_RETRY_S:
                return None
        try:
            return self.sync(signature=signature)
        except Exception:
            if self.store is None:  # nothing to serve from
                raise
            logger.warning("index sync failed; serving the last complete index: %s", self.stale)
            return None

    # --- searching -------------------------------------------------------------------------

    def dense(
        self,
        query_vector: list[float] | np.ndarray,
        limit: int,
        keep: Callable[[Document], bool] | None = None,
    ) -> list[tuple[int, Document, float]]:
        """The `limit` chunks nearest to the query vector that pass `keep`: (id, chunk,
        cosine similarity)."""
        assert self.store is not None, "sync() before searching"
        return self.store.search_by_vector(query_vector, limit, keep=keep)

    def lexical_hits(self, query: str, limit: int) -> list[tuple[int, float]]:
        """The `limit` best passages by BM25: (id, score)."""
        assert self.lexical is not None, "sync() before searching"
        return self.lexical.search(query, limit)

    def lexical_shares(self, query: str, ids: Sequence[int]) -> dict[int, float]:
        """How much of the query each of the passages `ids` holds (`LexicalIndex.shares`)."""
        assert self.lexical is not None, "sync() before searching"
        assert self.store is not None, "sync() before searching"
        docs = self.store.docs
        return self.lexical.shares(query, {i: docs[i].page_content for i in ids})


def _passages(docs: Iterable[tuple[int, Document]]) -> Iterator[tuple[int, str]]:
    """(id, text) of what lexical search reads among `docs`: passages and explanations (the
    other views are for dense search only)."""
    return (
        (i, d.page_content)
        for i, d in docs
        if not d.metadata.get("view") or d.metadata.get("explanation")
    )


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


def embeddings_model_id(spec: EmbeddingsSpec) -> str:
    """Names the vectors in an index's manifest: another model's index is rebuilt."""
    return f"{spec.provider}:{embeddings_model_name(spec)}"
