"""Entity generation: draft an entity of any type under its schema, check it against the
repository, repair it (a bounded number of times), and optionally save it after approval.

    gather_context -> draft_entity -> validate_draft -> finish
                          ^               |   \\-> give_up
                          +---(repair)----+    \\-> request_approval -> save_entity -> finish
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from context_kit_service.configuration import (
    Configuration,
    chat_model_for,
    embeddings_for,
    service_settings,
)
from context_kit_service.graphs import prompts
from context_kit_service.graphs.approval import ask_approval
from context_kit_service.provider_errors import as_provider_error
from context_kit_service.providers import model_name
from context_kit_service.repository import writes
from context_kit_service.repository.cache import repositories
from context_kit_service.repository.journal import change_key
from context_kit_service.repository.model import (
    Entity,
    Repository,
    builtin_repository,
)
from context_kit_service.repository.types import ENTITY_TYPES, EntityTypeName, builtin_schema
from context_kit_service.repository.yaml_io import dump_new
from context_kit_service.retrieval.search import Source, search
from context_kit_service.tools.confinement import resolve_repository
from context_kit_service.validators import visible_chars

MAX_ARRAY_ITEMS = 4
MAX_STRING_CHARS = 240
LINK_FIELDS = {name: {link.path[0] for link in kind.links} for name, kind in ENTITY_TYPES.items()}
FEATURE_LINKED = [name for name, kind in ENTITY_TYPES.items() if kind.feature_link is not None]
"""The types `linked_feature_id` applies to."""

Status = Literal["completed", "invalid", "error", "rejected", "pending_approval"]


class InputState(BaseModel):
    entity_type: EntityTypeName = Field(description="The type of entity to write.")
    user_prompt: Annotated[str, visible_chars("user_prompt")] = Field(
        description="What the entity should be about (10+ characters)."
    )
    linked_feature_id: str | None = Field(
        default=None, description="Feature to link a user story, task or spec to."
    )
    repo_path: str = Field(default="", description="Repository; empty means the default.")
    save: bool = Field(default=False, description="Write the entity after approval.")
    max_attempts: int = Field(default=3, ge=1, le=5, description="Drafts before giving up.")


class OutputState(BaseModel):
    status: Status = Field(default="completed", description="How the run ended.")
    entity: dict[str, Any] = Field(default_factory=dict, description="The entity (last draft).")
    yaml: str = Field(default="", description="The entity as YAML, as it would be saved.")
    valid: bool = Field(default=False, description="Whether it passed schema and link checks.")
    problems: list[str] = Field(default_factory=list, description="What is wrong, if anything.")
    error: str | None = Field(default=None, description="Why generation failed, if it did.")
    attempts: int = Field(default=0, description="Drafts written.")
    saved_path: str | None = Field(default=None, description="File written, when saved.")
    prompt_tokens: int = Field(default=0, description="Prompt tokens, from the model's usage.")
    completion_tokens: int = Field(default=0, description="Completion tokens, from usage.")
    duration_ms: float = Field(default=0.0, description="Time from start to result.")
    model: str = Field(default="", description="The model that wrote the drafts.")
    provider: str = Field(default="", description="Its provider.")
    repository: str = Field(
        default="",
        description="The repository used; empty: none (built-in schema, id provisional).",
    )
    linked_feature: str | None = Field(
        default=None, description="The feature the entity links to (given, or found by retrieval)."
    )
    linked_by: Literal["request", "retrieval"] | None = Field(
        default=None, description="Where the linked feature came from."
    )
    unchecked: list[str] = Field(
        default_factory=list,
        description="Links kept as given without a check (no repository to check them in).",
    )


class State(InputState, OutputState):
    repo_root: str = Field(default="", description="The checked repository root.")
    entity_id: str = Field(default="", description="The id the repository assigns.")
    draft_schema: dict[str, Any] = Field(default_factory=dict, description="Schema drafts obey.")
    context: str = Field(default="", description="Related entities, for the prompt.")
    examples: list[dict[str, Any]] = Field(default_factory=list, description="Few-shot drafts.")
    draft: dict[str, Any] | None = Field(default=None, description="The latest draft's fields.")
    parse_error: str | None = Field(default=None, description="Why the last reply was no JSON.")
    feedback: list[tuple[str, str]] = Field(
        default_factory=list, description="Earlier drafts and what was wrong with them."
    )
    started_at: float = Field(default=0.0, description="Wall-clock start (seconds).")
    approval_key: str = Field(default="", description="The pause that approved saving.")


# --- schema helpers ---------------------------------------------------------------------------


def _bounded(prop: dict[str, Any]) -> dict[str, Any]:
    """A property schema with bounds, so constrained decoding cannot run on forever."""
    prop = dict(prop)
    if prop.get("type") == "array" or "items" in prop:
        prop["type"] = "array"
        prop["items"] = _bounded(prop.get("items") or {"type": "string"})
        prop.setdefault("maxItems", MAX_ARRAY_ITEMS)
    elif prop.get("type") == "object":
        # A free-form object gives the decoder an open-ended grammar: name its keys.
        given = prop.get("properties") or {
            name: {"type": "string"} for name in prop.get("required", [])
        }
        prop["properties"] = {k: _bounded(v) for k, v in given.items()}
        prop["additionalProperties"] = False
    elif "enum" in prop:
        prop.setdefault("type", "string")
    elif prop.get("type") == "string":
        prop.setdefault("maxLength", MAX_STRING_CHARS)
    return prop


def draft_schema(schema: dict[str, Any], entity_type: str) -> dict[str, Any]:
    """The type's schema without the id and the link fields (the repository sets those)."""
    skipped = {"id"} | LINK_FIELDS[entity_type]
    properties = {
        k: _bounded(v) for k, v in (schema.get("properties") or {}).items() if k not in skipped
    }
    return {
        "title": entity_type,
        "description": f"The fields of a {entity_type}.",
        "type": "object",
        "properties": properties,
        "required": [k for k in schema.get("required", []) if k in properties],
        "additionalProperties": False,
    }


