"""What a model reads of a source: the entity, field by field, its short fields always (a
status, an owner, a version: the facts users ask for most), the long field the question
points to whole."""

from __future__ import annotations

from context_kit_service.graphs.passages import entity_passage, source_passage
from context_kit_service.repository import load_repository
from context_kit_service.retrieval.search import Source
from tests.conftest import SAMPLE_REPO

REPO = load_repository(SAMPLE_REPO)


def test_an_entity_is_shown_as_name_value_lines() -> None:
    assert entity_passage(REPO.entities["SVC-002"], "Who owns the ledger service?") == (
        "[SVC-002] (service) ledger-service\n"
        "type: backend\n"
        "description: Owns accounts, transactions, categories and budgets; the system of record.\n"
        "owner: platform-team\n"
        "dependencies: SVC-005\n"
        "consumers: SVC-001; SVC-004"
    )


def test_nested_fields_are_named_by_their_path_and_lists_kept_on_one_line() -> None:
    assert entity_passage(REPO.entities["T-003"], "What is the status of T-003?") == (
        "[T-003] (task) Parse OFX statements in the import job\n"
        "status: doing\n"
        "owner: li.wei\n"
        "related.feature: FEAT-002\n"
        "related.spec: SPEC-002\n"
        "related.service: SVC-002\n"
        "steps: Stream the upload through ofxparse-lite; Map OFX fields to the transaction model\n"
        "doneCriteria: A 10 MB statement imports in under 5 seconds"
    )


def test_the_long_field_the_question_points_to_is_kept_whole() -> None:
    constitution = REPO.entities["CONST-001"]
    about_review = entity_passage(constitution, "How often is the constitution reviewed?", 200)
    about_tasks = entity_passage(constitution, "Which rule applies to tasks marked done?", 200)
    assert "governance.reviewCadence: quarterly" in about_review
    assert "ratifiedOn: 2026-03-02" in about_review
    assert "Tasks marked done must list done criteria." in about_tasks
    assert "Money is exact" not in about_tasks  # no room left for a field it does not ask for


def test_a_document_is_shown_by_its_excerpt() -> None:
    source = Source(
        entity_id="docs/glossary.md",
        entity_type="document",
        title="Glossary",
        relevance_score=1.0,
        excerpt="Minor units: the smallest unit of a currency.",
        file_path="docs/glossary.md",
    )
    assert source_passage(source, None, "What are minor units?") == (
        "[docs/glossary.md] (document) Glossary\nMinor units: the smallest unit of a currency."
    )
