"""Hybrid retrieval: fusion by group, derived documents counted toward their entities, and
the dense and lexical indexes kept in step as one pair."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.repository.model import Signature
from context_kit_service.retrieval.index import RepositoryIndex
from context_kit_service.retrieval.search import RRF_K, Group, fuse, repository_index, search
from tests.conftest import REPO_ROOT

PORT_REPO = REPO_ROOT / "examples" / "port-repo"


def chunk(owner: str, *, kind: str = "task", restates: list[str] | None = None, **meta: object):
    derived = restates is not None
    return Document(
        page_content=owner,
        metadata={
            "entityId": owner,
            "entityType": "document" if derived else kind,
            "filePath": owner if derived else f"contexts/{owner}.yaml",
            "derived": derived,
            "restates": restates or [],
            **meta,
        },
    )


DOCS = {
    1: chunk("T-001"),
    2: chunk("T-001", view=True),
    3: chunk("T-002"),
    4: chunk("prompts/T-002.md", restates=["T-002"]),
    5: chunk("generated/bundle.md", restates=[]),
    6: chunk("generated/stale.md", restates=["T-099"]),
    7: chunk("docs/guide.md", kind="document"),
}
KNOWN = {"T-001", "T-002", "docs/guide.md"}.__contains__


def scored(groups: list[Group]) -> list[tuple[str, float, int | None, dict[str, int], bool]]:
    return [(g.owner, round(g.score, 6), g.own, g.support, g.orphan) for g in groups]


def test_fusion_ranks_groups_by_their_best_chunk_in_each_search() -> None:
    dense = [(2, 1.0), (1, 1.0), (7, 1.0), (3, 1.0)]  # T-001's view, then its passage: one rank
    lexical = [(4, 0.5), (5, 0.25), (3, 0.9), (7, 0.81)]  # T-002 is ranked by its derived chunk
    groups = fuse([dense, lexical], DOCS, KNOWN)
    r = lambda rank, weight=1.0: weight / (RRF_K + rank)  # noqa: E731
    assert scored(groups) == [
        ("docs/guide.md", round(r(2) + r(3, 0.81), 6), 7, {}, False),
        ("T-002", round(r(3) + r(1, 0.5), 6), 3, {"prompts/T-002.md": 4}, False),
        ("T-001", round(r(1), 6), 1, {}, False),
        ("generated/bundle.md", round(r(2, 0.25), 6), 5, {}, True),
    ]


def test_a_derived_document_of_an_unknown_entity_comes_last() -> None:
    groups = fuse([[(6, 1.0), (3, 1.0)]], DOCS, KNOWN)
    assert [(g.owner, g.orphan) for g in groups] == [("T-002", False), ("generated/stale.md", True)]


@pytest.fixture(scope="module")
def port_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("port") / "repo"
    shutil.copytree(PORT_REPO, root)
    return root


def test_a_derived_hit_returns_its_entity_with_the_document_as_support(
    make_settings, port_copy: Path
) -> None:
    settings = make_settings()
    question = "Which task needs overlaps found for 2,000 calls in under 50 milliseconds?"
    hybrid = search(settings, port_copy, question, top_k=5)
    assert hybrid[0].entity_id == "T-001"
    assert hybrid[0].file_path == "contexts/tasks/T-001-implement-the-quay-overlap-detector.yaml"
    assert hybrid[0].excerpt == (  # the fields that answer, not the heading beside it
        "steps: - Index confirmed windows per quay in an interval tree - Report shared metres of "
        "quay for every overlapping pair doneCriteria: - Overlaps are found for 2,000 calls in "
        "under 50 milliseconds"
    )
    assert sorted(s.file_path for s in hybrid[0].supporting) == [
        "contexts/tasks/README.md",
        "generated/checklists/implement-the-quay-overlap-detector.md",
    ]
    assert all("2,000 calls in under 50 milliseconds" in s.excerpt for s in hybrid[0].supporting)
    assert not any(s.entity_id.endswith(".md") for s in hybrid)  # derived docs are folded in
    assert 0 < hybrid[-1].relevance_score <= hybrid[0].relevance_score <= 1


def test_the_type_filter_applies_to_the_restated_entity(make_settings, port_copy: Path) -> None:
    found = search(
        make_settings(),
        port_copy,
        "implementation prompt for tide windows",
        entity_types=["feature"],
    )
    assert [s.entity_type for s in found] == ["feature"] * len(found)
    assert found[0].entity_id == "FEAT-003"
    assert next(s.file_path for s in found[0].supporting) == (
        "prompts/FEAT-003-tide-window-planning.prompt.md"
    )


def test_one_changed_file_is_re_indexed_in_both_indexes(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(PORT_REPO, root)
    index = RepositoryIndex(root, tmp_path / "data", DeterministicFakeEmbedding(size=32), "fake")
    first = index.sync()
    assert index.lexical is not None
    assert index.store is not None
    passages = {i for i, d in index.store.docs.items() if not d.metadata.get("view")}
    assert index.lexical.ids() == passages
    before = dict(index.store.docs)

    task = root / "contexts/tasks/T-009-encode-the-towage-matrix.yaml"
    task.write_text(task.read_text().replace("bow thruster", "stern thruster, zebra-class"))
    second = index.ensure_fresh()
    assert second is not None
    assert (second.changed_files, second.removed_files) == (1, 0)
    kept = {
        i for i, d in before.items() if d.metadata["filePath"] != task.relative_to(root).as_posix()
    }
    assert kept <= set(index.store.docs)  # every other file's chunks kept their ids
    new = set(index.store.docs) - kept
    assert {index.store.docs[i].metadata["filePath"] for i in new} == {
        "contexts/tasks/T-009-encode-the-towage-matrix.yaml"
    }
    assert second.embedded_chunks == len(new)
    assert index.lexical.ids() == {
        i for i in index.store.docs if not index.store.docs[i].metadata.get("view")
    }
    assert [
        index.store.docs[i].metadata["entityId"] for i, _ in index.lexical_hits("zebra", 3)
    ] == ["T-009"]
    still = {index.store.docs[i].metadata["filePath"] for i, _ in index.lexical_hits("bow", 9)}
    assert still == {"generated/checklists/encode-the-towage-matrix.md", "contexts/tasks/README.md"}
    assert first.chunks == second.chunks

    reopened = RepositoryIndex(root, tmp_path / "data", DeterministicFakeEmbedding(size=32), "fake")
    third = reopened.sync()
    assert (third.rebuilt, third.changed_files, third.embedded_chunks) == (False, 0, 0)
    assert reopened.lexical is not None
    assert reopened.lexical.ids() == index.lexical.ids()


def test_replicas_sharing_a_data_dir_do_not_pull_the_ground_from_each_other(
    tmp_path: Path,
) -> None:
    """Two indexes of one repository in one data dir (replicas): each save removes the other's
    generation, and the other's next save still copies its lexical database (through its open
    connection) and keeps the pair consistent."""
    root = tmp_path / "repo"
    shutil.copytree(PORT_REPO, root)
    data = tmp_path / "data"
    first = RepositoryIndex(root, data, DeterministicFakeEmbedding(size=16), "fake")
    second = RepositoryIndex(root, data, DeterministicFakeEmbedding(size=16), "fake")
    first.sync()
    task = root / "contexts/tasks/T-009-encode-the-towage-matrix.yaml"
    for turn, index in enumerate([second, first, second, first]):
        task.write_text(task.read_text() + f"notes{turn}: turn {turn}\n")
        stats = index.ensure_fresh()
        assert stats is not None
        assert stats.changed_files == 1
        assert index.store is not None
        assert index.lexical is not None
        passages = {i for i, d in index.store.docs.items() if not d.metadata.get("view")}
        assert index.lexical.ids() == passages
        hits = index.lexical_hits(f"notes{turn}", 3)
        assert [index.store.docs[i].metadata["entityId"] for i, _ in hits] == ["T-009"]


def test_a_save_leaves_a_live_writers_staging_alone(tmp_path: Path) -> None:
    import subprocess
    import sys

    from context_kit_service.retrieval import generations
    from context_kit_service.retrieval.store import FaissStore

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        (tmp_path / f".gen-aaaaaaaaaaaa.{live.pid}.tmp").mkdir(parents=True)
        (tmp_path / f".gen-bbbbbbbbbbbb.{dead.pid}.tmp").mkdir()
        (tmp_path / ".gen-cccccccccccc.tmp").mkdir()  # an older layout's leftover
        store = FaissStore(DeterministicFakeEmbedding(size=8), 8)
        folder = store.save(tmp_path, {"embeddingModel": "fake"})
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["CURRENT", folder.name, f".gen-aaaaaaaaaaaa.{live.pid}.tmp"]
        )
        assert generations.read_current(tmp_path) == folder.name
    finally:
        live.kill()
        live.wait()


def test_searches_never_see_an_index_halfway_through_a_sync(make_settings, tmp_path: Path) -> None:
    """Requests search in worker threads while another request syncs the index after each
    change of a file: a sync replaces the file's chunks (new ids), swaps the lexical database
    and closes the old one. Every search sees the index before or after a sync, never
    between (no closed database, no vanished chunk)."""
    import threading

    settings = make_settings()
    root = tmp_path / "repo"
    shutil.copytree(PORT_REPO, root)
    embeddings = DeterministicFakeEmbedding(size=16)
    query = "quay overlap detector for the towage matrix"
    index, _ = repository_index(settings, root, embeddings)

    def ask(signature: Signature | None = None) -> list[str]:
        options = {"mmr": True, "min_score": -1.0, "embeddings": embeddings}
        return [s.entity_id for s in search(settings, root, query, signature=signature, **options)]

    entities = set(ask())
    done = threading.Event()
    failures: list[BaseException] = []
    found: set[str] = set()

    def searching() -> None:
        while not done.is_set():
            try:
                found.update(ask(index.signature))  # no sync of its own: searches only
            except BaseException as exc:
                failures.append(exc)
                return

    readers = [threading.Thread(target=searching) for _ in range(3)]
    for reader in readers:
        reader.start()
    task = root / "contexts/tasks/T-009-encode-the-towage-matrix.yaml"
    try:
        for turn in range(20):
            task.write_text(task.read_text() + f"notes{turn}: quay overlap turn {turn}\n")
            found.update(ask())
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert failures == []
    assert found >= entities
