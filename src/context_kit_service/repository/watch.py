"""Knowing that a repository changed without reading its directories on every query.

A `Watch` follows exactly the directories the signature scan reads (each one on its own,
never recursively, so a symlink to `/` or a huge `node_modules` costs nothing) through
watchfiles' Rust notify backend, the library uvicorn reloads with. Any event there marks the
repository changed; only then does `signature()` scan again. Where watching is impossible
(no inotify watches left, a directory gone between the scan and the watch) every call scans,
as without a watch. The first call scans, so changes made while the service was down are
seen at once.

A repository deleted and copied back, or another checkout moved into its place, has the
same paths on new directories, whose events the old watches never see. So a followed
directory reported deleted, or found with another identity (device, inode) by a scan, makes
the next scan follow the directories anew.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from context_kit_service.repository.model import Signature, scan_repository

if TYPE_CHECKING:
    from watchfiles._rust_notify import RustNotify

log = logging.getLogger(__name__)

STEP_MS = 25
"""How often the watching thread looks for events (it wakes this often even when idle)."""
DEBOUNCE_MS = 100
"""The longest a burst of events is grouped before the repository is marked changed."""
DELETED = 3
"""watchfiles' change number for a deleted path."""


class Watch:
    """The signature of one repository, rescanned only after a file event under it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._changed = threading.Event()
        self._changed.set()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._signature: Signature | None = None
        self._directories: tuple[tuple[str, int, int], ...] = ()
        """The directories followed: path, device, inode."""
        self._thread: threading.Thread | None = None
        self._thread_stop = threading.Event()
        self.watching = False
        """Whether events arrive; False means every `signature()` scans."""
        self._lost = threading.Event()
        """A followed directory was deleted: its watch is gone, follow anew."""

    def signature(self) -> Signature:
        """The repository's signature, from memory unless an event marked it changed."""
        if not self._changed.is_set() and not self._lock.locked():
            signature = self._signature  # read last: a scan that just ended has stored its own
            if signature is not None:
                return signature
        with self._lock:  # a scan under way may cover a change made before this call: wait
            if not self._changed.is_set() and self._signature is not None:
                return self._signature
            self._changed.clear()  # an event during the scan sets it again
            signature, directories = self._scan()
            lost = self._lost.is_set()
            if (lost or directories != self._directories) and not self._stopped.is_set():
                self._lost.clear()
                self._follow(directories)
                signature, directories = self._scan()  # what changed meanwhile
                if directories != self._directories:
                    self._changed.set()
            if not self.watching:
                self._changed.set()
            self._signature = signature
            return signature

    def _scan(self) -> tuple[Signature, tuple[tuple[str, int, int], ...]]:
        signature, directories = scan_repository(self.root)
        return signature, tuple(_identity(d) for d in directories)

    def mark_changed(self) -> None:
        """Scan on the next `signature()` (the service wrote a file itself)."""
        self._changed.set()

    def close(self) -> None:
        self._stopped.set()
        self.watching = False
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _follow(self, directories: tuple[tuple[str, int, int], ...]) -> None:
        """Watch `directories` instead of the ones watched so far."""
        from watchfiles._rust_notify import RustNotify

        self._stop_thread()
        self._directories = directories
        try:
            notify = RustNotify([d[0] for d in directories], False, False, 0, False, True)
        except (OSError, RuntimeError) as exc:
            log.warning("not watching %s (%s); every query scans it", self.root, exc)
            self.watching = False
            return
        self.watching = True
        self._thread_stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(notify, _Either(self._thread_stop, self._stopped)),
            name=f"watch {self.root.name}",
            daemon=True,
        )
        self._thread.start()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread_stop.set()
            self._thread.join(timeout=2)
            self._thread = None

    def _run(self, notify: RustNotify, stopped: _Either) -> None:
        followed = {d[0] for d in self._directories}
        try:
            while True:
                events = notify.watch(DEBOUNCE_MS, STEP_MS, 0, stopped)
                if isinstance(events, set):
                    if any(change == DELETED and path in followed for change, path in events):
                        self._lost.set()
                    self._changed.set()
                elif events == "stop":
                    return
        except Exception as exc:  # the backend failed: fall back to scanning
            log.warning("stopped watching %s (%s); every query scans it", self.root, exc)
            self.watching = False
            self._changed.set()
        finally:
            notify.close()


def _identity(directory: str) -> tuple[str, int, int]:
    try:
        info = os.stat(directory)
    except OSError:
        return (directory, -1, -1)
    return (directory, info.st_dev, info.st_ino)


class _Either:
    """Set when either event is."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()
