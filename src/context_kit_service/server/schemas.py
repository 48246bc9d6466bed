"""Request and response models of the HTTP API (camelCase on the wire, snake_case accepted)."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, get_args

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from context_kit_service.configuration import PROVIDER_KEY
from context_kit_service.graphs.approval import Approval
from context_kit_service.repository.types import EntityTypeName, builtin_schema
from context_kit_service.retrieval.search import MAX_TOP_K
from context_kit_service.validators import not_blank, visible_chars

if TYPE_CHECKING:
    EntityKind = str
else:  # one Literal (not a union: its errors name the field plainly), from the entity types
    EntityKind = Literal[(*get_args(EntityTypeName), "document")]
"""What a retrieved source can be: an entity of any type, or a Markdown document."""


class WireModel(BaseModel):
    """camelCase on the wire; snake_case accepted on input; absent optionals are omitted."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    @classmethod
    def in_wire_names(cls, message: str) -> str:
        """`message` (a graph's, naming its input fields) with this model's field names as the
        wire spells them: `linked_feature_id` -> `linkedFeatureId`."""
        for name, field in cls.model_fields.items():
            if field.alias and field.alias != name:
                message = re.sub(rf"\b{name}\b", field.alias, message)
        return message


class DependencyHealth(WireModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    detail: str


DEPENDENCY_STATES: dict[str, Literal["available", "degraded", "unavailable"]] = {
    "healthy": "available",
    "degraded": "degraded",
    "unhealthy": "unavailable",
}
"""A check's status as the app's client reads it in `dependencies` (strings only)."""


class HealthResponse(WireModel):
    status: Literal["healthy", "degraded", "unhealthy", "unknown"]
    version: str
    uptime_seconds: float = Field(ge=0)
    timestamp: str
    dependencies: dict[str, Literal["available", "degraded", "unavailable"]] = Field(
        description="Each dependency's state as one string (the app's client requires strings)."
    )
    dependency_details: dict[str, DependencyHealth] = Field(
        description="Each check's status and what it found."
    )


class ErrorBody(WireModel):
    error: str
    message: str
    type: str | None = None
    code: str | None = None


class ProviderConfig(WireModel):
    """The app's per-request provider settings (`config`)."""

    provider: Literal["local", "ollama", "openai", "azure-openai"]
    endpoint: str | None = None
    model: str | None = Field(default=None, min_length=1)
    api_key: str | None = None
    api_version: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)

    def configurable(self) -> dict[str, Any]:
        """The run's `configurable` for these choices (endpoint and key go where only the
        server's checks read them)."""
        return {
            "provider": self.provider,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            PROVIDER_KEY: {
                "endpoint": self.endpoint,
                "api_key": self.api_key,
                "api_version": self.api_version,
            },
        }


class RunRequest(WireModel):
    """What every `/ai/*` run request may carry besides its own fields."""

    repo_path: str | None = Field(default=None, max_length=4096)
    config: ProviderConfig | None = None
    thread_id: str | None = Field(default=None, max_length=200)
    """To answer a pending approval: the thread it is waiting on."""
    approval: Approval | None = None

    def configurable(self) -> dict[str, Any]:
        chosen = self.config.configurable() if self.config is not None else {}
        return {**chosen, "thread_id": self.thread_id}

    def run_fields(self) -> dict[str, Any]:
        """The graph input's fields every request shares."""
        approval = None if self.approval is None else self.approval.model_dump()
        return {"repo_path": self.repo_path or "", "approval": approval}


class ToolExecuteRequest(RunRequest):
    tool_id: Annotated[str, not_blank("toolId")] = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)

    def graph_input(self) -> dict[str, Any]:
        return {"tool_id": self.tool_id, "parameters": self.parameters, **self.run_fields()}


class ToolExecuteMetadata(WireModel):
    duration_ms: float = Field(ge=0)
    tool_id: str
    tool: str | None = None
    status: str
    thread_id: str | None = None


class ToolExecuteResponse(WireModel):
    result: dict[str, Any] | None = None
    error: str | None = None
    metadata: ToolExecuteMetadata

    @classmethod
    def from_output(cls, output: dict[str, Any], tool_id: str, started: float) -> Self:
        """The response for the tool graph's `output`; a pause is a result that says so."""
        status = output["status"]
        ran = status == "completed"
        result = output.get("result") if ran else None
        if status == "pending_approval":
            result = {"status": status, "approvalRequest": output["approval_request"]}
        elapsed = output["duration_ms"] if ran else (time.perf_counter() - started) * 1000
        metadata = ToolExecuteMetadata(
            duration_ms=round(elapsed, 3),
            tool_id=tool_id,
            tool=output.get("tool") or None,
            status=status,
            thread_id=output["thread_id"],
        )
        return cls(result=result, error=output.get("error"), metadata=metadata)


class RagQueryRequest(WireModel):
    query: Annotated[str, not_blank("query")] = Field(min_length=1)
    repo_path: str | None = Field(default=None, max_length=4096)
    top_k: int = Field(
        default=5, gt=0, description=f"How many sources; more than {MAX_TOP_K} gives {MAX_TOP_K}."
    )
    entity_types: list[EntityKind] | None = None
    config: ProviderConfig | None = None

    def graph_input(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "repo_path": self.repo_path or "",
            "top_k": min(self.top_k, MAX_TOP_K),
            "entity_types": self.entity_types or [],
        }

    def configurable(self) -> dict[str, Any]:
        return self.config.configurable() if self.config is not None else {}


class RagSupport(WireModel):
    file_path: str
    excerpt: str


class RagSource(WireModel):
    entity_id: str
    entity_type: str
    relevance_score: float = Field(ge=0, le=1)
    excerpt: str
    file_path: str | None = None
    supporting: list[RagSupport] = Field(
        default_factory=list,
        description="Derived documents (prompts, checklists, indexes) that restate this entity.",
    )


