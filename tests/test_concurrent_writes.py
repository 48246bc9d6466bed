"""Concurrent writers on two real service processes sharing a data dir (so their lock file):
20 approved creates and 20 approved generation saves at once, spread over both, get 40 distinct
ids, lose no back-link, and leave the repository valid."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from context_kit_service.repository import load_repository
from tests.conftest import SAMPLE_REPO
from tests.fake_providers import fake_service_env, serve_fake_providers
from tests.service_process import Service, start

TOKEN = "concurrency-token-0123456789"
WRITERS = 20


@pytest.fixture(scope="module")
def repo_and_services(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, list[Service], list[Path]]]:
    base = tmp_path_factory.mktemp("concurrent")
    repo = base / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    with serve_fake_providers() as (fake_url, _):
        env = fake_service_env(
            fake_url,
            AUTH_TOKEN=TOKEN,
        )
        logs = [base / f"service-{n}.log" for n in range(2)]
        services = [start(base / "data", env=env, timeout=60, log=log) for log in logs]
        try:
            yield repo, services, logs
        finally:
            for service in services:
                service.stop()


async def _approved(
    client: httpx.AsyncClient, path: str, request: dict[str, Any]
) -> dict[str, Any]:
    paused = (await client.post(path, json=request)).json()
    assert paused.get("metadata", {}).get("status") == "pending_approval", paused
    approval = {"threadId": paused["metadata"]["threadId"], "approval": {"approved": True}}
    response = await client.post(path, json={**request, **approval})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _create(client: httpx.AsyncClient, repo: Path, n: int) -> str:
    fields = {"title": f"Parallel task {n}", "status": "todo", "related": {"feature": "FEAT-002"}}
    done = await _approved(
        client,
        "/ai/tools/execute",
        {
            "toolId": "context.create",
            "parameters": {"entity_type": "task", "fields": fields},
            "repoPath": str(repo),
        },
    )
    assert done["metadata"]["status"] == "completed", done
    return str(done["result"]["id"])


async def _generate(client: httpx.AsyncClient, repo: Path, n: int) -> str:
    done = await _approved(
        client,
        "/ai/generate-entity",
        {
            "entityType": "task",
            "userPrompt": f"Generated task number {n} for the budgets feature",
            "linkedFeatureId": "FEAT-003",
            "repoPath": str(repo),
            "save": True,
        },
    )
    assert done["metadata"]["status"] == "completed", done
    return str(done["entity"]["id"])


async def _all_writers(urls: list[str], repo: Path) -> tuple[list[str], list[str]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=2 * WRITERS)
    clients = [
        httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) for url in urls
    ]
    try:
        created = asyncio.gather(*(_create(clients[n % 2], repo, n) for n in range(WRITERS)))
        generated = asyncio.gather(*(_generate(clients[n % 2], repo, n) for n in range(WRITERS)))
        return list(await created), list(await generated)
    finally:
        for client in clients:
            await client.aclose()


def test_parallel_creates_and_generation_saves_get_distinct_ids_and_keep_every_backlink(
    repo_and_services: tuple[Path, list[Service], list[Path]],
) -> None:
    repo, services, logs = repo_and_services
    before = load_repository(repo)
    try:
        created, generated = asyncio.run(_all_writers([s.url for s in services], repo))
    except AssertionError as failure:
        tails = "\n".join(f"--- {log.name}:\n{log.read_text()[-6000:]}" for log in logs)
        raise AssertionError(f"{failure}\n{tails}") from None

    new_ids = created + generated
    assert len(set(new_ids)) == 2 * WRITERS
    after = load_repository(repo)
    assert set(after.entities) - set(before.entities) == set(new_ids)
    assert sorted(after.entities["FEAT-002"].data["tasks"]) == sorted(
        [*before.entities["FEAT-002"].data["tasks"], *created]
    )
    assert sorted(after.entities["FEAT-003"].data["tasks"]) == sorted(
        [*before.entities["FEAT-003"].data["tasks"], *generated]
    )
    assert {after.entities[i].data["related"]["feature"] for i in created} == {"FEAT-002"}
    assert {after.entities[i].data["related"]["feature"] for i in generated} == {"FEAT-003"}
    report = httpx.post(
        f"{services[0].url}/ai/tools/execute",
        json={"toolId": "pipeline.validate", "parameters": {}, "repoPath": str(repo)},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ).json()["result"]
    assert (report["valid"], report["entityCount"]) == (True, len(before.entities) + 2 * WRITERS)
    leftovers = [p.name for p in repo.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
