"""A question that names an entity, by its id (in any case) or by its whole title or name,
gets that entity as its first source, with or without the entity-type filter, on both sample
repositories: whatever the embeddings, the entities that only link to it come after."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.repository import load_repository
from context_kit_service.retrieval.names import Names
from context_kit_service.retrieval.search import search
from context_kit_service.settings import Settings
from tests.conftest import REPO_ROOT

REPOSITORIES = {
    "sample": REPO_ROOT / "examples" / "context-repo",
    "port": REPO_ROOT / "examples" / "port-repo",
}


def _questions(entity_id: str, title: str) -> list[str]:
    asked = [
        f"What does {entity_id} do?",
        f"what is the status of {entity_id.lower()}?",
        f"Which tasks depend on {entity_id}",
    ]
    if len(title.split()) >= 2 or "-" in title:
        asked += [f"Tell me about the {title.lower()}.", f"Who owns {title}?"]
    return asked


@pytest.mark.parametrize("name", list(REPOSITORIES))
def test_a_named_entity_is_the_first_source(tmp_path: Path, name: str) -> None:
    root = REPOSITORIES[name]
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    embeddings = DeterministicFakeEmbedding(size=32)
    repo = load_repository(root)
    missed = []
    asked = 0
    for entity in repo.entities.values():
        for question in _questions(entity.id, entity.title):
            for types in ([], [entity.type]):
                found = search(
                    settings, root, question, top_k=5, entity_types=types, embeddings=embeddings
                )
                asked += 1
                if not found or found[0].entity_id != entity.id:
                    missed.append((question, types, [s.entity_id for s in found][:3]))
    assert missed == []
    assert asked >= 6 * len(repo.entities)


def test_names_are_found_in_the_order_the_question_gives_them() -> None:
    names = Names.of(
        [
            ("FEAT-001", "Passkey sign-in"),
            ("SVC-002", "ledger-service"),
            ("US-010", "Shared household budget"),
            ("US-011", "Shared household"),
            ("T-001", "Budgets"),
        ]
    )
    assert names.named_in(
        "Does the Ledger Service need feat-001 for a shared household budget?"
    ) == [
        "SVC-002",
        "FEAT-001",
        "US-010",
    ]
    assert names.named_in("Are budgets shared?") == []  # a one-word title is no name
    assert names.named_in("FEAT-0011 or xFEAT-001") == []
