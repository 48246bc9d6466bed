"""Evaluation reports: per-example results (JSONL), the summary (JSON), a Markdown page and
PNG plots in one results directory; and the comparison of two runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from context_kit_service.evaluation.metrics import LOWER_IS_BETTER
from context_kit_service.evaluation.runner import ExampleResult

NEUTRAL = ("examples", "prompt_tokens", "completion_tokens")
QUALITY_TOLERANCE = 0.02
"""A quality metric regresses when it drops by more than this (absolute)."""
LATENCY_TOLERANCE = 0.20
"""A latency regresses when it grows by more than this share."""


def write_report(
    out_dir: Path, meta: dict[str, Any], summary: dict[str, float], results: list[ExampleResult]
) -> dict[str, Path]:
    """Write results.jsonl, report.json, report.md, latency.png and metrics.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": out_dir / "results.jsonl",
        "report": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "latency_plot": out_dir / "latency.png",
        "metrics_plot": out_dir / "metrics.png",
    }
    paths["results"].write_text(
        "".join(r.model_dump_json() + "\n" for r in results), encoding="utf-8"
    )
    report = {"meta": meta, "summary": summary}
    paths["report"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(meta, summary, results), encoding="utf-8")
    _plot(paths["latency_plot"], paths["metrics_plot"], meta, summary, results)
    return paths


def _quality(summary: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in summary.items() if k not in LOWER_IS_BETTER + NEUTRAL}


def markdown(meta: dict[str, Any], summary: dict[str, float], results: list[ExampleResult]) -> str:
    quality = [name for name in _quality(summary) if "[" not in name]
    lines = [
        f"# Evaluation: {meta['suite']}",
        "",
        f"Target `{meta['target']}`, provider `{meta.get('provider') or 'default'}`, "
        f"model `{meta.get('model') or 'default'}`, temperature "
        f"{'default' if meta.get('temperature') is None else meta['temperature']}, "
        f"{meta['started']}.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {value:g} |" for name, value in summary.items()),
        "",
        "![latency](latency.png) ![metrics](metrics.png)",
        "",
        "## Examples",
        "",
        "| id | ok | latency ms | " + " | ".join(quality) + " | error |",
        "|---|---|---|" + "---|" * len(quality) + "---|",
    ]
    for r in results:
        cells = [f"{r.metrics[name]:g}" if name in r.metrics else "" for name in quality]
        error = (r.error or "").replace("|", "\\|")[:120]
        lines.append(
            f"| {r.id} | {'yes' if r.ok else 'no'} | {r.latency_ms:g} | "
            + " | ".join(cells)
            + f" | {error} |"
        )
    return "\n".join(lines) + "\n"


def _plot(
    latency_path: Path,
    metrics_path: Path,
    meta: dict[str, Any],
    summary: dict[str, float],
    results: list[ExampleResult],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist([r.latency_ms for r in results], bins=min(20, max(5, len(results))))
    for name, style in (("latency_p50_ms", "--"), ("latency_p95_ms", ":")):
        axes.axvline(summary[name], color="black", linestyle=style, label=name)
    axes.set(title=f"{meta['suite']}: latency per example", xlabel="ms", ylabel="examples")
    axes.legend()
    figure.tight_layout()
    figure.savefig(latency_path, dpi=100)
    plt.close(figure)

    quality = _quality(summary)
    figure, axes = plt.subplots(figsize=(6, 3.5))
    bars = axes.bar(list(quality), list(quality.values()))
    axes.bar_label(bars, fmt="%.2f")
    axes.set(title=f"{meta['suite']}: metrics", ylim=(0, 1.1))
    figure.tight_layout()
    figure.savefig(metrics_path, dpi=100)
    plt.close(figure)


@dataclass(frozen=True)
class Comparison:
    metric: str
    before: float | None
    after: float | None
    verdict: str
    """`regressed`, `improved`, `same`, or `new`/`gone` when only one run has it."""

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


def _verdict(metric: str, before: float, after: float) -> str:
    if metric in NEUTRAL:
        return "same"
    if metric == "wrong_citation":  # a share, like the quality metrics: less is better
        return _verdict("quality", after, before)
    if metric in LOWER_IS_BETTER:
        limit = before * (1 + LATENCY_TOLERANCE) if metric != "errors" else before
        if after > limit:
            return "regressed"
        return "improved" if after < before / (1 + LATENCY_TOLERANCE) else "same"
    if after < before - QUALITY_TOLERANCE:
        return "regressed"
    return "improved" if after > before + QUALITY_TOLERANCE else "same"


def load_summary(path: Path) -> dict[str, Any]:
    """A run's report.json, given the file or its results directory."""
    report = path / "report.json" if path.is_dir() else path
    if not report.is_file():
        raise FileNotFoundError(f"no report.json at {path}")
    loaded: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    return loaded


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[Comparison]:
    a, b = before["summary"], after["summary"]
    rows = []
    for metric in list(a) + [m for m in b if m not in a]:
        if metric not in b:
            rows.append(Comparison(metric, a[metric], None, "gone"))
        elif metric not in a:
            rows.append(Comparison(metric, None, b[metric], "new"))
        else:
            rows.append(
                Comparison(metric, a[metric], b[metric], _verdict(metric, a[metric], b[metric]))
            )
    return rows


def comparison_table(rows: Sequence[Comparison]) -> str:
    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:g}"

    lines = ["| metric | A | B | delta | verdict |", "|---|---|---|---|---|"]
    for row in rows:
        delta = "" if row.delta is None else f"{row.delta:+.4g}"
        lines.append(
            f"| {row.metric} | {cell(row.before)} | {cell(row.after)} | {delta} | {row.verdict} |"
        )
    return "\n".join(lines)
