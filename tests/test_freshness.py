"""Freshness without scanning: a watch marks a repository changed, queries only check it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from context_kit_service.repository.cache import RepositoryCache
from context_kit_service.repository.model import repository_signature, scan_repository
from context_kit_service.repository.watch import Watch
from tests.conftest import SAMPLE_REPO

NEW_TASK = """id: T-900
title: Calibrate the quokkameter
status: todo
related:
  feature: FEAT-003
"""


def wait_for(condition: object, timeout: float = 1.0) -> float:
    """Seconds until `condition()` holds; fails past `timeout`."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not seen within {timeout}s")
        time.sleep(0.005)
    return time.monotonic() - started


def test_the_scan_names_the_directories_it_reads_and_no_symlinked_one(sample_copy: Path) -> None:
    (sample_copy / "docs" / "everything").symlink_to("/", target_is_directory=True)
    (sample_copy / "node_modules" / "pkg").mkdir(parents=True)
    signature, directories = scan_repository(sample_copy)
    assert signature == repository_signature(sample_copy)
    relative = sorted(os.path.relpath(d, sample_copy) for d in directories)
    assert relative == [
        ".",
        ".context",
        ".context/schemas",
        "contexts",
        "contexts/features",
        "contexts/governance",
        "contexts/packages",
        "contexts/services",
        "contexts/specs",
        "contexts/tasks",
        "contexts/userstories",
        "docs",
    ]


def test_a_watched_signature_comes_from_memory_until_a_file_changes(sample_copy: Path) -> None:
    watch = Watch(sample_copy)
    try:
        first = watch.signature()
        assert watch.watching
        assert watch.signature() is first  # no event, no scan
        target = sample_copy / "contexts" / "tasks" / "T-900-calibrate.yaml"
        target.write_text(NEW_TASK)
        wait_for(lambda: watch.signature() is not first)
        assert watch.signature() == repository_signature(sample_copy)
        assert "contexts/tasks/T-900-calibrate.yaml" in [entry[0] for entry in watch.signature()]
    finally:
        watch.close()


def test_a_new_folder_is_watched_too(sample_copy: Path) -> None:
    """Folders are watched one by one: one made later is followed after the next scan."""
    watch = Watch(sample_copy)
    try:
        watch.signature()
        (sample_copy / "docs" / "notes").mkdir()
        time.sleep(0.3)  # the folder's event arrives; the next call scans and follows it
        before = watch.signature()
        (sample_copy / "docs" / "notes" / "FEAT-001-notes.md").write_text("# FEAT-001 notes\n")
        wait_for(lambda: watch.signature() is not before)
        assert "docs/notes/FEAT-001-notes.md" in [entry[0] for entry in watch.signature()]
    finally:
        watch.close()


def test_a_closed_watch_scans_on_every_call(sample_copy: Path) -> None:
    watch = Watch(sample_copy)
    watch.signature()
    watch.close()
    assert not watch.watching
    (sample_copy / "contexts" / "tasks" / "T-900-calibrate.yaml").write_text(NEW_TASK)
    assert watch.signature() == repository_signature(sample_copy)


def test_a_write_by_the_service_is_seen_at_once(sample_copy: Path) -> None:
    cache = RepositoryCache()
    cache.watch(True)
    try:
        assert "T-900" not in cache.get(sample_copy).entities
        (sample_copy / "contexts" / "tasks" / "T-900-calibrate.yaml").write_text(NEW_TASK)
        cache.forget(sample_copy)  # what every write path calls
        assert cache.get(sample_copy).entities["T-900"].title == "Calibrate the quokkameter"
    finally:
        cache.watch(False)


