"""Hostile repositories against a real service process: every call returns within 5 s, the
process grows by less than 200 MB, the bad file is one clear problem, and nothing from outside
the repository is ever returned."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import SAMPLE_REPO
from tests.fake_providers import fake_service_env, serve_fake_providers
from tests.service_process import Service, start

SECRET = "OUTSIDE-SECRET-51d2"
TASK = "id: T-900\ntitle: Hostile task\nstatus: todo\n"
CALL_SECONDS = 5.0
GROWTH_BYTES = 200 * 1024 * 1024


def _billion_laughs() -> str:
    lines = [TASK, 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def _fifo(path: str) -> Callable[[Path, Path], None]:
    return lambda repo, outside: os.mkfifo(repo / path)


def _write(path: str, text: str) -> Callable[[Path, Path], None]:
    return lambda repo, outside: (repo / path).write_text(text)


def _link(path: str, target: Callable[[Path], Path | str]) -> Callable[[Path, Path], None]:
    return lambda repo, outside: (repo / path).symlink_to(target(outside))


@dataclass(frozen=True)
class Case:
    plant: Callable[[Path, Path], None]
    file: str
    problem: str


CASES = {
    "fifo document": Case(
        _fifo("docs/pipe.md"), "docs/pipe.md", "file not read: not a regular file"
    ),
    "fifo entity": Case(
        _fifo("contexts/tasks/T-900-pipe.yaml"),
        "contexts/tasks/T-900-pipe.yaml",
        "file not read: not a regular file",
    ),
    "document linked to /dev/zero": Case(
        _link("docs/zero.md", lambda outside: "/dev/zero"),
        "docs/zero.md",
        "file not read: it links outside the repository",
    ),
    "alias bomb": Case(
        _write("contexts/tasks/T-900-bomb.yaml", _billion_laughs()),
        "contexts/tasks/T-900-bomb.yaml",
        "YAML refused: more than 50000 values once aliases are expanded",
    ),
    "recursive alias": Case(
        _write("contexts/tasks/T-900-loop.yaml", TASK + "steps: &a [*a]\n"),
        "contexts/tasks/T-900-loop.yaml",
        "YAML refused: a value that contains itself (recursive alias)",
    ),
    "5,000-digit integer": Case(
        _write("contexts/tasks/T-900-int.yaml", TASK + "estimate: " + "9" * 5000 + "\n"),
        "contexts/tasks/T-900-int.yaml",
        "invalid YAML at line 4, column 11: integer with more than 30 digits",
    ),
    "nesting 5,000 deep": Case(
        _write("contexts/tasks/T-900-deep.yaml", TASK + "steps: " + "[" * 5000 + "]" * 5000 + "\n"),
        "contexts/tasks/T-900-deep.yaml",
        "invalid YAML at line 4, column 1007: exceeded maximum nesting depth",
    ),
    "nesting 100 deep": Case(
        _write("contexts/tasks/T-900-deep.yaml", TASK + "steps: " + "[" * 100 + "]" * 100 + "\n"),
        "contexts/tasks/T-900-deep.yaml",
        "YAML refused: values nested deeper than 64 levels",
    ),
    "oversized file": Case(
        _write("contexts/tasks/T-900-big.yaml", TASK + "notes: |\n" + "  x\n" * 600_000),
        "contexts/tasks/T-900-big.yaml",
        "file not read: larger than 1000000 bytes",
    ),
    "entity linked outside": Case(
        _link("contexts/features/FEAT-900.yaml", lambda outside: outside / "feature.yaml"),
        "contexts/features/FEAT-900.yaml",
        "file not read: it links outside the repository",
    ),
    "document linked outside": Case(
        _link("docs/leak.md", lambda outside: outside / "leak.md"),
        "docs/leak.md",
        "file not read: it links outside the repository",
    ),
    "folder of entities linked outside": Case(
        _link("contexts/features/outside.yaml", lambda outside: outside),
        "contexts/features/outside.yaml",
        "file not read: it links outside the repository",
    ),
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """No token, as the desktop app launches it; the fake provider answers chat and embeddings."""
    with serve_fake_providers() as (fake_url, _):
        env = fake_service_env(fake_url)
        running = start(tmp_path_factory.mktemp("hostile") / "data", env=env, timeout=60)
        try:
            yield running
        finally:
            running.stop()


def calls(repo: Path) -> list[tuple[str, dict[str, Any]]]:
    tool = lambda tool_id, **parameters: (  # noqa: E731
        "/ai/tools/execute",
        {"toolId": tool_id, "parameters": parameters, "repoPath": str(repo)},
    )
    return [
        tool("context.list"),
        tool("context.get", entity_id="FEAT-900"),
        tool("context.get", entity_id="T-900"),
        tool("context.search", query="hostile secret outside lol"),
        tool("pipeline.build-graph"),
        tool("pipeline.generate", entity_id="FEAT-001"),
        tool("context.read", path="docs/leak.md"),
        tool("context.read", path="contexts/features/FEAT-900.yaml"),
        ("/ai/rag/query", {"query": "What is the outside secret?", "repoPath": str(repo)}),
        tool("pipeline.validate"),
    ]


def _rss(service: Service) -> int:
    return int(psutil.Process(service.process.pid).memory_info().rss)


def _post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=CALL_SECONDS)


@pytest.fixture(scope="module")
def baseline_rss(service: Service, tmp_path_factory: pytest.TempPathFactory) -> int:
    """Memory after every call has run once on a clean repository (clients and models warm)."""
    clean = tmp_path_factory.mktemp("clean") / "repo"
    shutil.copytree(SAMPLE_REPO, clean)
    for path, body in calls(clean):
        assert _post(service.url, path, body).status_code == 200
    return _rss(service)


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_repository_is_answered_quickly_and_safely(
    service: Service, baseline_rss: int, tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "feature.yaml").write_text(f"id: FEAT-900\ntitle: {SECRET}\nstatus: done\n")
    (outside / "leak.md").write_text(f"# {SECRET}\n\n{SECRET} lives here.\n")
    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    case.plant(repo, outside)

    answers = []
    for path, body in calls(repo):
        try:
            response = _post(service.url, path, body)
        except httpx.TimeoutException:
            pytest.fail(f"{path} {body.get('parameters', '')} took over 5 s")
        assert response.status_code == 200, response.text
        assert SECRET not in response.text
        answers.append(response.json())

    report = answers[-1]["result"]
    assert {"file": case.file, "message": case.problem} in report["loadErrors"]
    assert len(report["loadErrors"]) == 1
    assert report["entityCount"] == 46  # the sample's own entities all still load
    assert _rss(service) - baseline_rss < GROWTH_BYTES
    assert httpx.get(f"{service.url}/ready", timeout=CALL_SECONDS).status_code == 200
