"""One approval, one write: 20 clients approving the same pause at once, on the REST route,
LangServe and the app's SSE route, against a real service process, make exactly one change;
every answer is the change's result or 409, never a second write or a 5xx."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from context_kit_service.repository import load_repository
from tests.conftest import SAMPLE_REPO
from tests.fake_providers import AGENT_TASK_DRAFT, fake_service_env, serve_fake_providers
from tests.service_process import Service, start

CLIENTS = 20
TASKS = "contexts/tasks"
STORY = {
    "feature": "FEAT-001",
    "asA": "member",
    "iWant": "to keep a copy of my data",
    "soThat": "I can leave any time",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("once") / "repo"
    shutil.copytree(SAMPLE_REPO, root)
    return root


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, repo: Path) -> Iterator[Service]:
    with serve_fake_providers() as (fake_url, _):
        env = fake_service_env(fake_url, REPO_PATH=str(repo))
        running = start(tmp_path_factory.mktemp("once-data") / "data", env=env, timeout=60)
        try:
            yield running
        finally:
            running.stop()


def _all_at_once(send: Any) -> list[httpx.Response]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda _: send(), range(CLIENTS)))


def _files(repo: Path, folder: str) -> set[str]:
    return {p.name for p in (repo / folder).iterdir()}


def _check_one_write(repo: Path, folder: str, before: set[str]) -> str:
    added = _files(repo, folder) - before
    assert len(added) == 1, added
    assert load_repository(repo).validate()["valid"] is True
    return added.pop()


def test_twenty_approvals_on_rest_write_once(service: Service, repo: Path) -> None:
    body = {
        "toolId": "context.create",
        "parameters": {"entityType": "userstory", "fields": STORY},
    }
    paused = httpx.post(f"{service.url}/ai/tools/execute", json=body, timeout=30).json()
    approval = {**body, "threadId": paused["metadata"]["threadId"], "approval": {"approved": True}}
    before = _files(repo, "contexts/userstories")
    answers = _all_at_once(
        lambda: httpx.post(f"{service.url}/ai/tools/execute", json=approval, timeout=60)
    )
    added = _check_one_write(repo, "contexts/userstories", before)
    done = [a.json()["result"] for a in answers if a.status_code == 200]
    assert {a.status_code for a in answers} <= {200, 409}
    assert done
    assert all(d == done[0] for d in done)
    assert done[0]["path"] == f"contexts/userstories/{added}"
    feature = load_repository(repo).entities["FEAT-001"].data
    assert feature["userStories"].count(done[0]["id"]) == 1


def test_twenty_approvals_on_langserve_write_once(service: Service, repo: Path) -> None:
    task = repo / "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"
    before_text = task.read_text()
    patch = f"--- a/{task.name}\n+++ b/{task.name}\n@@ -1,0 +1,1 @@\n+# reviewed once\n"
    tool_input = {
        "tool_id": "context.writePatch",
        "parameters": {"path": f"{TASKS}/{task.name}", "patch": patch},
    }
    paused = httpx.post(
        f"{service.url}/graphs/tools/invoke", json={"input": tool_input}, timeout=30
    ).json()["output"]
    config = {"configurable": {"thread_id": paused["thread_id"]}}
    body = {"input": {**tool_input, "approval": {"approved": True}}, "config": config}
    answers = _all_at_once(
        lambda: httpx.post(f"{service.url}/graphs/tools/invoke", json=body, timeout=60)
    )
    assert {a.status_code for a in answers} <= {200, 409}
    assert task.read_text() == "# reviewed once\n" + before_text
    done = [a.json()["output"]["result"] for a in answers if a.status_code == 200]
    assert done
    assert all(d["applied"] is True for d in done)


def _sse(service: Service, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    events = []
    with httpx.stream("POST", f"{service.url}/ai/assist/stream", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line.removeprefix("data: ")))
        return response.status_code, events


def test_twenty_approvals_on_the_sse_route_write_once(service: Service, repo: Path) -> None:
    status, events = _sse(service, {"question": "Create a task for the budget index"})
    assert status == 200
    pause = events[-1]["metadata"]
    assert pause["status"] == "pending_approval", events
    before = _files(repo, TASKS)
    body = {
        "question": "Create a task for the budget index",
        "threadId": pause["threadId"],
        "approval": {"approved": True},
    }
    answers = _all_at_once(lambda: _sse(service, body))
    added = _check_one_write(repo, TASKS, before)
    finals = [events[-1] for _, events in answers]
    assert {f["type"] for f in finals} <= {"complete", "error"}
    assert {f["code"] for f in finals if f["type"] == "error"} <= {"NO_PENDING_APPROVAL"}
    assert any(f["type"] == "complete" for f in finals)
    written = (repo / TASKS / added).read_text()
    assert f"title: {AGENT_TASK_DRAFT['title']}" in written
