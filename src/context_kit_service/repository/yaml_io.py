"""YAML reading (fast, libyaml) and round-trip writing (ruamel.yaml keeps order and comments)."""

from __future__ import annotations

import io
import threading
from typing import Any

import yaml
from ruamel.yaml import YAML
from yaml.constructor import ConstructorError, SafeConstructor

_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):  # type: ignore[misc,valid-type]
    """Safe loading that keeps dates as the strings they were written as."""


_Loader.yaml_implicit_resolvers = {
    key: [resolver for resolver in resolvers if resolver[0] != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in _BASE_LOADER.yaml_implicit_resolvers.items()
}


MAX_INT_DIGITS = 30
MAX_SCALAR_CHARS = 200_000
MAX_NODES = 50_000
"""Values in one file counted with every alias expanded: an alias bomb stops here."""
MAX_DEPTH = 64
MIN_INT, MAX_INT = -(2**63), 2**63 - 1


def _bounded_int(loader: SafeConstructor, node: yaml.ScalarNode) -> int:
    digits = sum(ch.isdigit() for ch in str(node.value))
    if digits > MAX_INT_DIGITS:
        raise ConstructorError(
            None, None, f"integer with more than {MAX_INT_DIGITS} digits", node.start_mark
        )
    return int(SafeConstructor.construct_yaml_int(loader, node))


_Loader.add_constructor("tag:yaml.org,2002:int", _bounded_int)


def check_bounds(data: Any) -> None:
    """Refuse data (a YAML document, or fields to write) that is too large once aliases are
    expanded, cyclic, too deep, or holds an overlong text."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def size(value: Any, depth: int) -> int:
        if isinstance(value, str):
            if len(value) > MAX_SCALAR_CHARS:
                raise BoundsExceeded(f"a text value longer than {MAX_SCALAR_CHARS} characters")
            return 1
        if isinstance(value, int) and not MIN_INT <= value <= MAX_INT:
            raise BoundsExceeded("an integer outside the 64-bit range")
        if not isinstance(value, dict | list):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in open_ids:
            raise BoundsExceeded("a value that contains itself (recursive alias)")
        if depth > MAX_DEPTH:
            raise BoundsExceeded(f"values nested deeper than {MAX_DEPTH} levels")
        open_ids.add(key)
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        total = 1
        for item in items:
            total += size(item, depth + 1)
            if total > MAX_NODES:
                raise BoundsExceeded(f"more than {MAX_NODES} values once aliases are expanded")
        open_ids.discard(key)
        sizes[key] = total
        return total

    size(data, 0)


def bounded(value: Any) -> Any:
    """`check_bounds` as a pydantic `AfterValidator`, for free-form JSON inputs."""
    check_bounds(value)
    return value


class BoundsExceeded(ValueError):
    """Data (parsed YAML, or JSON sent to be written) refused as too large, too deep,
    recursive, or holding an absurd number."""


def load_yaml(text: str) -> Any:
    """Safe-load one document within bounds (see the MAX_* constants); raises BoundsExceeded or
    yaml.YAMLError."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except RecursionError:
        raise BoundsExceeded(f"values nested deeper than {MAX_DEPTH} levels") from None
    check_bounds(data)
    return data


class _IndentedDumper(yaml.SafeDumper):
    """Safe dumping with list items indented under their key, like the round-trip writer."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump_new(data: dict[str, Any]) -> str:
    """YAML for a new entity (nothing to preserve): same layout as `dump_round_trip`, faster."""
    return yaml.dump(
        data, Dumper=_IndentedDumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """One line naming what is wrong and where (1-based line and column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"


_local = threading.local()


def _round_trip() -> YAML:
    """One configured round-trip YAML per thread (building one is costly; sharing is unsafe)."""
    handler: YAML | None = getattr(_local, "yaml", None)
    if handler is not None:
        return handler
    handler = YAML(typ="rt")
    handler.indent(mapping=2, sequence=4, offset=2)
    handler.width = 100
    handler.preserve_quotes = True
    _local.yaml = handler
    return handler


def load_round_trip(text: str) -> Any:
    """Load for editing: the result keeps key order, comments and quoting when dumped again."""
    return _round_trip().load(text)


def dump_round_trip(data: Any) -> str:
    buffer = io.StringIO()
    _round_trip().dump(data, buffer)
    return buffer.getvalue()


def merge_into(target: Any, changes: dict[str, Any]) -> None:
    """Deep-merge `changes` into a round-trip mapping; a None value removes the key."""
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_into(target[key], value)
        else:
            target[key] = value
