"""The seven entity types, where their files live, their ids and the links between them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Literal

EntityTypeName = Literal["feature", "userstory", "spec", "task", "service", "package", "governance"]


@dataclass(frozen=True)
class Link:
    """A field holding entity ids. `downstream` is who is affected when the other end changes:
    "target" when a change of this entity affects the linked ones, "source" otherwise."""

    path: tuple[str, ...]
    targets: tuple[EntityTypeName, ...]
    downstream: Literal["source", "target"]
    many: bool = True
    backlink: str | None = None
    """The list field of the linked entity that must name this one back (two-way links)."""

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class EntityType:
    name: EntityTypeName
    folder: str
    prefix: str
    links: tuple[Link, ...]

    @property
    def id_pattern(self) -> re.Pattern[str]:
        return _id_pattern(self.prefix)

    @property
    def feature_link(self) -> Link | None:
        """The link to the feature this type belongs to (the one `linkedFeatureId` sets)."""
        return next((link for link in self.links if link.targets == ("feature",)), None)

    def format_id(self, number: int) -> str:
        return f"{self.prefix}-{number:03d}"


@cache
def _id_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}-(\d+)$")


_DEPENDENCY_TARGETS: tuple[EntityTypeName, ...] = ("service", "package")

ENTITY_TYPES: dict[str, EntityType] = {
    t.name: t
    for t in (
        EntityType(
            "feature",
            "features",
            "FEAT",
            (
                Link(("userStories",), ("userstory",), "target"),
                Link(("specs",), ("spec",), "target"),
                Link(("tasks",), ("task",), "target"),
                Link(("requires",), _DEPENDENCY_TARGETS, "source"),
            ),
        ),
        EntityType(
            "userstory",
            "userstories",
            "US",
            (
                Link(("feature",), ("feature",), "source", many=False, backlink="userStories"),
                Link(("impacts", "services"), ("service",), "target"),
                Link(("impacts", "packages"), ("package",), "target"),
            ),
        ),
        EntityType(
            "spec",
            "specs",
            "SPEC",
            (
                Link(("related", "features"), ("feature",), "source", backlink="specs"),
                Link(("related", "services"), ("service",), "target"),
                Link(("related", "packages"), ("package",), "target"),
            ),
        ),
        EntityType(
            "task",
            "tasks",
            "T",
            (
                Link(("related", "feature"), ("feature",), "source", many=False, backlink="tasks"),
                Link(("related", "spec"), ("spec",), "source", many=False),
                Link(("related", "service"), ("service",), "source", many=False),
            ),
        ),
        EntityType(
            "service",
            "services",
            "SVC",
            (
                Link(("dependencies",), ("service",), "source"),
                Link(("consumers",), ("service",), "target"),
            ),
        ),
        EntityType(
            "package", "packages", "PKG", (Link(("uses", "services"), ("service",), "source"),)
        ),
        EntityType("governance", "governance", "CONST", ()),
    )
}

TYPE_BY_FOLDER = {t.folder: t for t in ENTITY_TYPES.values()}

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")
"""What any entity id must look like to become part of a file name, whatever the schema says."""


def entity_type(name: str) -> EntityType:
    """The entity type called `name`; raises ValueError listing the known ones."""
    try:
        return ENTITY_TYPES[name]
    except KeyError:
        raise ValueError(
            f"unknown entity type {name!r}; expected one of: {', '.join(ENTITY_TYPES)}"
        ) from None


@cache
def builtin_schema(type_name: str) -> dict[str, Any]:
    """The built-in JSON schema (draft-07) for a type, used when a repository has none."""
    text = files("context_kit_service.repository").joinpath(f"schemas/{type_name}.schema.json")
    schema: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return schema
