"""Semantic search over a repository's FAISS index: the `top_k` most relevant distinct
entities (and Markdown documents) for a query, refreshing the index first."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, Field

from context_kit_service.providers import embeddings_spec, get_embeddings
from context_kit_service.repository.model import Signature
from context_kit_service.settings import Settings

if TYPE_CHECKING:
    from context_kit_service.retrieval.index import RepositoryIndex

MAX_TOP_K = 20
EXCERPT_CHARS = 400


class Source(BaseModel):
    entity_id: str = Field(description="Entity id, or the path of a Markdown document.")
    entity_type: str = Field(description="feature, userstory, ..., or document.")
    title: str = Field(description="The entity's title.")
    relevance_score: float = Field(ge=0, le=1, description="Cosine similarity to the query.")
    excerpt: str = Field(description="The best matching passage (shortened).")
    file_path: str = Field(description="Repository-relative file of the entity.")


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1].rstrip() + "…"


def repository_index(
    settings: Settings, root: Path, embeddings: Embeddings | None = None
) -> tuple[RepositoryIndex, Embeddings]:
    """The repository's index (built once per process and embeddings model) and the embeddings
    it uses: `embeddings`, or the configured provider's."""
    from context_kit_service.retrieval.index import embeddings_model_id, indexes  # numpy, faiss

    if embeddings is None:
        spec = embeddings_spec(settings)
        embeddings, model_id = get_embeddings(spec), embeddings_model_id(spec)
    else:
        model_id = f"custom:{type(embeddings).__name__}"
    return indexes.get(root, settings.data_dir, embeddings, model_id), embeddings


def search(
    settings: Settings,
    root: Path,
    query: str,
    *,
    top_k: int = 5,
    entity_types: Sequence[str] = (),
    mmr: bool = False,
    min_score: float | None = None,
    embeddings: Embeddings | None = None,
    signature: Signature | None = None,
) -> list[Source]:
    """The `top_k` most relevant distinct entities for `query`, in the calling thread (the
    index is refreshed first; pass `signature` when just computed). `embeddings` replaces
    the configured embeddings provider; `min_score` defaults to CKS_MIN_RELEVANCE."""
    threshold = settings.min_relevance if min_score is None else min_score
    index, embeddings = repository_index(settings, root, embeddings)
    index.ensure_fresh(signature)
    vector = embeddings.embed_query(query)
    k = max(1, min(top_k, MAX_TOP_K))
    hits = index.search(vector, k=k * 4, entity_types=list(entity_types), mmr=mmr, fetch_k=k * 8)
    best: dict[str, Source] = {}
    for document, score in hits:
        meta = document.metadata
        if score < threshold or meta["entityId"] in best:
            continue
        best[meta["entityId"]] = Source(
            entity_id=meta["entityId"],
            entity_type=meta["entityType"],
            title=meta["title"],
            relevance_score=round(max(0.0, min(1.0, score)), 4),
            excerpt=_excerpt(document.page_content),
            file_path=meta["filePath"],
        )
        if len(best) == k:
            break
    return list(best.values())


async def search_repository(
    settings: Settings, root: Path, query: str, **options: Any
) -> list[Source]:
    """`search` in a worker thread (it embeds the query and may rebuild the index)."""
    return await asyncio.to_thread(partial(search, settings, root, query, **options))
