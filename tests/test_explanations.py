"""Entity explanations: written once per entity text by the chat model, kept in the data dir,
and indexed as views of their entities that both searches read."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from context_kit_service.graphs.explanation import explain
from context_kit_service.graphs.prompts import EXPLAIN_SYSTEM
from context_kit_service.repository.cache import repositories
from context_kit_service.repository.model import load_repository
from context_kit_service.retrieval import explanations
from context_kit_service.retrieval.documents import entity_views
from context_kit_service.retrieval.index import RepositoryIndex
from tests.conftest import REPO_ROOT
from tests.fake_providers import closed_port_url, serve_fake_providers
from tests.service_process import run_cli

PORT_REPO = REPO_ROOT / "examples" / "port-repo"
DECODER = "contexts/packages/PKG-001-ais-decoder.yaml"


class ExplainingModel(GenericFakeChatModel):
    """Explains an entity by naming what it was shown (first five words), the AIS decoder in
    words of its own; records each prompt."""

    messages: Any = iter(())
    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.prompts.append(messages)
        shown = " ".join(str(messages[-1].content).split()[:5])
        text = f"  In plain words:\n{shown}.  "
        if "ais-decoder" in shown:
            text += "It reads the chatter of ship transponders."
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def _port_copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(PORT_REPO, root)
    return root


def test_each_entity_is_explained_once_and_again_when_its_text_changes(tmp_path: Path) -> None:
    root, data_dir = _port_copy(tmp_path), tmp_path / "data"
    model = ExplainingModel()
    first = explain(load_repository(root), data_dir, model, "m1", concurrency=2)
    repo = load_repository(root)
    assert (first.entities, first.already, first.explained) == (73, 0, 73)
    assert sorted(str(p[-1].content) for p in model.prompts) == sorted(
        explanations.source(e) for e in repo.entities.values()
    )
    assert {p[0].content for p in model.prompts} == {EXPLAIN_SYSTEM}
    decoder = repo.entities["PKG-001"]
    assert explanations.source(decoder) == (
        "package ais-decoder: Decodes NMEA 0183 AIVDM sentences into typed AIS messages, "
        "including multi-sentence type 5 voyage data."
    )
    stored = explanations.finder(data_dir)
    assert stored(decoder) == (
        "In plain words: package ais-decoder: Decodes NMEA 0183. It reads the chatter of ship "
        "transponders."
    )

    model.prompts.clear()
    again = explain(repo, data_dir, model, "m1")
    assert (again.already, again.explained, model.prompts) == (73, 0, [])

    path = root / DECODER
    path.write_text(path.read_text().replace("Decodes NMEA", "Parses NMEA"))
    changed = explain(load_repository(root), data_dir, model, "m1")
    assert (changed.already, changed.explained) == (72, 1)
    assert [str(p[-1].content).split(":")[0] for p in model.prompts] == ["package ais-decoder"]
    edited = load_repository(root).entities["PKG-001"]
    assert explanations.finder(data_dir)(edited) == (
        "In plain words: package ais-decoder: Parses NMEA 0183. It reads the chatter of ship "
        "transponders."
    )


def test_an_explanation_is_a_view_both_searches_read_and_re_indexes_only_its_file(
    tmp_path: Path,
) -> None:
    root, data_dir = _port_copy(tmp_path), tmp_path / "data"
    explain(load_repository(root), data_dir, ExplainingModel(), "m1")
    embeddings = DeterministicFakeEmbedding(size=32)
    index = RepositoryIndex(root, data_dir, embeddings, "fake")
    index.sync()
    assert index.store is not None
    assert index.lexical is not None
    view = (
        "ais-decoder: In plain words: package ais-decoder: Decodes NMEA 0183. It reads the "
        "chatter of ship transponders."
    )
    [(view_id, found, similarity)] = index.dense(embeddings.embed_query(view), 1)
    assert (found.page_content, found.metadata["entityId"], found.metadata["explanation"]) == (
        view,
        "PKG-001",
        True,
    )
    assert round(similarity, 4) == 1.0
    assert [i for i, _ in index.lexical_hits("transponders chatter", 5)] == [view_id]
    other_views = {i for i, d in index.store.docs.items() if d.metadata.get("view")}
    explained = {i for i, d in index.store.docs.items() if d.metadata.get("explanation")}
    assert len(explained) == 73
    assert index.lexical.ids() & other_views == explained  # the other views stay dense only
    views = entity_views(load_repository(root).entities["US-001"], "It books a berth.")
    assert [v.metadata.get("explanation", False) for v in views] == [False] * 5 + [True]

    path = root / DECODER
    path.write_text(path.read_text().replace("Decodes NMEA", "Parses NMEA"))
    explain(load_repository(root), data_dir, ExplainingModel(), "m1")
    stats = index.ensure_fresh(repositories.signature(root))
    assert stats is not None
    assert (stats.changed_files, stats.removed_files) == (1, 0)
    [(_, now)] = [
        (i, d)
        for i, d in index.store.docs.items()
        if d.metadata["entityId"] == "PKG-001" and d.metadata.get("explanation")
    ]
    assert now.page_content == view.replace("Decodes", "Parses")
    assert [index.store.docs[i].page_content for i, _ in index.lexical_hits("transponders", 5)] == [
        now.page_content
    ]


def _index_command(root: Path, data_dir: Path, *args: str, **env: str) -> Any:
    return run_cli(data_dir, "index", str(root), *args, **env)


def test_the_index_command_explains_with_the_configured_provider(tmp_path: Path) -> None:
    root, data_dir = _port_copy(tmp_path), tmp_path / "data"
    with serve_fake_providers() as (url, recorder):
        provider = {
            "CKS_PROVIDER": "openai",
            "CKS_BASE_URL": f"{url}/v1",
            "CKS_API_KEY": "sk-test",
        }
        done = _index_command(root, data_dir, "--explain", "--model", "m1", **provider)
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.splitlines()
        assert lines[0] == "explained 73 of 73 entities with m1; 0 were explained before"
        assert lines[1].startswith(f"indexed {root}: ")
        chats = [r["body"] for r in recorder.requests if "messages" in r["body"]]
        assert len(chats) == 73
        assert {(r["temperature"], r["messages"][0]["content"]) for r in chats} == {
            (0.0, EXPLAIN_SYSTEM)
        }
        decoder = load_repository(root).entities["PKG-001"]
        assert explanations.finder(data_dir)(decoder) == "Hello from fake!"

        again = _index_command(root, data_dir, "--explain", "--model", "m1", **provider)
        assert again.returncode == 0, again.stderr[-2000:]
        assert again.stdout.splitlines()[0] == (
            "explained 0 of 73 entities with m1; 73 were explained before"
        )
        assert "re-embedded 0 chunks from 0 changed files" in again.stdout.splitlines()[1]

        denied = _index_command(
            root, tmp_path / "other", "--explain", "--model", "deny", **provider
        )
    assert denied.returncode == 1
    assert denied.stderr.splitlines()[-1] == (
        "error: PROVIDER_AUTH_FAILED: openai: the provider rejected the credentials (HTTP 401)"
    )
    assert not (tmp_path / "other" / "indexes").exists()


def test_an_unreachable_provider_stops_the_index_command_with_its_code(tmp_path: Path) -> None:
    done = _index_command(
        _port_copy(tmp_path),
        tmp_path / "data",
        "--explain",
        CKS_PROVIDER="ollama",
        CKS_BASE_URL=closed_port_url(),
        CKS_MODEL="m1",
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "error: PROVIDER_UNAVAILABLE: cannot reach the ollama provider; is it running and is "
        "the endpoint right?"
    )


def test_explain_options_without_explain_or_out_of_range_are_refused(tmp_path: Path) -> None:
    root = _port_copy(tmp_path)
    done = _index_command(root, tmp_path / "data", "--model", "m1")
    assert (done.returncode, done.stderr) == (
        2,
        "error: --model and --concurrency apply to --explain\n",
    )
    zero = _index_command(root, tmp_path / "data", "--explain", "--concurrency", "0")
    assert (zero.returncode, zero.stderr) == (2, "error: --concurrency must be at least 1\n")
    assert not (tmp_path / "data").exists()


def test_an_unreadable_store_leaves_explanations_out_not_retrieval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, data_dir = _port_copy(tmp_path), tmp_path / "data"
    data_dir.mkdir()
    explanations.store_path(data_dir).write_bytes(b"not a database" * 100)
    index = RepositoryIndex(root, data_dir, DeterministicFakeEmbedding(size=32), "fake")
    stats = index.sync()
    assert stats.files == 121
    assert index.store is not None
    assert not any(d.metadata.get("explanation") for d in index.store.docs.values())
    assert "entity explanations left out: " in caplog.text
    assert "file is not a database" in caplog.text
