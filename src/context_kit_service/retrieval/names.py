"""Entities a question names exactly: by id (`FEAT-001`, `feat-001`, `svc-git`, any form the
repository uses, in any case) or by their whole title or name ("the feature builder", "the
Git Version Control Service", "berth-planner"). Such an entity is what the question is about,
so retrieval puts it first, before the entities that only link to it.

A title counts when the question holds all of its words, in order, as a phrase (case and
punctuation aside) and it has at least two words: a one-word title ("Budgets") is an ordinary
word of many questions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*")
"""An id-like token: words joined by `-`, `_` or `.` (`FEAT-001`, `svc-git`, `pkg.core`)."""
WORD = re.compile(r"[a-z0-9]+")
MIN_TITLE_WORDS = 2


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


@dataclass
class Names:
    """The ids and titles of a repository's entities, for finding those a question names."""

    ids: dict[str, str] = field(default_factory=dict)
    """Lower-cased id -> the entity's id."""
    titles: dict[str, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)
    """First word of a title -> (the title's words, the entity's id), longest first."""

    @classmethod
    def of(cls, entities: Iterable[tuple[str, str]]) -> Names:
        """From (id, title) pairs."""
        names = cls()
        for entity_id, title in entities:
            names.ids[entity_id.lower()] = entity_id
            phrase = tuple(words(title))
            if len(phrase) >= MIN_TITLE_WORDS:
                names.titles.setdefault(phrase[0], []).append((phrase, entity_id))
        for candidates in names.titles.values():
            candidates.sort(key=lambda item: -len(item[0]))
        return names

    def named_in(self, question: str) -> list[str]:
        """The entities `question` names, in the order it names them (each once)."""
        found: list[tuple[int, str]] = []
        for match in TOKEN.finditer(question):
            entity_id = self.ids.get(match.group().lower())
            if entity_id is not None:
                found.append((match.start(), entity_id))
        spans = [(m.start(), m.group()) for m in WORD.finditer(question.lower())]
        said = [word for _, word in spans]
        index = 0
        while index < len(said):
            step = 1
            for phrase, entity_id in self.titles.get(said[index], ()):
                if tuple(said[index : index + len(phrase)]) == phrase:
                    found.append((spans[index][0], entity_id))
                    step = len(phrase)  # the longest title here; the words it holds are used
                    break
            index += step
        return list(dict.fromkeys(entity_id for _, entity_id in sorted(found)))
