"""A repository's git metadata is input: nothing in it makes the git tools run a command or
show, read or write anything outside the repository (filters, textconv, `core.worktree`, a
`.git` file, alternates), through `/ai/tools/execute` as the app calls it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.server import create_app
from context_kit_service.settings import Settings
from tests.conftest import SAMPLE_REPO

TASK = "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"
SECRET = "OUTSIDE-SECRET-7f3a"


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path_factory.mktemp("git-data"), allowed_hosts=["testserver"]
    )
    with TestClient(create_app(settings, embeddings=DeterministicFakeEmbedding(size=32))) as c:
        yield c


def _git(root: Path, *args: str) -> str:
    command = ["git", "-C", str(root), "-c", "user.name=T", "-c", "user.email=t@example.com"]
    return subprocess.run([*command, *args], check=True, capture_output=True, text=True).stdout


def _checkout(folder: Path) -> Path:
    shutil.copytree(SAMPLE_REPO, folder)
    _git(folder, "init", "-q", "-b", "main")
    _git(folder, "add", "-A")
    _git(folder, "commit", "-q", "-m", "start")
    task = folder / TASK
    task.write_text(task.read_text().replace("status: todo", "status: doing"))
    return folder


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return _checkout(tmp_path / "repo")


def _tool(http: TestClient, root: Path, tool_id: str, **parameters: Any) -> dict[str, Any]:
    body = {"toolId": tool_id, "parameters": parameters, "repoPath": str(root)}
    response = http.post("/ai/tools/execute", json=body)
    assert response.status_code == 200, response.text
    out: dict[str, Any] = response.json()
    return out


def _approved(http: TestClient, root: Path, tool_id: str, **parameters: Any) -> dict[str, Any]:
    pending = _tool(http, root, tool_id, **parameters)
    body = {
        "toolId": tool_id,
        "parameters": parameters,
        "repoPath": str(root),
        "threadId": pending["metadata"]["threadId"],
        "approval": {"approved": True},
    }
    out: dict[str, Any] = http.post("/ai/tools/execute", json=body).json()
    return out


def test_a_filter_driver_of_the_repository_is_not_run(http: TestClient, checkout: Path) -> None:
    marker = checkout.parent / "filter-ran"
    _git(checkout, "config", "filter.cl.clean", f"touch {marker}; cat")
    _git(checkout, "config", "filter.cl.process", f"touch {marker}")
    (checkout / ".gitattributes").write_text("*.yaml filter=cl\n")
    subprocess.run(["touch", "-d", "2001-01-01", str(checkout / TASK)], check=True)
    status = _tool(http, checkout, "git.status", includeDiff=True)["result"]
    diff = _tool(http, checkout, "git.diff", path=TASK)["result"]
    assert (status["unstaged"], status["untracked"]) == ([TASK], [".gitattributes"])
    assert "+status: doing" in diff["diff"]
    assert not marker.exists()


def test_a_textconv_driver_is_not_run(http: TestClient, checkout: Path) -> None:
    marker = checkout.parent / "textconv-ran"
    _git(checkout, "config", "diff.tc.textconv", f"sh -c 'touch {marker}; cat \"$0\"'")
    _git(checkout, "config", "diff.tc.command", f"sh -c 'touch {marker}'")
    (checkout / ".gitattributes").write_text("*.yaml diff=tc\n")
    diff = _tool(http, checkout, "git.diff", path=TASK)["result"]
    _tool(http, checkout, "git.status", includeDiff=True)
    assert "+status: doing" in diff["diff"]
    assert not marker.exists()


def test_a_worktree_elsewhere_is_refused(http: TestClient, checkout: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    (elsewhere / "id_rsa").write_text(SECRET)
    _git(checkout, "config", "core.worktree", str(elsewhere))
    for tool_id, parameters in (("git.diff", {"path": "id_rsa"}), ("git.status", {})):
        out = _tool(http, checkout, tool_id, **parameters)
        assert out["error"] == "core.worktree points outside the repository; refused"
        assert SECRET not in str(out)


def test_a_gitdir_file_pointing_at_another_project_is_refused(
    http: TestClient, checkout: Path, tmp_path: Path
) -> None:
    other = _checkout(tmp_path / "other")
    (other / TASK).write_text(SECRET)
    shutil.rmtree(checkout / ".git")
    (checkout / ".git").write_text(f"gitdir: {other / '.git'}\n")
    diff = _tool(http, checkout, "git.diff", path=TASK)
    assert diff["error"] == ".git links to a git dir outside the repository; refused"
    pr = _approved(http, checkout, "git.preparePr", title="Leak")
    assert pr["error"] == ".git links to a git dir outside the repository; refused"
    assert _git(other, "branch", "--list").split() == ["*", "main"]


def test_a_gitdir_file_inside_the_repository_is_used(http: TestClient, checkout: Path) -> None:
    (checkout / ".git").rename(checkout / ".real-git")
    (checkout / ".git").write_text("gitdir: .real-git\n")
    status = _tool(http, checkout, "git.status")["result"]
    assert status["unstaged"] == [TASK]


def test_objects_borrowed_from_elsewhere_are_refused(
    http: TestClient, checkout: Path, tmp_path: Path
) -> None:
    other = _checkout(tmp_path / "other")
    (checkout / ".git" / "objects" / "info" / "alternates").write_text(
        str(other / ".git" / "objects") + "\n"
    )
    out = _tool(http, checkout, "git.status")
    assert out["error"] == ".git/objects/info/alternates borrows objects from elsewhere; refused"


def test_the_service_environment_does_not_reach_git(
    http: TestClient, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = checkout.parent / "env-ran"
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", f"touch {marker}")
    monkeypatch.setenv("GIT_DIR", "/nonexistent")
    diff = _tool(http, checkout, "git.diff", path=TASK)["result"]
    assert "+status: doing" in diff["diff"]
    assert not marker.exists()


def test_a_folder_inside_another_checkout_is_not_that_checkout(
    http: TestClient, tmp_path: Path
) -> None:
    outer = _checkout(tmp_path / "outer")
    inner = outer / "nested"
    shutil.copytree(SAMPLE_REPO, inner)
    out = _tool(http, inner, "git.status")
    assert out["error"] == "the repository is not a git checkout (git init it first)"
