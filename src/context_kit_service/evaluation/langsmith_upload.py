"""Optional upload of an evaluation run to LangSmith (`eval --langsmith`): a dataset per suite,
one example per result with the scores as metadata. Nothing leaves the machine otherwise."""

from __future__ import annotations

import os
from typing import Any

from context_kit_service.evaluation.runner import ExampleResult


def upload(
    meta: dict[str, Any],
    summary: dict[str, float],
    results: list[ExampleResult],
    client: Any | None = None,
) -> str:
    """Add the run's examples to the LangSmith dataset `context-kit-<suite>`; its name back."""
    if client is None:
        if not os.environ.get("LANGSMITH_API_KEY"):
            raise ValueError("--langsmith needs LANGSMITH_API_KEY")
        from langsmith import Client

        client = Client()
    name = f"context-kit-{meta['suite']}"
    if client.has_dataset(dataset_name=name):
        dataset = client.read_dataset(dataset_name=name)
    else:
        dataset = client.create_dataset(name, description="context-kit-service evaluation runs")
    client.create_examples(
        dataset_id=dataset.id,
        examples=[
            {
                "inputs": r.input,
                "outputs": r.output,
                "metadata": {
                    **meta,
                    "example": r.id,
                    "ok": r.ok,
                    "error": r.error,
                    "latency_ms": r.latency_ms,
                    **{f"score_{k}": v for k, v in r.metrics.items()},
                },
            }
            for r in results
        ],
    )
    return name
