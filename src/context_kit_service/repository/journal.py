"""Changes applied once and whole: the write journal of a repository.

A change (an entity and its feature's back-link, a patch) is one *unit* of file writes. A
unit is applied in steps, each durable before the next:

1. **intend**: the unit's record (its key, its result, its files) lands in `pending/`;
2. **stage** every new file next to its target (`.<name>.<unit>.stage`, fsynced, with the
   mode the target has or would get);
3. **commit**: the record is marked committed;
4. **rename** every staged file over its target;
5. **record**: the record moves to `applied/`.

The next writer (and the service's start) finishes what a crash interrupted: a record not
committed is rolled back (its staged files deleted: nothing applied), a committed one is
rolled forward (every staged file still there is renamed: the unit is applied whole). So the
repository never holds half a unit, whatever the instant of the crash.

A unit answers an approval and carries its *key* (the thread, the pause, the change): a unit
whose key is in `applied/` is never applied again, and its recorded result is the answer. An
approval sent twice (after a crash, a lost answer, or at the same time) writes once.

The journal lives in the service's data dir beside the repository's write lock, and every
step runs under that lock: processes and replicas that share the data dir share it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from context_kit_service.repository.files import data_name

STAGE_SUFFIX = ".stage"
KEEP_APPLIED_S = 30 * 86_400
"""How long the result of an applied unit is kept for a re-sent approval."""

STORAGE_ERRNOS = {
    errno.ENOSPC: "INSUFFICIENT_STORAGE",
    errno.EDQUOT: "INSUFFICIENT_STORAGE",
    errno.EROFS: "REPOSITORY_READ_ONLY",
    errno.EACCES: "REPOSITORY_READ_ONLY",
    errno.EPERM: "REPOSITORY_READ_ONLY",
}


class StorageError(OSError):
    """A write the disk refused (full, read-only, not permitted); nothing was applied, and
    the same change may be approved again once the disk is fixed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = 507 if code == "INSUFFICIENT_STORAGE" else 409

    @classmethod
    def from_os_error(cls, exc: OSError, where: str) -> StorageError:
        code = STORAGE_ERRNOS.get(exc.errno or 0, "INSUFFICIENT_STORAGE")
        if code == "INSUFFICIENT_STORAGE":
            fix = "the disk is full; free some space, then approve again"
        else:
            fix = "it is read-only or not writable by the service; fix that, then approve again"
        return cls(code, f"the change was not applied: cannot write {where}: {fix}")


SQLITE_STORAGE = {"database or disk is full": errno.ENOSPC, "readonly database": errno.EROFS}
"""SQLite's words for a full or read-only disk (the checkpointer's and the indexes')."""


