"""The assistant's retrieval tool: semantic search over the repository's FAISS index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import Field

from context_kit_service.configuration import embeddings_for, service_settings
from context_kit_service.retrieval.search import MAX_TOP_K, search
from context_kit_service.tools.repository_tools import RepoRoot


@tool
def search_context(
    repo_root: RepoRoot,
    config: RunnableConfig,
    query: Annotated[str, Field(min_length=1, max_length=1000)],
    entity_types: list[str] | None = None,
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] = 5,
) -> list[dict[str, Any]]:
    """Find the entities and documents most related in meaning to `query` (semantic search),
    optionally only some entity types. Returns id, type, title, score and a short excerpt."""
    sources = search(
        service_settings(config),
        Path(repo_root),
        query,
        top_k=top_k,
        entity_types=entity_types or (),
        embeddings=embeddings_for(config),
    )
    return [s.model_dump(exclude={"file_path"}) for s in sources]
