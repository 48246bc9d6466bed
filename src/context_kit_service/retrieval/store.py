"""A FAISS vector store (inner product on normalised vectors) behind LangChain's VectorStore.

Vectors live in a `faiss.IndexIDMap2` over a flat index, or over HNSW once the store passes
`hnsw_threshold` vectors. HNSW cannot remove vectors, so removals there become tombstones
that searches skip, and the index is rebuilt once they pass a fifth of it.

The store writes itself into an index generation (`generations`: faiss's own binary index
format and JSON metadata); `save` and `load` make and read a generation holding only the
store. Nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from context_kit_service.retrieval import generations

FORMAT_VERSION = 2
"""2: chunks say whether they come from a derived document and which entities it restates."""
HNSW_THRESHOLD = 20_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64
"""Chosen by bench/hnsw.py on 100k real MiniLM embeddings (README: HNSW tuning)."""
INDEX_FILE = "index.faiss"
CHUNKS_FILE = "chunks.json"


def normalise(vectors: Sequence[Sequence[float]] | Sequence[float] | np.ndarray) -> np.ndarray:
    matrix = np.asarray(vectors, dtype="float32")
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms)


def _search_one(index: Any, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One query on one OpenMP thread: a single query gains nothing from more, and the idle
    threads FAISS leaves spinning after a parallel search take the cores from the next query
    embedding (torch), which doubles retrieval latency on 2 cores (bench/retrieval.py)."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # per calling thread: builds elsewhere stay parallel
    try:
        scores, ids = index.search(query, k)
    finally:
        faiss.omp_set_num_threads(threads)
    return scores, ids


class FaissStore(VectorStore):
    """Documents and their vectors, searchable by cosine similarity (scores in [-1, 1])."""

    def __init__(
        self, embedding: Embeddings, dimension: int, *, hnsw_threshold: int = HNSW_THRESHOLD
    ) -> None:
        self._embedding = embedding
        self.dimension = dimension
        self.hnsw_threshold = hnsw_threshold
        self.docs: dict[int, Document] = {}
        self.tombstones: set[int] = set()
        self.next_id = 0
        self.index = self._new_index(hnsw=False)

    # --- the faiss index -------------------------------------------------------------------

    def _new_index(self, *, hnsw: bool) -> Any:
        import faiss

        base: Any
        if hnsw:
            base = faiss.IndexHNSWFlat(self.dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            base.hnsw.efSearch = HNSW_EF_SEARCH
        else:
            base = faiss.IndexFlatIP(self.dimension)
        return faiss.IndexIDMap2(base)

    @property
    def is_hnsw(self) -> bool:
        import faiss

        return isinstance(faiss.downcast_index(self.index.index), faiss.IndexHNSWFlat)

    def _rebuild(self, *, hnsw: bool) -> None:
        ids = np.array(sorted(self.docs), dtype="int64")
        vectors = self.vectors(ids) if len(ids) else np.zeros((0, self.dimension), "float32")
        self.index = self._new_index(hnsw=hnsw)
        self.tombstones.clear()
        if len(ids):
            self.index.add_with_ids(vectors, ids)

    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.vstack([self.index.reconstruct(int(i)) for i in ids]).astype("float32")

    # --- VectorStore -----------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def __len__(self) -> int:
        return len(self.docs)

    def add_vectors(self, documents: Sequence[Document], vectors: np.ndarray) -> list[str]:
        ids = np.arange(self.next_id, self.next_id + len(documents), dtype="int64")
        self.next_id += len(documents)
        if len(documents):
            self.index.add_with_ids(normalise(vectors), ids)
        for doc_id, document in zip(ids, documents, strict=True):
            self.docs[int(doc_id)] = document
        if not self.is_hnsw and len(self.docs) > self.hnsw_threshold:
            self._rebuild(hnsw=True)
        return [str(i) for i in ids]

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        texts = [d.page_content for d in documents]
        return self.add_vectors(documents, np.asarray(self._embedding.embed_documents(texts)))

    def add_texts(
        self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[str]:
        texts = list(texts)
        metadatas = metadatas or [{} for _ in texts]
        documents = [
            Document(page_content=t, metadata=m) for t, m in zip(texts, metadatas, strict=True)
        ]
        return self.add_documents(documents)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        chosen = [int(i) for i in ids or [] if int(i) in self.docs]
        for doc_id in chosen:
            del self.docs[doc_id]
        if not chosen:
            return True
        if self.is_hnsw:
            self.tombstones.update(chosen)
            if len(self.tombstones) > max(1, len(self.docs) // 5):
                self._rebuild(hnsw=len(self.docs) > self.hnsw_threshold)
        else:
            self.index.remove_ids(np.array(chosen, dtype="int64"))
        return True

    def search_by_vector(
        self,
        vector: Sequence[float] | np.ndarray,
        k: int,
        *,
        keep: Callable[[Document], bool] | None = None,
    ) -> list[tuple[int, Document, float]]:
        """The `k` nearest documents passing `keep`: (id, document, cosine similarity)."""
        if not self.docs or k <= 0:
            return []
        query = normalise(vector)
        want = k
        while True:
            fetch = min(self.index.ntotal, want + len(self.tombstones))
            scores, ids = _search_one(self.index, query, fetch)
            hits = [
                (int(i), self.docs[int(i)], float(s))
                for s, i in zip(scores[0], ids[0], strict=True)
                if i >= 0 and int(i) in self.docs and (keep is None or keep(self.docs[int(i)]))
            ]
            if len(hits) >= k or fetch >= self.index.ntotal:
                return hits[:k]
            want *= 4

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = self._embedding.embed_query(query)
        return [(d, s) for _, d, s in self.search_by_vector(vector, k, keep=kwargs.get("keep"))]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: Sequence[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        return [
            d
            for d, _ in self.mmr_with_scores(embedding, k, fetch_k, lambda_mult, kwargs.get("keep"))
        ]

    def mmr_with_scores(
        self,
        embedding: Sequence[float] | np.ndarray,
        k: int,
        fetch_k: int,
        lambda_mult: float,
        keep: Callable[[Document], bool] | None = None,
    ) -> list[tuple[Document, float]]:
        """Maximal marginal relevance over the `fetch_k` nearest: relevant and diverse."""
        candidates = self.search_by_vector(embedding, max(k, fetch_k), keep=keep)
        if not candidates:
            return []
        vectors = self.vectors([i for i, _, _ in candidates])
        query = normalise(embedding)[0]
        chosen = maximal_marginal_relevance(query, list(vectors), lambda_mult=lambda_mult, k=k)
        return [(candidates[i][1], candidates[i][2]) for i in chosen]

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        vector = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, **kwargs
        )

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda score: max(0.0, min(1.0, score))

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> FaissStore:
        vectors = embedding.embed_documents(texts)
        store = cls(embedding, len(vectors[0]) if vectors else int(kwargs.get("dimension", 0)))
        metas = metadatas or [{} for _ in texts]
        docs = [Document(page_content=t, metadata=m) for t, m in zip(texts, metas, strict=True)]
        store.add_vectors(docs, np.asarray(vectors))
        return store

    # --- persistence -----------------------------------------------------------------------

    def write(self, folder: Path) -> dict[str, Any]:
        """Write the index (faiss's own format) and the chunks (JSON) into `folder`; returns
        what the manifest should say about them."""
        import faiss

        faiss.write_index(self.index, str(folder / INDEX_FILE))
        meta = {
            "nextId": self.next_id,
            "tombstones": sorted(self.tombstones),
            "docs": {
                str(i): {"text": d.page_content, "metadata": d.metadata}
                for i, d in self.docs.items()
            },
        }
        (folder / CHUNKS_FILE).write_text(json.dumps(meta), encoding="utf-8")
        return {
            "formatVersion": FORMAT_VERSION,
            "dimension": self.dimension,
            "chunkCount": len(self.docs),
            "indexType": "hnsw" if self.is_hnsw else "flat",
        }

    @classmethod
    def read(
        cls, folder: Path, manifest: dict[str, Any], embedding: Embeddings
    ) -> FaissStore | None:
        """The store written into `folder`; None when it is unusable or of another format."""
        import faiss

        if manifest.get("formatVersion") != FORMAT_VERSION:
            return None
        try:
            meta = json.loads((folder / CHUNKS_FILE).read_text(encoding="utf-8"))
            index = faiss.read_index(str(folder / INDEX_FILE))
            store = cls(embedding, int(manifest["dimension"]))
        except (OSError, ValueError, RuntimeError, KeyError):
            return None
        store.index = index
        if store.is_hnsw:  # an index written with another efSearch searches with today's
            hnsw: Any = faiss.downcast_index(store.index.index)
            hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        store.next_id = int(meta["nextId"])
        store.tombstones = {int(i) for i in meta["tombstones"]}
        store.docs = {
            int(i): Document(page_content=d["text"], metadata=d["metadata"])
            for i, d in meta["docs"].items()
        }
        return store

    def save(self, directory: Path, manifest: dict[str, Any]) -> Path:
        """Write a complete new generation under `directory`, then switch `CURRENT` to it."""
        staging = generations.stage(directory)
        return generations.commit(staging, {**manifest, **self.write(staging)})

    @classmethod
    def load(
        cls, directory: Path, embedding: Embeddings
    ) -> tuple[FaissStore, dict[str, Any]] | None:
        """The current generation under `directory`; None when there is none or it is unusable."""
        found = generations.current(directory)
        if found is None:
            return None
        folder, manifest = found
        store = cls.read(folder, manifest, embedding)
        return None if store is None else (store, manifest)
