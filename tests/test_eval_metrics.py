"""Each evaluation metric on hand-made results with known values."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from context_kit_service.evaluation import metrics
from context_kit_service.evaluation.langsmith_upload import upload
from context_kit_service.evaluation.report import Comparison, compare
from context_kit_service.evaluation.runner import ExampleResult, summarize
from context_kit_service.evaluation.suites import SUITES


def test_recall_at_k_counts_relevant_ids_in_the_first_k() -> None:
    assert metrics.recall_at_k(["a", "b", "c"], ["c", "d"], k=3) == 0.5
    assert metrics.recall_at_k(["a", "b", "c"], ["c"], k=2) == 0.0
    with pytest.raises(ValueError, match="at least one relevant id"):
        metrics.recall_at_k(["a"], [], k=1)


def test_reciprocal_rank_is_one_over_the_first_hit() -> None:
    assert metrics.reciprocal_rank(["a", "b", "c"], ["c", "b"]) == 0.5
    assert metrics.reciprocal_rank(["a"], ["z"]) == 0.0


def test_groundedness_allows_only_retrieved_citations() -> None:
    assert metrics.grounded(["T-001"], ["T-001", "T-002"]) is True
    assert metrics.grounded(["T-001", "T-999"], ["T-001", "T-002"]) is False
    assert metrics.grounded([], ["T-001"]) is True
    assert metrics.cites_sources([]) is False
    assert metrics.cites_sources(["T-001"]) is True


def test_required_fields_filled_and_link_correctness() -> None:
    entity = {"title": "Add index", "status": " ", "steps": [], "related": {"feature": "F-1"}}
    assert metrics.required_filled(entity, ["title", "status", "steps", "owner"]) == 0.25
    assert metrics.required_filled(entity, []) == 1.0
    assert metrics.link_correct(entity, "related.feature", "F-1") is True
    assert metrics.link_correct(
        {"related": {"features": ["F-2", "F-1"]}}, "related.features", "F-1"
    )
    assert metrics.link_correct(entity, "related.feature", "F-2") is False
    assert metrics.link_correct({"related": "F-1"}, "related.feature", "F-1") is False


def test_novelty_is_the_share_of_words_in_no_six_word_run_found_elsewhere() -> None:
    source = "Import the bank CSV export and flag duplicates before the ledger"
    assert metrics.novelty("Show the budget by month with a chart", [source]) == 1.0
    assert metrics.novelty("import the Bank CSV export, and then email the owner", [source]) == 0.4
    assert metrics.novelty(source, ["unrelated", source]) == 0.0
    assert metrics.novelty("flag duplicates before the ledger", [source]) == 1.0  # five words
    assert metrics.novelty("", [source]) == 1.0


def test_on_topic_is_the_share_of_the_prompts_content_words_used() -> None:
    prompt = "Let people split a shared expense between household members"
    assert round(metrics.on_topic(prompt, "Splitting expenses among members"), 4) == 0.4286
    assert metrics.on_topic(prompt, "Let household people share and split expense members") == 1
    assert metrics.on_topic(prompt, "Recurring bills") == 0.0
    assert metrics.on_topic("Do it for us", "anything") == 1.0  # no content word


def test_entity_text_is_every_string_in_the_entity() -> None:
    entity = {"title": "A", "steps": ["b", {"x": "c"}], "points": 3, "done": None}
    assert metrics.entity_text(entity) == "A\nb\nc"


def test_tool_selection_and_argument_accuracy() -> None:
    calls = [
        {"name": "list_entities", "args": {"entity_type": "Task ", "status": "done"}},
        {"name": "get_entity", "args": {"entity_id": "T-1"}},
    ]
    assert metrics.tool_selected(calls, "list_entities") is True
    assert metrics.tool_selected(calls, "get_entity") is False
    assert metrics.tool_selected([], "get_entity") is False
    expected = {"entity_type": "task", "status": "blocked"}
    assert metrics.argument_accuracy(calls, "list_entities", expected) == 0.5
    assert metrics.argument_accuracy(calls, "get_entity", {"entity_id": "T-1"}) == 1.0
    assert metrics.argument_accuracy(calls, "validate_repository", {}) == 0.0
    assert metrics.argument_accuracy(calls, "get_entity", {}) == 1.0


def test_percentiles_interpolate_between_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert metrics.percentile(values, 50) == 30.0
    assert metrics.percentile(values, 95) == pytest.approx(48.0)
    assert metrics.percentile([7.0], 95) == 7.0
    assert metrics.rate([True, False, True, True]) == 0.75


def result(
    id: str, ok: bool, scores: dict[str, float], latency: float, tokens: int
) -> ExampleResult:
    return ExampleResult(
        id=id,
        ok=ok,
        metrics=scores,
        latency_ms=latency,
        prompt_tokens=tokens,
        completion_tokens=tokens // 10,
        input={},
        output={},
        error=None if ok else "ProviderError: down",
    )


def test_summary_averages_each_metric_and_counts_latency_tokens_errors() -> None:
    results = [
        result("a", True, {"schema_valid": 1, "required_filled": 1, "link_correct": 1}, 100, 50),
        result("b", True, {"schema_valid": 1, "required_filled": 0.5}, 200, 30),
        result("c", False, {"schema_valid": 0, "required_filled": 0, "link_correct": 0}, 300, 0),
    ]
    assert summarize(SUITES["generation"], results) == {
        "examples": 3,
        "schema_valid": 0.6667,
        "required_filled": 0.5,
        "link_correct": 0.5,
        "latency_p50_ms": 200.0,
        "latency_p95_ms": 290.0,
        "prompt_tokens": 80,
        "completion_tokens": 8,
        "errors": 1,
    }


def test_compare_flags_quality_drops_and_latency_growth() -> None:
    before = {"summary": {"recall@5": 0.9, "mrr": 0.8, "latency_p50_ms": 100, "errors": 0}}
    after = {"summary": {"recall@5": 0.85, "mrr": 0.81, "latency_p50_ms": 130, "grounded": 1}}
    assert compare(before, after) == [
        Comparison("recall@5", 0.9, 0.85, "regressed"),
        Comparison("mrr", 0.8, 0.81, "same"),
        Comparison("latency_p50_ms", 100, 130, "regressed"),
        Comparison("errors", 0, None, "gone"),
        Comparison("grounded", None, 1, "new"),
    ]


class RecordingLangSmith:
    """Stands in for `langsmith.Client` (a network service) and records what it is given."""

    def __init__(self, existing: bool) -> None:
        self.existing = existing
        self.calls: list[tuple[str, Any]] = []

    def has_dataset(self, *, dataset_name: str) -> bool:
        self.calls.append(("has_dataset", dataset_name))
        return self.existing

    def read_dataset(self, *, dataset_name: str) -> Any:
        self.calls.append(("read_dataset", dataset_name))
        return SimpleNamespace(id="ds-1")

    def create_dataset(self, name: str, *, description: str) -> Any:
        self.calls.append(("create_dataset", name))
        return SimpleNamespace(id="ds-new")

    def create_examples(self, *, dataset_id: str, examples: list[dict[str, Any]]) -> None:
        self.calls.append(("create_examples", (dataset_id, examples)))


def test_langsmith_upload_adds_one_example_per_result(monkeypatch: pytest.MonkeyPatch) -> None:
    meta = {"suite": "rag", "target": "local"}
    results = [result("q1", True, {"mrr": 0.5}, 12.0, 10)]
    client = RecordingLangSmith(existing=False)
    assert upload(meta, {}, results, client=client) == "context-kit-rag"
    assert client.calls == [
        ("has_dataset", "context-kit-rag"),
        ("create_dataset", "context-kit-rag"),
        (
            "create_examples",
            (
                "ds-new",
                [
                    {
                        "inputs": {},
                        "outputs": {},
                        "metadata": {
                            "suite": "rag",
                            "target": "local",
                            "example": "q1",
                            "ok": True,
                            "error": None,
                            "latency_ms": 12.0,
                            "score_mrr": 0.5,
                        },
                    }
                ],
            ),
        ),
    ]
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    with pytest.raises(ValueError, match="--langsmith needs LANGSMITH_API_KEY"):
        upload(meta, {}, results)


def test_facts_are_compared_after_normalising_case_punctuation_and_numbers() -> None:
    assert metrics.normalised("Version v0.1.0 of Quayside-UI; 1,000 users in 10MB.") == (
        " version v 0.1.0 of quayside ui 1000 users in 10 mb "
    )
    answer = "The ledger service is owned by the Platform Team [SVC-002]; it is at v2.1."
    assert metrics.states(answer, ["platform-team", "platform team"]) is True
    assert metrics.states(answer, ["2.1"]) is True
    assert metrics.states(answer, ["2.10"]) is False
    assert metrics.states(answer, ["team platform"]) is False
    assert metrics.states("The status is proposed.", ["propose"]) is False  # whole words only


def test_an_answer_is_correct_only_when_it_states_every_fact() -> None:
    facts = [["proposed"], ["FEAT-002", "the feature builder"]]
    assert metrics.answer_correct("The feature builder is proposed.", facts) is True
    assert metrics.answer_correct("FEAT-002's status is proposed.", facts) is True
    assert metrics.answer_correct("The feature builder is done.", facts) is False
    assert metrics.answer_correct("anything", []) is True


def test_a_citation_is_right_only_when_it_holds_the_answer() -> None:
    retrieved = ["T-001", "FEAT-001", "SPEC-001"]
    assert metrics.cites_answering(["T-001"], ["FEAT-001"]) is False
    assert metrics.cites_answering(["T-001", "FEAT-001"], ["FEAT-001"]) is True
    assert metrics.wrong_citation(["T-001"], retrieved, ["FEAT-001"]) is True
    assert metrics.wrong_citation(["FEAT-001"], retrieved, ["FEAT-001"]) is False
    assert metrics.wrong_citation(["T-999"], retrieved, ["FEAT-001"]) is False  # ungrounded
    assert metrics.wrong_citation(["FEAT-001"], retrieved, []) is True  # nothing answers it


def test_an_abstention_says_so_and_cites_nothing() -> None:
    from context_kit_service.graphs.rag import UNANSWERED

    said = "The repository does not say who the auditor is."
    assert metrics.abstained(said, [], UNANSWERED) is True
    assert metrics.abstained(said + " [CONST-001]", ["CONST-001"], UNANSWERED) is False
    assert metrics.abstained("The auditor is Ada [CONST-001].", ["CONST-001"], UNANSWERED) is False
    assert metrics.abstained("The auditor is Ada.", [], UNANSWERED) is False


def test_an_unanswerable_example_has_no_relevant_ids_and_no_facts() -> None:
    from pydantic import ValidationError

    from context_kit_service.evaluation.suites import RagExample

    RagExample(id="u1", question="Who audits the port?", answerable=False)
    for bad in (
        {"id": "u2", "question": "Who?", "answerable": False, "relevant": ["T-001"]},
        {"id": "u3", "question": "Who?", "answerable": False, "facts": [["Ada"]]},
        {"id": "a1", "question": "Who?"},
    ):
        with pytest.raises(ValidationError):
            RagExample.model_validate(bad)
