"""The retrieval node every graph uses: search the repository for the state's query.

`retrieve` is a graph node over any state with the `RetrievalRequest` fields; graphs call
`retrieval.search.search_repository` directly when they need passages for something else.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field

from context_kit_service.configuration import embeddings_for, service_settings
from context_kit_service.retrieval.search import MAX_TOP_K, index_stale, search_repository


class RetrievalRequest(BaseModel):
    query: str = Field(min_length=1, description="What to look for (required, not blank).")
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K, description="How many entities to return.")
    entity_types: list[str] = Field(default_factory=list, description="Only these entity types.")
    mmr: bool = Field(default=False, description="Diversify results (maximal marginal relevance).")


async def retrieve(state: Any, config: RunnableConfig) -> dict[str, Any]:
    """Node: search for `state.query` in `state.repo_root`; sets `sources`, `retrieval_ms` and
    `index_stale` (why the index is an older one, when its last sync failed)."""
    started = time.perf_counter()
    settings, root, embeddings = (
        service_settings(config),
        Path(state.repo_root),
        embeddings_for(config),
    )
    sources = await search_repository(
        settings,
        root,
        state.query,
        top_k=state.top_k,
        entity_types=state.entity_types,
        mmr=state.mmr,
        embeddings=embeddings,
    )
    return {
        "sources": sources,
        "retrieval_ms": round((time.perf_counter() - started) * 1000, 3),
        "index_stale": index_stale(settings, root, embeddings),
    }