def as_storage_error(exc: BaseException) -> StorageError | None:
    """`exc` as a StorageError when it says a disk refused a write: an OSError of a storage
    errno, or SQLite's "database or disk is full" and "readonly database"."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return StorageError.from_os_error(exc, "the service's data")
    text = str(exc)
    for words, number in SQLITE_STORAGE.items():
        if type(exc).__module__ == "sqlite3" and words in text:
            return StorageError.from_os_error(OSError(number, text), "the service's data dir")
    return None


def storage_error(exc: OSError, where: str) -> OSError:
    """`exc` as a StorageError when a disk refused (full, read-only, not permitted)."""
    if exc.errno not in STORAGE_ERRNOS:
        return exc
    return StorageError.from_os_error(exc, where)


@dataclass(frozen=True)
class FileWrite:
    """One file of a unit: `text` becomes the content of `target`."""

    target: Path
    text: str


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def file_mode(target: Path) -> int:
    """The mode a rewritten `target` keeps, or a new file gets (0666 less the umask)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` (created or truncated) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def change_key(approval_key: str, tool: str, arguments: dict[str, Any]) -> str | None:
    """The key of one change that the pause `approval_key` allowed (None: nothing approved
    it, so nothing can send it twice)."""
    if not approval_key:
        return None
    digest = hashlib.sha256(json.dumps(arguments, sort_keys=True, default=str).encode())
    return f"{approval_key}|{tool}|{digest.hexdigest()[:32]}"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class Journal:
    """The write journal of one repository (use it under the repository's write lock)."""

    def __init__(self, data_dir: Path, root: Path) -> None:
        self.root = root
        self.folder = data_dir / "journal" / data_name(root)
        self.pending = self.folder / "pending"
        self.applied = self.folder / "applied"

    @staticmethod
    def interrupted(data_dir: Path) -> set[Path]:
        """The repositories with a unit a crash interrupted, from every journal in `data_dir`
        (what the service finishes when it starts)."""
        roots = set()
        for record in (data_dir / "journal").glob("*/pending/*.json"):
            with suppress(OSError, ValueError, KeyError):
                roots.add(Path(json.loads(record.read_text("utf-8"))["root"]))
        return roots

    def _record_path(self, folder: Path, key: str) -> Path:
        return folder / f"{_digest(key)}.json"

    def result(self, key: str) -> dict[str, Any] | None:
        """The result recorded for the unit of `key`, when it was applied."""
        try:
            record = json.loads(self._record_path(self.applied, key).read_text("utf-8"))
        except FileNotFoundError:
            return None
        if record.get("key") != key:
            return None
        result: dict[str, Any] = record["result"]
        return result

    def recover(self) -> list[str]:
        """Finish every unit a crash interrupted: roll committed ones forward, the others
        back. Returns the keys of the units rolled forward."""
        finished = []
        for path in sorted(self.pending.glob("*.json")) if self.pending.is_dir() else []:
            record = json.loads(path.read_text("utf-8"))  # renamed into place whole
            if record.get("committed"):
                self._rename_all(record)
                self._mark_applied(path)
                finished.append(record["key"])
            else:
                for staged, _ in record["files"]:
                    Path(staged).unlink(missing_ok=True)
                path.unlink()
        for stray in self.pending.glob("*.tmp") if self.pending.is_dir() else []:
            stray.unlink()  # a record torn before it was renamed into place: nothing started
        self._forget_old()
        return finished

    def apply(self, key: str, files: list[FileWrite], result: dict[str, Any]) -> None:
        """Apply `files` as one unit recorded under `key` with `result` (see the module's
        steps). StorageError when a disk refuses: nothing is applied then, or, when only the
        last steps failed, the next writer finishes the unit."""
        unit = _digest(key)[:12]
        staged = [
            (item.target.parent / f".{item.target.name}.{unit}{STAGE_SUFFIX}", item)
            for item in files
        ]
        record = {
            "key": key,
            "root": str(self.root),
            "result": result,
            "files": [[str(path), str(item.target)] for path, item in staged],
            "at": time.time(),
            "committed": False,
        }
        intent = self._record_path(self.pending, key)
        try:
            self.pending.mkdir(parents=True, exist_ok=True)
            self._write_record(intent, record)
            for path, item in staged:
                write_durably(path, item.text.encode("utf-8"), file_mode(item.target))
            self._write_record(intent, {**record, "committed": True})
        except OSError as exc:
            with suppress(OSError):  # what cannot be removed now, the next writer rolls back
                for path, _ in staged:
                    path.unlink(missing_ok=True)
                intent.unlink(missing_ok=True)
            raise self.storage_error(exc) from None
        try:
            self._rename_all(record)
            self._mark_applied(intent)
        except OSError as exc:
            raise self.storage_error(exc) from None

    def _write_record(self, path: Path, record: dict[str, Any]) -> None:
        torn = path.with_suffix(".tmp")
        write_durably(torn, json.dumps(record).encode("utf-8"))
        os.replace(torn, path)
        _fsync_dir(path.parent)

    def storage_error(self, exc: OSError) -> OSError:
        in_data_dir = bool(exc.filename) and str(exc.filename).startswith(str(self.folder))
        return storage_error(exc, "the data dir" if in_data_dir else "the repository")

    def _rename_all(self, record: dict[str, Any]) -> None:
        folders = set()
        for staged, target in record["files"]:
            if os.path.lexists(staged):
                os.replace(staged, target)
            folders.add(Path(target).parent)
        for folder in folders:
            _fsync_dir(folder)

    def _mark_applied(self, intent: Path) -> None:
        self.applied.mkdir(parents=True, exist_ok=True)
        os.replace(intent, self.applied / intent.name)
        _fsync_dir(self.applied)

    def _forget_old(self) -> None:
        if not self.applied.is_dir():
            return
        oldest = time.time() - KEEP_APPLIED_S
        for path in self.applied.glob("*.json"):
            try:
                if path.stat().st_mtime < oldest:
                    path.unlink()
            except OSError:
                pass
