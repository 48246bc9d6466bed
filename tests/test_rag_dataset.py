"""The hard RAG question set, and the development set that fusion is tuned on, are what they say
they are: a third each of paraphrases that share no word with their answer, questions that hinge
on a rare word, and questions a derived document restates; over both sample repositories.
Checked with the service's own tokenizer."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.evaluation.suites import SUITES, RagExample
from context_kit_service.retrieval.index import RepositoryIndex
from context_kit_service.retrieval.lexical import LexicalIndex, query_terms
from tests.conftest import REPO_ROOT

DATASETS = REPO_ROOT / "evals" / "datasets"
EXAMPLES: list[RagExample] = SUITES["rag"].load(DATASETS / "rag_hard.jsonl")
DEVELOPMENT: list[RagExample] = SUITES["rag"].load(DATASETS / "rag_dev.jsonl")
RARE_AT_MOST = 4
"""A rare word occurs in at most this many entities of its repository."""


def by(category: str) -> list[RagExample]:
    return [e for e in EXAMPLES + DEVELOPMENT if e.category == category]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RepositoryIndex]:
    data = tmp_path_factory.mktemp("dataset-indexes")
    built = {}
    for repo in {e.repo for e in EXAMPLES + DEVELOPMENT}:
        assert repo is not None
        index = RepositoryIndex(Path(repo), data, DeterministicFakeEmbedding(size=8), "fake")
        index.sync()
        built[repo] = index
    return built


def entity_passages(index: RepositoryIndex, entity_id: str) -> list[str]:
    assert index.store is not None
    return [index.store.docs[i].page_content for i in index.chunks_of[entity_id]]


def test_the_set_is_large_balanced_and_covers_both_repositories() -> None:
    assert len(EXAMPLES) >= 60
    assert Counter(e.category for e in EXAMPLES) == {"paraphrase": 22, "rare": 22, "derived": 22}
    assert {Path(e.repo or "").name for e in EXAMPLES} == {"context-repo", "port-repo"}
    assert len({e.id for e in EXAMPLES}) == len(EXAMPLES)


def test_the_development_set_is_balanced_and_apart_from_the_hard_set() -> None:
    assert Counter(e.category for e in DEVELOPMENT) == {"paraphrase": 12, "rare": 12, "derived": 12}
    assert {Path(e.repo or "").name for e in DEVELOPMENT} == {"context-repo", "port-repo"}
    assert len({e.id for e in EXAMPLES + DEVELOPMENT}) == len(EXAMPLES) + len(DEVELOPMENT)
    assert not {e.question for e in EXAMPLES} & {e.question for e in DEVELOPMENT}


@pytest.mark.parametrize("example", by("paraphrase"), ids=lambda e: e.id)
def test_a_paraphrase_shares_no_word_with_its_answer(
    example: RagExample, indexes: dict[str, RepositoryIndex], tmp_path: Path
) -> None:
    assert example.repo is not None
    texts = [t for i in example.relevant for t in entity_passages(indexes[example.repo], i)]
    answer = LexicalIndex.create(tmp_path / "answer.sqlite")
    answer.apply([], enumerate(texts))
    assert answer.search(example.question, 5) == []


@pytest.mark.parametrize("example", by("rare"), ids=lambda e: e.id)
def test_a_rare_question_hinges_on_a_word_few_entities_use(
    example: RagExample, indexes: dict[str, RepositoryIndex]
) -> None:
    assert example.repo is not None
    index = indexes[example.repo]
    assert index.lexical is not None
    assert index.store is not None
    docs = index.store.docs

    def entities_using(term: str) -> set[str]:
        hits = index.lexical.search(term, 1000) if index.lexical else []
        return {
            docs[i].metadata["entityId"]
            for i, _ in hits
            if docs[i].metadata["entityType"] != "document"
        }

    rare = [
        term
        for term in query_terms(example.question)
        if set(example.relevant) & (users := entities_using(term)) and len(users) <= RARE_AT_MOST
    ]
    assert rare, f"no query word of {example.question!r} is rare and in its answer"


@pytest.mark.parametrize("example", by("derived"), ids=lambda e: e.id)
def test_a_derived_document_competes_with_the_answer(
    example: RagExample, indexes: dict[str, RepositoryIndex]
) -> None:
    assert example.repo is not None
    index = indexes[example.repo]
    assert index.store is not None
    top = [index.store.docs[i].metadata for i, _ in index.lexical_hits(example.question, 3)]
    assert any(m["derived"] and set(m["restates"]) & set(example.relevant) for m in top), (
        f"no derived document restating {example.relevant} in the top 3 words matches: {top}"
    )
