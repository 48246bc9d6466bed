"""Crash points for the write path's crash tests: a Python audit hook that counts the
process's durable file steps under some folders (an open for writing, a rename, a removal)
and SIGKILLs the process just before the Nth, as a power cut or `kill -9` would land there.
Nothing of the service is patched: the hook only watches the calls it makes.

`python -m tests.crash_points AT COUNT_FILE FOLDER... -- CLI ARGS` runs the service's CLI
with the hook armed (AT 0 counts the steps into COUNT_FILE and kills nothing)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PROBE = ".cks-probe-"
"""/health's probe of whether the repository takes writes: not a step of a write."""


def _step(event: str, args: tuple[Any, ...]) -> str | None:
    """The path a durable step of `event` touches, or None when it is no such step."""
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[:3]
        writing = isinstance(flags, int) and flags & WRITE_FLAGS
        if writing or (isinstance(mode, str) and any(c in mode for c in "wax+")):
            return str(path)
    if event in ("os.rename", "os.remove") and args:
        return str(args[0])
    return None


def arm(at: int, folders: list[Path], count_file: Path | None = None) -> None:
    """Kill this process just before its `at`-th step under `folders` (0: only count them,
    one line per step, into `count_file`)."""
    roots = tuple(str(folder.resolve()) + os.sep for folder in folders)
    seen = 0

    def hook(event: str, args: tuple[Any, ...]) -> None:
        nonlocal seen
        path = _step(event, args)
        if path is None or not os.path.abspath(path).startswith(roots) or PROBE in path:
            return
        seen += 1
        if count_file is not None:
            with open(count_file, "a") as out:
                out.write(f"{event} {path}\n")
        if seen == at:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)


if __name__ == "__main__":
    split = sys.argv.index("--")
    at, count_file, *folders = sys.argv[1:split]
    arm(int(at), [Path(f) for f in folders], Path(count_file) if count_file != "-" else None)
    from context_kit_service.cli import main

    sys.argv = ["context-kit-service", *sys.argv[split + 1 :]]
    sys.exit(main())
