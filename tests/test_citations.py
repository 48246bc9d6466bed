"""An answer cites the passage its fact was taken from: the passage holding the most of what
the answer says beyond the question; a citation that already holds it is kept."""

from __future__ import annotations

from context_kit_service.graphs.citations import fact_words, recited, source_of

PASSAGES = {
    "FEAT-002": "[FEAT-002] (feature) Bank statement import\nstatus: in-progress\nowners: li.wei",
    "T-004": "[T-004] (task) Deduplicate imported transactions\nstatus: todo\nowner: li.wei",
    "SPEC-005": "[SPEC-005] (spec) Recurring payment detection\ntype: technical",
}
QUESTION = "What is the status of FEAT-002?"


def test_the_words_an_answer_adds_to_its_question() -> None:
    assert fact_words("The status of FEAT-002 is in-progress [T-004].", QUESTION) == {"progr"}


def test_a_citation_is_moved_to_the_passage_that_holds_the_fact() -> None:
    answer = "The status of FEAT-002 is in-progress, owned by li.wei [T-004]."
    assert source_of(answer, QUESTION, PASSAGES) == "FEAT-002"
    assert recited(answer, QUESTION, PASSAGES) == (
        "The status of FEAT-002 is in-progress, owned by li.wei [FEAT-002]."
    )


def test_one_word_in_common_is_chance_not_a_source() -> None:
    answer = "FEAT-002 is in-progress [T-004]."
    assert source_of(answer, QUESTION, PASSAGES) == "FEAT-002"
    assert recited(answer, QUESTION, PASSAGES) == answer


def test_a_right_citation_is_kept() -> None:
    answer = "FEAT-002 is in progress and owned by li.wei [FEAT-002]."
    assert recited(answer, QUESTION, PASSAGES) == answer


def test_two_wrong_citations_become_the_one_right_one() -> None:
    answer = "It is in-progress for li.wei [T-004] [SPEC-005]."
    assert recited(answer, QUESTION, PASSAGES) == "It is in-progress for li.wei [FEAT-002]."


def test_an_answer_no_passage_supports_keeps_its_citation() -> None:
    answer = "It runs on AWS [SPEC-005]."
    assert recited(answer, "Which cloud runs it?", PASSAGES) == answer


def test_a_tie_keeps_what_the_model_cited() -> None:
    answer = "Both are owned by li.wei [T-004]."
    assert recited(answer, "Who owns them?", PASSAGES) == answer
