"""Index generations: every save writes a complete new folder, then swaps one pointer.

A generation holds every file of an index (the FAISS index, its chunk metadata, the lexical
database, the manifest). Files are written into a hidden staging folder, fsynced, the folder
is renamed into place, and only then does the `CURRENT` pointer change, atomically. A crash at
any moment leaves the previous generation or the new one, never a mix of the two.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
_WRITER = re.compile(r"^\..*\.(\d+)\.tmp$")
"""Staging names end with the writing process's id: `.gen-<id>.<pid>.tmp`."""


def read_current(directory: Path) -> str | None:
    """The name of the current generation under `directory`, if there is a usable one."""
    try:
        name = (directory / CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return name if name.startswith("gen-") and (directory / name).is_dir() else None


def stage(directory: Path) -> Path:
    """A fresh, empty staging folder for the next generation."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".gen-{uuid.uuid4().hex[:12]}.{os.getpid()}.tmp"
    staging.mkdir()
    return staging


def commit(staging: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest, fsync every staged file, make the staging folder the current
    generation, and remove the generations (and leftovers) it replaces."""
    directory = staging.parent
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    for path in staging.iterdir():
        _fsync(path)
    generation = staging.name.removeprefix(".").split(".")[0]
    os.replace(staging, directory / generation)
    _fsync_dir(directory)
    pointer = directory / f".{CURRENT}.{generation}.{os.getpid()}.tmp"
    pointer.write_text(generation, encoding="utf-8")
    _fsync(pointer)
    os.replace(pointer, directory / CURRENT)
    _fsync_dir(directory)
    for stale in directory.iterdir():
        if stale.name in (CURRENT, generation) or _in_progress(stale):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    return directory / generation


def _in_progress(path: Path) -> bool:
    """A staging folder or pointer that a live process is writing (replicas share the data
    dir); one whose writer is gone was left by a crash and may go."""
    match = _WRITER.match(path.name)
    if match is None or int(match.group(1)) == os.getpid():
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def current(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The current generation's folder and manifest; None when there is none or it is
    unreadable."""
    generation = read_current(directory)
    if generation is None:
        return None
    folder = directory / generation
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (folder, manifest) if isinstance(manifest, dict) else None


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