def assemble(state: State, draft: dict[str, Any]) -> dict[str, Any]:
    """id, then the drafted fields in schema order, then the link to the feature."""
    order = list(state.draft_schema["properties"])
    entity: dict[str, Any] = {"id": state.entity_id}
    entity.update({k: draft[k] for k in order if k in draft})
    link = ENTITY_TYPES[state.entity_type].feature_link
    if not state.linked_feature or link is None:
        return entity
    value: Any = [state.linked_feature] if link.many else state.linked_feature
    if len(link.path) == 1:  # a top-level link reads best right after the id
        return {"id": state.entity_id, link.path[0]: value, **entity}
    parent, name = link.path
    entity[parent] = {name: value}
    return entity


# --- nodes -----------------------------------------------------------------------------------


def may_pause(payload: dict[str, Any]) -> bool:
    """Whether a run of this input can stop for approval: only one that saves does."""
    return bool(payload.get("save"))


def _fail(message: str) -> dict[str, Any]:
    return {"status": "error", "error": message}


def _without_repository(state: State) -> dict[str, Any]:
    """No repository known: the built-in schema, a provisional id, no context, links unchecked."""
    if state.save:
        return _fail("saving needs a repository: send repoPath or set CKS_REPO_PATH")
    linked = state.linked_feature_id
    return {
        "repo_root": "",
        "entity_id": ENTITY_TYPES[state.entity_type].format_id(1),
        "draft_schema": draft_schema(builtin_schema(state.entity_type), state.entity_type),
        "context": "(none)",
        "examples": [],
        "linked_feature": linked,
        "linked_by": "request" if linked else None,
        "started_at": time.time(),
    }


