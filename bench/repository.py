"""Repository benchmark: load + validate a generated 5,000-entity repository, and impact analysis.

Targets (issue 4): load+validate <= 2 s; impact analysis of one entity <= 50 ms. The baseline,
measured in the same run, is parsing the same YAML files with libyaml alone: the ratio shows
what loading, schema validation and link checks add on top of reading the files.

    .venv/bin/python bench/repository.py [--entities 5000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from context_kit_service.repository import load_repository
from context_kit_service.repository.synthetic import generate_repository


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        counts = generate_repository(root, args.entities)
        files = sorted(root.glob("contexts/*/*.yaml"))
        print(f"generated {sum(counts.values())} entities: {counts}")

        parse, load = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            for path in files:
                yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
            parse.append(time.perf_counter() - started)
            started = time.perf_counter()
            repo = load_repository(root)
            report = repo.validate()
            load.append(time.perf_counter() - started)
        assert report["valid"], report["referenceErrors"][:3]

        impact = []
        for entity_id in ["SVC-001", "SVC-010", "FEAT-001", "SPEC-100", "US-050"] * 20:
            started = time.perf_counter()
            repo.impact(entity_id)
            impact.append(time.perf_counter() - started)
        first = time.perf_counter()
        fresh = load_repository(root)
        fresh.impact("SVC-001")
        cold_total = time.perf_counter() - first

    base, ours = statistics.median(parse), statistics.median(load)
    print(f"baseline: libyaml parse of {len(files)} files      p50 {base:.3f} s")
    print(
        f"load + validate (schemas, links)        p50 {ours:.3f} s  ({ours / base:.2f}x baseline)"
    )
    p50, p99 = statistics.median(impact) * 1000, sorted(impact)[int(len(impact) * 0.99) - 1] * 1000
    print(f"impact analysis of one entity           p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    print(f"cold load + first impact (graph built)  {cold_total:.3f} s")
    print(f"target load+validate <= 2 s: {'PASS' if ours <= 2 else 'FAIL'}")
    print(f"target impact <= 50 ms: {'PASS' if p99 <= 50 else 'FAIL'}")


if __name__ == "__main__":
    main()
