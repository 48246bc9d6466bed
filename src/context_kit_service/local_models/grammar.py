"""What llama.cpp's JSON-schema-to-grammar conversion can take."""

from __future__ import annotations

from typing import Any


def without_patterns(schema: Any) -> Any:
    """The schema minus regex `pattern`s: llama.cpp's schema-to-grammar conversion turns
    classes like \\d into literal text and the process then crashes while decoding. Callers
    validate the result against the full schema anyway."""
    if isinstance(schema, dict):
        return {
            k: without_patterns(v)
            for k, v in schema.items()
            if not (k == "pattern" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [without_patterns(item) for item in schema]
    return schema
