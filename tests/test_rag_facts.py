"""The reference facts of every RAG question set are the repository's: each fact has a form
that one of the question's relevant entities (or documents) states, so a right answer can be
taken from the passages; the fact set has the kinds of question users ask most, and questions
neither repository answers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from context_kit_service.evaluation import metrics
from context_kit_service.evaluation.suites import SUITES, RagExample
from context_kit_service.repository import load_repository
from tests.conftest import REPO_ROOT, SAMPLE_REPO

DATASETS = REPO_ROOT / "evals" / "datasets"
SETS = ("rag.jsonl", "rag_hard.jsonl", "rag_dev.jsonl", "rag_facts.jsonl")


def _examples(name: str) -> list[RagExample]:
    return SUITES["rag"].load(DATASETS / name)


def _holder_text(root: Path, holder: str) -> str:
    """What an entity says (its id, title and every value) or a document's text."""
    repo = load_repository(root)
    entity = repo.entities.get(holder)
    if entity is None:
        return (root / holder).read_text(encoding="utf-8")
    return f"{entity.id} {entity.title} {json.dumps(entity.data, ensure_ascii=False)}"


@pytest.mark.parametrize("name", SETS)
def test_every_fact_is_stated_by_a_relevant_entity(name: str) -> None:
    unsupported = []
    for example in _examples(name):
        root = Path(example.repo) if example.repo else SAMPLE_REPO
        texts = " ".join(_holder_text(root, holder) for holder in example.relevant)
        unsupported += [
            (example.id, forms) for forms in example.facts if not metrics.states(texts, forms)
        ]
    assert unsupported == []


@pytest.mark.parametrize("name", SETS)
def test_every_answerable_question_has_facts(name: str) -> None:
    assert [e.id for e in _examples(name) if e.answerable and not e.facts] == []


def test_the_fact_set_asks_what_users_ask_and_what_no_repository_answers() -> None:
    examples = _examples("rag_facts.jsonl")
    kinds = Counter(e.category for e in examples)
    assert kinds["unanswerable"] >= 20
    assert kinds["field"] + kinds["what-does"] + kinds["depends"] + kinds["named"] >= 30
    assert min(kinds[k] for k in ("field", "what-does", "depends", "named")) >= 3
    assert {Path(e.repo or "").name for e in examples if not e.answerable} == {
        "context-repo",
        "port-repo",
    }
    assert len({e.id for e in examples}) == len(examples)
