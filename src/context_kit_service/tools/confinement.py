"""Keeping every file access inside the repository, and the repository inside what is allowed."""

from __future__ import annotations

import stat
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from langchain_core.tools import ToolException

from context_kit_service.settings import Settings

MAX_PATH_CHARS = 512
REPOSITORY_MARKERS = ("contexts", ".context")


class ConfinementError(ToolException):
    """A path inside the repository the tool may not use (a tool failure, like any other)."""


class RepositoryRefused(ValueError):
    """A repository the request may not use: the request is refused (400 with `code` on every
    route), it is not a tool failure."""

    def __init__(self, message: str, code: str = "REPOSITORY_REFUSED") -> None:
        super().__init__(message)
        self.code = code


def resolve_repository(requested: str | Path | None, settings: Settings) -> Path:
    """The repository root for a request: the requested one, or the configured default.

    It must be an existing directory that looks like a context repository (it has a
    `contexts/` or `.context/` folder) and, when `CKS_ALLOWED_REPOS` is set, lie under one of
    those roots. So a stray request cannot make `/etc` or a home folder a repository.
    Raises RepositoryRefused otherwise, naming the path as the request gave it: what it
    resolves to (`/proc/self/cwd`: the service's own folder) is not the client's to learn.
    """
    chosen = requested if requested not in (None, "") else settings.repo_path
    if chosen is None:
        raise RepositoryRefused(
            "no repository given: send repoPath or set CKS_REPO_PATH", "NO_REPOSITORY"
        )
    text = str(chosen)
    if "\x00" in text:
        raise RepositoryRefused("repository path contains a NUL byte")
    root = Path(text).expanduser()
    if not root.is_absolute():
        raise RepositoryRefused(f"repository path must be absolute: {text}")
    root = root.resolve()
    if not root.is_dir():
        raise RepositoryRefused(f"repository not found: {text}", "REPOSITORY_NOT_FOUND")
    if settings.allowed_repos:
        allowed = [Path(a).expanduser().resolve() for a in settings.allowed_repos]
        if not any(root == a or root.is_relative_to(a) for a in allowed):
            raise RepositoryRefused(
                f"repository {text} is outside the allowed roots (CKS_ALLOWED_REPOS)"
            )
    if not any((root / marker).is_dir() for marker in REPOSITORY_MARKERS):
        raise RepositoryRefused(
            f"{text} is not a context repository: it has no {' or '.join(REPOSITORY_MARKERS)} "
            "folder",
            "NOT_A_CONTEXT_REPOSITORY",
        )
    return root


def confine(root: Path, relative: str, *, max_bytes: int) -> Path:
    """Resolve a repository-relative path to a regular file inside `root`, or refuse."""
    if not isinstance(relative, str) or not relative.strip():
        raise ConfinementError("path is empty")
    if "\x00" in relative:
        raise ConfinementError("path contains a NUL byte")
    if len(relative) > MAX_PATH_CHARS:
        raise ConfinementError(f"path is longer than {MAX_PATH_CHARS} characters")
    if "\\" in relative:
        raise ConfinementError("path contains a backslash; use forward slashes")
    if unquote(relative) != relative:
        raise ConfinementError("path contains URL-encoded characters")
    if relative.startswith(("/", "~")) or PurePosixPath(relative).is_absolute():
        raise ConfinementError("path must be relative to the repository root")
    if ".." in PurePosixPath(relative).parts:
        raise ConfinementError("path may not contain '..'")
    base = root.resolve()
    try:
        target = (base / relative).resolve(strict=True)
    except FileNotFoundError:
        raise ConfinementError(f"file not found: {relative}") from None
    except (OSError, RuntimeError):
        raise ConfinementError(f"cannot resolve path: {relative}") from None
    if not target.is_relative_to(base):
        raise ConfinementError(f"path leads outside the repository: {relative}")
    info = target.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ConfinementError(f"not a regular file: {relative}")
    if info.st_size > max_bytes:
        raise ConfinementError(f"file is larger than {max_bytes} bytes: {relative}")
    return target
