"""Reading files of a repository that nobody vetted: regular files inside it, read with a bound.

A repository is user content, and anything can be planted in it: a symlink to `/etc/passwd`
or `/dev/zero`, a FIFO that blocks every reader, a file of gigabytes. Every file the service
reads from a repository comes through `read_text`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

DEFAULT_MAX_FILE_BYTES = 1_000_000
"""Largest repository file read (entities, documents, schemas); `CKS_MAX_FILE_BYTES` for tools."""


class FileRefused(ValueError):
    """A repository file that is not read; the message says why, without the file's content."""


def data_name(root: Path) -> str:
    """The name a repository's files in the service's data dir go by (its index, its lock):
    the folder name for people, a digest of the resolved path to tell equal names apart."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return f"{root.name}-{digest}"


def is_inside(path: str | Path, root: str | Path) -> bool:
    """Whether `path` (already resolved) is `root` or below it."""
    path, root = str(path), str(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def read_text(root: Path, path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> str:
    """The UTF-8 text of `path`, which must resolve to a regular file inside `root`.

    Symlinks are followed only while they stay inside the repository; FIFOs, devices and
    sockets are never opened; at most `max_bytes` are read whatever the file claims.
    """
    real = os.path.realpath(path)
    if not is_inside(real, os.path.realpath(root)):
        raise FileRefused("it links outside the repository")
    try:
        if not stat.S_ISREG(os.stat(real).st_mode):
            raise FileRefused("not a regular file")
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileRefused(f"cannot open it ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped between the check and the open
            raise FileRefused("not a regular file")
        if info.st_size > max_bytes:
            raise FileRefused(f"larger than {max_bytes} bytes")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileRefused(f"larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused("not UTF-8 text") from None