EXAMPLES = 2
EXAMPLE_WORDS = 8
"""The most words an example's text keeps: enough to show the style, too few to copy."""
EXAMPLE_ITEMS = 2
"""The most items an example's list keeps."""


def shortened(value: Any) -> Any:
    """`value` with each text cut to its first EXAMPLE_WORDS words (at a sentence's end when
    sooner) and each list to EXAMPLE_ITEMS items; other values as they are."""
    if isinstance(value, str):
        sentence = re.split(r"(?<=[.!?])\s", value.strip(), maxsplit=1)[0]
        return " ".join(sentence.split()[:EXAMPLE_WORDS])
    if isinstance(value, list):
        return [shortened(v) for v in value[:EXAMPLE_ITEMS]]
    if isinstance(value, dict):
        return {k: shortened(v) for k, v in value.items()}
    return value


def worked_examples(
    repo: Repository, entity_type: str, schema: dict[str, Any]
) -> list[dict[str, Any]]:
    """Entities of the type that show the most of its fields (the first ids on a tie),
    shortened: they show the format whatever the request, and a model that copies one
    writes neither its topic nor its text."""
    fields = schema["properties"]

    def shown(entity: Entity) -> int:
        return sum(1 for k, v in entity.data.items() if k in fields and v not in (None, "", []))

    chosen = sorted(repo.by_type(entity_type), key=lambda e: -shown(e))[:EXAMPLES]
    return [shortened({k: v for k, v in e.data.items() if k in fields}) for e in chosen]


def must_link(repo: Repository, entity_type: str) -> bool:
    """Whether the type's schema requires its link to a feature (a user story's `feature`)."""
    link = ENTITY_TYPES[entity_type].feature_link
    return link is not None and link.path[0] in repo.schemas[entity_type].get("required", [])


def _link(state: State, repo: Repository, features: list[Source]) -> dict[str, Any]:
    """The feature the entity links to: the requested one, checked, or for a type that must
    link to one the best match by retrieval; `error` when there is none."""
    if state.linked_feature_id:
        if state.entity_type not in FEATURE_LINKED:
            linked_to = ", ".join(FEATURE_LINKED)
            return {"error": f"linked_feature_id applies to {linked_to}, not {state.entity_type}"}
        feature = repo.entities.get(state.linked_feature_id)
        if feature is None or feature.type != "feature":
            missing = state.linked_feature_id
            return {"error": f"linked_feature_id {missing} is not a feature of the repository"}
        return {"linked_feature": feature.id, "linked_by": "request"}
    if not must_link(repo, state.entity_type):
        return {}
    if not features:
        return {
            "error": f"a {state.entity_type} belongs to a feature and the repository has none: "
            "create a feature first or send linked_feature_id"
        }
    return {"linked_feature": features[0].entity_id, "linked_by": "retrieval"}


async def gather_context(state: State, config: RunnableConfig) -> dict[str, Any]:
    started = time.time()
    settings = service_settings(config)
    if not state.repo_path and settings.repo_path is None:
        return _without_repository(state)
    root = resolve_repository(state.repo_path, settings)
    embeddings = embeddings_for(config)

    def load_and_search() -> tuple[Repository, list[Source], list[Source]]:
        signature = repositories.signature(root)  # serves both the model and the index
        repo = repositories.get(root, signature)
        found = search(
            settings, root, state.user_prompt, top_k=12, signature=signature, embeddings=embeddings
        )
        features = (
            search(
                settings,
                root,
                state.user_prompt,
                top_k=1,
                entity_types=["feature"],
                min_score=0.0,
                embeddings=embeddings,
            )
            if not state.linked_feature_id and must_link(repo, state.entity_type)
            else []
        )
        return repo, found, features

    repo, hits, features = await asyncio.to_thread(load_and_search)
    link = _link(state, repo, features)
    if "error" in link:
        return _fail(link["error"])
    linked = link.get("linked_feature")
    lines = []
    if linked:
        feature = repo.entities[linked]
        objective = feature.data.get("objective", "")
        lines.append(f"[{feature.id}] (feature, linked) {feature.title}. {objective}".strip())
    schema = draft_schema(repo.schemas[state.entity_type], state.entity_type)
    lines += [
        f"[{h.entity_id}] ({h.entity_type}) {h.title}" for h in hits[:4] if h.entity_id != linked
    ]
    return {
        **link,
        "repo_root": str(root),
        "repository": str(root),
        "entity_id": repo.next_id(state.entity_type),
        "draft_schema": schema,
        "context": "\n".join(lines) or "(none)",
        "examples": worked_examples(repo, state.entity_type, schema),
        "started_at": started,
    }


