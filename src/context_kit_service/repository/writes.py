"""The one write path for entities: every create and patch, from any route, comes through here.

- An id must be safe as a file name (`SAFE_ID`) and match its type's pattern: the repository
  schema's `properties.id.pattern`, else the built-in `<PREFIX>-<digits>`.
- The file must land directly in its type's folder under `contexts/`, and that folder must be
  the real one (not a symlink elsewhere); nothing is ever written under `.git`.
- Files are written atomically (temporary file, fsync, rename).
- Writers of one repository are serialised, threads and processes alike, by a lock file in the
  service's data dir. Under the lock the repository is read as it is now: the id is allocated,
  back-links are added and the entity is validated against that state, so a write approved
  against an older state is checked again rather than applied blindly.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from filelock import FileLock, Timeout

from context_kit_service.repository.cache import repositories
from context_kit_service.repository.files import FileRefused, data_name, is_inside, read_text
from context_kit_service.repository.model import CONTEXTS_DIR, Entity, Problem, Repository
from context_kit_service.repository.types import SAFE_ID, EntityType, entity_type
from context_kit_service.repository.yaml_io import (
    BoundsExceeded,
    check_bounds,
    dump_new,
    dump_round_trip,
    load_round_trip,
    load_yaml,
    merge_into,
    write_atomic,
)

LOCK_TIMEOUT_S = 30.0
_WORD = re.compile(r"[a-z0-9]+")


class WriteRefused(ValueError):
    """A write that was not made; the message says what to change."""


@dataclass(frozen=True)
class Saved:
    entity: Entity
    updated: list[str]
    """Features whose back-link list now names the entity."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.entity.id,
            "path": self.entity.path,
            "entity": self.entity.data,
            "updated": self.updated,
        }


# --- the lock --------------------------------------------------------------------------------

