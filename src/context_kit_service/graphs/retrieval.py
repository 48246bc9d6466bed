"""The retrieval step every graph uses: search the repository's FAISS index.

`retrieve` is a graph node over any state with the `RetrievalRequest` fields; graphs call
`search_repository` directly when they need passages for something else (the assistant's tool,
the generation graph's context).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field

from context_kit_service.graphs.configuration import embeddings_for, service_settings
from context_kit_service.providers import embeddings_spec, get_embeddings
from context_kit_service.repository.model import Signature
from context_kit_service.settings import Settings

MAX_TOP_K = 20
EXCERPT_CHARS = 400


class Source(BaseModel):
    entity_id: str = Field(description="Entity id, or the path of a Markdown document.")
    entity_type: str = Field(description="feature, userstory, ..., or document.")
    title: str = Field(description="The entity's title.")
    relevance_score: float = Field(ge=0, le=1, description="Cosine similarity to the query.")
    excerpt: str = Field(description="The best matching passage (shortened).")
    file_path: str = Field(description="Repository-relative file of the entity.")


class RetrievalRequest(BaseModel):
    query: str = Field(min_length=1, description="What to look for (required, not blank).")
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K, description="How many entities to return.")
    entity_types: list[str] = Field(default_factory=list, description="Only these entity types.")
    mmr: bool = Field(default=False, description="Diversify results (maximal marginal relevance).")


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1].rstrip() + "…"


def search_sync(
    settings: Settings,
    given: Embeddings | None,
    root: Path,
    query: str,
    top_k: int,
    entity_types: list[str],
    mmr: bool,
    min_score: float,
    signature: Signature | None = None,
) -> list[Source]:
    """`search_repository` in the calling thread; `signature` when just computed."""
    from context_kit_service.retrieval.index import embeddings_model_id, indexes  # numpy, faiss

    if given is None:
        spec = embeddings_spec(settings)
        embeddings, model_id = get_embeddings(spec), embeddings_model_id(spec)
    else:
        embeddings, model_id = given, f"custom:{type(given).__name__}"
    index = indexes.get(root, settings.data_dir, embeddings, model_id)
    index.ensure_fresh(signature)
    vector = embeddings.embed_query(query)
    k = max(1, min(top_k, MAX_TOP_K))
    hits = index.search(vector, k=k * 4, entity_types=entity_types, mmr=mmr, fetch_k=k * 8)
    best: dict[str, Source] = {}
    for document, score in hits:
        meta = document.metadata
        if score < min_score or meta["entityId"] in best:
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
    settings: Settings,
    root: Path,
    query: str,
    *,
    top_k: int = 5,
    entity_types: list[str] | None = None,
    mmr: bool = False,
    min_score: float | None = None,
    embeddings: Embeddings | None = None,
) -> list[Source]:
    """The `top_k` most relevant distinct entities for `query` (the index is refreshed first).

    `embeddings` replaces the configured embeddings provider (see `embeddings_for`)."""
    threshold = settings.min_relevance if min_score is None else min_score
    types = list(entity_types or [])
    return await asyncio.to_thread(
        search_sync, settings, embeddings, root, query, top_k, types, mmr, threshold
    )


async def retrieve(state: Any, config: RunnableConfig) -> dict[str, Any]:
    """Node: search for `state.query` in `state.repo_root`; sets `sources` and `retrieval_ms`."""
    started = time.perf_counter()
    sources = await search_repository(
        service_settings(config),
        Path(state.repo_root),
        state.query,
        top_k=state.top_k,
        entity_types=state.entity_types,
        mmr=state.mmr,
        embeddings=embeddings_for(config),
    )
    return {"sources": sources, "retrieval_ms": round((time.perf_counter() - started) * 1000, 3)}
