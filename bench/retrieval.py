"""Retrieval benchmark (issue 5 targets), all measured in this run:

- build throughput: chunks/s of a full index build (chunking, embedding, FAISS, atomic save),
  as a ratio to raw sentence-transformers `encode` of the same texts (target >= 0.85);
- FAISS search p50/p99 at 10k (flat) and 100k (HNSW) chunks (target <= 2 ms p50 at 100k);
- end-to-end retrieval, query embedding and freshness check included (target <= 20 ms p50).

    .venv/bin/python bench/retrieval.py [--entities 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
from langchain_core.documents import Document

from context_kit_service.local_models import LocalEmbeddings
from context_kit_service.providers import embeddings_spec, get_embeddings
from context_kit_service.repository.cache import repositories
from context_kit_service.repository.synthetic import generate_repository
from context_kit_service.retrieval.documents import repository_chunks
from context_kit_service.retrieval.index import RepositoryIndex
from context_kit_service.retrieval.search import search_repository
from context_kit_service.retrieval.store import FaissStore
from context_kit_service.settings import load_settings


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples), q))


def build_throughput(embeddings: LocalEmbeddings, entities: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "repo"
        generate_repository(root, entities)
        texts = [
            d.page_content
            for docs in repository_chunks(repositories.get(root)).values()
            for d in docs
        ]
        embeddings.embed_documents(texts[:64])  # warm up
        started = time.perf_counter()
        embeddings.model.encode(texts, batch_size=64, normalize_embeddings=True)
        raw = len(texts) / (time.perf_counter() - started)
        index = RepositoryIndex(root, Path(directory) / "data", embeddings, "local:bench")
        started = time.perf_counter()
        stats = index.sync()
        ours = stats.chunks / (time.perf_counter() - started)
    print(
        f"build: {stats.chunks} chunks; raw encode {raw:.0f} chunks/s, "
        f"index build {ours:.0f} chunks/s"
    )
    print(f"  ratio {ours / raw:.2f} (target >= 0.85): {'PASS' if ours / raw >= 0.85 else 'FAIL'}")


def search_latency(size: int, queries: int = 500) -> float:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((size, 384)).astype("float32")
    store = FaissStore(LocalEmbeddings(), 384)
    docs = [Document(page_content="", metadata={"entityType": "task"}) for _ in range(size)]
    started = time.perf_counter()
    store.add_vectors(docs, vectors)
    built = time.perf_counter() - started
    probes = rng.standard_normal((queries, 384)).astype("float32")
    timings = []
    for probe in probes:
        started = time.perf_counter()
        store.search_by_vector(probe, 5)
        timings.append((time.perf_counter() - started) * 1000)
    p50 = percentile(timings, 50)
    kind = "hnsw" if store.is_hnsw else "flat"
    print(
        f"search {size:>7} chunks ({kind}, built in {built:.1f} s): "
        f"p50 {p50:.3f} ms, p99 {percentile(timings, 99):.3f} ms"
    )
    return p50


def end_to_end(queries: int = 200) -> None:
    sample = Path(__file__).resolve().parents[1] / "examples" / "context-repo"
    with tempfile.TemporaryDirectory() as directory:
        settings = load_settings(data_dir=Path(directory))
        questions = [
            "how are duplicate transactions detected",
            "who sends bill reminders",
            "passkey recovery",
            "budget data model",
            "export my data",
        ]

        async def run() -> list[float]:
            await search_repository(settings, sample, "warm up", top_k=5)
            timings = []
            for i in range(queries):
                started = time.perf_counter()
                await search_repository(settings, sample, questions[i % len(questions)], top_k=5)
                timings.append((time.perf_counter() - started) * 1000)
            return timings

        timings = asyncio.run(run())
        embeddings = get_embeddings(embeddings_spec(settings))
        embed = []
        for i in range(queries):
            started = time.perf_counter()
            embeddings.embed_query(questions[i % len(questions)])
            embed.append((time.perf_counter() - started) * 1000)
    print(
        f"  of which the query embedding alone (MiniLM forward): p50 {percentile(embed, 50):.2f} ms"
    )
    p50 = percentile(timings, 50)
    print(
        f"end-to-end retrieval (embed query + freshness + search): p50 {p50:.2f} ms, "
        f"p99 {percentile(timings, 99):.2f} ms (target <= 20 ms p50): "
        f"{'PASS' if p50 <= 20 else 'FAIL'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=1500)
    args = parser.parse_args()
    embeddings = get_embeddings(embeddings_spec(load_settings()))
    assert isinstance(embeddings, LocalEmbeddings)
    build_throughput(embeddings, args.entities)
    search_latency(10_000)
    p50 = search_latency(100_000)
    print(f"  100k p50 target <= 2 ms: {'PASS' if p50 <= 2 else 'FAIL'}")
    end_to_end()


if __name__ == "__main__":
    main()
