"""The tool catalogue: by name, by the app's dotted ids, which tools write, the app's
`pipeline.run`, and the check of a tool's arguments (the app's camelCase names accepted)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, ToolException, tool
from pydantic import ValidationError
from pydantic.alias_generators import to_snake

from context_kit_service.configuration import service_settings
from context_kit_service.repository.files import data_name
from context_kit_service.tools.git_tools import git_diff, git_prepare_pr, git_status
from context_kit_service.tools.repository_tools import (
    RepoRoot,
    build_context_bundle,
    create_entity,
    dependency_graph,
    get_entity,
    impact_analysis,
    list_entities,
    next_id,
    patch_entity,
    read_context,
    search_entities,
    validate_repository,
    write_patch,
)
from context_kit_service.tools.retrieval_tool import (
    build_embeddings,
    search_context,
    similar_entities,
)

REPOSITORY_TOOLS: list[BaseTool] = [
    read_context,
    list_entities,
    search_entities,
    get_entity,
    validate_repository,
    dependency_graph,
    impact_analysis,
    next_id,
    build_context_bundle,
    create_entity,
    patch_entity,
]
"""What the assistant's model may call (with `search_context`)."""

CORE_TOOLS: list[BaseTool] = [
    get_entity,
    list_entities,
    search_context,
    impact_analysis,
    next_id,
    validate_repository,
]
"""What a local model is offered by default: six read-only tools that do not overlap, so a
small model can tell them apart (the full set has three ways to read an entity)."""

PIPELINES: dict[str, BaseTool] = {
    "validate": validate_repository,
    "build-graph": dependency_graph,
    "impact": impact_analysis,
    "generate": build_context_bundle,
    "build-embeddings": build_embeddings,
}
ARGUMENT_ALIASES = {"id": "entity_id", "top_k": "limit", "k": "limit", "args": "arguments"}
"""Names the app uses for an argument the tool calls otherwise."""


def _argument_names(tool: BaseTool) -> set[str]:
    return set(tool.tool_call_schema.model_fields)  # type: ignore[union-attr]


def _by_tool_names(parameters: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """`parameters` under the tool's own argument names: camelCase and the app's aliases."""
    named = {}
    for key, value in parameters.items():
        name = key if key in expected else to_snake(key)
        named[name if name in expected else ARGUMENT_ALIASES.get(name, name)] = value
    return named


def check_arguments(tool_name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """`parameters` validated against the tool's schema, under the tool's own names (camelCase
    and a few of the app's names accepted); raises ToolException naming the argument."""
    chosen = resolve_tool(tool_name)
    schema = chosen.tool_call_schema
    expected = _argument_names(chosen)
    named = _by_tool_names(parameters, expected)
    unknown = sorted(set(named) - expected)
    if unknown:
        raise ToolException(
            f"unknown argument {unknown[0]!r} for {chosen.name}; "
            f"expected: {', '.join(sorted(expected))}"
        )
    try:
        validated = schema.model_validate(named)  # type: ignore[union-attr]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "parameters"
        raise ToolException(f"argument {where!r}: {first['msg']}") from None
    return validated.model_dump(exclude_unset=True)


@tool
def run_pipeline(
    repo_root: RepoRoot,
    config: RunnableConfig,
    pipeline: Literal["validate", "build-graph", "impact", "generate", "build-embeddings"],
    arguments: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one of the repository's pipelines (validate, build-graph, impact, generate,
    build-embeddings) with its `arguments` (the app's `args`). Returns `status` (succeeded or
    failed), the pipeline's `result`, and its report written as JSON (`artifacts`, `logPath`)."""
    chosen = PIPELINES[pipeline]
    report: dict[str, Any] = {"pipeline": pipeline}
    try:
        checked = check_arguments(chosen.name, arguments or {})
        result = chosen.invoke({**checked, "repo_root": repo_root}, config)
        report |= {"status": "succeeded", "result": result}
    except ToolException as exc:
        report |= {"status": "failed", "error": str(exc)}
    folder = service_settings(config).data_dir / "pipelines" / data_name(Path(repo_root))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{pipeline}-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9}.json"
    log.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return {**report, "artifacts": [str(log)], "logPath": str(log)}


APP_TOOLS: list[BaseTool] = [
    *REPOSITORY_TOOLS,
    search_context,
    similar_entities,
    build_embeddings,
    run_pipeline,
    write_patch,
    git_status,
    git_diff,
    git_prepare_pr,
]
TOOLS_BY_NAME: dict[str, BaseTool] = {t.name: t for t in APP_TOOLS}

APP_TOOL_IDS: dict[str, str] = {
    "context.read": "read_context",
    "context.search": "search_entities",
    "context.list": "list_entities",
    "context.get": "get_entity",
    "context.writePatch": "write_patch",
    "context.create": "create_entity",
    "pipeline.run": "run_pipeline",
    "pipeline.validate": "validate_repository",
    "pipeline.build-graph": "dependency_graph",
    "pipeline.impact": "impact_analysis",
    "pipeline.next-id": "next_id",
    "pipeline.generate": "build_context_bundle",
    "pipeline.build-embeddings": "build_embeddings",
    "entity.details": "get_entity",
    "entity.similar": "similar_entities",
    "git.status": "git_status",
    "git.diff": "git_diff",
    "git.preparePr": "git_prepare_pr",
}

SHARED_IDS: dict[str, tuple[str, ...]] = {"context.writePatch": ("write_patch", "patch_entity")}
"""App ids that two tools answer: the one whose arguments the request sends (a unified diff's
`patch`, or an entity's `changes`)."""

WRITE_TOOLS = frozenset({"create_entity", "patch_entity", "write_patch", "git_prepare_pr"})


def known_tool_ids() -> list[str]:
    return sorted(APP_TOOL_IDS) + sorted(TOOLS_BY_NAME)


def resolve_tool(tool_id: str, parameters: dict[str, Any] | None = None) -> BaseTool:
    """The tool for an app id (`context.read`) or a tool name (`read_context`); for an id two
    tools answer, the one that takes the given `parameters`."""
    if not tool_id.strip():
        raise ToolException(f"no tool given; known tools: {', '.join(known_tool_ids())}")
    name = APP_TOOL_IDS.get(tool_id, tool_id)
    for candidate in SHARED_IDS.get(tool_id, ()):
        expected = _argument_names(TOOLS_BY_NAME[candidate])
        if set(_by_tool_names(parameters or {}, expected)) <= expected:
            name = candidate
            break
    found = TOOLS_BY_NAME.get(name)
    if found is None:
        raise ToolException(f"unknown tool {tool_id!r}; known tools: {', '.join(known_tool_ids())}")
    return found
