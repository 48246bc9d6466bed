"""Text rules shared by the graph inputs and the REST requests, each defined once. A rule is
given the name its field has on the wire, which its message uses."""

from __future__ import annotations

from pydantic import AfterValidator

MIN_PROMPT_CHARS = 10
"""What a generation prompt needs, not counting blanks."""


def not_blank(name: str) -> AfterValidator:
    def check(value: str) -> str:
        if not value.strip():
            raise ValueError(f"{name} must not be blank")
        return value

    return AfterValidator(check)


def visible_chars(name: str, minimum: int = MIN_PROMPT_CHARS) -> AfterValidator:
    def check(value: str) -> str:
        if len("".join(value.split())) < minimum:
            raise ValueError(f"{name} needs at least {minimum} non-blank characters")
        return value

    return AfterValidator(check)