def test_an_edit_is_seen_by_the_next_query_of_the_running_service_within_a_second(
    tmp_path: Path, sample_copy: Path
) -> None:
    """The real service: one file written behind its back, then tool and RAG queries."""
    from tests.fake_providers import fake_service_env, serve_fake_providers
    from tests.service_process import start

    with serve_fake_providers() as (fake_url, _):
        env = fake_service_env(fake_url, REPO_PATH=str(sample_copy))
        service = start(tmp_path / "data", env=env, timeout=60)
        try:
            with httpx.Client(base_url=service.url, timeout=30) as client:

                def search() -> list[str]:
                    body = {"toolId": "context.search", "parameters": {"query": "quokkameter"}}
                    response = client.post("/ai/tools/execute", json=body)
                    assert response.status_code == 200, response.text
                    return [hit["id"] for hit in response.json()["result"]["results"]]

                def rag_sources() -> list[str]:
                    body = {"query": "Who calibrates the quokkameter?", "topK": 1}
                    response = client.post("/ai/rag/query", json=body)
                    assert response.status_code == 200, response.text
                    return [source["entityId"] for source in response.json()["sources"]]

                assert search() == []
                assert rag_sources() != ["T-900"]
                (sample_copy / "contexts" / "tasks" / "T-900-calibrate.yaml").write_text(NEW_TASK)
                wait_for(lambda: search() == ["T-900"], timeout=1.0)
                assert rag_sources() == ["T-900"]
        finally:
            service.stop()


def test_more_repositories_than_are_watched_stay_fresh(tmp_path: Path) -> None:
    from context_kit_service.repository.cache import MAX_WATCHED

    roots = [tmp_path / f"repo{i}" for i in range(MAX_WATCHED + 2)]
    cache = RepositoryCache()
    cache.watch(True)
    try:
        for root in roots:
            (root / "contexts" / "tasks").mkdir(parents=True)
            assert cache.signature(root) == ()
        task = roots[0] / "contexts" / "tasks" / "T-900-calibrate.yaml"  # its watch was dropped
        task.write_text(NEW_TASK)
        assert [entry[0] for entry in cache.signature(roots[0])] == [
            "contexts/tasks/T-900-calibrate.yaml"
        ]
        assert cache.get(roots[0]).entities["T-900"].title == "Calibrate the quokkameter"
    finally:
        cache.watch(False)


def test_an_id_is_allocated_from_the_files_as_they_are_not_as_the_watch_last_saw_them(
    sample_copy: Path, tmp_path: Path
) -> None:
    """Another replica's write may not have reached this process's watch yet when this one
    allocates an id (the concurrent-writers test got one id twice)."""
    from context_kit_service.repository.cache import repositories
    from context_kit_service.repository.writes import create_entity

    repositories.watch(True)
    try:
        assert repositories.get(sample_copy).next_id("task") == "T-011"  # watched from here
        other = sample_copy / "contexts" / "tasks" / "T-011-written-by-another-replica.yaml"
        other.write_text(NEW_TASK.replace("T-900", "T-011"))
        fields = {"title": "Measure the quay", "status": "todo", "related": {"feature": "FEAT-003"}}
        saved = create_entity(sample_copy, tmp_path / "data", "task", fields)
        assert saved.entity.id == "T-012"
    finally:
        repositories.watch(False)


@pytest.mark.parametrize("how", ["removed and copied back", "another checkout moved in"])
def test_a_repository_replaced_in_place_is_watched_again(
    tmp_path: Path, sample_copy: Path, how: str
) -> None:
    """The folder is deleted and recreated (or another checkout is moved into its place):
    the next query sees the new content, and every edit after it within a second."""
    watch = Watch(sample_copy)
    try:
        watch.signature()
        if how == "removed and copied back":
            shutil.rmtree(sample_copy)
            shutil.copytree(SAMPLE_REPO, sample_copy)
        else:
            other = tmp_path / "other-checkout"
            shutil.copytree(SAMPLE_REPO, other)
            (other / "contexts" / "tasks" / "T-901-moved.yaml").write_text(
                NEW_TASK.replace("T-900", "T-901")
            )
            shutil.rmtree(sample_copy)
            other.rename(sample_copy)
        wait_for(lambda: watch.signature() == repository_signature(sample_copy))
        for number in range(902, 905):
            before = watch.signature()
            task = sample_copy / "contexts" / "tasks" / f"T-{number}-later.yaml"
            task.write_text(NEW_TASK.replace("T-900", f"T-{number}"))
            wait_for(lambda: watch.signature() is not before, timeout=1.0)  # noqa: B023
            assert f"contexts/tasks/{task.name}" in [entry[0] for entry in watch.signature()]
        assert watch.watching
    finally:
        watch.close()
