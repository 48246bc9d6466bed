"""Tools over the repository's FAISS index: semantic search, similar entities, and building
the index."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import ToolException, tool
from pydantic import Field

from context_kit_service.configuration import embeddings_for, service_settings
from context_kit_service.repository.cache import repositories
from context_kit_service.repository.types import EntityTypeName
from context_kit_service.retrieval.index import sync_failure
from context_kit_service.retrieval.search import MAX_TOP_K, repository_index, search
from context_kit_service.tools.repository_tools import RepoRoot

QUERY_CHARS = 1000


@tool
def search_context(
    repo_root: RepoRoot,
    config: RunnableConfig,
    query: Annotated[
        str,
        Field(
            min_length=1,
            max_length=QUERY_CHARS,
            description='The topic in a few words, e.g. "CSV imports" for "find anything that '
            'talks about CSV imports".',
        ),
    ],
    entity_types: list[EntityTypeName] | None = None,
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] = 5,
) -> list[dict[str, Any]]:
    """Find the entities and documents most related to `query`, by meaning and by its words,
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


@tool
def similar_entities(
    repo_root: RepoRoot,
    config: RunnableConfig,
    entity_id: str,
    limit: Annotated[int, Field(ge=1, le=MAX_TOP_K)] = 5,
) -> dict[str, Any]:
    """The entities most similar in meaning to one entity (vector search from its own text),
    most similar first."""
    entity = repositories.get(Path(repo_root)).entities.get(entity_id.strip())
    if entity is None:
        raise ToolException(f"no entity with id {entity_id!r}")
    text = f"{entity.title}. {json.dumps(entity.data, ensure_ascii=False)}"[:QUERY_CHARS]
    found = search(
        service_settings(config),
        Path(repo_root),
        text,
        top_k=min(MAX_TOP_K, limit + 1),
        min_score=0.0,
        embeddings=embeddings_for(config),
        mode="dense",
    )
    similar = [s.model_dump() for s in found if s.entity_id != entity.id][:limit]
    return {"entity": entity.id, "count": len(similar), "similar": similar}


@tool
def build_embeddings(repo_root: RepoRoot, config: RunnableConfig) -> dict[str, Any]:
    """Build or update the repository's search index (only changed files are embedded).
    Returns the counts of files and chunks, and what was embedded this time."""
    index, _ = repository_index(service_settings(config), Path(repo_root), embeddings_for(config))
    try:
        stats = index.sync()
    except (OSError, sqlite3.Error) as exc:  # the last complete index keeps serving
        raise ToolException(f"the index was not updated ({sync_failure(exc)})") from None
    return {
        "files": stats.files,
        "chunks": stats.chunks,
        "changedFiles": stats.changed_files,
        "removedFiles": stats.removed_files,
        "embeddedChunks": stats.embedded_chunks,
        "rebuilt": stats.rebuilt,
        "seconds": round(stats.seconds, 3),
    }
