"""Metrics over per-example results: retrieval, answers, entities, tool use, latency, tokens."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from context_kit_service.retrieval.lexical import WORD, topic_words

LOWER_IS_BETTER = ("latency_p50_ms", "latency_p95_ms", "errors", "wrong_citation")
"""Metrics where less is better (an example that fails scores 1 on a per-example one)."""


def recall_at_k(retrieved: Sequence[str], relevant: Sequence[str], k: int) -> float:
    """Share of the relevant ids found among the first `k` retrieved."""
    if not relevant:
        raise ValueError("an example needs at least one relevant id")
    return len(set(retrieved[:k]) & set(relevant)) / len(set(relevant))


def reciprocal_rank(retrieved: Sequence[str], relevant: Sequence[str]) -> float:
    """1/rank of the first relevant id retrieved, 0 when none is."""
    wanted = set(relevant)
    for rank, item in enumerate(retrieved, start=1):
        if item in wanted:
            return 1.0 / rank
    return 0.0


def grounded(cited: Sequence[str], retrieved: Sequence[str]) -> bool:
    """Whether every id the answer cites is one it was given (no invented citations). An
    answer that cites nothing is grounded; `cites_sources` tells those apart."""
    return set(cited) <= set(retrieved)


def cites_sources(cited: Sequence[str]) -> bool:
    return bool(cited)


_THOUSANDS = re.compile(r"(?<=\d)[,_](?=\d{3}\b)")
_NOT_WORD = re.compile(r"(?:(?<!\d)\.|\.(?!\d)|[^\w.])+")
_UNIT = re.compile(r"(?<=\d)(?=[^\W\d])|(?<=[^\W\d])(?=\d)")


def normalised(text: str) -> str:
    """`text` as facts are compared: lower case, digit groups joined (`1,000` -> `1000`),
    numbers apart from the letters beside them (`10MB` -> `10 mb`, `v0.1.0` -> `v 0.1.0`),
    punctuation as spaces except a dot inside a number (`0.1.0`, `2.5`), one space between
    words, and a space at each end (so a form matches whole words)."""
    text = _UNIT.sub(" ", _THOUSANDS.sub("", text.casefold()))
    return f" {' '.join(_NOT_WORD.sub(' ', text).split())} "


def states(answer: str, forms: Sequence[str]) -> bool:
    """Whether `answer` states a fact: it holds one of its accepted `forms` as whole words."""
    said = normalised(answer)
    return any(normalised(form) in said for form in forms if form.strip())


def answer_correct(answer: str, facts: Sequence[Sequence[str]]) -> bool:
    """Whether the answer states every reference fact (each a list of accepted forms)."""
    return all(states(answer, forms) for forms in facts)


def cites_answering(cited: Sequence[str], relevant: Sequence[str]) -> bool:
    """Whether the answer cites an entity that holds the answer (one of `relevant`)."""
    return bool(set(cited) & set(relevant))


def wrong_citation(cited: Sequence[str], retrieved: Sequence[str], relevant: Sequence[str]) -> bool:
    """Whether the answer cites a retrieved entity that does not hold the answer: a wrong
    citation, however grounded (for a question the repository cannot answer, any citation)."""
    return bool((set(cited) & set(retrieved)) - set(relevant))


def abstained(answer: str, cited: Sequence[str], says_unanswered: re.Pattern[str]) -> bool:
    """Whether an answer to a question the repository cannot answer says so (`says_unanswered`
    finds it) and invents nothing: it cites no entity."""
    return bool(says_unanswered.search(answer)) and not cited


def _lookup(entity: Mapping[str, Any], dotted: str) -> Any:
    value: Any = entity
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _filled(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | dict):
        return bool(value)
    return value is not None


def required_filled(entity: Mapping[str, Any], required: Sequence[str]) -> float:
    """Share of the `required` fields that hold a non-empty value."""
    if not required:
        return 1.0
    return sum(_filled(_lookup(entity, name)) for name in required) / len(required)


def link_correct(entity: Mapping[str, Any], field: str, entity_id: str) -> bool:
    """Whether `field` (dotted, e.g. `related.feature`) holds `entity_id`, or a list with it."""
    value = _lookup(entity, field)
    return value == entity_id or (isinstance(value, list) and entity_id in value)


COPY_GRAM = 6
"""Words in a row that count as copied when another text has them in the same order."""


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def entity_text(value: Any) -> str:
    """Every string in an entity (nested lists and mappings included), one per line."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list):
        return "\n".join(text for text in map(entity_text, value) if text)
    return ""


def _grams(tokens: Sequence[str]) -> Iterable[tuple[str, ...]]:
    return (tuple(tokens[i : i + COPY_GRAM]) for i in range(len(tokens) - COPY_GRAM + 1))


def novelty(text: str, others: Iterable[str]) -> float:
    """Share of the words of `text` in no run of COPY_GRAM words that one of `others` also
    has: 1.0 when nothing is copied, 0.0 when all of it is (a text shorter than a run: 1.0)."""
    tokens = words(text)
    seen = {gram for other in others for gram in _grams(words(other))}
    copied = [False] * len(tokens)
    for start, gram in enumerate(_grams(tokens)):
        if gram in seen:
            copied[start : start + COPY_GRAM] = [True] * COPY_GRAM
    return 1.0 - sum(copied) / len(tokens) if tokens else 1.0


def on_topic(prompt: str, text: str) -> float:
    """Share of the prompt's content words that `text` uses (`lexical.topic_words`: stopwords
    left out, words compared by their first letters). 1.0 for a prompt without one."""
    wanted = topic_words(prompt)
    if not wanted:
        return 1.0
    return len(wanted & topic_words(text)) / len(wanted)


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.strip().casefold() == actual.strip().casefold()
    return bool(expected == actual)


def tool_selected(calls: Sequence[Mapping[str, Any]], tool: str) -> bool:
    """Whether the model's first tool call is `tool`."""
    return bool(calls) and calls[0].get("name") == tool


def argument_accuracy(
    calls: Sequence[Mapping[str, Any]], tool: str, expected: Mapping[str, Any]
) -> float:
    """Share of the expected arguments the first call of `tool` got right (strings compared
    without case or surrounding space); 0 when the tool was not called, 1 when it takes none."""
    call = next((c for c in calls if c.get("name") == tool), None)
    if call is None:
        return 0.0
    if not expected:
        return 1.0
    args = call.get("args") or {}
    return sum(_same(value, args.get(name)) for name, value in expected.items()) / len(expected)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100), linear between the closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no values")
    return sum(values) / len(values)


def rate(flags: Sequence[bool]) -> float:
    """Share of true flags (schema-valid rate, tool-selection accuracy, ...)."""
    return mean([1.0 if flag else 0.0 for flag in flags])
