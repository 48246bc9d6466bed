"""Tools over a context repository. Docstrings are what the model reads.

The repository root is injected from the graph state (`repo_root`), set by the server after
checking it; the model never chooses it. Blocking file work runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import ToolException, tool
from langgraph.prebuilt import InjectedState

from context_kit_service.graphs.configuration import service_settings
from context_kit_service.repository.model import BACKLINK_LISTS, Entity, Repository
from context_kit_service.repository.types import ENTITY_TYPES, entity_type
from context_kit_service.repository.yaml_io import (
    dump_new,
    dump_round_trip,
    load_round_trip,
    merge_into,
    write_atomic,
)
from context_kit_service.tools.cache import repositories
from context_kit_service.tools.confinement import ConfinementError, confine

RepoRoot = Annotated[str, InjectedState("repo_root")]

MAX_RESULTS = 50
_WORD = re.compile(r"[a-z0-9]+")


def _repository(repo_root: str) -> Repository:
    if not repo_root:
        raise ConfinementError("no repository is set for this request")
    return repositories.get(Path(repo_root))


def _entity(repo: Repository, entity_id: str) -> Entity:
    entity = repo.entities.get(entity_id.strip())
    if entity is None:
        raise ToolException(f"no entity with id {entity_id!r}")
    return entity


def _summary(entity: Entity) -> dict[str, Any]:
    item = {"id": entity.id, "type": entity.type, "title": entity.title, "path": entity.path}
    if entity.status is not None:
        item["status"] = entity.status
    return item


def _text_of(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(_text_of(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    return str(value)


def _check_type(name: str | None) -> None:
    if name is not None and name not in ENTITY_TYPES:
        raise ToolException(
            f"unknown entity type {name!r}; expected one of: {', '.join(ENTITY_TYPES)}"
        )


# --- reading ---------------------------------------------------------------------------------


def _read(
    repo_root: str, path: str | None, entity_id: str | None, max_bytes: int
) -> dict[str, Any]:
    if (path is None) == (entity_id is None):
        raise ToolException("give exactly one of path or entity_id")
    root = Path(repo_root)
    if entity_id is not None:
        path = _entity(_repository(repo_root), entity_id).path
    assert path is not None
    target = confine(root, path, max_bytes=max_bytes)
    try:
        content = target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolException(f"not a text file: {path}") from None
    return {"path": target.relative_to(root.resolve()).as_posix(), "content": content}


@tool
async def read_context(
    repo_root: RepoRoot,
    config: RunnableConfig,
    path: str | None = None,
    entity_id: str | None = None,
) -> dict[str, Any]:
    """Read one file of the context repository, by repository-relative path
    (e.g. "contexts/features/FEAT-001-login.yaml" or "docs/architecture.md") or by entity id
    (e.g. "FEAT-001"). Give exactly one of the two. Returns the path and the file content."""
    limit = service_settings(config).max_file_bytes
    return await asyncio.to_thread(_read, repo_root, path, entity_id, limit)


def _list(repo_root: str, entity_type: str | None, status: str | None) -> dict[str, Any]:
    _check_type(entity_type)
    repo = _repository(repo_root)
    chosen = [
        _summary(e)
        for e in sorted(repo.entities.values(), key=lambda e: (e.type, e.id))
        if (entity_type is None or e.type == entity_type) and (status is None or e.status == status)
    ]
    return {"count": len(chosen), "entities": chosen}


@tool
async def list_entities(
    repo_root: RepoRoot, entity_type: str | None = None, status: str | None = None
) -> dict[str, Any]:
    """List entities of the context repository, optionally only one type (feature, userstory,
    spec, task, service, package, governance) and/or one status (e.g. "in-progress", "todo").
    Returns id, type, title, status and file path of each."""
    return await asyncio.to_thread(_list, repo_root, entity_type, status)


def _search(repo_root: str, query: str, entity_type: str | None, limit: int) -> dict[str, Any]:
    _check_type(entity_type)
    words = _WORD.findall(query.lower())
    if not words:
        raise ToolException("query has no words to search for")
    repo = _repository(repo_root)
    scored = []
    for entity in repo.entities.values():
        if entity_type is not None and entity.type != entity_type:
            continue
        title = entity.title.lower()
        body = _text_of(entity.data).lower()
        score = sum(3 * title.count(w) + body.count(w) for w in words)
        if entity.id.lower() in words:
            score += 10
        if score:
            scored.append((score, entity))
    scored.sort(key=lambda item: (-item[0], item[1].id))
    hits = [{**_summary(e), "score": s} for s, e in scored[: max(1, min(limit, MAX_RESULTS))]]
    return {"query": query, "count": len(hits), "results": hits}


@tool
async def search_entities(
    repo_root: RepoRoot, query: str, entity_type: str | None = None, limit: int = 10
) -> dict[str, Any]:
    """Search the context repository's entities for words (case-insensitive, title matches
    rank higher). Optionally restrict to one entity type. Returns the best matches first."""
    return await asyncio.to_thread(_search, repo_root, query, entity_type, limit)


def _get(repo_root: str, entity_id: str) -> dict[str, Any]:
    repo = _repository(repo_root)
    entity = _entity(repo, entity_id)
    return {**_summary(entity), "data": entity.data, "relations": repo.relations(entity.id)}


@tool
async def get_entity(repo_root: RepoRoot, entity_id: str) -> dict[str, Any]:
    """Get one entity by id (e.g. "US-003") with all its fields, the entities it links to
    (outgoing) and the entities that link to it (incoming)."""
    return await asyncio.to_thread(_get, repo_root, entity_id)


@tool
async def validate_repository(repo_root: RepoRoot) -> dict[str, Any]:
    """Validate the whole context repository: every entity against its type's JSON schema,
    every link between entities, and every file's YAML. Returns a report with schema errors,
    reference errors, load errors and totals by type."""
    return await asyncio.to_thread(lambda: _repository(repo_root).validate())


def _graph(repo_root: str, entity_type: str | None) -> dict[str, Any]:
    _check_type(entity_type)
    repo = _repository(repo_root)
    nodes = [
        _summary(e)
        for e in sorted(repo.entities.values(), key=lambda e: (e.type, e.id))
        if entity_type is None or e.type == entity_type
    ]
    kept = {n["id"] for n in nodes}
    edges = [
        {"source": e.source, "target": e.target, "relation": e.relation}
        for e in repo.edges
        if e.source in kept or e.target in kept
    ]
    return {"nodes": nodes, "edges": edges}


@tool
async def dependency_graph(repo_root: RepoRoot, entity_type: str | None = None) -> dict[str, Any]:
    """The relation graph of the context repository: entities as nodes and their links
    (userStories, specs, tasks, requires, feature, related.*, dependencies, consumers, ...)
    as edges. Optionally only the nodes of one type and their edges."""
    return await asyncio.to_thread(_graph, repo_root, entity_type)


def _impact(repo_root: str, entity_id: str, max_depth: int) -> dict[str, Any]:
    repo = _repository(repo_root)
    entity = _entity(repo, entity_id)
    affected = repo.impact(entity.id, max_depth=max(1, min(max_depth, 10)))
    return {"entity": _summary(entity), "count": len(affected), "affected": affected}


@tool
async def impact_analysis(
    repo_root: RepoRoot, entity_id: str, max_depth: int = 3
) -> dict[str, Any]:
    """What is affected when an entity changes: the entities that depend on it, directly
    (depth 1) and through others (up to max_depth), nearest first."""
    return await asyncio.to_thread(_impact, repo_root, entity_id, max_depth)


@tool
async def next_id(repo_root: RepoRoot, entity_type: str) -> dict[str, str]:
    """The next free id for an entity type (e.g. "T-011" after "T-010")."""
    _check_type(entity_type)
    repo = await asyncio.to_thread(_repository, repo_root)
    return {"entityType": entity_type, "id": repo.next_id(entity_type)}


def _bundle(repo_root: str, entity_id: str) -> dict[str, Any]:
    repo = _repository(repo_root)
    entity = _entity(repo, entity_id)
    relations = repo.relations(entity.id)
    linked = sorted(
        {r["id"] for group in relations.values() for r in group if r["id"] in repo.entities}
    )
    return {
        "entity": {**_summary(entity), "data": entity.data},
        "related": [{**_summary(repo.entities[i]), "data": repo.entities[i].data} for i in linked],
        "schema": repo.schemas[entity.type],
    }


@tool
async def build_context_bundle(repo_root: RepoRoot, entity_id: str) -> dict[str, Any]:
    """Assemble everything needed to work on one entity: its fields, every entity it links to
    or is linked from (with their fields), and its type's JSON schema."""
    return await asyncio.to_thread(_bundle, repo_root, entity_id)


