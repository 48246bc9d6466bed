"""A write killed at every one of its durable steps (`tests/crash_points.py`): a create that
adds the feature's back-link, and a patch. After the restart (which finishes or rolls back
what the journal holds) the repository is valid and holds the change whole or not at all, and
the same approval sent again applies it once, or answers what was applied, writing nothing.

Each step is hit by a real service process killed during the approval, and by at least 50
runs of the write path in a forked process (the same code, killed the same way, cheaper)."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from context_kit_service.repository import load_repository, writes
from tests.conftest import REPO_ROOT, SAMPLE_REPO
from tests.crash_points import arm
from tests.service_process import cli_env, read_line, start

STORY = {
    "feature": "FEAT-001",
    "asA": "member",
    "iWant": "to keep a copy of my data",
    "soThat": "I can leave any time",
}
TASK = "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"
KEY = "thread-1|request_approval:pause|change"
RUNS = 50


def _patch_text(root: Path) -> str:
    return f"--- a/{TASK}\n+++ b/{TASK}\n@@ -1,0 +1,1 @@\n+# reviewed\n"


def _create(root: Path, data: Path) -> Any:
    return writes.create_entity(root, data, "userstory", dict(STORY), key=KEY).as_dict()


def _patch(root: Path, data: Path) -> Any:
    target = (root / TASK).resolve()
    patched = writes.apply_patch(root, data, target, _patch_text(root), 1_000_000, key=KEY)
    return {"applied": patched.applied, "conflicts": patched.conflicts}


WRITES: dict[str, Callable[[Path, Path], Any]] = {"create": _create, "patch": _patch}


def _state(root: Path) -> tuple[set[str], str, list[str]]:
    """The stories, the task's text and FEAT-001's back-links."""
    stories = {p.name for p in (root / "contexts" / "userstories").iterdir()}
    feature = load_repository(root).entities["FEAT-001"].data
    return stories, (root / TASK).read_text(), list(feature.get("userStories", []))


def _check_whole_or_nothing(name: str, root: Path, before: tuple[Any, ...]) -> bool:
    """The repository is valid and holds the change whole or not at all; whether it does."""
    assert load_repository(root).validate()["valid"] is True
    stories, task, links = _state(root)
    leftovers = [p.name for p in root.rglob(".*") if p.suffix in (".stage", ".tmp")]
    assert leftovers == []
    if name == "create":
        added = stories - before[0]
        assert len(added) <= 1
        assert links == before[2] + (["US-013"] if added else [])
        return bool(added)
    assert task in (before[1], "# reviewed\n" + before[1])
    return task != before[1]


def _steps(name: str, tmp_path: Path) -> int:
    """How many durable steps the write makes (counted in a child that is not killed)."""
    root, data = _fresh(tmp_path / f"count-{name}")
    count = tmp_path / f"{name}.steps"
    _in_child(lambda: (arm(0, [root, data / "journal"], count), WRITES[name](root, data)))
    return len(count.read_text().splitlines())


def _fresh(folder: Path) -> tuple[Path, Path]:
    root = folder / "repo"
    shutil.copytree(SAMPLE_REPO, root)
    return root, folder / "data"


def _in_child(work: Callable[[], Any]) -> int:
    """Run `work` in a forked child; its exit status (-9 when it was killed)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            work()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


@pytest.fixture(scope="module")
def step_counts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    folder = tmp_path_factory.mktemp("steps")
    return {name: _steps(name, folder) for name in WRITES}


def test_the_writes_have_the_steps_the_journal_describes(step_counts: dict[str, int]) -> None:
    # intent (open, rename), a staged file each, commit (open, rename), a rename each, record
    assert step_counts == {"create": 9, "patch": 7}


AFTERWARDS = ("restart, then the approval again", "the approval again", "another write first")


@pytest.mark.parametrize("name", list(WRITES))
def test_a_write_killed_at_any_step_is_whole_or_absent_and_lands_once(
    tmp_path: Path, step_counts: dict[str, int], name: str
) -> None:
    write = WRITES[name]
    plans = itertools.cycle(itertools.product(range(1, step_counts[name] + 1), AFTERWARDS))
    outcomes = {"applied": 0, "absent": 0}
    for run, (at, afterwards) in zip(range(RUNS), plans, strict=False):
        root, data = _fresh(tmp_path / f"run-{run}")
        before = _state(root)
        folders = [root, data / "journal"]
        status = _in_child(lambda: (arm(at, folders), write(root, data)))  # noqa: B023
        assert status == -signal.SIGKILL, (run, at)
        if afterwards.startswith("restart"):
            writes.recover_interrupted(data, root)
        elif afterwards == "another write first":
            writes.patch_entity(root, data, "T-001", {"notes": "meanwhile"})
        if afterwards != "the approval again":  # else the approval's own writer recovers
            landed = _check_whole_or_nothing(name, root, before)
            outcomes["applied" if landed else "absent"] += 1
        first = write(root, data)
        again = write(root, data)
        assert first == again
        assert _check_whole_or_nothing(name, root, before) is True
    assert outcomes["applied"] > 0
    assert outcomes["absent"] > 0


def _approval_body(name: str) -> dict[str, Any]:
    if name == "create":
        return {
            "toolId": "context.create",
            "parameters": {"entityType": "userstory", "fields": STORY},
        }
    return {
        "toolId": "context.writePatch",
        "parameters": {"path": TASK, "patch": _patch_text(Path())},
    }


def _serve_armed(at: int, root: Path, data: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.crash_points", str(at), "-", str(root)]
    command += [str(data / "journal"), "--", "serve", "--port", "0"]
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=cli_env(data, CKS_REPO_PATH=str(root)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.parametrize("name", list(WRITES))
def test_a_service_killed_at_each_step_of_an_approved_write(
    tmp_path: Path, step_counts: dict[str, int], name: str
) -> None:
    import json

    body = _approval_body(name)
    for at in range(1, step_counts[name] + 1):
        root, data = _fresh(tmp_path / f"{name}-{at}")
        before = _state(root)
        process = _serve_armed(at, root, data)
        url = json.loads(read_line(process, 60))["url"]
        paused = httpx.post(f"{url}/ai/tools/execute", json=body, timeout=30).json()
        approval = {**body, "threadId": paused["metadata"]["threadId"]}
        approval["approval"] = {"approved": True}
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{url}/ai/tools/execute", json=approval, timeout=30)
        assert process.wait(10) == -signal.SIGKILL
        process.communicate()
        service = start(data, env={"CKS_REPO_PATH": str(root)})
        try:
            _check_whole_or_nothing(name, root, before)
            report = httpx.post(
                f"{service.url}/ai/tools/execute", json={"toolId": "pipeline.validate"}
            ).json()
            assert report["result"]["valid"] is True
            done = httpx.post(f"{service.url}/ai/tools/execute", json=approval, timeout=30)
            assert done.json()["metadata"]["status"] == "completed", done.text
            assert _check_whole_or_nothing(name, root, before) is True
        finally:
            service.stop()
