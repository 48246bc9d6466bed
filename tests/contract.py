"""JSON schemas mirroring the app's Zod schemas: optional fields may be absent, never null."""

from __future__ import annotations

from typing import Any

import jsonschema

_NUMBER = {"type": "number", "minimum": 0}

TOOL_EXECUTE_RESPONSE = {
    "type": "object",
    "properties": {
        "result": {"type": "object"},
        "error": {"type": "string"},
        "metadata": {
            "type": "object",
            "properties": {"durationMs": _NUMBER, "toolId": {"type": "string"}},
            "required": ["durationMs", "toolId"],
        },
    },
    "required": ["metadata"],
}

ERROR_BODY = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "type": {"type": "string"},
        "code": {"type": "string"},
    },
    "required": ["error", "message"],
}


def assert_no_nulls(value: Any, where: str = "$") -> None:
    assert value is not None, f"null at {where}"
    if isinstance(value, dict):
        for key, item in value.items():
            assert_no_nulls(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_no_nulls(item, f"{where}[{index}]")


def assert_contract(body: Any, schema: dict[str, Any]) -> None:
    jsonschema.validate(body, schema)
    assert_no_nulls(body)