# --- writing ---------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return "-".join(_WORD.findall(text.lower()))[:48].strip("-") or "entity"


def _problems_text(problems: list[Any]) -> str:
    return "; ".join(f"{p.field or 'entity'}: {p.message}" for p in problems[:10])


def _write_entity_file(root: Path, entity: Entity, changes: dict[str, Any] | None) -> None:
    target = root / entity.path
    if changes is None:
        write_atomic(target, dump_new(entity.data))
        return
    document = load_round_trip(target.read_text(encoding="utf-8"))
    merge_into(document, changes)
    write_atomic(target, dump_round_trip(document))


def _require_writes(config: RunnableConfig) -> None:
    if not service_settings(config).allow_writes:
        raise ToolException("writing to the repository is disabled (CKS_ALLOW_WRITES=false)")


def _create(repo_root: str, kind_name: str, fields: dict[str, Any]) -> dict[str, Any]:
    kind = entity_type(kind_name)
    repo = _repository(repo_root)
    data = {"id": repo.next_id(kind.name), **{k: v for k, v in fields.items() if k != "id"}}
    given_id = fields.get("id")
    if given_id and given_id != data["id"]:
        if given_id in repo.entities:
            raise ToolException(f"id {given_id} already exists; next free id is {data['id']}")
        data["id"] = given_id
    title = Entity(data["id"], kind.name, "", data).title
    path = f"contexts/{kind.folder}/{data['id']}-{_slug(title)}.yaml"
    entity = Entity(data["id"], kind.name, path, data)
    features = repo.backlinked_features(entity)
    problems = repo.with_entities(entity, *features).check_entity(kind.name, data, path)
    if problems:
        raise ToolException(f"{kind.name} is not valid: {_problems_text(problems)}")
    root = Path(repo_root)
    _write_entity_file(root, entity, None)
    list_name = BACKLINK_LISTS[kind.name]
    for feature in features:
        _write_entity_file(root, feature, {list_name: feature.data[list_name]})
    return {"id": entity.id, "path": path, "entity": data, "updated": [f.id for f in features]}


