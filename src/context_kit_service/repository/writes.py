"""The one write path for entities: every create and patch, from any route, comes through here.

- An id must be safe as a file name (`SAFE_ID`) and match its type's pattern: the repository
  schema's `properties.id.pattern`, else the built-in `<PREFIX>-<digits>`.
- The file must land directly in its type's folder under `contexts/`, and that folder must be
  the real one (not a symlink elsewhere); nothing is ever written under `.git` or any other
  git dir, and a rewritten file keeps its mode.
- A change is one unit of the write journal (`journal.py`): its files land all or none, and a
  change that answers an approval (its `key`) lands once, however often it is sent.
- Writers of one repository are serialised, threads and processes alike, by a lock file in the
  service's data dir. Under the lock the repository is read as it is now: the id is allocated,
  back-links are added and the entity is validated against that state, so a write approved
  against an older state is checked again rather than applied blindly.
- Patches are bounded: text only, at most `MAX_HUNKS` hunks, checked in one linear pass.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from filelock import FileLock, Timeout

from context_kit_service.repository.cache import repositories
from context_kit_service.repository.files import FileRefused, data_name, is_inside, read_text
from context_kit_service.repository.journal import FileWrite, Journal, storage_error
from context_kit_service.repository.model import CONTEXTS_DIR, Entity, Problem, Repository
from context_kit_service.repository.patterns import safe_pattern
from context_kit_service.repository.types import ENTITY_TYPES, SAFE_ID, EntityType, entity_type
from context_kit_service.repository.yaml_io import (
    BoundsExceeded,
    check_bounds,
    dump_new,
    dump_round_trip,
    load_round_trip,
    load_yaml,
    merge_into,
)

LOCK_TIMEOUT_S = 30.0
MAX_HUNKS = 2_000
"""Most hunks one patch may have (a diff of a whole 1 MB file has a few hundred)."""
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

    def record(self) -> dict[str, Any]:
        """What the journal keeps to answer the same approval again."""
        return {**self.as_dict(), "type": self.entity.type}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Saved:
        entity = Entity(record["id"], record["type"], record["path"], record["entity"])
        return cls(entity, record["updated"])


# --- the lock --------------------------------------------------------------------------------

_process_locks: dict[Path, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def lock_path(data_dir: Path, root: Path) -> Path:
    return data_dir / "locks" / f"{data_name(root)}.lock"


@contextmanager
def repository_lock(root: Path, data_dir: Path) -> Iterator[None]:
    """Hold the write lock of `root` (a thread lock, then the cross-process file lock)."""
    path = lock_path(data_dir, root)
    with _process_locks_guard:
        local = _process_locks.setdefault(path, threading.Lock())
    if not local.acquire(timeout=LOCK_TIMEOUT_S):
        raise WriteRefused("the repository is busy with another write; try again")
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(path, timeout=LOCK_TIMEOUT_S)
            lock.acquire()
        except OSError as exc:
            raise storage_error(exc, "the data dir") from None
        try:
            yield
        finally:
            lock.release()
    except Timeout:
        raise WriteRefused("the repository is busy with another write; try again") from None
    finally:
        local.release()


@contextmanager
def writing(root: Path, data_dir: Path) -> Iterator[Journal]:
    """Hold the write lock of `root` with its journal, after finishing any change a crash
    interrupted (StorageError when the disk refuses even that)."""
    with repository_lock(root, data_dir):
        journal = Journal(data_dir, root)
        try:
            if journal.recover():
                repositories.forget(root)
        except OSError as exc:
            raise journal.storage_error(exc) from None
        yield journal


LEFTOVERS = (".*.stage", ".*.yaml.*.tmp", ".*.yml.*.tmp")
"""Files a write interrupted before any journal named them: staged files, and the
temporary files of the write path before the journal."""


def recover_interrupted(data_dir: Path, *roots: Path) -> None:
    """At start: finish every change a crash interrupted in the repositories this data dir
    wrote to (`journal.py`), and delete the leftovers of writes cut short in the entity
    folders of those and of `roots` (the default repository)."""
    for root in {*Journal.interrupted(data_dir), *roots}:
        if not (root / CONTEXTS_DIR).is_dir():
            continue
        with writing(root, data_dir):
            for kind in ENTITY_TYPES.values():
                folder = root / CONTEXTS_DIR / kind.folder
                for pattern in LEFTOVERS if folder.is_dir() and not folder.is_symlink() else ():
                    for leftover in folder.glob(pattern):
                        leftover.unlink(missing_ok=True)


def _unit_key(key: str | None) -> str:
    """The journal key of a change: its approval's, else one of its own (applied once)."""
    return key or f"unkeyed:{uuid.uuid4().hex}"


