"""Full and read-only disks, on small tmpfs mounts: an approved write answers with the
documented code and says what to fix, the repository stays valid, `/health` says degraded
with the reason, and the same approval applies the change once the disk is fixed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.repository import load_repository
from context_kit_service.server import create_app
from context_kit_service.settings import Settings
from tests.conftest import SAMPLE_REPO

TASK_FILE = "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"
STORY = {
    "feature": "FEAT-001",
    "asA": "member",
    "iWant": "to keep a copy of my data",
    "soThat": "I can leave any time",
}


def _mount(path: Path, size: str) -> None:
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[dict[str, Path]]:
    places = {"repo": tmp_path / "repo-disk", "data": tmp_path / "data-disk"}
    mounted = []
    try:
        for name, size in (("repo", "4m"), ("data", "8m")):
            _mount(places[name], size)
            mounted.append(places[name])
        yield places
    finally:
        for place in mounted:
            subprocess.run(["umount", "-l", str(place)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / f"filler-{uuid.uuid4().hex}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def client(mounts: dict[str, Path]) -> Iterator[tuple[TestClient, Path, Path]]:
    repo = mounts["repo"] / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=mounts["data"] / "data",
        allowed_hosts=["testserver"],
        repo_path=repo,
    )
    app = create_app(settings, embeddings=DeterministicFakeEmbedding(size=32))
    with TestClient(app) as http:
        yield http, repo, settings.data_dir


def _pause(http: TestClient) -> dict[str, Any]:
    body = {"toolId": "context.create", "parameters": {"entityType": "userstory", "fields": STORY}}
    paused = http.post("/ai/tools/execute", json=body).json()
    assert paused["metadata"]["status"] == "pending_approval"
    return {**body, "threadId": paused["metadata"]["threadId"], "approval": {"approved": True}}


def _health(http: TestClient, name: str) -> tuple[str, str, str]:
    http.app.state.service.health._cached = None  # type: ignore[attr-defined]
    body = http.get("/health").json()
    return body["status"], body["dependencies"][name], body["dependencyDetails"][name]["detail"]


def _stories(repo: Path) -> set[str]:
    return {p.name for p in (repo / "contexts" / "userstories").iterdir()}


def _approve_after_the_fix(http: TestClient, approval: dict[str, Any], repo: Path) -> None:
    before = _stories(repo)
    done = http.post("/ai/tools/execute", json=approval)
    assert done.status_code == 200, done.text
    assert done.json()["metadata"]["status"] == "completed"
    assert len(_stories(repo) - before) == 1
    assert load_repository(repo).validate()["valid"] is True
    again = http.post("/ai/tools/execute", json=approval)
    assert again.json()["code"] == "NO_PENDING_APPROVAL"
    assert len(_stories(repo) - before) == 1


def test_a_full_repository_disk(client: tuple[TestClient, Path, Path]) -> None:
    http, repo, _ = client
    approval = _pause(http)
    filler = _fill(repo.parent)
    before = _stories(repo)
    refused = http.post("/ai/tools/execute", json=approval)
    assert (refused.status_code, refused.json()["code"], refused.json()["message"]) == (
        507,
        "INSUFFICIENT_STORAGE",
        "the change was not applied: cannot write the repository: the disk is full; "
        "free some space, then approve again",
    )
    assert _stories(repo) == before
    assert load_repository(repo).validate()["valid"] is True
    assert [p.name for p in repo.rglob(".*.stage")] == []
    assert _health(http, "repository") == (
        "degraded",
        "degraded",
        "the repository cannot be written: its disk is full",
    )
    filler.unlink()
    _approve_after_the_fix(http, approval, repo)


def test_a_full_data_disk(client: tuple[TestClient, Path, Path]) -> None:
    http, repo, data_dir = client
    approval = _pause(http)
    filler = _fill(data_dir.parent)
    refused = http.post("/ai/tools/execute", json=approval)
    assert (refused.status_code, refused.json()["code"]) == (507, "INSUFFICIENT_STORAGE")
    assert "free some space, then approve again" in refused.json()["message"]
    assert load_repository(repo).validate()["valid"] is True
    status, state, detail = _health(http, "checkpointer")
    assert (status, state, detail) == (
        "degraded",
        "degraded",
        "the data dir cannot be written: its disk is full",
    )
    filler.unlink()
    _approve_after_the_fix(http, approval, repo)


def test_a_read_only_repository(
    client: tuple[TestClient, Path, Path], mounts: dict[str, Path]
) -> None:
    http, repo, _ = client
    approval = _pause(http)
    subprocess.run(["mount", "-o", "remount,ro", str(mounts["repo"])], check=True)
    try:
        refused = http.post("/ai/tools/execute", json=approval)
        assert (refused.status_code, refused.json()["code"], refused.json()["message"]) == (
            409,
            "REPOSITORY_READ_ONLY",
            "the change was not applied: cannot write the repository: it is read-only or "
            "not writable by the service; fix that, then approve again",
        )
        assert _health(http, "repository") == (
            "degraded",
            "degraded",
            "the repository cannot be written: it is read-only",
        )
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mounts["repo"])], check=True)
    assert load_repository(repo).validate()["valid"] is True
    _approve_after_the_fix(http, approval, repo)


def _until_seen(ask: Any, *, stale: bool) -> Any:
    """The first answer whose index is (or is no longer) stale, within 2 s: the watcher sees
    a change within a fraction of that."""
    deadline = time.monotonic() + 2
    while (answer := ask()).status_code == 200 and time.monotonic() < deadline:
        if answer.json()["metadata"]["indexStale"] is stale:
            break
        time.sleep(0.05)
    return answer


def test_a_failed_index_sync_keeps_the_last_index_serving(
    mounts: dict[str, Path], tmp_path: Path
) -> None:
    """The data disk fills and a file changes: RAG answers from the last complete index and
    says it is stale, pipeline.build-embeddings reports the failure, the CLI prints one line
    and exits 1; once there is space, the next query brings the index up to date."""
    from tests.fake_providers import fake_service_env, serve_fake_providers
    from tests.fakes import replies
    from tests.service_process import run_cli

    repo = mounts["repo"] / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    data_dir = mounts["data"] / "data"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=data_dir, allowed_hosts=["testserver"], repo_path=repo
    )
    model = replies(*["Budgets are exported as CSV [FEAT-007]."] * 200)
    app = create_app(settings, chat_model=model, embeddings=DeterministicFakeEmbedding(size=32))
    query = {"query": "How are budgets exported?", "topK": 3}
    with TestClient(app) as http:
        first = http.post("/ai/rag/query", json=query).json()
        assert first["metadata"]["indexStale"] is False
        task = repo / TASK_FILE
        task.write_text(task.read_text() + "notes: exported budgets are zipped\n")
        filler = _fill(data_dir.parent)
        stale = _until_seen(lambda: http.post("/ai/rag/query", json=query), stale=True)
        assert stale.status_code == 200, stale.text
        metadata = stale.json()["metadata"]
        assert metadata["indexStale"] is True
        assert metadata["indexStaleReason"] == (
            "the index could not be updated (the data dir's disk is full); "
            "answers come from its last complete version"
        )
        assert [s["entityId"] for s in stale.json()["sources"]] == [
            s["entityId"] for s in first["sources"]
        ]
        built = http.post("/ai/tools/execute", json={"toolId": "pipeline.build-embeddings"})
        assert built.json()["error"] == ("the index was not updated (the data dir's disk is full)")
        with serve_fake_providers() as (fake_url, _):
            env = fake_service_env(fake_url) | {"CKS_DATA_DIR": str(data_dir)}
            cli = run_cli(tmp_path / "cli-data", "index", str(repo), **env)
        assert cli.returncode == 1
        assert cli.stderr.strip().splitlines()[-1] == (
            "error: the index was not updated (the data dir's disk is full)"
        )
        assert "Traceback" not in cli.stderr
        filler.unlink()
        task.write_text(task.read_text() + "notes: and signed\n")
        fresh = _until_seen(lambda: http.post("/ai/rag/query", json=query), stale=False)
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["metadata"]["indexStale"] is False
