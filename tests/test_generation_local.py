"""The embedded model writes one entity of each type; each validates against its schema."""

from __future__ import annotations

import jsonschema
import pytest

from context_kit_service.configuration import SETTINGS_KEY
from context_kit_service.graphs.generation import graph
from context_kit_service.repository import load_repository
from tests.conftest import SAMPLE_REPO

pytestmark = pytest.mark.model

REQUESTS = [
    ("feature", "Multi-currency accounts with daily exchange rates", None),
    ("userstory", "A planner wants to split one transaction across two categories", "FEAT-003"),
    ("spec", "An API to split a transaction across budget categories", "FEAT-003"),
    ("task", "Add a database index on budget lines by category", "FEAT-003"),
    ("service", "A service that fetches daily currency exchange rates", None),
    ("package", "A Python library for currency conversion with decimals", None),
    ("governance", "A data retention policy for household finance data", None),
]


@pytest.mark.parametrize(("entity_type", "prompt", "feature"), REQUESTS)
async def test_the_embedded_model_writes_a_valid_entity(
    make_settings, entity_type: str, prompt: str, feature: str | None
) -> None:
    config = {
        "configurable": {SETTINGS_KEY: make_settings(), "temperature": 0.7, "max_tokens": 400}
    }
    request = {
        "entity_type": entity_type,
        "user_prompt": prompt,
        "linked_feature_id": feature,
        "repo_path": str(SAMPLE_REPO),
        "max_attempts": 3,
    }
    out = await graph.ainvoke(request, config)
    assert out["status"] == "completed", out["error"]
    assert out["valid"] is True
    repo = load_repository(SAMPLE_REPO)
    jsonschema.validate(out["entity"], repo.schemas[entity_type])
    assert out["entity"]["id"] == repo.next_id(entity_type)
    assert out["prompt_tokens"] > 0
    assert out["completion_tokens"] > 0
    assert out["model"] == "qwen2.5-coder-0.5b"
