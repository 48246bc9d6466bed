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


RAG_QUERY_RESPONSE = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "sources": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "entityId": {"type": "string"},
                    "entityType": {"type": "string"},
                    "relevanceScore": {"type": "number", "minimum": 0, "maximum": 1},
                    "excerpt": {"type": "string"},
                    "filePath": {"type": "string"},
                },
                "required": ["entityId", "entityType", "relevanceScore", "excerpt"],
            },
        },
        "metadata": {
            "type": "object",
            "properties": {
                "retrievalTimeMs": _NUMBER,
                "generationTimeMs": _NUMBER,
                "totalSources": {"type": "integer", "minimum": 0},
                "model": {"type": "string"},
            },
            "required": ["retrievalTimeMs", "generationTimeMs", "totalSources"],
        },
    },
    "required": ["answer", "sources", "metadata"],
}
