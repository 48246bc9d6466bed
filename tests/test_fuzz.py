"""A bounded schema-fuzzing run (`make fuzz` runs the long one): no 5xx, every response as
documented (status code, content type, body schema), on every operation."""

from __future__ import annotations

from tests.fuzz_service import failures, fuzz


def test_schema_fuzzing_finds_no_server_error_and_no_undocumented_answer() -> None:
    status = fuzz(10, seed=1, extra=["--phases", "examples,fuzzing"])
    assert status == 0, failures()
