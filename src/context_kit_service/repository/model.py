"""Loading a context repository and answering questions about it.

A `Repository` is an immutable snapshot: entities by id, Markdown documents, load problems,
and the relation graph. Validation checks each entity against the repository's own
`.context/schemas/<type>.schema.json` (or the built-in schema) and checks every link.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from jsonschema import Draft7Validator

from context_kit_service.repository.derived import IGNORE_FILES, GeneratedRules, named_ids
from context_kit_service.repository.files import DEFAULT_MAX_FILE_BYTES, FileRefused, read_text
from context_kit_service.repository.patterns import check_schema_patterns, validator_class
from context_kit_service.repository.types import (
    ENTITY_TYPES,
    TYPE_BY_FOLDER,
    EntityType,
    Link,
    builtin_schema,
    entity_type,
)
from context_kit_service.repository.yaml_io import BoundsExceeded, describe_yaml_error, load_yaml

CONTEXTS_DIR = "contexts"
SCHEMAS_DIR = ".context/schemas"
DOCUMENT_SUFFIXES = (".md", ".markdown")
SKIPPED_DIRS = {".git", "node_modules", ".venv", "__pycache__"}
Signature = tuple[tuple[str, int, int, int], ...]
"""(path, size, mtime, inode) of every file a repository's model reads: a cheap change
detector (an atomic write always makes a new inode, even within one mtime tick)."""


@dataclass(frozen=True)
class Entity:
    id: str
    type: str
    path: str
    """Repository-relative POSIX path of the YAML file."""
    data: dict[str, Any]

    @property
    def title(self) -> str:
        for key in ("title", "name", "iWant"):
            value = self.data.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return self.id

    @property
    def status(self) -> str | None:
        value = self.data.get("status")
        return str(value) if value is not None else None


@dataclass(frozen=True)
class Document:
    path: str
    title: str
    text: str
    names: tuple[str, ...] = ()
    """Entity ids the document names (file name, front matter, first heading): see `derived`."""
    generated: bool = False
    """Under a generated folder or matched by `.contextignore`/`.gitignore`."""

    @property
    def derived(self) -> bool:
        return self.generated or bool(self.names)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    relation: str


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    entity_id: str | None = None
    field: str | None = None
    target: str | None = None

    def as_dict(self) -> dict[str, str]:
        item = {"file": self.file, "message": self.message}
        optional = {"entityId": self.entity_id, "field": self.field, "target": self.target}
        item.update({key: value for key, value in optional.items() if value is not None})
        return item


def _get_path(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def link_ids(data: dict[str, Any], link: Link) -> list[str]:
    """The ids held by `link` in an entity (strings only; other values are reported by schema)."""
    value = _get_path(data, link.path)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [item.strip() for item in values if isinstance(item, str) and item.strip()]


@dataclass
class Repository:
    root: Path
    entities: dict[str, Entity]
    documents: list[Document]
    load_problems: list[Problem]
    schemas: dict[str, dict[str, Any]]
    schema_sources: dict[str, str]
    signature: Signature = field(default=(), repr=False)

    # --- queries ---------------------------------------------------------------------------

    def by_type(self, type_name: str) -> list[Entity]:
        return sorted(
            (e for e in self.entities.values() if e.type == type_name), key=lambda e: e.id
        )

    def totals(self) -> dict[str, int]:
        counts = Counter(entity.type for entity in self.entities.values())
        return {name: counts.get(name, 0) for name in ENTITY_TYPES}

    def next_id(self, type_name: str) -> str:
        kind = entity_type(type_name)
        numbers = [
            int(match.group(1))
            for entity_id in self.entities
            if (match := kind.id_pattern.match(entity_id))
        ]
        return kind.format_id(max(numbers, default=0) + 1)

    @cached_property
    def edges(self) -> list[Edge]:
        """Every link between entities (links to unknown ids included)."""
        found = []
        for entity in self.entities.values():
            for link in ENTITY_TYPES[entity.type].links:
                for target in link_ids(entity.data, link):
                    found.append(Edge(entity.id, target, link.name))
        return found

    @cached_property
    def _downstream(self) -> dict[str, list[tuple[str, str]]]:
        """Who is affected when an entity changes: id -> [(affected id, relation)]."""
        graph: dict[str, list[tuple[str, str]]] = defaultdict(list)
        links: dict[tuple[str, str], Link] = {
            (kind.name, link.name): link for kind in ENTITY_TYPES.values() for link in kind.links
        }
        for edge in self.edges:
            if edge.target not in self.entities:
                continue
            link = links[(self.entities[edge.source].type, edge.relation)]
            if link.downstream == "target":
                graph[edge.source].append((edge.target, edge.relation))
            else:
                graph[edge.target].append((edge.source, edge.relation))
        return graph

    def relations(self, entity_id: str) -> dict[str, list[dict[str, str]]]:
        """An entity's outgoing links and the entities linking to it."""
        outgoing = [
            {"relation": e.relation, "id": e.target} for e in self.edges if e.source == entity_id
        ]
        incoming = [
            {"relation": e.relation, "id": e.source} for e in self.edges if e.target == entity_id
        ]
        return {"outgoing": outgoing, "incoming": incoming}

    def impact(self, entity_id: str, max_depth: int = 3) -> list[dict[str, Any]]:
        """Entities affected when `entity_id` changes, nearest first (breadth-first)."""
        seen = {entity_id}
        queue: deque[tuple[str, int]] = deque([(entity_id, 0)])
        affected: list[dict[str, Any]] = []
        while queue:
            current, depth = queue.popleft()
            if depth >= max_depth:
                continue
            for neighbour, relation in self._downstream.get(current, []):
                if neighbour in seen:
                    continue
                seen.add(neighbour)
                entity = self.entities[neighbour]
                affected.append(
                    {
                        "id": neighbour,
                        "type": entity.type,
                        "title": entity.title,
                        "depth": depth + 1,
                        "via": current,
                        "relation": relation,
                    }
                )
                queue.append((neighbour, depth + 1))
        return affected

    def with_entities(self, *changed: Entity) -> Repository:
        """A view of this repository with `changed` entities added or replaced (not written)."""
        entities = dict(self.entities)
        entities.update({entity.id: entity for entity in changed})
        view = replace(self, entities=entities)
        view.__dict__["_validators"] = self._validators  # same schemas: share the compiled ones
        return view

    def backlinked_features(self, entity: Entity) -> list[Entity]:
        """Features that must list a new story, spec or task for links to stay two-way,
        updated in memory to list it (an entity of a type with no feature link has none)."""
        link = ENTITY_TYPES[entity.type].feature_link
        if link is None or link.backlink is None:
            return []
        updated = []
        for feature_id in link_ids(entity.data, link):
            feature = self.entities.get(feature_id)
            if feature is None or feature.type != "feature":
                continue
            raw = feature.data.get(link.backlink)
            listed = list(raw) if isinstance(raw, list) else []
            if entity.id not in listed:
                data = {**feature.data, link.backlink: [*listed, entity.id]}
                updated.append(Entity(feature.id, "feature", feature.path, data))
        return updated

    # --- validation ------------------------------------------------------------------------

    @cached_property
    def _validators(self) -> dict[str, Draft7Validator]:
        validator = validator_class()  # jsonschema loads on first validation, not at startup
        return {name: validator(schema) for name, schema in self.schemas.items()}

    def schema_problems(self, entity: Entity) -> list[Problem]:
        problems = []
        validator = self._validators[entity.type]
        for error in sorted(validator.iter_errors(entity.data), key=lambda e: list(e.path)):
            location = ".".join(str(part) for part in error.absolute_path) or None
            problems.append(Problem(entity.path, error.message, entity.id, location))
        return problems

    def reference_problems(self, entity: Entity) -> list[Problem]:
        problems = []
        for link in ENTITY_TYPES[entity.type].links:
            for target in link_ids(entity.data, link):
                linked = self.entities.get(target)
                if linked is None:
                    problems.append(
                        Problem(
                            entity.path,
                            f"{link.name} links to {target}, which does not exist",
                            entity.id,
                            link.name,
                            target,
                        )
                    )
                elif linked.type not in link.targets:
                    wanted = " or ".join(link.targets)
                    problems.append(
                        Problem(
                            entity.path,
                            f"{link.name} links to {target}, a {linked.type}; expected a {wanted}",
                            entity.id,
                            link.name,
                            target,
                        )
                    )
        feature_link = ENTITY_TYPES[entity.type].feature_link
        for feature in self.backlinked_features(entity):
            assert feature_link is not None
            assert feature_link.backlink is not None
            problems.append(
                Problem(
                    entity.path,
                    f"feature {feature.id} does not list {entity.id} in {feature_link.backlink}",
                    entity.id,
                    feature_link.name,
                    feature.id,
                )
            )
        return problems

    def validate(self) -> dict[str, Any]:
        """A structured report: schema errors, cross-reference errors, load errors, totals."""
        ordered = sorted(self.entities.values(), key=lambda e: (e.type, e.id))
        schema_errors = [p.as_dict() for e in ordered for p in self.schema_problems(e)]
        reference_errors = [p.as_dict() for e in ordered for p in self.reference_problems(e)]
        load_errors = [p.as_dict() for p in self.load_problems]
        return {
            "valid": not (schema_errors or reference_errors or load_errors),
            "totals": self.totals(),
            "entityCount": len(self.entities),
            "documentCount": len(self.documents),
            "schemaSources": self.schema_sources,
            "schemaErrors": schema_errors,
            "referenceErrors": reference_errors,
            "loadErrors": load_errors,
        }

    def check_entity(self, type_name: str, data: dict[str, Any], path: str) -> list[Problem]:
        """Problems a new or changed entity would have (schema and links), before writing it."""
        entity = Entity(str(data.get("id", "")), type_name, path, data)
        return self.schema_problems(entity) + self.reference_problems(entity)


