"""Grammars for llama.cpp: what its JSON-schema conversion can take, and citations."""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def citation_grammar(ids: Sequence[str]) -> str:
    """A GBNF grammar for an answer whose every bracket is a citation of one of `ids`: text
    outside brackets is free, and `[` can only open `[<one of ids>]`. It cannot start with a
    blank."""
    return "\n".join(
        [
            "root ::= cks-first cks-part*",
            r"cks-first ::= [^\x5B\x00 \t\n] | cks-cite",
            r"cks-part ::= [^\x5B\x00] | cks-cite",
            f'cks-cite ::= "[" ({_one_of(ids)}) "]"',
        ]
    )


def source_grammar(ids: Sequence[str]) -> str:
    """A GBNF grammar for the citation an answer ends with: ` [<one of ids>]`."""
    return f'root ::= " [" ({_one_of(ids)}) "]"'


def _one_of(ids: Sequence[str]) -> str:
    return " | ".join(json.dumps(i) for i in dict.fromkeys(ids)) or '"?"'
