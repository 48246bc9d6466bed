"""Child process for the crash test: saves two versions of a store, alternately, forever."""

from __future__ import annotations

import sys
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.retrieval.store import FaissStore

SIZES = (400, 700)


def version(size: int) -> FaissStore:
    embedding = DeterministicFakeEmbedding(size=64)
    store = FaissStore(embedding, 64)
    docs = [Document(page_content=f"chunk {i} " * 20, metadata={"i": i}) for i in range(size)]
    store.add_documents(docs)
    return store


if __name__ == "__main__":
    directory = Path(sys.argv[1])
    stores = [version(size) for size in SIZES]
    stores[0].save(directory, {"embeddingModel": "fake", "version": SIZES[0]})
    print("ready", flush=True)
    turn = 1
    while True:
        stores[turn % 2].save(directory, {"embeddingModel": "fake", "version": SIZES[turn % 2]})
        turn += 1