def builtin_repository() -> Repository:
    """No repository at all: no entities, and each type's built-in schema with its links
    optional (a draft made without a repository is checked against its schema; its links
    cannot be checked)."""
    schemas = {}
    for name, kind in ENTITY_TYPES.items():
        schema = dict(builtin_schema(name))
        links = {link.path[0] for link in kind.links}
        schema["required"] = [f for f in schema.get("required", []) if f not in links]
        schemas[name] = schema
    return Repository(Path(), {}, [], [], schemas, dict.fromkeys(ENTITY_TYPES, "built-in"))


# --- loading ---------------------------------------------------------------------------------


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _load_schemas(
    root: Path, problems: list[Problem], max_bytes: int
) -> tuple[dict[str, Any], dict[str, str]]:
    from jsonschema import Draft7Validator

    schemas: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in ENTITY_TYPES:
        path = root / SCHEMAS_DIR / f"{name}.schema.json"
        schemas[name], sources[name] = builtin_schema(name), "built-in"
        if os.path.lexists(path):
            try:
                schema = json.loads(read_text(root, path, max_bytes))
                if not isinstance(schema, dict):
                    raise ValueError("a schema must be a JSON object")
                Draft7Validator.check_schema(schema)
                check_schema_patterns(schema)
            except FileRefused as exc:
                problems.append(Problem(_relative(root, path), f"schema not read: {exc}"))
            except (ValueError, RecursionError) as exc:
                problems.append(Problem(_relative(root, path), f"unusable schema: {exc}"))
            except Exception as exc:  # jsonschema.SchemaError and friends
                problems.append(Problem(_relative(root, path), f"invalid JSON schema: {exc}"))
            else:
                schemas[name], sources[name] = schema, _relative(root, path)
    return schemas, sources