# --- ids and paths ---------------------------------------------------------------------------


def id_pattern(repo: Repository, kind: EntityType) -> Any:
    """The pattern ids of `kind` must match in `repo`: its schema's (on RE2: the schemas
    loaded are those whose patterns compile there), else the built-in one."""
    declared = ((repo.schemas[kind.name].get("properties") or {}).get("id") or {}).get("pattern")
    return safe_pattern(declared) if isinstance(declared, str) else kind.id_pattern


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
    if not is_inside(target, base) or in_git_dir(base, target):
        raise WriteRefused(f"{relative} is outside the repository's entity folders")
    return target, relative


def in_git_dir(base: Path, target: Path) -> bool:
    """Whether `target` (resolved, inside `base`) is git metadata: under a `.git` folder (in
    any case) or under any folder that holds a git dir's `HEAD`, `objects` and `refs`."""
    relative = target.relative_to(base)
    if any(part.lower() == ".git" for part in relative.parts):
        return True
    folder = base
    for part in relative.parts[:-1]:
        folder = folder / part
        if all((folder / name).exists() for name in ("HEAD", "objects", "refs")):
            return True
    return False


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
    key: str | None = None,
) -> Saved:
    """Write a new entity and add it to its feature's list, as one unit.

    Without an `id` in `fields` (or with `provisional_id`, an id handed out earlier that may be
    taken by now) the next free id is allocated; a given id must be free. A `key` already
    applied returns what it saved then, writing nothing.
    """
    try:
        kind = entity_type(type_name)
        check_bounds(fields)
    except (ValueError, BoundsExceeded) as exc:
        raise WriteRefused(str(exc)) from None
    with writing(root, data_dir) as journal:
        if key is not None and (done := journal.result(key)) is not None:
            return Saved.from_record(done)
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
        files = [FileWrite(target, dump_new(data))]
        for feature in features:
            assert link is not None
            assert link.backlink is not None
            feature_kind = entity_type("feature")
            feature_target, _ = entity_file(root, feature_kind, PurePosixPath(feature.path).name)
            changes = {link.backlink: feature.data[link.backlink]}
            document = _edit_file(feature_target, root, changes)[0]
            files.append(FileWrite(feature_target, dump_round_trip(document)))
        saved = Saved(entity, [f.id for f in features])
        try:
            journal.apply(_unit_key(key), files, saved.record())
        finally:
            repositories.forget(root)
    return saved


def patch_entity(
    root: Path, data_dir: Path, entity_id: str, changes: dict[str, Any], *, key: str | None = None
) -> Saved:
    """Merge `changes` into an existing entity (a None value removes a field), keeping the
    file's comments and key order; validated against the repository as it is now. A `key`
    already applied returns what it saved then."""
    try:
        check_bounds(changes)
    except BoundsExceeded as exc:
        raise WriteRefused(str(exc)) from None
    with writing(root, data_dir) as journal:
        if key is not None and (done := journal.result(key)) is not None:
            return Saved.from_record(done)
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
        saved = Saved(Entity(entity.id, entity.type, entity.path, plain), [])
        try:
            journal.apply(
                _unit_key(key), [FileWrite(target, dump_round_trip(document))], saved.record()
            )
        finally:
            repositories.forget(root)
    return saved


