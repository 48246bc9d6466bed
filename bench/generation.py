"""Generation benchmark (issue 6 targets), measured in this run:

- the graph's own overhead per generation, with a zero-latency scripted chat model and
  zero-latency deterministic embeddings (target <= 5 ms p50): context gathering, retrieval,
  validation against schema and links, YAML rendering;
- the end-to-end time per entity with the embedded model and embeddings, per type;
- prompt processing on the embedded model with and without the prefix cache: assistant and
  RAG prompts interleaved, as a service answering both sees them (llama.cpp alone keeps only
  the last prompt's state, which the other kind of prompt then replaces).

    .venv/bin/python bench/generation.py [--runs 200] [--only prefix-cache]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import JsonOutputParser
from langchain_core.utils.function_calling import convert_to_openai_tool

from context_kit_service.configuration import EMBEDDINGS_KEY, MODEL_KEY, SETTINGS_KEY
from context_kit_service.graphs import prompts
from context_kit_service.graphs.generation import graph
from context_kit_service.local_models import DEFAULT_LOCAL_MODEL, LocalChatModel, structured
from context_kit_service.settings import load_settings
from context_kit_service.tools.registry import CORE_TOOLS

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "context-repo"
TASK = {"title": "Add an index on budget lines", "status": "todo", "steps": ["Write it"]}


class InstantModel(GenericFakeChatModel):
    """Answers at once, on the event loop (the base class would hop to a worker thread)."""

    async def _agenerate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        return self._generate(messages, *args, **kwargs)

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kw: Any) -> Any:  # type: ignore[override]
        return structured(self, JsonOutputParser(), include_raw=include_raw)


async def overhead(runs: int, data_dir: Path) -> list[float]:
    reply = AIMessage(
        json.dumps(TASK), usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
    )
    config = {
        "configurable": {
            SETTINGS_KEY: load_settings(data_dir=data_dir),
            MODEL_KEY: InstantModel(messages=itertools.repeat(reply)),
            EMBEDDINGS_KEY: DeterministicFakeEmbedding(size=384),
        }
    }
    request = {
        "entity_type": "task",
        "user_prompt": "Speed up the remaining view",
        "linked_feature_id": "FEAT-003",
        "repo_path": str(SAMPLE),
    }
    for _ in range(5):
        await graph.ainvoke(request, config)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        out = await graph.ainvoke(request, config)
        timings.append((time.perf_counter() - started) * 1000)
        assert out["status"] == "completed"
    return timings


async def embedded(data_dir: Path) -> None:
    config = {
        "configurable": {
            SETTINGS_KEY: load_settings(data_dir=data_dir),
            "temperature": 0.7,
            "max_tokens": 400,
        }
    }
    requests = [
        ("userstory", "A planner wants to split one transaction across two categories", "FEAT-003"),
        ("task", "Add a database index on budget lines by category", "FEAT-003"),
        ("feature", "Multi-currency accounts with daily exchange rates", None),
        ("service", "A service that fetches daily currency exchange rates", None),
    ]
    await graph.ainvoke(
        {"entity_type": "service", "user_prompt": "warm up the models", "repo_path": str(SAMPLE)},
        config,
    )
    for entity_type, prompt, feature in requests:
        started = time.perf_counter()
        out = await graph.ainvoke(
            {
                "entity_type": entity_type,
                "user_prompt": prompt,
                "linked_feature_id": feature,
                "repo_path": str(SAMPLE),
            },
            config,
        )
        seconds = time.perf_counter() - started
        print(
            f"  {entity_type:10} {seconds:6.2f} s  {out['status']:9} attempts {out['attempts']}  "
            f"tokens {out['prompt_tokens']}+{out['completion_tokens']}"
        )


QUESTIONS = [
    "Which tasks are blocked?",
    "What does SPEC-002 say about retries?",
    "Who owns the import service?",
    "What is the next free feature id?",
    "Is anything about CSV imports still open?",
    "What depends on PKG-001?",
]
PASSAGES = "\n\n".join(
    prompts.RAG_PASSAGE.format(
        entity_id=f"T-{i:03d}",
        entity_type="task",
        title=f"Budget import step {i}",
        excerpt="Import the bank's CSV export, map its columns to categories and flag "
        "duplicates before they reach the ledger. " * 2,
    )
    for i in range(1, 6)
)


def interleaved() -> list[tuple[str, list[BaseMessage], list[dict[str, Any]]]]:
    """Assistant and RAG prompts, alternating, each with a new question."""
    tools = [convert_to_openai_tool(t) for t in CORE_TOOLS]
    requests: list[tuple[str, list[BaseMessage], list[dict[str, Any]]]] = []
    for question in QUESTIONS:
        requests.append(
            ("assistant", [SystemMessage(prompts.ASSISTANT_CORE), HumanMessage(question)], tools)
        )
        rag: list[BaseMessage] = [
            SystemMessage(prompts.RAG_SYSTEM),
            HumanMessage(prompts.RAG_EXAMPLE_QUESTION),
            AIMessage(prompts.RAG_EXAMPLE_ANSWER),
            HumanMessage(prompts.RAG_QUESTION.format(context=PASSAGES, question=question)),
        ]
        requests.append(("rag", rag, []))
    return requests


def prefix_cache(data_dir: Path) -> None:
    settings = load_settings(data_dir=data_dir)
    rates: dict[tuple[int, str], list[float]] = {}
    sizes: dict[str, list[int]] = {}
    for cache_mb in (settings.local_prefix_cache_mb, 0):
        model = LocalChatModel(
            model_path=settings.model or DEFAULT_LOCAL_MODEL,
            models_dir=settings.local_models_dir,
            prefix_cache_mb=cache_mb,
        )
        runtime = model.runtime
        template = runtime.chat_template()
        assert template is not None, "the prefix cache bench needs a model with a chat template"
        requests = interleaved()
        for _, messages, tools in requests[:2]:  # load, and fill the cache once
            runtime.complete(template.render(messages, tools), max_tokens=1, temperature=0, stop=[])
        for kind, messages, tools in requests[2:]:
            prompt = template.render(messages, tools)
            started = time.perf_counter()
            done = runtime.complete(prompt, max_tokens=1, temperature=0, stop=[])
            seconds = time.perf_counter() - started
            rates.setdefault((cache_mb, kind), []).append(done.prompt_tokens / seconds)
            sizes.setdefault(kind, []).append(done.prompt_tokens)
    for kind in ("assistant", "rag"):
        on = statistics.median(rates[(settings.local_prefix_cache_mb, kind)])
        off = statistics.median(rates[(0, kind)])
        print(
            f"  {kind:9} prompts ({statistics.median(sizes[kind]):.0f} tokens): "
            f"{on:6.0f} prompt tokens/s with the prefix cache "
            f"({settings.local_prefix_cache_mb} MiB), {off:6.0f} without: {on / off:4.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--only", choices=["prefix-cache"], help="run one part only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        if args.only == "prefix-cache":
            print("prompt processing on the embedded model (assistant and RAG interleaved):")
            prefix_cache(Path(directory))
            return
        timings = asyncio.run(overhead(args.runs, Path(directory)))
        p50 = statistics.median(timings)
        print(
            f"graph overhead per generation (zero-latency model and embeddings): p50 {p50:.2f} ms, "
            f"p99 {sorted(timings)[int(len(timings) * 0.99) - 1]:.2f} ms (target <= 5 ms): "
            f"{'PASS' if p50 <= 5 else 'FAIL'}"
        )
        print("end to end with the embedded model (after a warm-up):")
        asyncio.run(embedded(Path(directory)))
        print("prompt processing on the embedded model (assistant and RAG interleaved):")
        prefix_cache(Path(directory))


if __name__ == "__main__":
    main()