def draft_messages(state: State) -> list[BaseMessage]:
    guide = prompts.GENERATION_GUIDES[state.entity_type]
    messages: list[BaseMessage] = [
        SystemMessage(prompts.GENERATION_SYSTEM.format(entity_type=state.entity_type, guide=guide))
    ]
    for example in state.examples:
        title = example.get("title") or example.get("name") or example.get("iWant") or "an example"
        request = prompts.GENERATION_REQUEST.format(request=title, context="(none)")
        messages += [HumanMessage(request), AIMessage(json.dumps(example))]
    messages.append(
        HumanMessage(
            prompts.GENERATION_REQUEST.format(request=state.user_prompt, context=state.context)
        )
    )
    for draft, problems in state.feedback:
        repair = prompts.GENERATION_REPAIR.format(entity_type=state.entity_type, problems=problems)
        messages += [AIMessage(draft), HumanMessage(repair)]
    return messages


async def draft_entity(state: State, config: RunnableConfig) -> dict[str, Any]:
    model, spec = chat_model_for(config)
    structured = model.with_structured_output(state.draft_schema, include_raw=True)
    try:
        result: dict[str, Any] = await structured.ainvoke(draft_messages(state), config)  # type: ignore[assignment]
    except Exception as exc:
        raise as_provider_error(exc, spec.provider) from exc
    usage = getattr(result["raw"], "usage_metadata", None) or {}
    parsed = result.get("parsed")
    error = result.get("parsing_error")
    return {
        "draft": parsed if isinstance(parsed, dict) else None,
        "parse_error": None
        if isinstance(parsed, dict)
        else str(error or "the reply was not a JSON object"),
        "prompt_tokens": state.prompt_tokens + int(usage.get("input_tokens", 0)),
        "completion_tokens": state.completion_tokens + int(usage.get("output_tokens", 0)),
        "model": model_name(spec),
        "provider": spec.provider,
    }


async def validate_draft(state: State) -> dict[str, Any]:
    attempts = state.attempts + 1
    if state.draft is None:
        problems = [f"the reply was not a JSON object ({state.parse_error})"]
        return {
            "attempts": attempts,
            "valid": False,
            "problems": problems,
            "feedback": [*state.feedback, ("", problems[0])],
        }
    entity = assemble(state, state.draft)
    kind = ENTITY_TYPES[state.entity_type]
    path = f"contexts/{kind.folder}/{state.entity_id}.yaml"
    repo = (  # the snapshot this run started from, or with none the built-in schemas
        repositories.peek(Path(state.repo_root)) if state.repo_root else builtin_repository()
    )
    candidate = Entity(state.entity_id, state.entity_type, path, entity)
    unchecked = []
    if state.repo_root:
        view = repo.with_entities(candidate, *repo.backlinked_features(candidate))
        found = view.check_entity(state.entity_type, entity, path)
    else:  # no repository: links are kept as given, their form included, and said so
        links = LINK_FIELDS[state.entity_type]
        found = []
        for problem in repo.schema_problems(candidate):
            if (problem.field or "").split(".")[0] in links:
                unchecked.append(f"{problem.field}: kept as given, not checked (no repository)")
            else:
                found.append(problem)
    problems = [f"{p.field or 'entity'}: {p.message}" for p in found]
    feedback = state.feedback
    if problems:
        feedback = [*feedback, (json.dumps(state.draft), "; ".join(problems))]
    return {
        "attempts": attempts,
        "entity": entity,
        "valid": not problems,
        "problems": problems,
        "unchecked": sorted(set(unchecked)),
        "feedback": feedback,
    }


