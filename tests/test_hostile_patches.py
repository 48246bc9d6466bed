"""The one write path refuses git metadata, keeps each file's mode, and bounds patches: a
binary patch, a decompression bomb or 20,000 hunks are answered within 2 s, and the
repository's write lock stays free for others meanwhile."""

from __future__ import annotations

import base64
import difflib
import os
import re
import shutil
import subprocess
import threading
import time
import zlib
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
BOUND_S = 2.0


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path_factory.mktemp("patch-data"), allowed_hosts=["testserver"]
    )
    with TestClient(create_app(settings, embeddings=DeterministicFakeEmbedding(size=32))) as c:
        yield c


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, root)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def _diff(before: str, after: str, name: str = "x") -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{name}", f"b/{name}"
    )
    return "".join(lines)


def _patch(
    http: TestClient, root: Path, path: str, patch: str, edited: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The patch proposed, then approved (with `edited` arguments when given)."""
    body = {
        "toolId": "context.writePatch",
        "parameters": {"path": path, "patch": patch},
        "repoPath": str(root),
    }
    paused = http.post("/ai/tools/execute", json=body).json()
    if "threadId" not in paused.get("metadata", {}):
        return paused  # refused before any pause
    approval: dict[str, Any] = {"approved": True}
    if edited is not None:
        approval["arguments"] = edited
    answer = {**body, "threadId": paused["metadata"]["threadId"], "approval": approval}
    out: dict[str, Any] = http.post("/ai/tools/execute", json=answer).json()
    return out


def test_a_patch_to_git_metadata_is_refused(http: TestClient, repo: Path) -> None:
    config = repo / ".git" / "config"
    before = config.read_text()
    evil = before + "[core]\n\tfsmonitor = touch /tmp/pwned\n"
    out = _patch(http, repo, ".git/config", _diff(before, evil))
    assert out["error"] == ".git/config is git metadata; patches may not change it"
    assert config.read_text() == before


def test_an_edited_approval_cannot_move_a_patch_into_git(http: TestClient, repo: Path) -> None:
    task = repo / TASK
    head = repo / ".git" / "HEAD"
    before = head.read_text()
    patch = _diff(before, "ref: refs/heads/evil\n")
    out = _patch(
        http,
        repo,
        TASK,
        _diff(task.read_text(), task.read_text() + "notes: x\n"),
        edited={"path": ".git/HEAD", "patch": patch},
    )
    assert out["error"] == ".git/HEAD is git metadata; patches may not change it"
    assert head.read_text() == before


def test_a_link_into_git_or_a_renamed_git_dir_is_refused(http: TestClient, repo: Path) -> None:
    config = repo / ".git" / "config"
    before = config.read_text()
    (repo / "docs" / "settings.txt").symlink_to(config)
    via_link = _patch(http, repo, "docs/settings.txt", _diff(before, before + "# x\n"))
    assert via_link["error"] == ".git/config is git metadata; patches may not change it"
    (repo / ".git").rename(repo / "vcs")
    (repo / ".git").write_text("gitdir: vcs\n")
    renamed = _patch(http, repo, "vcs/config", _diff(before, before + "# x\n"))
    assert renamed["error"] == "vcs/config is git metadata; patches may not change it"
    assert (repo / "vcs" / "config").read_text() == before


def test_a_patched_file_keeps_its_mode(http: TestClient, repo: Path) -> None:
    task = repo / TASK
    task.chmod(0o640)
    before = task.read_text()
    out = _patch(http, repo, TASK, _diff(before, before.replace("status: todo", "status: doing")))
    assert out["result"]["applied"] is True
    assert (task.stat().st_mode & 0o777, "status: doing" in task.read_text()) == (0o640, True)


def test_a_created_entity_gets_the_usual_mode(http: TestClient, repo: Path) -> None:
    body = {
        "toolId": "context.create",
        "parameters": {"entityType": "task", "fields": {"title": "Mode check", "status": "todo"}},
        "repoPath": str(repo),
    }
    paused = http.post("/ai/tools/execute", json=body).json()
    approval = {**body, "threadId": paused["metadata"]["threadId"], "approval": {"approved": True}}
    done = http.post("/ai/tools/execute", json=approval).json()["result"]
    umask = os.umask(0)
    os.umask(umask)
    assert (repo / done["path"]).stat().st_mode & 0o777 == 0o666 & ~umask


def _binary_patch(payload: bytes) -> str:
    data = zlib.compress(payload, 9)
    encoded = base64.b85encode(data).decode()
    lines = [encoded[i : i + 52] for i in range(0, len(encoded), 52)]
    body = "\n".join(chr(ord("A") + min(len(line) * 4 // 5, 25)) + line for line in lines)
    return (
        "diff --git a/docs/x.bin b/docs/x.bin\nindex 0000000..1111111 100644\n"
        f"GIT binary patch\nliteral {len(payload)}\n{body}\n\nliteral 0\nHcmV?d00001\n"
    )


@pytest.mark.parametrize(
    "patch",
    [
        "diff --git a/docs/x.bin b/docs/x.bin\nGIT binary patch\nliteral 10\nzcmb=bad!!\n\n",
        _binary_patch(b"\0" * 150_000_000),
    ],
    ids=["bad zlib", "150 MB bomb"],
)
def test_binary_patches_are_refused_at_once(http: TestClient, repo: Path, patch: str) -> None:
    (repo / "docs" / "x.bin").write_bytes(b"\0" * 10)
    started = time.perf_counter()
    out = _patch(http, repo, "docs/x.bin", patch[:190_000])
    assert time.perf_counter() - started < BOUND_S
    assert out["error"] == "binary patches are not accepted; send a unified diff of text"


def test_twenty_thousand_hunks_are_refused_in_time_and_others_write_meanwhile(
    http: TestClient, repo: Path
) -> None:
    big = repo / "docs" / "big.md"
    lines = [f"line {i}\n" for i in range(60_000)]
    big.write_text("".join(lines))
    hunks = "".join(
        f"@@ -{i * 3 + 1},1 +{i * 3 + 1},1 @@\n-line {i * 3}\n+LINE {i * 3}\n"
        for i in range(20_000)
    )
    patch = "--- a/docs/big.md\n+++ b/docs/big.md\n" + hunks
    assert len(patch) < 1_000_000
    created: list[dict[str, Any]] = []

    def create_meanwhile() -> None:
        body = {
            "toolId": "context.create",
            "parameters": {
                "entityType": "task",
                "fields": {"title": "Meanwhile", "status": "todo"},
            },
            "repoPath": str(repo),
        }
        paused = http.post("/ai/tools/execute", json=body).json()
        answer = {**body, "threadId": paused["metadata"]["threadId"]}
        created.append(
            http.post("/ai/tools/execute", json={**answer, "approval": {"approved": True}}).json()
        )

    other = threading.Thread(target=create_meanwhile)
    started = time.perf_counter()
    other.start()
    # the tool's own bound on a patch's size (200,000 characters) comes first over REST
    out = _patch(http, repo, "docs/big.md", patch[:199_000])
    other.join()
    assert time.perf_counter() - started < BOUND_S
    assert re.fullmatch(r"the patch has \d+ hunks; at most 2000 are accepted", out["error"])
    assert created[0]["metadata"]["status"] == "completed", created
    assert big.read_text() == "".join(lines)


def test_many_hunks_within_the_bound_apply_in_one_pass(tmp_path: Path, repo: Path) -> None:
    from context_kit_service.repository.writes import apply_patch

    big = repo / "docs" / "big.md"
    before = "".join(f"line {i}\n" for i in range(30_000))
    big.write_text(before)
    after = "".join(f"LINE {i}\n" if i % 15 == 0 else f"line {i}\n" for i in range(30_000))
    patch = _diff(before, after, "docs/big.md")
    started = time.perf_counter()
    outcome = apply_patch(repo, tmp_path / "data", big.resolve(), patch, 2_000_000)
    assert time.perf_counter() - started < BOUND_S
    assert (outcome.applied, outcome.conflicts, big.read_text()) == (True, [], after)
