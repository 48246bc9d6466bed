"""The evaluation harness end to end: suites run in process with a scripted model (the CI
gate), through the CLI against the real service over HTTP, and with the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from context_kit_service.evaluation.command import SUITE_NAMES
from context_kit_service.evaluation.metrics import LOWER_IS_BETTER
from context_kit_service.evaluation.runner import run_suite, summarize
from context_kit_service.evaluation.suites import SUITES
from context_kit_service.evaluation.targets import LocalTarget
from context_kit_service.graphs.generation import LINK_FIELDS
from context_kit_service.repository.model import load_repository
from tests.conftest import REPO_ROOT, SAMPLE_REPO, AgentService
from tests.fakes import ScriptedChatModel, replies

DATASETS = REPO_ROOT / "evals" / "datasets"


def examples(suite: str, limit: int | None = None) -> list[Any]:
    return SUITES[suite].load(DATASETS / f"{suite}.jsonl")[:limit]


async def evaluate(suite: str, model: ScriptedChatModel, settings: Any, items: list[Any]) -> dict:
    target = LocalTarget(settings, chat_model=model)
    results = await run_suite(SUITES[suite], items, target, progress=False)
    return summarize(SUITES[suite], results) | {"_results": results}


def without_timing(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if not k.startswith(("latency", "_"))}


def test_the_cli_knows_every_suite() -> None:
    assert tuple(SUITES) == SUITE_NAMES


def test_every_dataset_loads() -> None:
    assert {name: len(SUITES[name].load(DATASETS / f"{name}.jsonl")) for name in SUITES} == {
        "rag": 44,
        "generation": 7,
        "tool_use": 20,
        "assistant": 20,
    }


def test_a_bad_dataset_line_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "rag.jsonl"
    bad.write_text('{"id": "q1", "question": "ok?", "relevant": ["T-001"]}\n{"id": "q2"}\n')
    with pytest.raises(ValueError, match=r"rag.jsonl:2: not a rag example: 1 validation error"):
        SUITES["rag"].load(bad)


async def test_scripted_rag_scores_retrieval_and_citations(make_settings) -> None:
    items = examples("rag", 4)
    # Cites the first relevant id, then an id it was never given.
    model = replies(*(f"See [{e.relevant[0]}]." for e in items[:3]), "See [T-999].")
    summary = await evaluate("rag", model, make_settings(repo_path=SAMPLE_REPO), items)
    assert without_timing(summary) == {
        "examples": 4,
        "recall@5": 1.0,
        "mrr": 0.875,
        "grounded": 0.75,
        "cites_sources": 1.0,
        "cites_answering": 0.75,
        "wrong_citation": 0.0,  # T-999 was never retrieved: ungrounded, not a wrong source
        "answered_right": 0.0,  # "See [ID]." states no fact
        "answer_correct": 0.0,
        "prompt_tokens": 400,
        "completion_tokens": 80,
        "errors": 0,
    }


def draft_for(entity_type: str) -> dict[str, Any]:
    """A valid draft: a sample entity of that type without its id and links."""
    repository = load_repository(SAMPLE_REPO)
    entity = next(e for e in repository.entities.values() if e.type == entity_type)
    skipped = {"id"} | LINK_FIELDS[entity_type]
    return {k: v for k, v in entity.data.items() if k not in skipped}


async def test_scripted_generation_scores_validity_fields_and_links(make_settings) -> None:
    items = examples("generation")
    drafts = [draft_for(e.entity_type) for e in items]
    drafts[-1] = {"name": "Data principles"}  # governance: invalid three times over
    model = replies(*drafts, drafts[-1], drafts[-1])
    summary = await evaluate("generation", model, make_settings(repo_path=SAMPLE_REPO), items)
    assert without_timing(summary) == {
        "examples": 7,
        "schema_valid": 0.8571,
        "required_filled": 0.8929,
        "link_correct": 1.0,
        "novelty": 0.1753,  # copies of sample entities; the governance one too short to copy
        "on_topic": 0.1259,
        "prompt_tokens": 900,
        "completion_tokens": 180,
        "errors": 0,
    }


async def test_scripted_tool_use_scores_selection_and_arguments(make_settings) -> None:
    items = examples("tool_use")
    script = []
    for i, example in enumerate(items):
        tool, args = example.tool, example.arguments
        if i == 1:
            args = {**args, "status": "done"}  # half of the arguments wrong
        if i == 5:
            tool, args = "search_entities", {"query": "CSV imports"}  # the wrong tool
        call = {"name": tool, "args": args, "id": f"c{i}", "type": "tool_call"}
        script += [AIMessage("", tool_calls=[call]), AIMessage("Done.")]
    model = ScriptedChatModel(messages=iter(script))
    summary = await evaluate("tool_use", model, make_settings(repo_path=SAMPLE_REPO), items)
    assert without_timing(summary) == {
        "examples": 20,
        "tool_selected": 0.95,
        "argument_accuracy": 0.925,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "errors": 0,
    }


async def test_scripted_assistant_memory_reaches_the_model(make_settings) -> None:
    items = examples("assistant", 2)
    model = replies("Noted.", "Your name is Ada.", "Noted.", "I forgot.")
    summary = await evaluate("assistant", model, make_settings(repo_path=SAMPLE_REPO), items)
    assert without_timing(summary)["remembered"] == 0.5
    second_prompt = [m.content for m in model.prompts[1] if m.type != "system"]
    assert second_prompt == [items[0].turns[0], "Noted.", items[0].turns[1]]
    results = summary["_results"]
    assert [r.output for r in results] == [
        {"answer": "Your name is Ada.", "found": ["Ada"]},
        {"answer": "I forgot.", "found": []},
    ]


def run_cli(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if data_dir is not None:
        env["CKS_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "context_kit_service.cli", "eval", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_over_http_writes_the_report_and_gates(
    agent_service: AgentService, tmp_path: Path
) -> None:
    out = tmp_path / "run-a"
    common = ["--target", agent_service.url, "--token", agent_service.token, "--no-progress"]
    done = run_cli("rag", *common, "--limit", "3", "--out", str(out), "--concurrency", "2")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "latency.png",
        "metrics.png",
        "report.json",
        "report.md",
        "results.jsonl",
    ]
    for plot in ("latency.png", "metrics.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["target"] == agent_service.url
    assert without_timing(report["summary"]) == {
        "examples": 3,
        "recall@5": 1.0,
        "mrr": 0.8333,
        "grounded": 1.0,
        "cites_sources": 1.0,
        "cites_answering": 0.6667,  # the agent cites its first source, not always the answer's
        "wrong_citation": 0.3333,
        "answered_right": 0.0,
        "answer_correct": 0.0,
        "prompt_tokens": 33,
        "completion_tokens": 12,
        "errors": 0,
    }
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["rag-01", "rag-02", "rag-03"]
    assert "| recall@5 | 1 |" in (out / "report.md").read_text()

    gated = run_cli("rag", *common, "--limit", "3", "--out", str(tmp_path / "run-b"))
    assert gated.returncode == 0
    failing = run_cli(
        "rag", *common, "--limit", "1", "--out", str(tmp_path / "c"), "--fail-under", "mrr=1.1"
    )
    assert failing.returncode == 1
    assert "FAIL mrr 1 < 1.1" in failing.stderr

    compared = run_cli("compare", str(out), str(tmp_path / "run-b"))
    assert compared.returncode == 0
    assert "| recall@5 | 1 | 1 | +0 | same |" in compared.stdout


def test_cli_refuses_bad_arguments_with_a_message(tmp_path: Path) -> None:
    assert run_cli("rag", "--target", "ftp://x").stderr.strip() == (
        "error: --target must be `local` or an http(s) URL, got 'ftp://x'"
    )
    assert run_cli("rag", "--fail-under", "mrr").returncode == 2
    assert run_cli("compare", str(tmp_path)).returncode == 2
    missing = run_cli("compare", str(tmp_path), str(tmp_path))
    assert missing.stderr.strip() == f"error: no report.json at {tmp_path}"


def test_cli_model_option_chooses_the_in_process_model(make_settings, tmp_path: Path) -> None:
    """For the local target `--model` is the service's model (as CKS_MODEL), not a
    per-request override, which the local provider refuses."""
    out = tmp_path / "run"
    ran = run_cli(
        "rag", "--limit", "1", "--model", "no-such.gguf", "--out", str(out),
        data_dir=make_settings().data_dir,  # with the sample's index
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result = json.loads((out / "results.jsonl").read_text())
    assert result["error"] == "ProviderError: GGUF model file not found: no-such.gguf"


GATE = {
    "rag": (
        6,
        {
            "recall@5": 0.95,
            "mrr": 0.85,
            "grounded": 1.0,
            "cites_sources": 0.8,
            # measured 0.5 / 0.5 / 0.67 / 0.5 on these 6 (2026-12-07), less one example
            "answered_right": 0.33,
            "answer_correct": 0.33,
            "cites_answering": 0.5,
            "wrong_citation": 0.67,  # a ceiling: less is better
        },
    ),
    "generation": (
        3,
        {"schema_valid": 1.0, "link_correct": 1.0, "novelty": 0.7, "on_topic": 0.5},
    ),
    "tool_use": (5, {"tool_selected": 0.8, "argument_accuracy": 0.7}),
    "assistant": (6, {"remembered": 0.8}),
}
"""The CI thresholds per suite (examples, metric floors; ceilings for a metric where less is
better): the README's figures less a margin."""


