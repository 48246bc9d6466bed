"""The tool catalogue: by name, by the app's dotted ids, and which tools write."""

from __future__ import annotations

from langchain_core.tools import BaseTool, ToolException

from context_kit_service.tools.repository_tools import (
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
TOOLS_BY_NAME: dict[str, BaseTool] = {t.name: t for t in REPOSITORY_TOOLS}

APP_TOOL_IDS: dict[str, str] = {
    "context.read": "read_context",
    "context.search": "search_entities",
    "context.list": "list_entities",
    "context.get": "get_entity",
    "context.writePatch": "patch_entity",
    "context.create": "create_entity",
    "pipeline.validate": "validate_repository",
    "pipeline.build-graph": "dependency_graph",
    "pipeline.impact": "impact_analysis",
    "pipeline.next-id": "next_id",
    "pipeline.generate": "build_context_bundle",
}

WRITE_TOOLS = frozenset({"create_entity", "patch_entity"})


def known_tool_ids() -> list[str]:
    return sorted(APP_TOOL_IDS) + sorted(TOOLS_BY_NAME)


def resolve_tool(tool_id: str) -> BaseTool:
    """The tool for an app id (`context.read`) or a tool name (`read_context`)."""
    if not tool_id.strip():
        raise ToolException(f"no tool given; known tools: {', '.join(known_tool_ids())}")
    name = APP_TOOL_IDS.get(tool_id, tool_id)
    found = TOOLS_BY_NAME.get(name)
    if found is None:
        raise ToolException(f"unknown tool {tool_id!r}; known tools: {', '.join(known_tool_ids())}")
    return found
