"""Regular expressions that come from a repository, matched in linear time.

A repository's schemas (`pattern`, `patternProperties`) and ignore files arrive with `git
clone`. Python's `re` backtracks, and holds the GIL while it does: a schema pattern
`^(a+)+$` and a title of 44 a's would stop every thread of the service, its request timeout
and its signal handlers with it. So every pattern a repository brings runs on RE2
(`google-re2`), whose matching time is linear in the input whatever the pattern; ignore files
go through `pathspec` on the same engine. A pattern RE2 cannot compile (backreferences,
lookaround) is a problem of the file that holds it, never silently skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import re2

if TYPE_CHECKING:
    from jsonschema import Draft7Validator
    from pathspec import GitIgnoreSpec


class PatternError(ValueError):
    """A repository pattern the linear-time engine cannot run; the message names it."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False
    return options


@lru_cache(maxsize=1024)
def safe_pattern(pattern: str) -> Any:
    """`pattern` compiled by RE2 (the same `search` as `re`, in linear time)."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise PatternError(
            f"pattern {pattern[:100]!r} cannot be used ({reason}); write it without "
            "backreferences or lookaround"
        ) from None


def schema_patterns(schema: Any) -> Iterator[str]:
    """Every regular expression a JSON schema holds (`pattern` values, `patternProperties`
    keys), at any depth."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            elif key == "patternProperties" and isinstance(value, dict):
                yield from (k for k in value if isinstance(k, str))
            yield from schema_patterns(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from schema_patterns(item)


def check_schema_patterns(schema: Any) -> None:
    """PatternError for the first pattern of `schema` RE2 cannot compile."""
    for pattern in schema_patterns(schema):
        safe_pattern(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not safe_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _matching(patterns: Iterable[str], name: str) -> bool:
    return any(safe_pattern(p).search(name) for p in patterns)


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if safe_pattern(pattern).search(name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, allowed: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    from jsonschema import ValidationError

    if not validator.is_type(instance, "object"):
        return
    named = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = sorted((k for k in instance if k not in named and not _matching(patterns, k)), key=str)
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        listed = ", ".join(repr(extra) for extra in extras)
        yield ValidationError(f"Additional properties are not allowed ({listed} unexpected)")


@cache
def validator_class() -> type[Draft7Validator]:
    """Draft 7 validation with every regular expression on RE2."""
    from jsonschema import Draft7Validator, validators

    keywords = {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    }
    extended: type[Draft7Validator] = validators.extend(Draft7Validator, keywords)  # type: ignore[no-untyped-call]
    return extended


def ignore_spec(lines: list[str]) -> GitIgnoreSpec:
    """Gitignore `lines` as a matcher on RE2."""
    from pathspec import GitIgnoreSpec

    return GitIgnoreSpec.from_lines(lines, backend="re2")
