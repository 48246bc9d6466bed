"""Child process for the crash test: syncs a repository's index (dense and lexical) forever,
rewriting every task between two versions before each sync."""

from __future__ import annotations

import sys
from pathlib import Path

from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.retrieval.index import RepositoryIndex

if __name__ == "__main__":
    root, data = Path(sys.argv[1]), Path(sys.argv[2])
    index = RepositoryIndex(root, data, DeterministicFakeEmbedding(size=16), "fake")
    index.sync()
    print("ready", flush=True)
    tasks = sorted((root / "contexts/tasks").glob("*.yaml"))
    turn = 0
    while True:
        turn += 1
        for path in tasks:
            path.write_text(f"{path.read_text().split('notes:')[0]}notes: version {turn % 2}\n")
        index.sync()
