"""Citing the passage an answer was taken from.

A model, a small one above all, often states a fact from one passage and cites another: the
first retrieved, or one that merely names the same entity. What an answer adds to its
question (its words that the question does not have: "in-progress", "platform-team",
"3.0.0") is what it took from a passage, so the passage that holds the most of those words is
the one it was taken from. When a passage the answer does not cite holds more of them than
every passage it cites, and at least MIN_HELD of them (one word in common is chance: "See
[FEAT-001]" shares "see" with many a document), its citations are replaced by that passage's
id. An answer whose citation already holds its words (as a stronger model's does) is left as
it is.
"""

from __future__ import annotations

import re

from context_kit_service.retrieval.lexical import topic_words

CITATION = re.compile(r"\[([A-Za-z][A-Za-z0-9_./-]*)\]")
"""A cited id as answers write it: `[FEAT-001]`."""
MIN_HELD = 2


def fact_words(answer: str, question: str) -> set[str]:
    """What the answer says beyond its question (`lexical.topic_words`), citations aside."""
    return topic_words(CITATION.sub(" ", answer)) - topic_words(question)


def source_of(answer: str, question: str, passages: dict[str, str]) -> str | None:
    """The passage (by id) holding the most of the answer's own words; None when none holds
    any. On a tie, the first in `passages`' order (the retrieval order)."""
    words = fact_words(answer, question)
    best, held = None, 0
    for source, text in passages.items():
        count = len(words & topic_words(text))
        if count > held:
            best, held = source, count
    return best


def recited(answer: str, question: str, passages: dict[str, str]) -> str:
    """`answer` citing the passage it was taken from (see the module docstring)."""
    cited = [c for c in dict.fromkeys(CITATION.findall(answer)) if c in passages]
    if not cited:
        return answer
    words = fact_words(answer, question)
    best = source_of(answer, question, passages)
    if best is None or best in cited:
        return answer
    held = len(words & topic_words(passages[best]))
    if held >= MIN_HELD and all(len(words & topic_words(passages[c])) < held for c in cited):
        once = iter([f"[{best}]"])
        text = CITATION.sub(
            lambda m: next(once, "") if m.group(1) in passages else m.group(0), answer
        )
        return re.sub(r"\s+([.,;])", r"\1", re.sub(r"  +", " ", text)).strip()
    return answer
