"""Generate large, consistent context repositories for benchmarks and scale tests."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

VERBS = ["import", "export", "sync", "approve", "archive", "search", "notify", "audit"]
NOUNS = ["invoices", "budgets", "accounts", "reports", "payees", "receipts", "rules", "alerts"]


def _write(path: Path, data: dict[str, object]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def generate_repository(root: Path, entities: int, seed: int = 7) -> dict[str, int]:
    """Write about `entities` linked entities under `root`; returns the count per type.

    Per feature: 2 stories, 1 spec, 2 tasks; plus services and packages they require.
    """
    rng = random.Random(seed)
    features = max(1, entities // 6)
    services = max(2, features // 20)
    folders = ["features", "userstories", "specs", "tasks", "services", "packages"]
    for folder in folders:
        (root / "contexts" / folder).mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(["feature", "userstory", "spec", "task", "service", "package"], 0)
    for s in range(1, services + 1):
        _write(
            root / f"contexts/services/SVC-{s:03d}.yaml",
            {
                "id": f"SVC-{s:03d}",
                "name": f"service-{s}",
                "type": "backend",
                "dependencies": [f"SVC-{s - 1:03d}"] if s > 1 else [],
            },
        )
        _write(
            root / f"contexts/packages/PKG-{s:03d}.yaml",
            {
                "id": f"PKG-{s:03d}",
                "name": f"package-{s}",
                "version": "1.0.0",
                "type": "npm",
                "uses": {"services": [f"SVC-{s:03d}"]},
            },
        )
        counts["service"] += 1
        counts["package"] += 1
    story = spec = task = 0
    for f in range(1, features + 1):
        fid = f"FEAT-{f:03d}"
        verb, noun = rng.choice(VERBS), rng.choice(NOUNS)
        service = f"SVC-{rng.randint(1, services):03d}"
        stories, tasks = [], []
        for _ in range(2):
            story += 1
            sid = f"US-{story:03d}"
            stories.append(sid)
            _write(
                root / f"contexts/userstories/{sid}.yaml",
                {
                    "id": sid,
                    "feature": fid,
                    "asA": "member",
                    "iWant": f"to {verb} {noun} ({story})",
                    "soThat": f"my {noun} stay correct",
                    "impacts": {"services": [service]},
                },
            )
        spec += 1
        spec_id = f"SPEC-{spec:03d}"
        _write(
            root / f"contexts/specs/{spec_id}.yaml",
            {
                "id": spec_id,
                "title": f"{verb.title()} {noun} design {spec}",
                "type": "technical",
                "related": {"features": [fid], "services": [service]},
                "content": f"How {service} will {verb} {noun}, with limits and failure handling.",
            },
        )
        for _ in range(2):
            task += 1
            tid = f"T-{task:03d}"
            tasks.append(tid)
            _write(
                root / f"contexts/tasks/{tid}.yaml",
                {
                    "id": tid,
                    "title": f"Build {verb} of {noun} step {task}",
                    "status": "todo",
                    "related": {"feature": fid, "spec": spec_id, "service": service},
                },
            )
        _write(
            root / f"contexts/features/{fid}.yaml",
            {
                "id": fid,
                "title": f"{verb.title()} {noun} {f}",
                "status": "proposed",
                "userStories": stories,
                "specs": [spec_id],
                "tasks": tasks,
                "requires": [service],
            },
        )
    counts.update(feature=features, userstory=story, spec=spec, task=task)
    return counts
