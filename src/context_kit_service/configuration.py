"""Per-request configuration, read from `config["configurable"]`.

The public fields are what a client may set (LangServe shows them in `/config_schema`).
The server adds its own `Settings` under `SETTINGS_KEY`; clients cannot set it, and
without it (LangGraph Studio, scripts) the process settings apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Union, get_args, get_type_hints

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import ConfigurableFieldSpec, RunnableConfig
from pydantic import Field as PydanticField

from context_kit_service.endpoints import check_resolved
from context_kit_service.providers import ChatModelSpec, get_chat_model, request_chat_spec
from context_kit_service.settings import ProviderName, Settings, get_settings

SETTINGS_KEY = "cks_settings"
MODEL_KEY = "cks_chat_model"
"""A chat model instance the embedding application passes in (tests, evals); server-only."""
EMBEDDINGS_KEY = "cks_embeddings"
"""An embeddings instance passed in the same way (benchmarks, tests); server-only."""
PROVIDER_KEY = "cks_provider"
"""Server-checked provider overrides a client may not set through LangServe (endpoint, key)."""


@dataclass(kw_only=True)
class Configuration:
    """What a request may choose. Everything else comes from the service's settings."""

    thread_id: str | None = field(
        default=None, metadata={"description": "Conversation thread (assistant memory)."}
    )
    provider: ProviderName | None = field(
        default=None,
        metadata={"description": "Chat model provider for this request (default: the service's)."},
    )
    model: str | None = field(
        default=None, metadata={"description": "Model name or deployment for this request."}
    )
    temperature: float | None = field(
        default=None, metadata={"description": "Sampling temperature, 0..2."}
    )
    max_tokens: int | None = field(
        default=None, metadata={"description": "Maximum tokens per model call."}
    )

    @classmethod
    def from_runnable_config(cls, config: RunnableConfig | None = None) -> Configuration:
        configurable: dict[str, Any] = (config or {}).get("configurable") or {}
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in configurable.items() if k in names and v is not None})


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _optional_field(hint: Any) -> Any:
    """`str | None` -> `str`, left out of the schema's defaults: a client may omit the field but
    not send null. (LangServe's playground can draw no form field for a `null` type, and its
    form refuses to start a run while a field holds a null default.)"""
    args = [arg for arg in get_args(hint) if arg is not type(None)]
    bare = Union[tuple(args)] if args else hint  # noqa: UP007 - built from a runtime tuple
    return Annotated[bare, PydanticField(json_schema_extra=_drop_default)]


def configuration_specs() -> list[ConfigurableFieldSpec]:
    """`Configuration`'s fields as LangChain config specs (what `/config_schema` shows)."""
    hints = get_type_hints(Configuration)
    return [
        ConfigurableFieldSpec(
            id=f.name,
            annotation=_optional_field(hints[f.name]),
            name=f.name,
            description=f.metadata.get("description"),
            default=f.default,
        )
        for f in fields(Configuration)
    ]


def server_configurable(
    settings: Settings,
    chat_model: BaseChatModel | None = None,
    embeddings: Embeddings | None = None,
) -> dict[str, Any]:
    """What whoever runs a graph adds to its `configurable`: the settings, and the model
    instances to use instead of the configured providers."""
    values: dict[str, Any] = {SETTINGS_KEY: settings}
    if chat_model is not None:
        values[MODEL_KEY] = chat_model
    if embeddings is not None:
        values[EMBEDDINGS_KEY] = embeddings
    return values


def service_settings(config: RunnableConfig | None) -> Settings:
    """The settings of the service running this graph."""
    configurable = (config or {}).get("configurable") or {}
    settings = configurable.get(SETTINGS_KEY)
    return settings if isinstance(settings, Settings) else get_settings()


def chat_spec_for(config: RunnableConfig | None) -> ChatModelSpec:
    """The chat model this request asked for, within what the service's settings allow."""
    configurable = (config or {}).get("configurable") or {}
    configuration = Configuration.from_runnable_config(config)
    overrides: dict[str, Any] = configurable.get(PROVIDER_KEY) or {}
    return request_chat_spec(
        service_settings(config),
        provider=configuration.provider,
        model=configuration.model,
        temperature=configuration.temperature,
        max_tokens=configuration.max_tokens,
        endpoint=overrides.get("endpoint"),
        api_key=overrides.get("api_key"),
        api_version=overrides.get("api_version"),
    )


def chat_model_for(config: RunnableConfig | None) -> tuple[BaseChatModel, ChatModelSpec]:
    """The request's chat model (an instance passed in by whoever runs the graph, or the
    provider's) and its spec."""
    spec = chat_spec_for(config)
    given = ((config or {}).get("configurable") or {}).get(MODEL_KEY)
    if isinstance(given, BaseChatModel):
        return given, spec
    return get_chat_model(spec), spec


async def check_run_config(config: RunnableConfig | None) -> None:
    """Refuse a run's provider choices before anything loads: bounds, and the endpoint
    policy with the addresses the endpoint's name resolves to."""
    spec = chat_spec_for(config)
    if spec.provider != "local" and spec.base_url is not None:
        await check_resolved(spec.base_url, service_settings(config))


def embeddings_for(config: RunnableConfig | None) -> Embeddings | None:
    """Embeddings passed in by whoever runs the graph; None means the configured provider."""
    given = ((config or {}).get("configurable") or {}).get(EMBEDDINGS_KEY)
    return given if isinstance(given, Embeddings) else None