def misses(metric: str, score: float, limit: float) -> bool:
    return score > limit if metric in LOWER_IS_BETTER else score < limit


@pytest.mark.model
async def test_embedded_model_gate(make_settings) -> None:
    """The packaged models (Qwen2.5-Coder 0.5B, MiniLM) on the sample repository, hybrid
    retrieval, greedy, in this process (the model loaded once; the CLI's `--fail-under` is
    tested over HTTP above). Retrieval on the hard set is gated by test_retrieval."""
    target = LocalTarget(make_settings(repo_path=SAMPLE_REPO), temperature=0)
    scores: dict[str, dict[str, float]] = {}
    for suite, (limit, floors) in GATE.items():
        results = await run_suite(SUITES[suite], examples(suite, limit), target, progress=False)
        summary = summarize(SUITES[suite], results)
        scores[suite] = {metric: summary[metric] for metric in floors}
    below = {
        f"{suite}.{metric}": score
        for suite, found in scores.items()
        for metric, score in found.items()
        if misses(metric, score, GATE[suite][1][metric])
    }
    assert below == {}, scores


async def test_rag_scores_per_category_on_each_examples_repository(make_settings) -> None:
    hard = SUITES["rag"].load(DATASETS / "rag_hard.jsonl")
    items = [e for e in hard if e.id in ("para-01", "rare-01", "derv-01")]
    assert [Path(e.repo or "").name for e in items] == ["context-repo", "context-repo", "port-repo"]
    model = replies("[US-002]", "[CONST-001]", "[FEAT-001]")  # a citation, no fact
    summary = await evaluate("rag", model, make_settings(), items)
    per_category = {k: v for k, v in without_timing(summary).items() if "[" in k}
    assert per_category == {
        "recall@5[derived]": 1.0,
        "recall@5[paraphrase]": 1.0,
        "recall@5[rare]": 1.0,
        "mrr[derived]": 1.0,
        "mrr[paraphrase]": 1.0,
        "mrr[rare]": 1.0,
        "grounded[derived]": 1.0,
        "grounded[paraphrase]": 1.0,
        "grounded[rare]": 1.0,
        "cites_sources[derived]": 1.0,
        "cites_sources[paraphrase]": 1.0,
        "cites_sources[rare]": 1.0,
        "cites_answering[derived]": 1.0,
        "cites_answering[paraphrase]": 1.0,
        "cites_answering[rare]": 1.0,
        "wrong_citation[derived]": 0.0,
        "wrong_citation[paraphrase]": 0.0,
        "wrong_citation[rare]": 0.0,
        "answered_right[derived]": 1.0,  # "[FEAT-001]" names the feature asked for
        "answered_right[paraphrase]": 0.0,
        "answered_right[rare]": 0.0,
        "answer_correct[derived]": 1.0,
        "answer_correct[paraphrase]": 0.0,
        "answer_correct[rare]": 0.0,
    }


def test_the_retrieval_comparison_is_one_row_per_mode() -> None:
    from context_kit_service.evaluation.command import retrieval_table

    table = retrieval_table(
        {
            "hybrid": {"examples": 2, "recall@5": 1.0, "mrr": 0.75, "latency_p50_ms": 9.0},
            "dense": {"examples": 2, "recall@5": 0.5, "mrr": 0.5, "latency_p50_ms": 8.0},
        }
    )
    assert table == (
        "| retrieval | recall@5 | mrr |\n|---|---|---|\n| hybrid | 1 | 0.75 |\n| dense | 0.5 | 0.5 |\n"
    )


def test_retrieval_modes_are_for_the_local_target_only() -> None:
    result = run_cli("rag", "--target", "http://127.0.0.1:9", "--retrieval", "dense")
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "error: --retrieval applies to --target local (a service uses CKS_RETRIEVAL)",
    )
