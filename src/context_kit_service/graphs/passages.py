"""What a model reads of a source: the entity itself, as lines a small model can quote.

A retrieved excerpt is cut for the app to show; a model answering a question needs the fact,
and the fact is often a short field the excerpt left out (a status, an owner, a version). So
a source is shown as its entity: `[id] (type) title`, then its fields as `name: value` lines,
a list on one line (`;` between items), a nested field named by its path (`related.feature`).
Every short field is kept; the long ones the question's words point to come next, whole; the
rest while the passage has room. A document (no entity) is shown by its excerpt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from context_kit_service.graphs import prompts
from context_kit_service.repository.model import Entity
from context_kit_service.retrieval.lexical import topic_words
from context_kit_service.retrieval.search import Source

PASSAGE_CHARS = 700
"""Room for one passage's long fields (its short ones always fit)."""
SHORT_CHARS = 60
"""A field whose line is at most this long is kept whatever the room."""
LEFT_OUT = ("id", "title", "name")
"""Shown in the passage's first line."""


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(_text(item) for item in value if item not in (None, "", [], {}))
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return str(value).strip()


def field_lines(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Each field as (name, value): nested objects by their dotted path, lists on one line,
    empty values left out."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if not prefix and key in LEFT_OUT:
            continue
        if isinstance(value, dict) and all(not isinstance(v, dict) for v in value.values()):
            yield from field_lines(value, f"{name}.")
        elif value not in (None, "", [], {}):
            yield name, _text(value)


def entity_passage(entity: Entity, question: str, room: int = PASSAGE_CHARS) -> str:
    """The entity as the model reads it for `question` (see the module docstring)."""
    lines = [f"{name}: {value}" for name, value in field_lines(entity.data)]
    wanted = topic_words(question)
    long = [i for i, line in enumerate(lines) if len(line) > SHORT_CHARS]
    ranked = sorted(long, key=lambda i: -len(wanted & topic_words(lines[i])))
    kept = {i for i, line in enumerate(lines) if len(line) <= SHORT_CHARS}
    for rank, i in enumerate(ranked):
        pointed = rank == 0 and bool(wanted & topic_words(lines[i]))
        if pointed or len(lines[i]) <= room:
            kept.add(i)
            room -= len(lines[i])
    body = "\n".join(lines[i] for i in sorted(kept))
    return prompts.RAG_PASSAGE.format(
        entity_id=entity.id, entity_type=entity.type, title=entity.title, excerpt=body
    ).rstrip()


def source_passage(source: Source, entity: Entity | None, question: str) -> str:
    """A retrieved source as the model reads it: its entity, or a document's excerpt."""
    if entity is None:
        return prompts.RAG_PASSAGE.format(
            entity_id=source.entity_id,
            entity_type=source.entity_type,
            title=source.title,
            excerpt=source.excerpt,
        )
    return entity_passage(entity, question)
