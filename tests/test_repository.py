"""The repository model against the sample repository and the seeded-error fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from context_kit_service.repository import load_repository
from context_kit_service.repository.yaml_io import dump_round_trip, load_round_trip, merge_into
from tests.conftest import BROKEN_REPO, SAMPLE_REPO

SAMPLE_TOTALS = {
    "feature": 8,
    "userstory": 12,
    "spec": 6,
    "task": 10,
    "service": 5,
    "package": 4,
    "governance": 1,
}


def test_the_sample_repository_is_valid_and_complete() -> None:
    repo = load_repository(SAMPLE_REPO)
    report = repo.validate()
    assert report == {
        "valid": True,
        "totals": SAMPLE_TOTALS,
        "entityCount": 46,
        "documentCount": 3,
        "schemaSources": {name: f".context/schemas/{name}.schema.json" for name in SAMPLE_TOTALS},
        "schemaErrors": [],
        "referenceErrors": [],
        "loadErrors": [],
    }
    assert [d.path for d in repo.documents] == [
        "README.md",
        "docs/architecture.md",
        "docs/glossary.md",
    ]
    assert repo.entities["CONST-001"].data["ratifiedOn"] == "2026-03-02"  # dates stay strings


BROKEN_REPORT = {
    "valid": False,
    "totals": {
        "feature": 2,
        "userstory": 3,
        "spec": 0,
        "task": 1,
        "service": 1,
        "package": 1,
        "governance": 0,
    },
    "entityCount": 8,
    "documentCount": 0,
    "schemaSources": {name: "built-in" for name in SAMPLE_TOTALS},
    "schemaErrors": [
        {
            "file": "contexts/features/FEAT-001-import.yaml",
            "message": "'started' is not one of ['proposed', 'in-progress', 'done', 'blocked']",
            "entityId": "FEAT-001",
            "field": "status",
        },
        {
            "file": "contexts/packages/PKG-001-lib.yaml",
            "message": "'cargo' is not one of ['npm', 'maven', 'pypi', 'gem', 'nuget']",
            "entityId": "PKG-001",
            "field": "type",
        },
        {
            "file": "contexts/packages/PKG-001-lib.yaml",
            "message": "1.0 is not of type 'string'",
            "entityId": "PKG-001",
            "field": "version",
        },
        {
            "file": "contexts/tasks/T-001-wrong-link.yaml",
            "message": "'FEAT-002' does not match '^SPEC-\\\\d{3,}$'",
            "entityId": "T-001",
            "field": "related.spec",
        },
        {
            "file": "contexts/userstories/US-001-upload.yaml",
            "message": "'soThat' is a required property",
            "entityId": "US-001",
        },
    ],
    "referenceErrors": [
        {
            "file": "contexts/features/FEAT-001-import.yaml",
            "message": "userStories links to US-009, which does not exist",
            "entityId": "FEAT-001",
            "field": "userStories",
            "target": "US-009",
        },
        {
            "file": "contexts/services/SVC-001-api.yaml",
            "message": "dependencies links to SVC-404, which does not exist",
            "entityId": "SVC-001",
            "field": "dependencies",
            "target": "SVC-404",
        },
        {
            "file": "contexts/tasks/T-001-wrong-link.yaml",
            "message": "related.spec links to FEAT-002, a feature; expected a spec",
            "entityId": "T-001",
            "field": "related.spec",
            "target": "FEAT-002",
        },
        {
            "file": "contexts/tasks/T-001-wrong-link.yaml",
            "message": "feature FEAT-001 does not list T-001 in tasks",
            "entityId": "T-001",
            "field": "related.feature",
            "target": "FEAT-001",
        },
        {
            "file": "contexts/userstories/US-002-orphan.yaml",
            "message": "feature FEAT-001 does not list US-002 in userStories",
            "entityId": "US-002",
            "field": "feature",
            "target": "FEAT-001",
        },
    ],
    "loadErrors": [
        {"file": "contexts/services/no-id.yaml", "message": "missing id"},
        {
            "file": "contexts/specs/SPEC-001-list.yaml",
            "message": "expected a mapping of fields at the top level",
        },
        {
            "file": "contexts/tasks/T-002-broken.yaml",
            "message": "invalid YAML at line 3, column 1: did not find expected ',' or ']'",
        },
        {
            "file": "contexts/tasks/T-003-duplicate.yaml",
            "message": "duplicate id T-001 (also in contexts/tasks/T-001-wrong-link.yaml)",
            "entityId": "T-001",
        },
    ],
}


def test_the_seeded_error_fixture_gives_exactly_the_expected_report() -> None:
    assert load_repository(BROKEN_REPO).validate() == BROKEN_REPORT


def test_a_repository_schema_overrides_the_built_in_one(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(BROKEN_REPO, tmp_path / "repo")
    schemas = tmp_path / "repo" / ".context" / "schemas"
    schemas.mkdir(parents=True)
    (schemas / "package.schema.json").write_text('{"type": "object", "required": ["id"]}')
    report = load_repository(tmp_path / "repo").validate()
    assert report["schemaSources"]["package"] == ".context/schemas/package.schema.json"
    assert [e["entityId"] for e in report["schemaErrors"]] == ["FEAT-001", "T-001", "US-001"]


@pytest.mark.parametrize(
    ("entity_type", "expected"),
    [
        ("feature", "FEAT-009"),
        ("userstory", "US-013"),
        ("spec", "SPEC-007"),
        ("task", "T-011"),
        ("service", "SVC-006"),
        ("package", "PKG-005"),
        ("governance", "CONST-002"),
    ],
)
def test_next_free_id_per_type(entity_type: str, expected: str) -> None:
    assert load_repository(SAMPLE_REPO).next_id(entity_type) == expected


def test_next_id_skips_past_the_highest_even_with_gaps(tmp_path: Path) -> None:
    tasks = tmp_path / "contexts" / "tasks"
    tasks.mkdir(parents=True)
    for number in (1, 2, 7):
        (tasks / f"T-{number:03d}.yaml").write_text(f"id: T-{number:03d}\ntitle: t\nstatus: todo\n")
    (tasks / "odd.yaml").write_text("id: T-ABC\ntitle: t\nstatus: todo\n")
    assert load_repository(tmp_path).next_id("task") == "T-008"
    with pytest.raises(ValueError, match="unknown entity type 'epic'; expected one of: feature"):
        load_repository(tmp_path).next_id("epic")


def test_relations_of_a_feature() -> None:
    assert load_repository(SAMPLE_REPO).relations("FEAT-002") == {
        "outgoing": [
            {"relation": "userStories", "id": "US-003"},
            {"relation": "userStories", "id": "US-004"},
            {"relation": "userStories", "id": "US-005"},
            {"relation": "specs", "id": "SPEC-002"},
            {"relation": "tasks", "id": "T-003"},
            {"relation": "tasks", "id": "T-004"},
            {"relation": "tasks", "id": "T-005"},
            {"relation": "requires", "id": "SVC-002"},
            {"relation": "requires", "id": "PKG-002"},
        ],
        "incoming": [
            {"relation": "related.features", "id": "SPEC-002"},
            {"relation": "related.feature", "id": "T-003"},
            {"relation": "related.feature", "id": "T-004"},
            {"relation": "related.feature", "id": "T-005"},
            {"relation": "feature", "id": "US-003"},
            {"relation": "feature", "id": "US-004"},
            {"relation": "feature", "id": "US-005"},
        ],
    }


def test_impact_of_a_package_change() -> None:
    affected = load_repository(SAMPLE_REPO).impact("PKG-002", max_depth=2)
    assert [(a["id"], a["depth"], a["via"], a["relation"]) for a in affected] == [
        ("FEAT-002", 1, "PKG-002", "requires"),
        ("US-003", 2, "FEAT-002", "userStories"),
        ("US-004", 2, "FEAT-002", "userStories"),
        ("US-005", 2, "FEAT-002", "userStories"),
        ("SPEC-002", 2, "FEAT-002", "specs"),
        ("T-003", 2, "FEAT-002", "tasks"),
        ("T-004", 2, "FEAT-002", "tasks"),
        ("T-005", 2, "FEAT-002", "tasks"),
    ]


def test_a_leaf_task_affects_nothing() -> None:
    assert load_repository(SAMPLE_REPO).impact("T-001") == []


def test_round_trip_editing_keeps_comments_order_and_quotes() -> None:
    original = (
        SAMPLE_REPO / "contexts/features/FEAT-003-monthly-budgets-by-category.yaml"
    ).read_text()
    document = load_round_trip(original)
    merge_into(document, {"status": "done", "domain": None})
    edited = dump_round_trip(document)
    assert (
        edited.splitlines()[0]
        == "# Owned by the budgeting squad; reviewed at every sprint planning."
    )
    assert edited == original.replace("status: in-progress\n", "status: done\n").replace(
        "domain: budgeting\n", ""
    )


def test_missing_repository_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="repository not found"):
        load_repository(tmp_path / "nope")


def test_new_entity_yaml_reads_back_as_the_same_data() -> None:
    from context_kit_service.repository.yaml_io import dump_new, load_yaml

    repo = load_repository(SAMPLE_REPO)
    for entity in repo.entities.values():
        text = dump_new(entity.data)
        assert load_yaml(text) == entity.data, entity.id
        assert all(line == line.rstrip() for line in text.splitlines())
