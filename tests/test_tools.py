"""Every repository tool against the sample repository, asserting whole values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import ToolException
from pydantic import ValidationError

from context_kit_service.configuration import SETTINGS_KEY
from context_kit_service.repository import load_repository
from context_kit_service.tools.registry import APP_TOOL_IDS, TOOLS_BY_NAME, resolve_tool
from tests.conftest import SAMPLE_REPO


async def call(name: str, root: Path = SAMPLE_REPO, settings: Any = None, **args: Any) -> Any:
    config = {"configurable": {SETTINGS_KEY: settings}} if settings is not None else None
    return await TOOLS_BY_NAME[name].ainvoke({**args, "repo_root": str(root)}, config)


def test_tool_names_are_valid_function_names_and_app_ids_map_onto_them() -> None:
    import re

    assert all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}", name) for name in TOOLS_BY_NAME)
    assert {app_id: resolve_tool(app_id).name for app_id in APP_TOOL_IDS} == {
        "context.read": "read_context",
        "context.search": "search_entities",
        "context.list": "list_entities",
        "context.get": "get_entity",
        "context.writePatch": "write_patch",
        "context.create": "create_entity",
        "pipeline.validate": "validate_repository",
        "pipeline.build-graph": "dependency_graph",
        "pipeline.impact": "impact_analysis",
        "pipeline.next-id": "next_id",
        "pipeline.generate": "build_context_bundle",
        "pipeline.run": "run_pipeline",
        "pipeline.build-embeddings": "build_embeddings",
        "entity.details": "get_entity",
        "entity.similar": "similar_entities",
        "git.status": "git_status",
        "git.diff": "git_diff",
        "git.preparePr": "git_prepare_pr",
    }


def test_the_model_never_sees_the_repository_root() -> None:
    for tool in TOOLS_BY_NAME.values():
        schema = tool.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
        assert "repo_root" not in schema["properties"], tool.name
        assert "config" not in schema["properties"], tool.name


async def test_read_context_by_id_and_by_path() -> None:
    path = "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"
    expected = {"path": path, "contents": (SAMPLE_REPO / path).read_text(), "encoding": "utf-8"}
    assert await call("read_context", entity_id="T-004") == expected
    assert await call("read_context", path=path) == expected
    doc = await call("read_context", path="docs/glossary.md")
    assert doc == {
        "path": "docs/glossary.md",
        "contents": (SAMPLE_REPO / "docs/glossary.md").read_text(),
        "encoding": "utf-8",
    }


async def test_read_context_needs_exactly_one_target() -> None:
    with pytest.raises(ToolException, match="give exactly one of path or entity_id"):
        await call("read_context")
    with pytest.raises(ToolException, match="no entity with id 'FEAT-404'"):
        await call("read_context", entity_id="FEAT-404")


async def test_list_entities_by_type_and_status() -> None:
    assert await call("list_entities", entity_type="task", status="todo") == {
        "count": 3,
        "entities": [
            {
                "id": "T-004",
                "type": "task",
                "title": "Deduplicate imported transactions",
                "path": "contexts/tasks/T-004-deduplicate-imported-transactions.yaml",
                "status": "todo",
            },
            {
                "id": "T-007",
                "type": "task",
                "title": "Copy previous month's budget",
                "path": "contexts/tasks/T-007-copy-previous-month-s-budget.yaml",
                "status": "todo",
            },
            {
                "id": "T-008",
                "type": "task",
                "title": "Prototype the trend chart component",
                "path": "contexts/tasks/T-008-prototype-the-trend-chart-component.yaml",
                "status": "todo",
            },
        ],
    }
    everything = await call("list_entities")
    assert everything["count"] == 46
    with pytest.raises(ValidationError, match="entity_type\n  Input should be 'feature', 'us"):
        await call("list_entities", entity_type="epic")


async def test_search_ranks_title_matches_first() -> None:
    result = await call("search_entities", query="OFX statement", limit=3)
    assert result == {
        "query": "OFX statement",
        "count": 3,
        "results": [
            {
                "id": "T-003",
                "type": "task",
                "title": "Parse OFX statements in the import job",
                "path": "contexts/tasks/T-003-parse-ofx-statements-in-the-import-job.yaml",
                "status": "doing",
                "score": 11,
            },
            {
                "id": "FEAT-002",
                "type": "feature",
                "title": "Bank statement import",
                "path": "contexts/features/FEAT-002-bank-statement-import.yaml",
                "status": "in-progress",
                "score": 8,
            },
            {
                "id": "PKG-002",
                "type": "package",
                "title": "ofxparse-lite",
                "path": "contexts/packages/PKG-002-ofxparse-lite.yaml",
                "score": 6,
            },
        ],
    }
    only_tasks = await call("search_entities", query="OFX statement", entity_type="task")
    assert [hit["id"] for hit in only_tasks["results"]] == ["T-003"]
    with pytest.raises(ToolException, match="query has no words"):
        await call("search_entities", query="  ?! ")


async def test_get_entity_with_relations() -> None:
    result = await call("get_entity", entity_id="SPEC-003")
    assert result == {
        "id": "SPEC-003",
        "type": "spec",
        "title": "Budget data model",
        "path": "contexts/specs/SPEC-003-budget-data-model.yaml",
        "data": load_repository(SAMPLE_REPO).entities["SPEC-003"].data,
        "relations": {
            "outgoing": [
                {"relation": "related.features", "id": "FEAT-003"},
                {"relation": "related.features", "id": "FEAT-006"},
                {"relation": "related.services", "id": "SVC-002"},
                {"relation": "related.services", "id": "SVC-005"},
            ],
            "incoming": [
                {"relation": "specs", "id": "FEAT-003"},
                {"relation": "specs", "id": "FEAT-006"},
                {"relation": "related.spec", "id": "T-006"},
                {"relation": "related.spec", "id": "T-007"},
            ],
        },
    }


async def test_validate_repository_reports() -> None:
    from tests.conftest import BROKEN_REPO
    from tests.test_repository import BROKEN_REPORT

    assert await call("validate_repository", root=BROKEN_REPO) == BROKEN_REPORT
    assert (await call("validate_repository"))["valid"] is True


async def test_dependency_graph_of_services() -> None:
    assert await call("dependency_graph", entity_type="package") == {
        "nodes": [
            {"id": f"PKG-00{i}", "type": "package", "title": title, "path": path}
            for i, title, path in [
                (1, "@ledgerly/ui-kit", "contexts/packages/PKG-001-ledgerly-ui-kit.yaml"),
                (2, "ofxparse-lite", "contexts/packages/PKG-002-ofxparse-lite.yaml"),
                (3, "@ledgerly/money", "contexts/packages/PKG-003-ledgerly-money.yaml"),
                (4, "ledgerly-auth", "contexts/packages/PKG-004-ledgerly-auth.yaml"),
            ]
        ],
        "edges": [
            {"source": s, "target": t, "relation": r}
            for s, t, r in [
                ("FEAT-001", "PKG-004", "requires"),
                ("FEAT-002", "PKG-002", "requires"),
                ("FEAT-003", "PKG-003", "requires"),
                ("FEAT-004", "PKG-001", "requires"),
                ("FEAT-008", "PKG-003", "requires"),
                ("PKG-001", "SVC-003", "uses.services"),
                ("PKG-002", "SVC-002", "uses.services"),
                ("PKG-003", "SVC-003", "uses.services"),
                ("PKG-004", "SVC-001", "uses.services"),
                ("SPEC-001", "PKG-004", "related.packages"),
                ("SPEC-002", "PKG-002", "related.packages"),
                ("SPEC-004", "PKG-001", "related.packages"),
                ("SPEC-004", "PKG-003", "related.packages"),
                ("US-001", "PKG-004", "impacts.packages"),
                ("US-002", "PKG-004", "impacts.packages"),
                ("US-003", "PKG-002", "impacts.packages"),
                ("US-004", "PKG-002", "impacts.packages"),
                ("US-006", "PKG-003", "impacts.packages"),
                ("US-008", "PKG-001", "impacts.packages"),
                ("US-012", "PKG-003", "impacts.packages"),
            ]
        ],
    }


async def test_impact_analysis_and_next_id() -> None:
    result = await call("impact_analysis", entity_id="US-009", max_depth=2)
    assert result == {
        "entity": {
            "id": "US-009",
            "type": "userstory",
            "title": "a reminder three days before a recurring bill is due",
            "path": "contexts/userstories/US-009-a-reminder-three-days-before-a-recurring-bill-is.yaml",
        },
        "count": 3,
        "affected": [
            {
                "id": "SVC-004",
                "type": "service",
                "title": "notification-worker",
                "depth": 1,
                "via": "US-009",
                "relation": "impacts.services",
            },
            {
                "id": "FEAT-005",
                "type": "feature",
                "title": "Recurring bill reminders",
                "depth": 2,
                "via": "SVC-004",
                "relation": "requires",
            },
            {
                "id": "T-009",
                "type": "task",
                "title": "Nightly recurring payment detector",
                "depth": 2,
                "via": "SVC-004",
                "relation": "related.service",
            },
        ],
    }
    assert await call("next_id", entity_type="userstory") == {
        "entityType": "userstory",
        "id": "US-013",
    }


async def test_context_bundle() -> None:
    bundle = await call("build_context_bundle", entity_id="T-009")
    repo = load_repository(SAMPLE_REPO)
    assert bundle["entity"]["data"] == repo.entities["T-009"].data
    assert [r["id"] for r in bundle["related"]] == ["FEAT-005", "SPEC-005", "SVC-004"]
    assert bundle["schema"] == repo.schemas["task"]


async def test_create_entity_assigns_the_next_id_and_links_back(
    sample_copy: Path, make_settings
) -> None:
    fields = {
        "feature": "FEAT-004",
        "asA": "analyst",
        "iWant": "to export a report as PDF",
        "soThat": "I can share it",
    }
    result = await call(
        "create_entity", sample_copy, make_settings(), entity_type="userstory", fields=fields
    )
    path = "contexts/userstories/US-013-to-export-a-report-as-pdf.yaml"
    assert result == {
        "id": "US-013",
        "path": path,
        "entity": {"id": "US-013", **fields},
        "updated": ["FEAT-004"],
    }
    assert (sample_copy / path).read_text() == (
        "id: US-013\nfeature: FEAT-004\nasA: analyst\niWant: to export a report as PDF\nsoThat: I can share it\n"
    )
    repo = load_repository(sample_copy)
    assert repo.entities["FEAT-004"].data["userStories"] == ["US-008", "US-013"]
    assert repo.validate()["valid"] is True


async def test_create_entity_refuses_invalid_entities_and_writes_nothing(
    sample_copy: Path, make_settings
) -> None:
    before = sorted(p.name for p in (sample_copy / "contexts/tasks").iterdir())
    with pytest.raises(ToolException) as raised:
        await call(
            "create_entity",
            sample_copy,
            make_settings(),
            entity_type="task",
            fields={"title": "x", "status": "later", "related": {"feature": "FEAT-099"}},
        )
    assert str(raised.value) == (
        "task is not valid: status: 'later' is not one of ['todo', 'doing', 'done', 'blocked', "
        "'needs-review']; title: 'x' is too short; related.feature: related.feature links to "
        "FEAT-099, which does not exist"
    )
    assert sorted(p.name for p in (sample_copy / "contexts/tasks").iterdir()) == before


async def test_patch_entity_keeps_comments_and_validates(sample_copy: Path, make_settings) -> None:
    path = sample_copy / "contexts/features/FEAT-003-monthly-budgets-by-category.yaml"
    original = path.read_text()
    result = await call(
        "patch_entity",
        sample_copy,
        make_settings(),
        entity_id="FEAT-003",
        changes={"status": "done", "owners": ["maya.chen", "li.wei"]},
    )
    assert result["entity"]["status"] == "done"
    assert path.read_text() == original.replace("status: in-progress", "status: done").replace(
        "owners:\n  - maya.chen\n", "owners:\n  - maya.chen\n  - li.wei\n"
    )
    with pytest.raises(
        ToolException, match="FEAT-003 would not be valid: status: 'finished' is not one of"
    ):
        await call(
            "patch_entity",
            sample_copy,
            make_settings(),
            entity_id="FEAT-003",
            changes={"status": "finished"},
        )
    with pytest.raises(ToolException, match="the id of an entity cannot be changed"):
        await call(
            "patch_entity",
            sample_copy,
            make_settings(),
            entity_id="FEAT-003",
            changes={"id": "FEAT-100"},
        )


async def test_writes_can_be_disabled(sample_copy: Path, make_settings) -> None:
    with pytest.raises(
        ToolException, match=r"writing to the repository is disabled \(CKS_ALLOW_WRITES=false\)"
    ):
        await call(
            "patch_entity",
            sample_copy,
            make_settings(allow_writes=False),
            entity_id="T-001",
            changes={"status": "done"},
        )
