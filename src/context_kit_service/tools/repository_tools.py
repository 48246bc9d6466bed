"""Tools over a context repository. Docstrings are what the model reads.

The repository root is injected from the graph state (`repo_root`), set by the server after
checking it; the model never chooses it. The tools are plain functions: LangChain runs them in
a worker thread, off the event loop.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import ToolException, tool
from langgraph.prebuilt import InjectedState
from pydantic import Field

from context_kit_service.configuration import service_settings
from context_kit_service.repository import writes
from context_kit_service.repository.cache import repositories
from context_kit_service.repository.files import FileRefused, read_text
from context_kit_service.repository.journal import change_key
from context_kit_service.repository.model import Entity, Repository
from context_kit_service.repository.types import EntityTypeName
from context_kit_service.tools.confinement import ConfinementError, confine

RepoRoot = Annotated[str, InjectedState("repo_root")]
ApprovalKey = Annotated[str, InjectedState("approval_key")]
"""The pause that approved a write ("" for none): its change is applied once per pause."""

MAX_RESULTS = 50
_WORD = re.compile(r"[a-z0-9]+")


def _root(repo_root: str) -> Path:
    if not repo_root:
        raise ConfinementError("no repository is set for this request")
    return Path(repo_root)


def _repository(repo_root: str) -> Repository:
    return repositories.get(_root(repo_root))


def _entity(repo: Repository, entity_id: str) -> Entity:
    """The entity by id, also when a model wrote the id as it cites one: `[FEAT-001]`."""
    entity = repo.entities.get(entity_id.strip().removeprefix("[").removesuffix("]"))
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


# --- reading ---------------------------------------------------------------------------------


@tool
def read_context(
    repo_root: RepoRoot,
    config: RunnableConfig,
    path: str | None = None,
    entity_id: str | None = None,
    format: Literal["text", "markdown"] | None = None,
    encoding: Literal["utf-8", "utf8"] = "utf-8",
) -> dict[str, Any]:
    """Read one file of the context repository, by repository-relative path
    (e.g. "contexts/features/FEAT-001-login.yaml" or "docs/architecture.md") or by entity id
    (e.g. "FEAT-001"). Give exactly one of the two. Returns the path, the file's `contents`
    and its encoding (files are UTF-8 text; `format` is accepted and changes nothing)."""
    max_bytes = service_settings(config).max_file_bytes
    if (path is None) == (entity_id is None):
        raise ToolException("give exactly one of path or entity_id")
    root = Path(repo_root)
    if entity_id is not None:
        path = _entity(_repository(repo_root), entity_id).path
    assert path is not None
    target = confine(root, path, max_bytes=max_bytes)
    try:
        contents = read_text(root, target, max_bytes)
    except FileRefused as exc:
        raise ConfinementError(f"{path}: {exc}") from None
    relative = target.relative_to(root.resolve()).as_posix()
    return {"path": relative, "contents": contents, "encoding": "utf-8"}


@tool
def list_entities(
    repo_root: RepoRoot,
    entity_type: EntityTypeName | None = None,
    status: Annotated[
        str | None,
        Field(
            description="Only entities with this status, when the request names one: todo, "
            "doing, blocked, in-progress, done, proposed, draft, ratified..."
        ),
    ] = None,
) -> dict[str, Any]:
    """List entities of the context repository, optionally only one type (feature, userstory,
    spec, task, service, package, governance) and/or one status (e.g. "in-progress", "todo").
    Returns id, type, title, status and file path of each."""
    repo = _repository(repo_root)
    chosen = [
        _summary(e)
        for e in sorted(repo.entities.values(), key=lambda e: (e.type, e.id))
        if (entity_type is None or e.type == entity_type) and (status is None or e.status == status)
    ]
    return {"count": len(chosen), "entities": chosen}


@tool
def search_entities(
    repo_root: RepoRoot,
    query: Annotated[str, Field(min_length=1, max_length=1000)],
    entity_type: EntityTypeName | None = None,
    limit: Annotated[int, Field(ge=1, le=MAX_RESULTS)] = 10,
) -> dict[str, Any]:
    """Search the context repository's entities for words (case-insensitive, title matches
    rank higher). Optionally restrict to one entity type. Returns the best matches first."""
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
    hits = [{**_summary(e), "score": s} for s, e in scored[:limit]]
    return {"query": query, "count": len(hits), "results": hits}


@tool
def get_entity(repo_root: RepoRoot, entity_id: str) -> dict[str, Any]:
    """Get one entity by id (e.g. "US-003") with all its fields, the entities it links to
    (outgoing) and the entities that link to it (incoming)."""
    repo = _repository(repo_root)
    entity = _entity(repo, entity_id)
    return {**_summary(entity), "data": entity.data, "relations": repo.relations(entity.id)}


@tool
def validate_repository(repo_root: RepoRoot) -> dict[str, Any]:
    """Validate the whole context repository: every entity against its type's JSON schema,
    every link between entities, and every file's YAML. Returns a report with schema errors,
    reference errors, load errors and totals by type."""
    return _repository(repo_root).validate()


@tool
def dependency_graph(
    repo_root: RepoRoot, entity_type: EntityTypeName | None = None
) -> dict[str, Any]:
    """The relation graph of the context repository: entities as nodes and their links
    (userStories, specs, tasks, requires, feature, related.*, dependencies, consumers, ...)
    as edges. Optionally only the nodes of one type and their edges."""
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
def impact_analysis(
    repo_root: RepoRoot,
    entity_id: str | None = None,
    changed_ids: Annotated[list[str] | None, Field(min_length=1, max_length=MAX_RESULTS)] = None,
    max_depth: Annotated[int, Field(ge=1, le=10)] = 3,
) -> dict[str, Any]:
    """What is affected when entities change: the entities that depend on them, directly
    (depth 1) and through others (up to max_depth), nearest first. Give `entity_id` for one
    entity or `changed_ids` for several."""
    if (entity_id is None) == (changed_ids is None):
        raise ToolException("give exactly one of entity_id or changed_ids")
    repo = _repository(repo_root)
    changed = [_entity(repo, i) for i in (changed_ids or [entity_id or ""])]
    seen = {e.id for e in changed}
    affected = []
    for entity in changed:
        for item in repo.impact(entity.id, max_depth=max_depth):
            if item["id"] not in seen:
                seen.add(item["id"])
                affected.append(item)
    affected.sort(key=lambda item: item["depth"])
    summary: dict[str, Any] = {"count": len(affected), "affected": affected}
    if changed_ids is None:
        return {"entity": _summary(changed[0]), **summary}
    return {"changed": [_summary(e) for e in changed], **summary}


@tool
def next_id(repo_root: RepoRoot, entity_type: EntityTypeName) -> dict[str, str]:
    """The next free id for an entity type (e.g. "T-011" after "T-010")."""
    repo = _repository(repo_root)
    return {"entityType": entity_type, "id": repo.next_id(entity_type)}


def _bundle(repo: Repository, entity: Entity) -> dict[str, Any]:
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
def build_context_bundle(
    repo_root: RepoRoot,
    entity_id: str | None = None,
    ids: Annotated[list[str] | None, Field(min_length=1, max_length=MAX_RESULTS)] = None,
) -> dict[str, Any]:
    """Assemble everything needed to work on an entity: its fields, every entity it links to
    or is linked from (with their fields), and its type's JSON schema. Give `entity_id` for
    one entity or `ids` for several (then `bundles`, one per id)."""
    if (entity_id is None) == (ids is None):
        raise ToolException("give exactly one of entity_id or ids")
    repo = _repository(repo_root)
    if ids is None:
        return _bundle(repo, _entity(repo, entity_id or ""))
    return {"bundles": [_bundle(repo, _entity(repo, i)) for i in ids]}


# --- writing ---------------------------------------------------------------------------------


def _write_settings(config: RunnableConfig) -> Path:
    settings = service_settings(config)
    if not settings.allow_writes:
        raise ToolException("writing to the repository is disabled (CKS_ALLOW_WRITES=false)")
    return settings.data_dir


@tool
def create_entity(
    repo_root: RepoRoot,
    config: RunnableConfig,
    entity_type: str,
    fields: dict[str, Any],
    approval_key: ApprovalKey = "",
) -> dict[str, Any]:
    """Create a new entity file in the context repository. `fields` are the entity's fields
    (without an id: the next free id is assigned). The entity is validated against its
    schema and links before anything is written; a new user story, spec or task is also
    added to its feature's list. Needs the user's approval."""
    data_dir = _write_settings(config)
    key = change_key(approval_key, "create_entity", {"type": entity_type, "fields": fields})
    try:
        saved = writes.create_entity(_root(repo_root), data_dir, entity_type, fields, key=key)
        return saved.as_dict()
    except writes.WriteRefused as exc:
        raise ToolException(str(exc)) from None


@tool
def patch_entity(
    repo_root: RepoRoot,
    config: RunnableConfig,
    entity_id: str,
    changes: dict[str, Any],
    approval_key: ApprovalKey = "",
) -> dict[str, Any]:
    """Change fields of an existing entity. `changes` is merged into the entity (nested
    objects are merged too; a null value removes the field). Comments and key order in the
    file are kept. Validated before writing. Needs the user's approval."""
    data_dir = _write_settings(config)
    key = change_key(approval_key, "patch_entity", {"id": entity_id, "changes": changes})
    try:
        saved = writes.patch_entity(_root(repo_root), data_dir, entity_id, changes, key=key)
    except writes.WriteRefused as exc:
        raise ToolException(str(exc)) from None
    return {"id": saved.entity.id, "path": saved.entity.path, "entity": saved.entity.data}


@tool
def write_patch(
    repo_root: RepoRoot,
    config: RunnableConfig,
    path: str,
    patch: Annotated[str, Field(min_length=1, max_length=200_000)],
    summary: str | None = None,
    approval_key: ApprovalKey = "",
) -> dict[str, Any]:
    """Apply a unified diff (`patch`) to one file of the repository (`path`, repository
    relative). Every hunk must apply; otherwise the file is left untouched and `conflicts`
    lists the hunks that do not. Needs the user's approval."""
    data_dir = _write_settings(config)
    root = Path(repo_root)
    max_bytes = service_settings(config).max_file_bytes
    target = confine(root, path, max_bytes=max_bytes)
    key = change_key(approval_key, "write_patch", {"path": path, "patch": patch})
    try:
        patched = writes.apply_patch(root, data_dir, target, patch, max_bytes, key=key)
    except (writes.WriteRefused, FileRefused) as exc:
        raise ToolException(str(exc)) from None
    result: dict[str, Any] = {
        "path": patched.path,
        "applied": patched.applied,
        "conflicts": patched.conflicts,
    }
    return result | ({"summary": summary} if summary else {})
