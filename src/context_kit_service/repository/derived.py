"""Which Markdown documents are derived from entities, and which entities they restate.

Real repositories carry files a pipeline generated from the entities (prompt files,
checklists, folder indexes). They repeat an entity's words, so retrieval must count their
matches toward the entity instead of letting them outrank it. The rules:

- A document *names* the entity ids in its file name, in its YAML front matter (any value),
  or in its first heading.
- A document is *generated* when it lies under a folder called `generated`, or matches a
  pattern of the repository's `.contextignore` or `.gitignore` (gitignore syntax, root files).
- A document is *derived* when it names an id or is generated. Within a derived document, a
  section whose own heading names ids restates those ids; every other section restates what
  the document names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from context_kit_service.repository.patterns import ignore_spec
from context_kit_service.repository.yaml_io import BoundsExceeded, load_yaml

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

GENERATED_DIRS = frozenset({"generated"})
IGNORE_FILES = (".contextignore", ".gitignore")
"""Root files whose patterns mark documents as generated."""
ENTITY_ID = re.compile(r"(?<![A-Za-z0-9])[A-Z][A-Z0-9]*-\d+(?![A-Za-z0-9])")
"""How an entity id is written in a file name or a heading: `FEAT-001`, `T-12`."""
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+)$", re.MULTILINE)
"""A Markdown heading's line; its closing `#`s are stripped after the match (matched by the
pattern, they made a long line of spaces quadratic)."""


def mentioned_ids(text: str) -> list[str]:
    """Entity ids written in `text`, in order, each once."""
    return list(dict.fromkeys(ENTITY_ID.findall(text)))


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """YAML front matter (read within the loader's bounds; unreadable front matter is none)
    and the rest of the document."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text
    try:
        data = load_yaml(match.group(1))
    except (yaml.YAMLError, BoundsExceeded):
        return {}, text[match.end() :]
    return (data if isinstance(data, dict) else {}), text[match.end() :]


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def first_heading(body: str) -> str | None:
    match = _HEADING.search(body)
    return match.group(1).rstrip(" \t#") if match else None


def named_ids(path: str, text: str) -> tuple[str, ...]:
    """The ids a document names: in its file name, its front matter, its first heading."""
    front, body = split_front_matter(text)
    places = [PurePosixPath(path).name, *_strings(front), first_heading(body) or ""]
    return tuple(dict.fromkeys(i for place in places for i in mentioned_ids(place)))


@dataclass(frozen=True)
class GeneratedRules:
    """The repository's patterns for generated files (from `.contextignore`, `.gitignore`)."""

    spec: GitIgnoreSpec | None = None

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> GeneratedRules:
        lines = [line for text in texts for line in text.splitlines()]
        if not any(line.strip() and not line.lstrip().startswith("#") for line in lines):
            return cls()
        return cls(ignore_spec(lines))

    def generated(self, path: str) -> bool:
        """Whether the repository-relative POSIX `path` is a generated file."""
        if GENERATED_DIRS.intersection(PurePosixPath(path).parts[:-1]):
            return True
        return self.spec is not None and self.spec.match_file(path)