async def give_up(state: State) -> dict[str, Any]:
    return {
        "status": "invalid",
        "error": f"could not write a valid {state.entity_type} in {state.attempts} attempts: "
        + "; ".join(state.problems),
        "yaml": dump_new(state.entity) if state.entity else "",
        "duration_ms": _since(state.started_at),
    }


async def request_approval(state: State, config: RunnableConfig) -> dict[str, Any]:
    request = {
        "type": "approval",
        "tool": "create_entity",
        "arguments": {"entity_type": state.entity_type, "fields": state.entity},
        "repoPath": state.repo_root,
        "message": f"Save {state.entity_id} to the repository?",
    }
    decision, key = ask_approval(request, config)
    if not decision.approved:
        return {"status": "rejected", "error": "the user rejected saving this entity"}
    edited = (decision.arguments or {}).get("fields")
    return {"approval_key": key} | ({"entity": edited} if isinstance(edited, dict) else {})


async def save_entity(state: State, config: RunnableConfig) -> dict[str, Any]:
    settings = service_settings(config)
    if not settings.allow_writes:
        return _fail("writing to the repository is disabled (CKS_ALLOW_WRITES=false)")
    try:
        saved = await asyncio.to_thread(
            writes.create_entity,
            Path(state.repo_root),
            settings.data_dir,
            state.entity_type,
            state.entity,
            provisional_id=state.entity_id,  # others may have saved under it since the draft
            key=change_key(state.approval_key, "create_entity", state.entity),
        )
    except writes.WriteRefused as exc:
        return _fail(str(exc))
    return {"saved_path": saved.entity.path, "entity": saved.entity.data}


async def finish(state: State) -> dict[str, Any]:
    return {
        "status": "completed",
        "yaml": dump_new(state.entity),
        "duration_ms": _since(state.started_at),
    }


def _since(started_at: float) -> float:
    return round((time.time() - started_at) * 1000, 3) if started_at else 0.0


# --- routing ---------------------------------------------------------------------------------


async def route_after_context(state: State) -> Literal["draft_entity", "__end__"]:
    return "__end__" if state.status == "error" else "draft_entity"


async def route_after_validation(
    state: State,
) -> Literal["finish", "request_approval", "draft_entity", "give_up"]:
    if state.valid:
        return "request_approval" if state.save else "finish"
    return "draft_entity" if state.attempts < state.max_attempts else "give_up"


async def route_after_approval(state: State) -> Literal["save_entity", "__end__"]:
    return "__end__" if state.status == "rejected" else "save_entity"


async def route_after_save(state: State) -> Literal["finish", "__end__"]:
    return "__end__" if state.status == "error" else "finish"


# --- graph -----------------------------------------------------------------------------------

builder = StateGraph(
    State, input_schema=InputState, output_schema=OutputState, context_schema=Configuration
)
builder.add_node(gather_context)
builder.add_node(draft_entity)
builder.add_node(validate_draft)
builder.add_node(give_up)
builder.add_node(request_approval)
builder.add_node(save_entity)
builder.add_node(finish)
builder.add_edge(START, "gather_context")
builder.add_conditional_edges("gather_context", route_after_context)
builder.add_edge("draft_entity", "validate_draft")
builder.add_conditional_edges("validate_draft", route_after_validation)
builder.add_edge("give_up", END)
builder.add_conditional_edges("request_approval", route_after_approval)
builder.add_conditional_edges("save_entity", route_after_save)
builder.add_edge("finish", END)

graph = builder.compile(name="generation")
"""Checkpointer-free, for LangGraph Studio; the server compiles `builder` with its checkpointer."""
