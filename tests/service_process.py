"""Run the real CLI as a subprocess: a command to its end (`run_cli`), or the service
(`context-kit-service serve`) whose ready line is read."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Service:
    process: subprocess.Popen[str]
    ready: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.ready["url"])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send `sig` (if still running) and wait; returns the exit code."""
        return self.finish(sig, timeout)[0]

    def finish(self, sig: int | None = None, timeout: float = 10) -> tuple[int, str, str]:
        """Optionally signal, then wait for exit and collect the rest of stdout and stderr."""
        if sig is not None and self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        return self.process.returncode, out, err


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        raise TimeoutError(f"no line on stdout within {timeout}s")
    return process.stdout.readline()


def cli_env(data_dir: Path, **env: str) -> dict[str, str]:
    """This process's environment without its `CKS_` variables, with the data dir and Hugging
    Face offline, then `env`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CKS_")}
    return full_env | {"CKS_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **env}


def run_cli(
    data_dir: Path, *args: str, cwd: Path | None = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`context-kit-service ARGS` run to its end, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "context_kit_service.cli", *args],
        env=cli_env(data_dir, **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
) -> subprocess.Popen[str]:
    """The service on a free port; its log goes to `log` when given (a long run fills a pipe
    nobody reads, and the service then blocks on its next log line)."""
    full_env = cli_env(data_dir, **(env or {}))
    command = [sys.executable, "-m", "context_kit_service.cli", "serve", "--port", "0", *args]
    if log is None:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=cwd or data_dir.parent,
        )
    with log.open("w") as stderr:  # the child keeps its own descriptor
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=full_env,
            cwd=cwd or data_dir.parent,
        )


def start(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 30,
    log: Path | None = None,
) -> Service:
    process = spawn(data_dir, *args, env=env, log=log)
    started = time.monotonic()
    try:
        line = read_line(process, timeout)
    except TimeoutError:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"service not ready in {timeout}s; stderr:\n{err[-4000:]}") from None
    if not line:
        _, err = process.communicate()
        raise AssertionError(f"service exited: {process.returncode}; stderr:\n{err[-4000:]}")
    ready = json.loads(line)
    ready["_seconds"] = time.monotonic() - started
    return Service(process, ready)
