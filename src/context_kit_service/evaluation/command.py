"""`context-kit-service eval <suite>` and `eval compare A B`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from context_kit_service.settings import load_settings

if TYPE_CHECKING:
    from context_kit_service.evaluation.targets import Target

SUITE_NAMES = ("rag", "generation", "tool_use", "assistant")
"""The suites in `evaluation.suites.SUITES` (named here so the CLI parses without importing
the graphs)."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "eval",
        help="evaluate a suite (rag, generation, tool_use, assistant), or compare two runs",
        description="Run an evaluation suite and write results.jsonl, report.json, report.md "
        "and PNG plots; or `eval compare A B` to print a regression table of two runs.",
    )
    parser.add_argument("suite", choices=[*SUITE_NAMES, "compare"])
    parser.add_argument("runs", nargs="*", type=Path, help="for compare: two results dirs")
    parser.add_argument(
        "--target", default="local", help="`local` (in process) or a service URL (http://...)"
    )
    parser.add_argument("--token", help="the service's token (default: $CKS_AUTH_TOKEN)")
    parser.add_argument(
        "--provider", help="chat model provider for this run (local target: as CKS_PROVIDER)"
    )
    parser.add_argument(
        "--model",
        help="model for this run (local target: as CKS_MODEL, e.g. qwen2.5-coder-1.5b)",
    )
    parser.add_argument("--temperature", type=float, help="sampling temperature (0: greedy)")
    parser.add_argument(
        "--retrieval",
        action="append",
        choices=["hybrid", "dense"],
        help="retrieval mode for --target local (default: CKS_RETRIEVAL); repeat it to run "
        "the suite once per mode and compare them (results in <out>/<mode>)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="examples run at once")
    parser.add_argument("--dataset", type=Path, help="default: evals/datasets/<suite>.jsonl")
    parser.add_argument("--limit", type=int, help="only the first N examples")
    parser.add_argument(
        "--repo", type=Path, default=Path("examples/context-repo"), help="for --target local"
    )
    parser.add_argument("--out", type=Path, help="default: evals/results/<suite>-<time>")
    parser.add_argument(
        "--fail-under",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="exit 1 when a metric's mean is below VALUE (repeatable)",
    )
    parser.add_argument(
        "--fail-over",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="exit 1 when a metric's mean is above VALUE, for one where less is better "
        "(wrong_citation) (repeatable)",
    )
    parser.add_argument(
        "--langsmith", action="store_true", help="also upload to LangSmith (LANGSMITH_API_KEY)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _thresholds(pairs: list[str]) -> dict[str, float]:
    thresholds = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            thresholds[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"--fail-under and --fail-over want METRIC=NUMBER, got {pair!r}")
    return thresholds


def _target(args: argparse.Namespace, retrieval: str | None) -> Target:
    from context_kit_service.evaluation.targets import HttpTarget, LocalTarget

    if args.target == "local":  # this process's settings, as CKS_PROVIDER/CKS_MODEL would
        chosen = {"retrieval": retrieval, "provider": args.provider, "model": args.model}
        settings = load_settings(
            repo_path=args.repo.resolve(), **{k: v for k, v in chosen.items() if v}
        )
        return LocalTarget(settings, temperature=args.temperature)
    if not args.target.startswith(("http://", "https://")):
        raise ValueError(f"--target must be `local` or an http(s) URL, got {args.target!r}")
    if retrieval:
        raise ValueError("--retrieval applies to --target local (a service uses CKS_RETRIEVAL)")
    token = args.token or os.environ.get("CKS_AUTH_TOKEN")
    return HttpTarget(
        args.target,
        token=token,
        provider=args.provider,
        model=args.model,
        temperature=args.temperature,
    )


def run_compare(args: argparse.Namespace) -> int:
    from context_kit_service.evaluation.report import compare, comparison_table, load_summary

    if len(args.runs) != 2:
        print("error: eval compare wants two results directories: A B", file=sys.stderr)
        return 2
    rows = compare(load_summary(args.runs[0]), load_summary(args.runs[1]))
    print(comparison_table(rows))
    regressed = [row.metric for row in rows if row.verdict == "regressed"]
    print(f"regressed: {', '.join(regressed)}" if regressed else "no regressions")
    return 0


async def _evaluate(
    args: argparse.Namespace, thresholds: dict[str, float], ceilings: dict[str, float]
) -> int:
    """Run the suite once per retrieval mode asked for; the thresholds apply to the first."""
    modes: list[str | None] = list(dict.fromkeys(args.retrieval or [None]))
    started = datetime.now(UTC)
    out = args.out or Path("evals") / "results" / f"{args.suite}-{started:%Y%m%d-%H%M%S}"
    summaries = {}
    for mode in modes:
        folder = out / mode if len(modes) > 1 and mode else out
        summaries[mode or "default"] = await _evaluate_once(args, mode, folder)
    if len(modes) > 1:
        table = retrieval_table(summaries)
        (out / "comparison.md").write_text(table, encoding="utf-8")
        print(table, end="")
    first = next(iter(summaries.values()))
    failed = [
        f"{name} {first.get(name, float('nan')):g} < {limit:g}"
        for name, limit in thresholds.items()
        if not first.get(name, float("-inf")) >= limit
    ] + [
        f"{name} {first.get(name, float('nan')):g} > {limit:g}"
        for name, limit in ceilings.items()
        if not first.get(name, float("inf")) <= limit
    ]
    for line in failed:
        print(f"FAIL {line}", file=sys.stderr)
    return 1 if failed else 0


async def _evaluate_once(
    args: argparse.Namespace, retrieval: str | None, out: Path
) -> dict[str, float]:
    from context_kit_service.evaluation.report import write_report
    from context_kit_service.evaluation.runner import run_suite, summarize
    from context_kit_service.evaluation.suites import SUITES

    suite = SUITES[args.suite]
    dataset = args.dataset or Path("evals") / "datasets" / f"{args.suite}.jsonl"
    examples = suite.load(dataset)[: args.limit]
    started = datetime.now(UTC)
    target = _target(args, retrieval)
    try:
        results = await run_suite(
            suite, examples, target, concurrency=args.concurrency, progress=not args.no_progress
        )
    finally:
        await target.aclose()
    summary = summarize(suite, results)
    meta = {
        "suite": suite.name,
        "dataset": str(dataset),
        "target": target.name,
        "provider": args.provider,
        "model": args.model,
        "temperature": args.temperature,
        "retrieval": retrieval,
        "concurrency": args.concurrency,
        "started": started.isoformat(timespec="seconds"),
    }
    paths = write_report(out, meta, summary, results)
    prefix = f"{retrieval}: " if args.retrieval and len(args.retrieval) > 1 else ""
    for name, value in summary.items():
        print(f"{prefix}{name}: {value:g}")
    print(f"{prefix}report: {paths['markdown']}")
    if args.langsmith:
        from context_kit_service.evaluation.langsmith_upload import upload

        print(f"langsmith: {upload(meta, summary, results)}")
    return summary


def retrieval_table(summaries: dict[str, dict[str, float]]) -> str:
    """A Markdown table with one row per retrieval mode and a column per quality metric."""
    from context_kit_service.evaluation.metrics import LOWER_IS_BETTER
    from context_kit_service.evaluation.report import NEUTRAL

    names = [n for n in next(iter(summaries.values())) if n not in LOWER_IS_BETTER + NEUTRAL]
    lines = [
        "| retrieval | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *(
            f"| {mode} | " + " | ".join(f"{summary.get(n, float('nan')):g}" for n in names) + " |"
            for mode, summary in summaries.items()
        ),
    ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    if args.suite == "compare":
        try:
            return run_compare(args)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        floors, ceilings = _thresholds(args.fail_under), _thresholds(args.fail_over)
        return asyncio.run(_evaluate(args, floors, ceilings))
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