class RagMetadata(WireModel):
    index_stale: bool = Field(
        default=False,
        description="The answer comes from the index as it was before its last update failed.",
    )
    index_stale_reason: str | None = Field(default=None, description="Why the index is stale.")
    retrieval_time_ms: float = Field(ge=0)
    generation_time_ms: float = Field(ge=0)
    total_sources: int = Field(ge=0)
    top_k: int = Field(ge=1, description="The topK used (the request's, at most the maximum).")
    model: str | None = None


class RagQueryResponse(WireModel):
    answer: str
    sources: list[RagSource]
    metadata: RagMetadata

    @classmethod
    def from_output(cls, output: dict[str, Any], top_k: int) -> Self:
        sources = [RagSource.model_validate(s, from_attributes=True) for s in output["sources"]]
        metadata = RagMetadata(
            retrieval_time_ms=output["retrieval_ms"],
            generation_time_ms=output["generation_ms"],
            total_sources=len(sources),
            top_k=top_k,
            model=output["model"] or None,
            index_stale=output.get("index_stale") is not None,
            index_stale_reason=output.get("index_stale"),
        )
        return cls(answer=output["answer"], sources=sources, metadata=metadata)


class GenerateEntityRequest(RunRequest):
    entity_type: EntityTypeName
    user_prompt: Annotated[str, visible_chars("userPrompt")] = Field(max_length=20_000)
    linked_feature_id: str | None = Field(default=None, max_length=100)
    save: bool = False

    def graph_input(self) -> dict[str, Any]:
        return {
            "entity_type": self.entity_type,
            "user_prompt": self.user_prompt,
            "linked_feature_id": self.linked_feature_id,
            "save": self.save,
            **self.run_fields(),
        }


class GenerationValidation(WireModel):
    valid: bool
    errors: list[str]
    unchecked: list[str] = Field(
        default_factory=list,
        description="Fields kept as given without a check: the links, when no repository is "
        "known to check them against.",
    )


class GenerateEntityMetadata(WireModel):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    duration_ms: float = Field(ge=0)
    model: str
    provider: str | None = None
    attempts: int = Field(ge=0)
    status: str
    thread_id: str | None = None
    saved_path: str | None = None
    repository: str | None = Field(
        default=None,
        description="The repository used; absent when none was (built-in schema, provisional id, "
        "links unchecked).",
    )
    linked_feature_id: str | None = Field(
        default=None, description="The feature the entity links to."
    )
    linked_by: Literal["request", "retrieval"] | None = Field(
        default=None, description="`retrieval` when the service chose the feature."
    )


class GenerateEntityResponse(WireModel):
    entity: dict[str, Any] = Field(
        description="The entity; `type` is the entity type unless the type's schema has a "
        "`type` field of its own (a spec's, service's or package's kind)."
    )
    entity_type: EntityTypeName = Field(description="The entity type written, always.")
    yaml: str
    validation: GenerationValidation
    approval_request: dict[str, Any] | None = None
    metadata: GenerateEntityMetadata

    @classmethod
    def from_output(cls, output: dict[str, Any], entity_type: EntityTypeName) -> Self:
        metadata = GenerateEntityMetadata(
            prompt_tokens=output["prompt_tokens"],
            completion_tokens=output["completion_tokens"],
            duration_ms=output["duration_ms"],
            model=output["model"],
            provider=output["provider"] or None,
            attempts=output["attempts"],
            status=output["status"],
            thread_id=output["thread_id"],
            saved_path=output.get("saved_path"),
            repository=output["repository"] or None,
            linked_feature_id=output["linked_feature"],
            linked_by=output["linked_by"],
        )
        entity = output["entity"]
        if "type" not in (builtin_schema(entity_type).get("properties") or {}):
            entity = {**entity, "type": entity_type}
        return cls(
            entity=entity,
            entity_type=entity_type,
            yaml=output["yaml"],
            validation=GenerationValidation(
                valid=output["valid"], errors=output["problems"], unchecked=output["unchecked"]
            ),
            approval_request=output.get("approval_request"),
            metadata=metadata,
        )


class HistoryTurn(WireModel):
    role: Literal["user", "assistant", "system"]
    content: str
    timestamp: str | None = None

    def message(self) -> BaseMessage:
        kinds: dict[str, type[BaseMessage]] = {
            "user": HumanMessage,
            "assistant": AIMessage,
            "system": SystemMessage,
        }
        return kinds[self.role](self.content)


class AssistRequest(RunRequest):
    question: Annotated[str, not_blank("question")] = Field(min_length=1)
    conversation_history: list[HistoryTurn] = Field(default_factory=list, max_length=200)
    context_snapshot: dict[str, Any] | None = None
    approval_events: bool = Field(
        default=False,
        description="Send a change that waits for approval as an `approval` event. Without it "
        "the stream keeps to the app's three event types: the pause is a `complete` whose "
        "`metadata` has `status: pending_approval`, the `approvalRequest` and the `threadId`.",
    )

    def graph_input(self, thread_known: bool) -> dict[str, Any]:
        """The new turn; the app's history only starts a thread the service does not know."""
        history = [] if thread_known else [t.message() for t in self.conversation_history]
        return {
            "messages": [*history, HumanMessage(self.question)],
            "context_snapshot": self.context_snapshot,
            **self.run_fields(),
        }


class ThreadRef(WireModel):
    thread_id: str


class ThreadList(WireModel):
    threads: list[ThreadRef]


class ThreadMessage(WireModel):
    role: Literal["user", "assistant", "system", "tool"]
    content: str
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ThreadMessages(WireModel):
    thread_id: str
    messages: list[ThreadMessage]
