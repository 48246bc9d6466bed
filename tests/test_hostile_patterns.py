"""Patterns a repository brings (schema `pattern`s, ignore files) cannot freeze the service:
on a real service process each hostile repository is answered within 1 s while `/health`,
polled the whole time, answers within 100 ms; a pattern the linear-time engine cannot run is
one problem of its file."""

from __future__ import annotations

import copy
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from context_kit_service.repository import load_repository
from context_kit_service.repository.types import builtin_schema
from tests.conftest import SAMPLE_REPO
from tests.fake_providers import fake_service_env, serve_fake_providers
from tests.service_process import Service, start

FEATURE_SCHEMA = ".context/schemas/feature.schema.json"
ANSWER_S = 1.0
HEALTH_S = 0.1


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with serve_fake_providers() as (fake_url, _):
        running = start(
            tmp_path_factory.mktemp("patterns") / "data", env=fake_service_env(fake_url)
        )
        try:
            yield running
        finally:
            running.stop()


def _schema_with(root: Path, field: str, pattern: str) -> None:
    schema = copy.deepcopy(builtin_schema("feature"))
    schema["properties"][field]["pattern"] = pattern
    (root / FEATURE_SCHEMA).parent.mkdir(parents=True, exist_ok=True)
    (root / FEATURE_SCHEMA).write_text(json.dumps(schema))


def _feature(root: Path, entity_id: str, title: str) -> None:
    text = f"id: {entity_id}\ntitle: {json.dumps(title)}\nstatus: proposed\n"
    (root / "contexts" / "features" / f"{entity_id}-evil.yaml").write_text(text)


def _evil_title(repo: Path) -> None:
    _schema_with(repo, "title", "^(a+)+$")
    _feature(repo, "FEAT-900", "a" * 44 + "!")


def _evil_id(repo: Path) -> None:
    _schema_with(repo, "id", "^(F+)+$")
    _feature(repo, "FEAT-901", "Evil id")
    path = repo / "contexts" / "features" / "FEAT-901-evil.yaml"
    path.write_text(path.read_text().replace("id: FEAT-901", "id: " + "F" * 40 + "-"))


def _evil_gitignore(repo: Path) -> None:
    (repo / ".gitignore").write_text("*a*a*a*a*a*a*a*a*a*a*b\n")
    (repo / "docs" / ("a" * 60 + ".md")).write_text("# A document\n\nText.\n")


PLANTS = {"schema title": _evil_title, "schema id": _evil_id, "gitignore": _evil_gitignore}


class HealthPoller:
    """Polls `/health` from a thread of its own and keeps the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.slowest = 0.0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    client.get(f"{self.url}/health").raise_for_status()
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.slowest = max(self.slowest, time.perf_counter() - started)
                time.sleep(0.02)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _calls(repo: Path) -> list[tuple[str, dict[str, Any]]]:
    def tool(tool_id: str, **parameters: Any) -> tuple[str, dict[str, Any]]:
        return "/ai/tools/execute", {
            "toolId": tool_id,
            "parameters": parameters,
            "repoPath": str(repo),
        }

    return [
        tool("pipeline.validate"),
        tool("context.list"),
        tool("context.search", query="evil"),
        tool("pipeline.build-embeddings"),
        ("/ai/rag/query", {"query": "Which feature is evil?", "repoPath": str(repo)}),
    ]


@pytest.mark.parametrize("name", list(PLANTS))
def test_a_hostile_pattern_is_answered_in_time(service: Service, tmp_path: Path, name: str) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    PLANTS[name](repo)
    with HealthPoller(service.url) as health, httpx.Client(timeout=30) as client:
        for path, body in _calls(repo):
            started = time.perf_counter()
            response = client.post(f"{service.url}{path}", json=body)
            took = time.perf_counter() - started
            assert response.status_code == 200, response.text
            assert took < ANSWER_S + (2.0 if path == "/ai/rag/query" else 0.0), (path, took)
    assert health.failures == []
    assert health.slowest < HEALTH_S, health.slowest


def test_the_schema_pattern_still_validates(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    _evil_title(repo)
    loaded = load_repository(repo)
    problems = loaded.schema_problems(loaded.entities["FEAT-900"])
    assert [(p.field, p.message) for p in problems] == [
        ("title", f"{'a' * 44 + '!'!r} does not match '^(a+)+$'")
    ]


def test_a_pattern_the_safe_engine_cannot_run_is_a_problem_of_its_file(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    _schema_with(repo, "title", r"^(\w)\1$")
    loaded = load_repository(repo)
    assert loaded.schema_sources["feature"] == "built-in"
    assert [p.message for p in loaded.load_problems if p.file == FEATURE_SCHEMA] == [
        "unusable schema: pattern '^(\\\\w)\\\\1$' cannot be used (invalid escape sequence: "
        "\\1); write it without backreferences or lookaround"
    ]
