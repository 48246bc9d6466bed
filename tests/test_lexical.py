"""The FTS5 lexical index: what it indexes, how free text becomes a query, and that no text
can smuggle query syntax in."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from context_kit_service.retrieval.lexical import (
    LexicalIndex,
    lexical_text,
    match_expression,
    query_terms,
)

TEXTS = {
    1: "governance CONST-001: Quayside operations constitution\nratifiedOn: 2025-11-18",
    2: "task T-007: Add squat to the clearance calculation\nsteps:\n- Implement the Barrass formula",
    3: "feature FEAT-003: Tide window planning\nobjective: plan entries inside tide windows",
    4: "service SVC-007: timescale-store\ndescription: TimescaleDB holding AIS tracks",
}


@pytest.fixture
def index(tmp_path: Path) -> LexicalIndex:
    writable = LexicalIndex.create(tmp_path / "a.sqlite")
    writable.apply([], TEXTS.items())
    writable.close()
    return LexicalIndex(tmp_path / "a.sqlite")


def test_camel_case_fields_are_also_indexed_as_words() -> None:
    assert lexical_text("ratifiedOn: x\nreviewCadence: y") == (
        "ratifiedOn: x\nreviewCadence: y\nratified On review Cadence"
    )
    assert lexical_text("plain words only") == "plain words only"


def test_free_text_becomes_quoted_terms_without_stopwords() -> None:
    assert query_terms("When was the constitution ratified?") == ['"constitution"', '"ratified"']
    assert match_expression("What about FEAT-003 and the reviewCadence?") == (
        '"feat 003" OR "feat" OR "003" OR "reviewcadence" OR "review" OR "cadence"'
    )
    assert match_expression("Who is it for?") is None
    assert match_expression("") is None


@pytest.mark.parametrize(
    "hostile",
    [
        'ratified" OR "x',
        "ratified NEAR(a b)",
        "ratified*",
        "-ratified",
        "^ratified",
        "text: ratified",
        "(ratified",
        "ratified AND NOT x",
        "\x00ratified",
    ],
)
def test_query_syntax_cannot_get_through(index: LexicalIndex, hostile: str) -> None:
    assert [i for i, _ in index.search(hostile, 5)] == [1]


def test_bm25_ranks_the_rare_word_first_and_stems(index: LexicalIndex) -> None:
    assert [i for i, _ in index.search("When was it ratified?", 5)] == [1]
    assert [i for i, _ in index.search("ratifies", 5)] == [1]  # Porter: ratifi
    assert [i for i, _ in index.search("the tide windows formula", 5)] == [3, 2]
    assert [i for i, _ in index.search("FEAT-003", 5)] == [3]
    assert index.search("banana bread", 5) == []
    assert index.search("the and of", 5) == []


def test_a_passage_holds_the_share_of_the_question_its_words_weigh(tmp_path: Path) -> None:
    texts = {1: "tide windows", 2: "tide gauge", 3: "Tides"}
    writable = LexicalIndex.create(tmp_path / "shares.sqlite")
    writable.apply([], texts.items())
    rare, common = math.log(1 + 2.5 / 1.5), math.log(1 + 0.5 / 3.5)  # in 1 and 3 of 3 passages
    absent = math.log(1 + 3.5 / 0.5)
    assert writable.shares("tide windows", texts) == pytest.approx(
        {1: 1.0, 2: common / (rare + common), 3: common / (rare + common)}
    )
    assert writable.shares("windows sandbank", {1: texts[1], 2: texts[2]}) == pytest.approx(
        {1: rare / (rare + absent), 2: 0.0}
    )
    assert writable.shares("tideWindows", {1: "tideWindows"}) == {1: 1.0}  # camelCase split
    assert writable.shares("the", {1: texts[1]}) == {1: 0.0}
    assert writable.shares("tide", {}) == {}
    writable.apply([], [(4, "windows")])  # counts are kept per file state, then forgotten
    rare, common = math.log(1 + 2.5 / 2.5), math.log(1 + 1.5 / 3.5)  # in 2 and 3 of 4
    assert writable.shares("tide windows", {2: texts[2]}) == pytest.approx(
        {2: common / (rare + common)}
    )


def test_a_copy_takes_changes_and_leaves_its_source_untouched(
    index: LexicalIndex, tmp_path: Path
) -> None:
    copy = LexicalIndex.create(tmp_path / "b.sqlite", source=index)
    copy.apply([(2, TEXTS[2])], [(5, "task T-008: Build the pilot order form")])
    assert copy.ids() == {1, 3, 4, 5}
    assert [i for i, _ in copy.search("Barrass pilot", 5)] == [5]
    copy.close()
    assert index.ids() == {1, 2, 3, 4}
    assert [i for i, _ in index.search("Barrass pilot", 5)] == [2]


def test_a_committed_file_is_opened_read_only(index: LexicalIndex) -> None:
    with pytest.raises(sqlite3.OperationalError, match=r"readonly"):
        index.apply([], [(9, "more")])


def test_a_word_in_most_passages_is_left_out_beside_a_rarer_one(tmp_path: Path) -> None:
    """Past COMMON_MIN passages, ranking every passage of a very common word costs the most
    and tells the least: a query keeps its rarer words; a query of common words only keeps
    them all."""
    from context_kit_service.retrieval.lexical import COMMON_MIN

    size = COMMON_MIN * 2
    index = LexicalIndex.create(tmp_path / "big.sqlite")
    texts = {i: f"harbour call {i} moored at the quay" for i in range(size)}
    texts[size] = "the Barrass formula for squat"
    texts[size + 1] = "harbour harbour harbour dues"
    index.apply([], texts.items())
    assert [i for i, _ in index.search("harbour Barrass", 5)] == [size]
    assert [i for i, _ in index.search("harbour", 1)] == [size + 1]
    index.close()