def _entity_files(root: Path) -> list[tuple[EntityType, Path]]:
    found = []
    contexts = root / CONTEXTS_DIR
    for folder, kind in TYPE_BY_FOLDER.items():
        directory = contexts / folder
        if not directory.is_dir():
            continue
        for entry in os.scandir(directory):
            if entry.name.endswith((".yaml", ".yml")) and not entry.is_dir(follow_symlinks=False):
                found.append((kind, Path(entry.path)))
    return sorted(found, key=lambda item: item[1])


def _document_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
        found.extend(Path(directory) / n for n in names if n.endswith(DOCUMENT_SUFFIXES))
    return sorted(found)


def _markdown_title(path: Path, text: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def repository_signature(root: Path) -> Signature:
    """Cheap fingerprint of every file the model reads (path, size, mtime in ns)."""
    return scan_repository(root)[0]


def scan_repository(root: Path) -> tuple[Signature, tuple[str, ...]]:
    """The signature, and every directory read to make it (what a watch must follow).

    Runs before a query when nothing watches the repository, so it sticks to
    `os.scandir`/`os.stat` on plain strings.
    """
    base = str(root)
    prefix = len(base) + 1
    found: list[tuple[str, int, int, int]] = []
    directories: list[str] = []

    def add(path: str) -> None:
        try:
            info = os.stat(path)
        except OSError:
            return
        found.append((path[prefix:], info.st_size, info.st_mtime_ns, info.st_ino))

    contexts = os.path.join(base, CONTEXTS_DIR)
    for folder in sorted(TYPE_BY_FOLDER):
        directory = os.path.join(contexts, folder)
        try:
            entries = sorted(
                e.path for e in os.scandir(directory) if e.name.endswith((".yaml", ".yml"))
            )
        except OSError:
            continue
        directories.append(directory)
        for path in entries:
            add(path)
    for directory, dirs, names in os.walk(base):
        directories.append(directory)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(names):
            if name.endswith(DOCUMENT_SUFFIXES):
                add(os.path.join(directory, name))
    for name in IGNORE_FILES:
        add(os.path.join(base, name))
    schema_dir = os.path.join(base, SCHEMAS_DIR)
    if os.path.isdir(os.path.dirname(schema_dir)):
        directories.append(os.path.dirname(schema_dir))
    if os.path.isdir(schema_dir):
        directories.append(schema_dir)
        for name in sorted(os.listdir(schema_dir)):
            if name.endswith(".schema.json"):
                add(os.path.join(schema_dir, name))
    return tuple(found), tuple(sorted(set(directories)))


def load_repository(root: Path | str, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Repository:
    """Load every entity and document under `root`. Problems are collected, never raised: a
    file that cannot be read safely (see `files.read_text`) or parsed within bounds
    (`yaml_io.load_yaml`) is one problem for that file."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"repository not found: {root}")
    problems: list[Problem] = []
    schemas, sources = _load_schemas(root, problems, max_file_bytes)
    entities: dict[str, Entity] = {}
    for kind, path in _entity_files(root):
        relative = _relative(root, path)
        try:
            data = load_yaml(read_text(root, path, max_file_bytes))
        except FileRefused as exc:
            problems.append(Problem(relative, f"file not read: {exc}"))
            continue
        except BoundsExceeded as exc:
            problems.append(Problem(relative, f"YAML refused: {exc}"))
            continue
        except yaml.YAMLError as exc:
            problems.append(Problem(relative, describe_yaml_error(exc)))
            continue
        if not isinstance(data, dict):
            problems.append(Problem(relative, "expected a mapping of fields at the top level"))
            continue
        raw_id = data.get("id")
        if not isinstance(raw_id, str | int) or not str(raw_id).strip():
            problems.append(Problem(relative, "missing id"))
            continue
        entity_id = str(raw_id).strip()
        if entity_id in entities:
            problems.append(
                Problem(
                    relative,
                    f"duplicate id {entity_id} (also in {entities[entity_id].path})",
                    entity_id,
                )
            )
            continue
        entities[entity_id] = Entity(entity_id, kind.name, relative, data)
    rules = _generated_rules(root, problems, max_file_bytes)
    documents = []
    for path in _document_files(root):
        relative = _relative(root, path)
        try:
            text = read_text(root, path, max_file_bytes)
        except FileRefused as exc:
            problems.append(Problem(relative, f"file not read: {exc}"))
            continue
        documents.append(
            Document(
                relative,
                _markdown_title(path, text),
                text,
                named_ids(relative, text),
                rules.generated(relative),
            )
        )
    return Repository(root, entities, documents, problems, schemas, sources)


def _generated_rules(root: Path, problems: list[Problem], max_bytes: int) -> GeneratedRules:
    texts = []
    for name in IGNORE_FILES:
        path = root / name
        if not os.path.lexists(path):
            continue
        try:
            texts.append(read_text(root, path, max_bytes))
        except FileRefused as exc:
            problems.append(Problem(name, f"file not read: {exc}"))
    return GeneratedRules.from_texts(texts)
