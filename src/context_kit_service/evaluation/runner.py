"""Run a suite's examples against a target, a few at a time, with a progress bar, and
summarize: each metric's mean, latency p50/p95, tokens, errors."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from pydantic import BaseModel
from tqdm import tqdm

from context_kit_service.evaluation import metrics
from context_kit_service.evaluation.suites import Suite
from context_kit_service.evaluation.targets import Target


class ExampleResult(BaseModel):
    id: str
    ok: bool
    metrics: dict[str, float]
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    input: dict[str, Any]
    output: dict[str, Any]
    error: str | None = None


async def run_example(suite: Suite[Any], example: BaseModel, target: Target) -> ExampleResult:
    started = time.perf_counter()
    try:
        scored = await suite.run(example, target)
    except Exception as exc:
        return ExampleResult(
            id=getattr(example, "id", "?"),
            ok=False,
            metrics={m: float(m in metrics.LOWER_IS_BETTER) for m in suite.metrics},
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            input=example.model_dump(),
            output={},
            error=f"{type(exc).__name__}: {exc}",
        )
    return ExampleResult(
        id=getattr(example, "id", "?"),
        ok=True,
        metrics=scored.metrics,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        prompt_tokens=scored.prompt_tokens,
        completion_tokens=scored.completion_tokens,
        input=example.model_dump(),
        output=scored.output,
    )


async def run_suite(
    suite: Suite[Any],
    examples: list[Any],
    target: Target,
    *,
    concurrency: int = 1,
    progress: bool = True,
) -> list[ExampleResult]:
    """Every example's result, in dataset order."""
    gate = asyncio.Semaphore(max(1, concurrency))
    bar = tqdm(
        total=len(examples), desc=suite.name, unit="ex", disable=not progress, file=sys.stderr
    )

    async def one(example: Any) -> ExampleResult:
        async with gate:
            result = await run_example(suite, example, target)
        bar.update()
        return result

    try:
        return list(await asyncio.gather(*(one(e) for e in examples)))
    finally:
        bar.close()


def summarize(suite: Suite[Any], results: list[ExampleResult]) -> dict[str, float]:
    """Each metric's mean over the examples that score it (and per category, as
    `metric[category]`, when examples have one), latency p50/p95 (ms), token totals, example
    and error counts."""
    summary: dict[str, float] = {"examples": len(results)}
    categories = sorted({str(r.input["category"]) for r in results if r.input.get("category")})
    for name in suite.metrics:
        values = [r.metrics[name] for r in results if name in r.metrics]
        if values:
            summary[name] = round(metrics.mean(values), 4)
        for category in categories:
            chosen = [
                r.metrics[name]
                for r in results
                if name in r.metrics and r.input.get("category") == category
            ]
            if chosen:
                summary[f"{name}[{category}]"] = round(metrics.mean(chosen), 4)
    latencies = [r.latency_ms for r in results]
    summary["latency_p50_ms"] = round(metrics.percentile(latencies, 50), 3)
    summary["latency_p95_ms"] = round(metrics.percentile(latencies, 95), 3)
    summary["prompt_tokens"] = sum(r.prompt_tokens for r in results)
    summary["completion_tokens"] = sum(r.completion_tokens for r in results)
    summary["errors"] = sum(not r.ok for r in results)
    return summary
