"""Request and response models of the HTTP API (camelCase on the wire, snake_case accepted)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from context_kit_service.retrieval.search import MAX_TOP_K

EntityKind = Literal[
    "feature", "userstory", "spec", "task", "service", "package", "governance", "document"
]


class WireModel(BaseModel):
    """camelCase on the wire; snake_case accepted on input; absent optionals are omitted."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class DependencyHealth(WireModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    detail: str


class HealthResponse(WireModel):
    status: Literal["healthy", "degraded", "unhealthy", "unknown"]
    version: str
    uptime_seconds: float = Field(ge=0)
    timestamp: str
    dependencies: dict[str, DependencyHealth]


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


class ApprovalIn(WireModel):
    approved: bool
    arguments: dict[str, Any] | None = None


class ToolExecuteRequest(WireModel):
    tool_id: str = Field(default="", max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    repo_path: str | None = Field(default=None, max_length=4096)
    config: ProviderConfig | None = None
    thread_id: str | None = Field(default=None, max_length=200)
    """To answer a pending approval: the thread it is waiting on."""
    approval: ApprovalIn | None = None


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


class RagQueryRequest(WireModel):
    query: str = Field(min_length=1)
    repo_path: str | None = Field(default=None, max_length=4096)
    top_k: int = Field(default=5, gt=0, le=MAX_TOP_K)
    entity_types: list[EntityKind] | None = None
    config: ProviderConfig | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be blank")
        return value


class RagSource(WireModel):
    entity_id: str
    entity_type: str
    relevance_score: float = Field(ge=0, le=1)
    excerpt: str
    file_path: str | None = None


class RagMetadata(WireModel):
    retrieval_time_ms: float = Field(ge=0)
    generation_time_ms: float = Field(ge=0)
    total_sources: int = Field(ge=0)
    model: str | None = None


class RagQueryResponse(WireModel):
    answer: str
    sources: list[RagSource]
    metadata: RagMetadata


class GenerateEntityRequest(WireModel):
    entity_type: Literal["feature", "userstory", "spec", "task", "governance", "service", "package"]
    user_prompt: str = Field(max_length=20_000)
    linked_feature_id: str | None = Field(default=None, max_length=100)
    repo_path: str | None = Field(default=None, max_length=4096)
    config: ProviderConfig | None = None
    save: bool = False
    thread_id: str | None = Field(default=None, max_length=200)
    approval: ApprovalIn | None = None

    @field_validator("user_prompt")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if len("".join(value.split())) < 10:
            raise ValueError("userPrompt needs at least 10 non-blank characters")
        return value


class GenerationValidation(WireModel):
    valid: bool
    errors: list[str]


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


class GenerateEntityResponse(WireModel):
    entity: dict[str, Any]
    yaml: str
    validation: GenerationValidation
    approval_request: dict[str, Any] | None = None
    metadata: GenerateEntityMetadata


class HistoryTurn(WireModel):
    role: Literal["user", "assistant", "system"]
    content: str
    timestamp: str | None = None


class AssistRequest(WireModel):
    question: str = Field(min_length=1)
    conversation_history: list[HistoryTurn] = Field(default_factory=list, max_length=200)
    context_snapshot: dict[str, Any] | None = None
    config: ProviderConfig | None = None
    repo_path: str | None = Field(default=None, max_length=4096)
    thread_id: str | None = Field(default=None, max_length=200)
    approval: ApprovalIn | None = None

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question must not be blank")
        return value