@dataclass
class Patched:
    """The outcome of a unified diff: applied, or the hunks that do not apply (file untouched)."""

    path: str
    applied: bool
    conflicts: list[str]


def _conflicts(changes: list[Any], lines: list[str]) -> list[str]:
    """The hunks whose old lines are not in `lines` where they say (one pass over the
    changes; the first mismatch of each hunk)."""
    conflicts: dict[int, str] = {}
    for change in changes:
        if change.old is None or change.hunk in conflicts:
            continue
        at = change.old - 1
        found = lines[at] if 0 <= at < len(lines) else None
        if found != change.line:
            shown = "end of file" if found is None else repr(found[:80])
            conflicts[change.hunk] = (
                f"hunk {change.hunk}: line {change.old} should be {change.line[:80]!r}, is {shown}"
            )
    return [conflicts[hunk] for hunk in sorted(conflicts)]


def _parse_patch(diff: str) -> Any:
    """The one file's changes of the unified `diff` (parsed by `whatthepatch`), or refuse."""
    import whatthepatch

    if "GIT binary patch" in diff or re.search(r"^Binary files .* differ$", diff, re.M):
        raise WriteRefused("binary patches are not accepted; send a unified diff of text")
    hunks = sum(1 for line in diff.splitlines() if line.startswith("@@"))
    if hunks > MAX_HUNKS:
        raise WriteRefused(f"the patch has {hunks} hunks; at most {MAX_HUNKS} are accepted")
    try:
        parsed = [d for d in whatthepatch.parse_patch(diff) if d.changes]
    except Exception as exc:  # whatthepatch's parse errors have no common base
        raise WriteRefused(f"the patch cannot be read: {str(exc)[:200]}") from None
    if len(parsed) != 1:
        raise WriteRefused(f"the patch must change exactly one file; it changes {len(parsed)}")
    return parsed[0]


def apply_patch(
    root: Path,
    data_dir: Path,
    target: Path,
    diff: str,
    max_bytes: int,
    *,
    key: str | None = None,
) -> Patched:
    """Apply the unified `diff` (one file's) to `target`, a file inside `root` and outside any
    git dir. Every hunk must apply to the file as it is now; otherwise nothing is written
    and each conflicting hunk is listed. A YAML file must still parse afterwards. A `key`
    already applied returns its outcome then."""
    import whatthepatch
    from whatthepatch.exceptions import HunkApplyException

    base = root.resolve()
    relative = target.relative_to(base).as_posix()
    if in_git_dir(base, target):
        raise WriteRefused(f"{relative} is git metadata; patches may not change it")
    parsed = _parse_patch(diff)
    with writing(root, data_dir) as journal:
        if key is not None and (done := journal.result(key)) is not None:
            return Patched(**done)
        text = read_text(root, target, max_bytes)
        conflicts = _conflicts(parsed.changes, text.splitlines())
        if conflicts:
            return Patched(relative, False, conflicts)
        try:
            lines = whatthepatch.apply_diff(parsed, text)
        except HunkApplyException as exc:
            return Patched(relative, False, [str(exc)])
        patched = "\n".join(lines) + ("\n" if text.endswith("\n") or not text else "")
        if target.suffix in (".yaml", ".yml"):
            try:
                load_yaml(patched)
            except (yaml.YAMLError, BoundsExceeded) as exc:
                problem = str(exc).splitlines()[0]
                return Patched(relative, False, [f"the patched file is not valid YAML: {problem}"])
        outcome = Patched(relative, True, [])
        try:
            journal.apply(_unit_key(key), [FileWrite(target, patched)], asdict(outcome))
        finally:
            repositories.forget(root)
    return outcome
