"""The FAISS store with deterministic embeddings: search, filters, removal, HNSW, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.retrieval.generations import read_current
from context_kit_service.retrieval.store import HNSW_EF_SEARCH, FaissStore

EMBEDDING = DeterministicFakeEmbedding(size=32)


def _docs(*names: str, kind: str = "task") -> list[Document]:
    return [Document(page_content=n, metadata={"entityId": n, "entityType": kind}) for n in names]


def _store(*names: str, **kwargs: int) -> FaissStore:
    store = FaissStore(EMBEDDING, 32, **kwargs)
    store.add_documents(_docs(*names))
    return store


def test_exact_text_is_its_own_nearest_neighbour() -> None:
    store = _store("alpha", "beta", "gamma")
    hits = store.similarity_search_with_score("beta", k=1)
    assert [(d.page_content, round(s, 4)) for d, s in hits] == [("beta", 1.0)]
    assert store.similarity_search("gamma", k=3)[0].page_content == "gamma"


def test_filters_removal_and_relevance_scores() -> None:
    store = _store("alpha", "beta")
    store.add_documents(_docs("beta-spec", kind="spec"))
    keep_specs = lambda d: d.metadata["entityType"] == "spec"  # noqa: E731
    assert [
        d.page_content
        for _, d, _ in store.search_by_vector(EMBEDDING.embed_query("beta"), 2, keep=keep_specs)
    ] == ["beta-spec"]
    store.delete(["1"])
    remaining = sorted(d.page_content for d in store.similarity_search("beta", k=3))
    assert remaining == ["alpha", "beta-spec"]
    assert len(store) == 2
    assert all(0 <= s <= 1 for _, s in store.similarity_search_with_relevance_scores("alpha", k=2))


def test_mmr_prefers_diverse_results() -> None:
    store = FaissStore(EMBEDDING, 32)
    base = np.array(EMBEDDING.embed_query("x"))
    near = base + 0.01
    far = np.array(EMBEDDING.embed_query("y"))
    store.add_vectors(_docs("x1", "x2", "y"), np.vstack([base, near, far]))
    plain = [d.page_content for _, d, _ in store.search_by_vector(base, 2)]
    diverse = [d.page_content for d, _ in store.mmr_with_scores(base, 2, 3, 0.3)]
    assert plain == ["x1", "x2"]
    assert diverse == ["x1", "y"]


def test_hnsw_above_the_threshold_with_tombstones() -> None:
    store = _store(*[f"doc-{i}" for i in range(12)], hnsw_threshold=10)
    assert store.is_hnsw
    assert store.similarity_search("doc-3", k=1)[0].page_content == "doc-3"
    store.delete(["3"])
    assert store.tombstones == {3}
    assert "doc-3" not in [d.page_content for d in store.similarity_search("doc-3", k=5)]
    store.delete(["4", "5", "6"])  # more than a fifth: rebuilt without tombstones
    assert (store.tombstones, len(store)) == (set(), 8)
    assert store.similarity_search("doc-7", k=1)[0].page_content == "doc-7"


def test_an_hnsw_index_written_with_another_ef_search_searches_with_the_chosen_one(
    tmp_path: Path,
) -> None:
    store = _store(*[f"doc-{i}" for i in range(12)], hnsw_threshold=10)
    faiss.downcast_index(store.index.index).hnsw.efSearch = 7
    store.save(tmp_path, {"embeddingModel": "fake:32", "files": {}})
    loaded = FaissStore.load(tmp_path, EMBEDDING)
    assert loaded is not None
    assert faiss.downcast_index(loaded[0].index.index).hnsw.efSearch == HNSW_EF_SEARCH == 64


def test_save_and_load_round_trip_without_pickle(tmp_path: Path) -> None:
    store = _store("alpha", "beta", "gamma")
    store.delete(["0"])
    folder = store.save(tmp_path, {"embeddingModel": "fake:32", "files": {"a.yaml": "h"}})
    assert sorted(p.name for p in folder.iterdir()) == [
        "chunks.json",
        "index.faiss",
        "manifest.json",
    ]
    assert json.loads((folder / "manifest.json").read_text()) == {
        "embeddingModel": "fake:32",
        "files": {"a.yaml": "h"},
        "formatVersion": 2,
        "dimension": 32,
        "chunkCount": 2,
        "indexType": "flat",
    }
    assert not (folder / "index.faiss").read_bytes().startswith(b"\x80")  # not a pickle
    loaded = FaissStore.load(tmp_path, EMBEDDING)
    assert loaded is not None
    copy, _ = loaded
    assert copy.docs == store.docs
    assert copy.next_id == 3
    assert copy.similarity_search("gamma", k=1)[0].page_content == "gamma"


def test_each_save_replaces_the_previous_generation(tmp_path: Path) -> None:
    store = _store("alpha")
    first = store.save(tmp_path, {"embeddingModel": "fake"})
    second = store.save(tmp_path, {"embeddingModel": "fake"})
    assert read_current(tmp_path) == second.name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["CURRENT", second.name])
    assert not first.exists()


@pytest.mark.parametrize("damage", ["no-current", "dangling", "garbage-index", "bad-json"])
def test_unusable_indexes_load_as_none(tmp_path: Path, damage: str) -> None:
    folder = _store("alpha").save(tmp_path, {"embeddingModel": "fake"})
    if damage == "no-current":
        (tmp_path / "CURRENT").unlink()
    elif damage == "dangling":
        (tmp_path / "CURRENT").write_text("gen-missing")
    elif damage == "garbage-index":
        (folder / "index.faiss").write_bytes(b"not an index")
    else:
        (folder / "chunks.json").write_text("{")
    assert FaissStore.load(tmp_path, EMBEDDING) is None