_process_locks: dict[Path, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def lock_path(data_dir: Path, root: Path) -> Path:
    return data_dir / "locks" / f"{data_name(root)}.lock"


@contextmanager
def repository_lock(root: Path, data_dir: Path) -> Iterator[None]:
    """Hold the write lock of `root` (a thread lock, then the cross-process file lock)."""
    path = lock_path(data_dir, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _process_locks_guard:
        local = _process_locks.setdefault(path, threading.Lock())
    if not local.acquire(timeout=LOCK_TIMEOUT_S):
        raise WriteRefused("the repository is busy with another write; try again")
    try:
        with FileLock(path, timeout=LOCK_TIMEOUT_S):
            yield
    except Timeout:
        raise WriteRefused("the repository is busy with another write; try again") from None
    finally:
        local.release()


# --- ids and paths ---------------------------------------------------------------------------


def id_pattern(repo: Repository, kind: EntityType) -> re.Pattern[str]:
    """The pattern ids of `kind` must match in `repo`: its schema's, else the built-in one."""
    declared = ((repo.schemas[kind.name].get("properties") or {}).get("id") or {}).get("pattern")
    if isinstance(declared, str):
        try:
            return re.compile(declared)
        except re.error:
            pass
    return kind.id_pattern


def check_id(repo: Repository, kind: EntityType, entity_id: Any) -> str:
    if not isinstance(entity_id, str) or not SAFE_ID.fullmatch(entity_id):
        raise WriteRefused(
            f"id {str(entity_id)[:100]!r} is not allowed: use letters, digits, '-' and '_' "
            "(at most 80, starting with a letter or digit)"
        )
    pattern = id_pattern(repo, kind)
    if not pattern.search(entity_id):
        raise WriteRefused(
            f"id {entity_id!r} does not match the {kind.name} id pattern {pattern.pattern}"
        )
    return entity_id


def entity_file(root: Path, kind: EntityType, name: str) -> tuple[Path, str]:
    """The absolute and repository-relative path of file `name` in `kind`'s folder, or refuse."""
    relative = f"{CONTEXTS_DIR}/{kind.folder}/{name}"
    if PurePosixPath(name).name != name or name in ("", ".", ".."):
        raise WriteRefused(f"not a file name: {name!r}")
    base = root.resolve()
    folder = base / CONTEXTS_DIR / kind.folder
    if (folder.exists() or folder.is_symlink()) and (
        folder.resolve() != folder or not folder.is_dir()
    ):
        raise WriteRefused(f"{CONTEXTS_DIR}/{kind.folder} is not a folder of the repository")
    target = folder / name
    if not is_inside(target, base) or ".git" in target.relative_to(base).parts:
        raise WriteRefused(f"{relative} is outside the repository's entity folders")
    return target, relative


def _slug(text: str) -> str:
    return "-".join(_WORD.findall(text.lower()))[:48].strip("-") or "entity"


def _problems_text(problems: list[Problem]) -> str:
    return "; ".join(f"{p.field or 'entity'}: {p.message}" for p in problems[:10])


def _plain(value: Any) -> Any:
    """Round-trip YAML values as plain dicts, lists and strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _edit_file(target: Path, root: Path, changes: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The file's round-trip document with `changes` merged in, and the same as plain data."""
    try:
        text = read_text(root, target)
        load_yaml(text)  # the bounds first: the round-trip loader has none
    except (FileRefused, BoundsExceeded) as exc:
        raise WriteRefused(f"{target.name} cannot be edited: {exc}") from None
    document = load_round_trip(text)
    merge_into(document, changes)
    return document, _plain(document)


# --- writes ----------------------------------------------------------------------------------


def create_entity(
    root: Path,
    data_dir: Path,
    type_name: str,
    fields: dict[str, Any],
    *,
    provisional_id: str | None = None,
) -> Saved:
    """Write a new entity and add it to its feature's list.

    Without an `id` in `fields` (or with `provisional_id`, an id handed out earlier that may be
    taken by now) the next free id is allocated; a given id must be free.
    """
    try:
        kind = entity_type(type_name)
        check_bounds(fields)
    except (ValueError, BoundsExceeded) as exc:
        raise WriteRefused(str(exc)) from None
    with repository_lock(root, data_dir):
        repo = repositories.current(root)
        given = fields.get("id")
        if given is None or given == provisional_id:
            entity_id = repo.next_id(kind.name)
        else:
            entity_id = check_id(repo, kind, given)
            if entity_id in repo.entities:
                raise WriteRefused(
                    f"id {entity_id} already exists; the next free id is {repo.next_id(kind.name)}"
                )
        data = {"id": entity_id, **{k: v for k, v in fields.items() if k != "id"}}
        title = Entity(entity_id, kind.name, "", data).title
        target, relative = entity_file(root, kind, f"{entity_id}-{_slug(title)}.yaml")
        if target.exists() or target.is_symlink():
            raise WriteRefused(f"{relative} already exists")
        entity = Entity(entity_id, kind.name, relative, data)
        features = repo.backlinked_features(entity)
        problems = repo.with_entities(entity, *features).check_entity(kind.name, data, relative)
        if problems:
            raise WriteRefused(f"{kind.name} is not valid: {_problems_text(problems)}")
        link = kind.feature_link
        edits = []
        for feature in features:
            assert link is not None
            assert link.backlink is not None
            feature_kind = entity_type("feature")
            feature_target, _ = entity_file(root, feature_kind, PurePosixPath(feature.path).name)
            changes = {link.backlink: feature.data[link.backlink]}
            edits.append((feature_target, _edit_file(feature_target, root, changes)[0]))
        try:
            write_atomic(target, dump_new(data))
            for feature_target, document in edits:
                write_atomic(feature_target, dump_round_trip(document))
        finally:
            repositories.forget(root)
    return Saved(entity, [f.id for f in features])


def patch_entity(root: Path, data_dir: Path, entity_id: str, changes: dict[str, Any]) -> Saved:
    """Merge `changes` into an existing entity (a None value removes a field), keeping the
    file's comments and key order; validated against the repository as it is now."""
    try:
        check_bounds(changes)
    except BoundsExceeded as exc:
        raise WriteRefused(str(exc)) from None
    with repository_lock(root, data_dir):
        repo = repositories.current(root)
        entity = repo.entities.get(entity_id.strip())
        if entity is None:
            raise WriteRefused(f"no entity with id {entity_id[:100]!r}")
        if "id" in changes and changes["id"] != entity.id:
            raise WriteRefused("the id of an entity cannot be changed")
        kind = entity_type(entity.type)
        target, relative = entity_file(root, kind, PurePosixPath(entity.path).name)
        if relative != entity.path:
            raise WriteRefused(f"{entity.path} is outside the repository's entity folders")
        document, plain = _edit_file(target, root, changes)
        problems = repo.check_entity(entity.type, plain, entity.path)
        if problems:
            raise WriteRefused(f"{entity.id} would not be valid: {_problems_text(problems)}")
        try:
            write_atomic(target, dump_round_trip(document))
        finally:
            repositories.forget(root)
    return Saved(Entity(entity.id, entity.type, entity.path, plain), [])


@dataclass
class Patched:
    """The outcome of a unified diff: applied, or the hunks that do not apply (file untouched)."""

    path: str
    applied: bool
    conflicts: list[str]


def apply_patch(root: Path, data_dir: Path, target: Path, diff: str, max_bytes: int) -> Patched:
    """Apply the unified `diff` (one file's: parsed by `whatthepatch`) to `target`, a file
    inside `root`. Every hunk must apply to the file as it is now; otherwise nothing is written
    and each conflicting hunk is listed. A YAML file must still parse afterwards."""
    import whatthepatch
    from whatthepatch.exceptions import HunkApplyException
    from whatthepatch.patch import diffobj

    parsed = [d for d in whatthepatch.parse_patch(diff) if d.changes]
    if len(parsed) != 1:
        raise WriteRefused(f"the patch must change exactly one file; it changes {len(parsed)}")
    relative = target.relative_to(root.resolve()).as_posix()
    with repository_lock(root, data_dir):
        text = read_text(root, target, max_bytes)
        changes = parsed[0].changes
        conflicts = []
        for hunk in sorted({c.hunk for c in changes}):
            single = diffobj(parsed[0].header, [c for c in changes if c.hunk == hunk], None)
            try:
                whatthepatch.apply_diff(single, text)
            except HunkApplyException as exc:
                conflicts.append(f"hunk {hunk}: {exc}")
        if conflicts:
            return Patched(relative, False, conflicts)
        lines = whatthepatch.apply_diff(parsed[0], text)
        patched = "\n".join(lines) + ("\n" if text.endswith("\n") or not text else "")
        if target.suffix in (".yaml", ".yml"):
            try:
                load_yaml(patched)
            except (yaml.YAMLError, BoundsExceeded) as exc:
                problem = str(exc).splitlines()[0]
                return Patched(relative, False, [f"the patched file is not valid YAML: {problem}"])
        try:
            write_atomic(target, patched)
        finally:
            repositories.forget(root)
    return Patched(relative, True, [])
