"""The app's tool vocabulary (the contract's table) through `/ai/tools/execute`, with the
app's parameter names (camelCase) and the result keys it expects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.repository import load_repository
from context_kit_service.server import create_app
from tests.conftest import SAMPLE_REPO


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from context_kit_service.settings import Settings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("app-tools"),
        allowed_hosts=["testserver"],
    )
    app = create_app(settings, embeddings=DeterministicFakeEmbedding(size=32))
    with TestClient(app) as client:
        yield client


def run(http: TestClient, tool_id: str, parameters: dict[str, Any] | None = None) -> Any:
    body = {"toolId": tool_id, "parameters": parameters or {}, "repoPath": str(SAMPLE_REPO)}
    response = http.post("/ai/tools/execute", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["metadata"]["toolId"] == tool_id
    return payload


def test_impact_of_several_changed_ids(http: TestClient) -> None:
    result = run(http, "pipeline.impact", {"changedIds": ["FEAT-001", "SVC-001"]})["result"]
    repo = load_repository(SAMPLE_REPO)
    expected = {item["id"] for item in repo.impact("FEAT-001")} | {
        item["id"] for item in repo.impact("SVC-001")
    }
    assert [c["id"] for c in result["changed"]] == ["FEAT-001", "SVC-001"]
    assert {a["id"] for a in result["affected"]} == expected - {"FEAT-001", "SVC-001"}
    assert result["count"] == len(result["affected"])


def test_generate_bundles_for_ids(http: TestClient) -> None:
    result = run(http, "pipeline.generate", {"ids": ["T-001", "US-002"]})["result"]
    assert [b["entity"]["id"] for b in result["bundles"]] == ["T-001", "US-002"]
    assert result["bundles"][0]["schema"]["title"]


def test_entity_details_and_similar(http: TestClient) -> None:
    details = run(http, "entity.details", {"id": "FEAT-001"})["result"]
    assert (details["id"], details["type"]) == ("FEAT-001", "feature")
    assert details["relations"]
    similar = run(http, "entity.similar", {"entityId": "FEAT-001", "topK": 3})["result"]
    assert similar["entity"] == "FEAT-001"
    assert similar["count"] == len(similar["similar"]) == 3
    assert "FEAT-001" not in [s["entity_id"] for s in similar["similar"]]


def test_build_embeddings_reports_counts(http: TestClient) -> None:
    first = run(http, "pipeline.build-embeddings")["result"]
    again = run(http, "pipeline.build-embeddings")["result"]
    assert 0 < first["files"] <= first["chunks"]
    assert (again["files"], again["chunks"], again["embeddedChunks"]) == (
        first["files"],
        first["chunks"],
        0,
    )


@pytest.mark.parametrize(
    ("pipeline", "args", "key"),
    [
        ("validate", {}, "totals"),
        ("build-graph", {}, "nodes"),
        ("impact", {"changedIds": ["T-001"]}, "affected"),
        ("generate", {"ids": ["T-001"]}, "bundles"),
        ("build-embeddings", {}, "chunks"),
    ],
)
def test_pipeline_run_forwards_its_args(
    http: TestClient, pipeline: str, args: dict[str, Any], key: str
) -> None:
    result = run(http, "pipeline.run", {"pipeline": pipeline, "args": args})["result"]
    assert (result["pipeline"], result["status"]) == (pipeline, "succeeded")
    assert key in result["result"]
    assert result["artifacts"] == [result["logPath"]]
    assert json.loads(Path(result["logPath"]).read_text())["result"] == result["result"]


def test_a_failing_pipeline_says_failed(http: TestClient) -> None:
    result = run(http, "pipeline.run", {"pipeline": "impact", "args": {"changedIds": ["NOPE-1"]}})
    assert (result["result"]["status"], result["result"]["error"]) == (
        "failed",
        "no entity with id 'NOPE-1'",
    )


def test_unknown_and_empty_tool_ids(http: TestClient) -> None:
    unknown = run(http, "context.nope")
    assert unknown["error"].startswith("unknown tool 'context.nope'; known tools: context.create")
    assert "entity.similar" in unknown["error"]
    empty = http.post("/ai/tools/execute", json={"toolId": "", "parameters": {}})
    assert (empty.status_code, empty.json()["details"][0]["field"]) == (422, "toolId")


TASK = "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, target)
    return target


def _approved(http: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    paused = http.post("/ai/tools/execute", json=body).json()
    assert paused["metadata"]["status"] == "pending_approval", paused
    thread = paused["metadata"]["threadId"]
    approved = {**body, "threadId": thread, "approval": {"approved": True}}
    return http.post("/ai/tools/execute", json=approved).json()  # type: ignore[no-any-return]


def _diff(before: str, after: str) -> str:
    import difflib

    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), "a/x", "b/x"
    )
    return "".join(lines)


def test_write_patch_applies_a_unified_diff_after_approval(http: TestClient, copy: Path) -> None:
    task = copy / TASK
    before = task.read_text()
    after = before.replace("status: todo", "status: doing")
    body = {
        "toolId": "context.writePatch",
        "parameters": {"path": TASK, "patch": _diff(before, after), "summary": "start T-004"},
        "repoPath": str(copy),
    }
    done = _approved(http, body)
    assert done["result"] == {
        "path": TASK,
        "applied": True,
        "conflicts": [],
        "summary": "start T-004",
    }
    assert task.read_text() == after


def test_a_patch_that_does_not_apply_leaves_the_file_untouched(
    http: TestClient, copy: Path
) -> None:
    task = copy / TASK
    before = task.read_text()
    stale = _diff(before.replace("status: todo", "status: done"), before)
    body = {
        "toolId": "context.writePatch",
        "parameters": {"path": TASK, "patch": stale},
        "repoPath": str(copy),
    }
    done = _approved(http, body)
    assert (done["result"]["applied"], len(done["result"]["conflicts"])) == (False, 1)
    assert done["result"]["conflicts"][0].startswith("hunk 1: ")
    assert task.read_text() == before


def test_a_patch_outside_the_repository_is_refused(http: TestClient, copy: Path) -> None:
    outside = copy.parent / "outside.txt"
    outside.write_text("keep\n")
    body = {
        "toolId": "context.writePatch",
        "parameters": {"path": "../outside.txt", "patch": _diff("keep\n", "changed\n")},
        "repoPath": str(copy),
    }
    done = _approved(http, body)
    assert (done["metadata"]["status"], done["error"]) == (
        "error",
        "path may not contain '..'",
    )
    assert outside.read_text() == "keep\n"


def test_write_patch_keeps_todays_entity_changes(http: TestClient, copy: Path) -> None:
    body = {
        "toolId": "context.writePatch",
        "parameters": {"entityId": "T-004", "changes": {"status": "blocked"}},
        "repoPath": str(copy),
    }
    done = _approved(http, body)
    assert done["metadata"]["tool"] == "patch_entity"
    assert "status: blocked" in (copy / TASK).read_text()


def _git(root: Path, *args: str) -> str:
    import subprocess

    command = ["git", "-C", str(root), "-c", "user.name=T", "-c", "user.email=t@example.com"]
    return subprocess.run([*command, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(copy: Path) -> Path:
    _git(copy, "init", "-q", "-b", "main")
    _git(copy, "add", "-A")
    _git(copy, "commit", "-q", "-m", "start")
    task = copy / TASK
    task.write_text(task.read_text().replace("status: todo", "status: doing"))
    (copy / "docs" / "notes.md").write_text("# Notes\n")
    readme = copy / "README.md"
    readme.write_text(readme.read_text() + "More.\n")
    _git(copy, "add", "README.md")
    return copy


def test_git_status_and_diff_on_a_real_checkout(http: TestClient, checkout: Path) -> None:
    body = {"toolId": "git.status", "parameters": {"includeDiff": True}, "repoPath": str(checkout)}
    status = http.post("/ai/tools/execute", json=body).json()["result"]
    assert (status["staged"], status["unstaged"], status["untracked"]) == (
        ["README.md"],
        [TASK],
        ["docs/notes.md"],
    )
    assert "+status: doing" in status["diff"]
    one = {"toolId": "git.diff", "parameters": {"path": TASK}, "repoPath": str(checkout)}
    diff = http.post("/ai/tools/execute", json=one).json()["result"]
    assert diff["diff"].startswith(f"diff --git a/{TASK} b/{TASK}")
    assert "README.md" not in diff["diff"]


def test_prepare_pr_drafts_a_branch_after_approval_and_never_pushes(
    http: TestClient, checkout: Path
) -> None:
    body = {
        "toolId": "git.preparePr",
        "parameters": {"title": "Start T-004", "description": "Dedup.", "reviewers": ["ada"]},
        "repoPath": str(checkout),
    }
    done = _approved(http, body)["result"]
    assert done["branch"] == "draft/start-t-004"
    assert _git(checkout, "branch", "--list", "draft/start-t-004").strip() == "draft/start-t-004"
    assert _git(checkout, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert _git(checkout, "remote").strip() == ""
    summary = Path(done["summaryPath"]).read_text()
    assert summary.startswith("# Start T-004\n\nDedup.\n\nReviewers: ada\n")
    assert f"- {TASK}" in summary
    assert "git push -u origin draft/start-t-004" in done["instructions"]


def test_git_tools_on_a_folder_that_is_no_checkout(http: TestClient, copy: Path) -> None:
    body = {"toolId": "git.status", "parameters": {}, "repoPath": str(copy)}
    out = http.post("/ai/tools/execute", json=body).json()
    assert out["error"] == "the repository is not a git checkout (git init it first)"


def test_a_hostile_git_config_runs_nothing(http: TestClient, checkout: Path) -> None:
    marker = checkout.parent / "ran"
    _git(checkout, "config", "core.fsmonitor", f"touch {marker}; false")
    _git(checkout, "config", "core.hooksPath", str(checkout / "hooks"))
    body = {"toolId": "git.status", "parameters": {}, "repoPath": str(checkout)}
    status = http.post("/ai/tools/execute", json=body).json()["result"]
    assert status["unstaged"] == [TASK]
    assert not marker.exists()
