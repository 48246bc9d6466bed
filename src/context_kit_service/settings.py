"""Service settings, read from `CKS_*` environment variables and an optional `.env` file."""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderName = Literal["local", "ollama", "openai", "azure-openai"]
EmbeddingsProviderName = Literal["local", "ollama", "openai", "azure-openai"]
RetrievalMode = Literal["hybrid", "dense"]

ENV_PREFIX = "CKS_"
MIN_TOKEN_CHARS = 16


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "context-kit-service"


def cache_home() -> Path:
    """The user's cache of what the service derives from installed packages (assembled
    models, their ONNX exports): shared by every data dir, safe to delete."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "context-kit-service"


def default_models_dir() -> Path:
    """Where packaged local models are assembled when `CKS_MODELS_DIR` is empty."""
    return cache_home() / "models"


class Settings(BaseSettings):
    """Everything the service can be configured with. Each field maps to `CKS_<NAME>`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    provider: ProviderName = Field("local", description="Default chat model provider.")
    model: str | None = Field(
        None,
        description="Model name (Ollama/OpenAI), deployment (Azure) or GGUF path (local). "
        "Empty means the provider's default. For `local`: a packaged model "
        "(`qwen2.5-coder-0.5b`, the default; `qwen2.5-coder-1.5b` after `make install-1.5b`; "
        "`gemma3-270m`, a base model for the smallest machines) or a GGUF path.",
    )
    ollama_url: str = Field(
        "http://127.0.0.1:11434",
        description="Where Ollama answers when a request picks it without `config.endpoint`.",
    )
    base_url: str | None = Field(
        None,
        description="Provider endpoint: Ollama URL, OpenAI-compatible base URL, Azure endpoint.",
    )
    api_key: SecretStr | None = Field(None, description="API key for OpenAI or Azure OpenAI.")
    api_version: str = Field("2024-02-15-preview", description="Azure OpenAI API version.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature (0..2).")
    max_tokens: int = Field(512, gt=0, le=32768, description="Maximum tokens per completion.")
    max_tokens_limit: int = Field(
        4096,
        gt=0,
        le=32768,
        description="The most tokens a request may ask for per completion (`max_tokens`).",
    )
    context_window: int = Field(
        4096, ge=512, le=131072, description="Context window (tokens) of the local model."
    )
    local_threads: int | None = Field(
        None, gt=0, description="CPU threads for the local model (default: all cores)."
    )
    local_prefix_cache_mb: int = Field(
        256,
        ge=0,
        le=65536,
        description="Memory (MiB) for the local model's saved prompt states: a request whose "
        "prompt starts like an earlier one (the same system prompt and tools) resumes from its "
        "state instead of reading the prefix again. 0 turns it off.",
    )
    local_tools: bool | None = Field(
        None,
        description="Offer the assistant's tools to the local model. Empty: offered to an "
        "instruct model whose chat template writes tool calls (the packaged Qwen models), not "
        "to a base model (the packaged Gemma 270M calls them poorly).",
    )
    local_toolset: Literal["core", "all"] = Field(
        "core",
        description="The tools offered to the local model: `core` (six read-only tools: "
        "get_entity, list_entities, search_context, impact_analysis, next_id, "
        "validate_repository) or `all` (every assistant tool, writes included).",
    )

    embeddings_provider: EmbeddingsProviderName = Field("local", description="Embeddings provider.")
    embeddings_model: str | None = Field(
        None,
        description="Embeddings model. For `local`: empty means the packaged all-MiniLM-L6-v2, "
        "`all-mpnet-base-v2` the larger packaged model (better on questions asked in other "
        "words, slower), anything else a sentence-transformers folder.",
    )

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where indexes and conversation threads are stored.",
    )
    models_dir: Path | None = Field(
        None,
        description="Where packaged local models are assembled from their parts; empty means "
        "`~/.cache/context-kit-service/models` (under `$XDG_CACHE_HOME` when set).",
    )
    repo_path: Path | None = Field(None, description="Default context repository.")
    allowed_repos: list[Path] = Field(
        default_factory=list,
        description="If set, requests may only use repositories under these roots (JSON list).",
    )
    allow_writes: bool = Field(
        True, description="Whether tools that write to the repository may run (after approval)."
    )
    max_file_bytes: int = Field(
        1_000_000, gt=0, description="Largest repository file a tool may read, in bytes."
    )
    min_relevance: float = Field(
        0.22,
        ge=0.0,
        le=1.0,
        description="The least cosine similarity a passage needs to count as a dense match "
        "(lexical matches need a query word that is not a stopword).",
    )
    retrieval: RetrievalMode = Field(
        "hybrid",
        description="`hybrid`: dense and lexical search fused by reciprocal rank; `dense`: "
        "vector search only (for comparison).",
    )
    database_url: str | None = Field(
        None, description="PostgreSQL URL for the conversation checkpointer (SQLite if empty)."
    )
    thread_max_age_days: float = Field(
        90.0,
        ge=0,
        description="Threads (conversations and paused changes) untouched this many days are "
        "deleted in the background; 0 keeps them whatever their age.",
    )
    thread_max_count: int = Field(
        1000,
        ge=0,
        description="The most threads kept; beyond it the least recently used are deleted in "
        "the background; 0 keeps any number.",
    )
    thread_prune_interval_s: float = Field(
        3600.0, gt=0, description="Seconds between background passes that delete old threads."
    )

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0 picks a free port).")
    auth_token: SecretStr | None = Field(
        None, description="Bearer token required on every route when set."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Allowed CORS origins (JSON list); none by default."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the service answers to besides loopback names and the bound "
        "address (JSON list); other `Host` headers get 421 (DNS-rebinding defence).",
    )
    health_details: bool = Field(
        False,
        description="Name the files and folders each `/health` check looked at, for operators "
        "(always named when CKS_AUTH_TOKEN is set: only the token holder reads /health then).",
    )
    allow_client_endpoints: bool = Field(
        False,
        description="Let a request's `config.endpoint` be any URL (the endpoint policy is off).",
    )
    endpoint_hosts: list[str] = Field(
        default_factory=list,
        description="Private hosts a request's `config.endpoint` may name besides loopback and "
        "public https ones (JSON list), e.g. a model server on the local network.",
    )

    max_request_bytes: int = Field(
        1_000_000, gt=0, description="Largest accepted request body in bytes."
    )
    max_input_chars: int = Field(
        20_000, gt=0, description="Longest accepted prompt, question or query, in characters."
    )
    provider_timeout_s: float = Field(
        60.0, gt=0, description="Timeout for one call to a model provider, in seconds."
    )
    request_timeout_s: float = Field(
        300.0, gt=0, description="Upper bound for one whole request, in seconds."
    )
    snapshot_tokens: int = Field(
        1500, gt=0, description="Token budget for the app's contextSnapshot in assistant prompts."
    )
    heartbeat_s: float = Field(
        5.0, gt=0, description="Seconds between SSE comment heartbeats while nothing streams."
    )
    stream_stall_s: float = Field(
        30.0,
        gt=0,
        description="Seconds a response may wait on a client that reads nothing before it is "
        "abandoned (a stream's run and model call stop with it).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("repo_path", "data_dir", "models_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @field_validator("allowed_repos")
    @classmethod
    def _absolute_all(cls, value: list[Path]) -> list[Path]:
        return [path.expanduser().resolve() for path in value]

    @field_validator("model", "embeddings_model", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("auth_token", "api_key", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("auth_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value()
        if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
            raise ValueError(
                f"must be at least {MIN_TOKEN_CHARS} characters with no blanks "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return value

    @property
    def host_is_loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "threads.sqlite"

    @property
    def local_models_dir(self) -> Path:
        return self.models_dir or default_models_dir()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SettingsError(ValueError):
    """Invalid configuration; the message names each offending environment variable."""


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into readable messages."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        lines.append(f"  {ENV_PREFIX}{field.upper()}: {error['msg']}")
    return "\n".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process (read once)."""
    return load_settings()