@tool
async def create_entity(
    repo_root: RepoRoot, config: RunnableConfig, entity_type: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """Create a new entity file in the context repository. `fields` are the entity's fields
    (without an id: the next free id is assigned). The entity is validated against its
    schema and links before anything is written; a new user story, spec or task is also
    added to its feature's list. Needs the user's approval."""
    _require_writes(config)
    return await asyncio.to_thread(_create, repo_root, entity_type, fields)


def _patch(repo_root: str, entity_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    repo = _repository(repo_root)
    entity = _entity(repo, entity_id)
    if "id" in changes and changes["id"] != entity.id:
        raise ToolException("the id of an entity cannot be changed")
    document = load_round_trip((Path(repo_root) / entity.path).read_text(encoding="utf-8"))
    merge_into(document, changes)
    plain = _plain(document)
    problems = repo.check_entity(entity.type, plain, entity.path)
    if problems:
        raise ToolException(f"{entity.id} would not be valid: {_problems_text(problems)}")
    write_atomic(Path(repo_root) / entity.path, dump_round_trip(document))
    return {"id": entity.id, "path": entity.path, "entity": plain}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


@tool
async def patch_entity(
    repo_root: RepoRoot, config: RunnableConfig, entity_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change fields of an existing entity. `changes` is merged into the entity (nested
    objects are merged too; a null value removes the field). Comments and key order in the
    file are kept. Validated before writing. Needs the user's approval."""
    _require_writes(config)
    return await asyncio.to_thread(_patch, repo_root, entity_id, changes)
