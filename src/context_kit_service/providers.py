"""Chat models and embeddings by provider name, built once and cached.

One dispatch table per kind (`_CHAT_FACTORIES`, `_EMBEDDINGS_FACTORIES`); everything provider
specific stays inside its factory. Provider failures are translated into `ProviderError`
with a stable `code` the clients can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from context_kit_service.endpoints import check_endpoint
from context_kit_service.provider_errors import ProviderError
from context_kit_service.settings import ProviderName, Settings

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

DEFAULT_MODELS: dict[str, str] = {
    "ollama": "llama3.2",
    "openai": "gpt-4o-mini",
}
DEFAULT_EMBEDDING_MODELS: dict[str, str] = {
    "ollama": "nomic-embed-text",
    "openai": "text-embedding-3-small",
}


@dataclass(frozen=True)
class ChatModelSpec:
    """Everything that identifies one chat model client (hashable: it is the cache key)."""

    provider: ProviderName
    model: str | None
    base_url: str | None
    api_key: str | None = field(repr=False)
    api_version: str
    temperature: float
    max_tokens: int
    timeout_s: float
    context_window: int
    threads: int | None
    models_dir: Path
    prefix_cache_mb: int


@dataclass(frozen=True)
class EmbeddingsSpec:
    """Everything that identifies one embeddings client."""

    provider: ProviderName
    model: str | None
    base_url: str | None
    api_key: str | None = field(repr=False)
    api_version: str
    timeout_s: float
    models_dir: Path


def chat_spec(settings: Settings, **overrides: Any) -> ChatModelSpec:
    """The settings' chat model, with per-request overrides (None values are ignored)."""
    spec = ChatModelSpec(
        provider=settings.provider,
        model=settings.model,
        base_url=settings.base_url,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        api_version=settings.api_version,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        timeout_s=settings.provider_timeout_s,
        context_window=settings.context_window,
        threads=settings.local_threads,
        models_dir=settings.local_models_dir,
        prefix_cache_mb=settings.local_prefix_cache_mb,
    )
    changes = {key: value for key, value in overrides.items() if value is not None}
    if "provider" in changes and changes["provider"] != settings.provider:
        # Another provider than the configured one: do not leak its endpoint, key or model.
        spec = replace(spec, model=None, base_url=None, api_key=None)
    spec = replace(spec, **changes)
    if spec.provider == "ollama" and spec.base_url is None:
        spec = replace(spec, base_url=settings.ollama_url.rstrip("/"))
    return spec


def request_chat_spec(
    settings: Settings,
    *,
    provider: ProviderName | None = None,
    endpoint: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    api_version: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> ChatModelSpec:
    """Map the app's per-request provider `config` onto a spec, within what settings allow.

    `endpoint` must pass the endpoint policy (`endpoints.check_endpoint`); the local provider
    has no endpoint, so it is ignored there, and it serves only the configured model file (a
    request may not make the service load another file).
    """
    if max_tokens is not None and not 1 <= max_tokens <= settings.max_tokens_limit:
        raise ProviderError(
            "INVALID_CONFIG",
            f"max_tokens must be between 1 and {settings.max_tokens_limit} (CKS_MAX_TOKENS_LIMIT)",
            status=422,
        )
    if temperature is not None and not 0 <= temperature <= 2:
        raise ProviderError("INVALID_CONFIG", "temperature must be between 0 and 2", status=422)
    if (provider or settings.provider) == "local":
        endpoint = None
        configured = settings.model if settings.provider == "local" else None
        if model is not None and model != configured:
            raise ProviderError(
                "INVALID_CONFIG",
                "the local provider serves only its configured model (CKS_MODEL); "
                "leave config.model out",
                status=422,
            )
    elif endpoint is not None:
        endpoint = endpoint.rstrip("/")
        check_endpoint(endpoint, settings)
    return chat_spec(
        settings,
        provider=provider,
        base_url=endpoint,
        model=model,
        api_key=api_key,
        api_version=api_version,
        temperature=temperature,
        max_tokens=max_tokens,
    )


def embeddings_spec(settings: Settings) -> EmbeddingsSpec:
    same_provider = settings.embeddings_provider == settings.provider
    base_url = settings.base_url if same_provider else None
    if settings.embeddings_provider == "ollama" and base_url is None:
        base_url = settings.ollama_url.rstrip("/")
    return EmbeddingsSpec(
        provider=settings.embeddings_provider,
        model=settings.embeddings_model,
        base_url=base_url,
        api_key=settings.api_key.get_secret_value() if settings.api_key and same_provider else None,
        api_version=settings.api_version,
        timeout_s=settings.provider_timeout_s,
        models_dir=settings.local_models_dir,
    )


FOLLOW_REDIRECTS = False
"""Every provider client is built without following redirects: the endpoint policy checks
the URL a request names (`endpoints.py`), and a 3xx from it must not carry the prompt and the
key to an address nobody checked. A redirect is answered as the provider's error."""


def _openai_clients() -> dict[str, Any]:
    """The OpenAI SDK's HTTP clients (its own defaults), not following redirects."""
    import openai

    return {
        "http_client": openai.DefaultHttpxClient(follow_redirects=FOLLOW_REDIRECTS),
        "http_async_client": openai.DefaultAsyncHttpxClient(follow_redirects=FOLLOW_REDIRECTS),
    }


def _require(value: str | None, what: str, provider: str) -> str:
    if not value:
        raise ProviderError("PROVIDER_CONFIG", f"provider '{provider}' needs {what}", status=422)
    return value


# --- chat models -------------------------------------------------------------------------


def _local_chat(spec: ChatModelSpec) -> BaseChatModel:
    from context_kit_service.local_models import DEFAULT_LOCAL_MODEL, LocalChatModel

    return LocalChatModel(
        model_path=spec.model or DEFAULT_LOCAL_MODEL,
        models_dir=spec.models_dir,
        temperature=spec.temperature,
        max_tokens=spec.max_tokens,
        n_ctx=spec.context_window,
        n_threads=spec.threads,
        prefix_cache_mb=spec.prefix_cache_mb,
    )


def _ollama_chat(spec: ChatModelSpec) -> BaseChatModel:
    from langchain_ollama import ChatOllama

    return ChatOllama(
        model=spec.model or DEFAULT_MODELS["ollama"],
        base_url=spec.base_url,
        temperature=spec.temperature,
        num_predict=spec.max_tokens,
        client_kwargs={"timeout": spec.timeout_s, "follow_redirects": FOLLOW_REDIRECTS},
    )


def _openai_chat(spec: ChatModelSpec) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=spec.model or DEFAULT_MODELS["openai"],
        base_url=spec.base_url,
        api_key=spec.api_key or "unused",  # type: ignore[arg-type]
        temperature=spec.temperature,
        max_completion_tokens=spec.max_tokens,
        timeout=spec.timeout_s,
        max_retries=0,
        stream_usage=True,
        **_openai_clients(),
    )


def _azure_chat(spec: ChatModelSpec) -> BaseChatModel:
    from langchain_openai import AzureChatOpenAI

    return AzureChatOpenAI(
        azure_deployment=_require(spec.model, "a model (the deployment name)", "azure-openai"),
        azure_endpoint=_require(spec.base_url, "an endpoint (CKS_BASE_URL)", "azure-openai"),
        api_key=_require(spec.api_key, "an API key (CKS_API_KEY)", "azure-openai"),  # type: ignore[arg-type]
        api_version=spec.api_version,
        temperature=spec.temperature,
        max_completion_tokens=spec.max_tokens,
        timeout=spec.timeout_s,
        max_retries=0,
        stream_usage=True,
        **_openai_clients(),
    )


_CHAT_FACTORIES: dict[str, Callable[[ChatModelSpec], BaseChatModel]] = {
    "local": _local_chat,
    "ollama": _ollama_chat,
    "openai": _openai_chat,
    "azure-openai": _azure_chat,
}


@lru_cache(maxsize=32)
def get_chat_model(spec: ChatModelSpec) -> BaseChatModel:
    """The chat model client for `spec`, built once per distinct spec."""
    return _CHAT_FACTORIES[spec.provider](spec)


def model_name(spec: ChatModelSpec) -> str:
    if spec.model:
        return spec.model
    if spec.provider == "local":
        from context_kit_service.local_models.packaged import DEFAULT_LOCAL_MODEL

        return DEFAULT_LOCAL_MODEL
    return DEFAULT_MODELS.get(spec.provider, spec.provider)


# --- embeddings --------------------------------------------------------------------------


def embeddings_model_name(spec: EmbeddingsSpec) -> str:
    """The model `spec` embeds with, its provider's default when it names none."""
    if spec.model:
        return spec.model
    if spec.provider == "local":
        from context_kit_service.local_models.packaged import DEFAULT_EMBEDDINGS_MODEL

        return DEFAULT_EMBEDDINGS_MODEL
    return DEFAULT_EMBEDDING_MODELS.get(spec.provider, "default")


def _local_embeddings(spec: EmbeddingsSpec) -> Embeddings:
    from context_kit_service.local_models import LocalEmbeddings

    return LocalEmbeddings(model_path=spec.model, models_dir=spec.models_dir)


def _ollama_embeddings(spec: EmbeddingsSpec) -> Embeddings:
    from langchain_ollama import OllamaEmbeddings

    return OllamaEmbeddings(
        model=spec.model or DEFAULT_EMBEDDING_MODELS["ollama"],
        base_url=spec.base_url,
        client_kwargs={"timeout": spec.timeout_s, "follow_redirects": FOLLOW_REDIRECTS},
    )


def _openai_embeddings(spec: EmbeddingsSpec) -> Embeddings:
    from langchain_openai import OpenAIEmbeddings

    return OpenAIEmbeddings(
        model=spec.model or DEFAULT_EMBEDDING_MODELS["openai"],
        base_url=spec.base_url,
        api_key=spec.api_key or "unused",  # type: ignore[arg-type]
        timeout=spec.timeout_s,
        max_retries=0,
        check_embedding_ctx_length=False,
        **_openai_clients(),
    )


def _azure_embeddings(spec: EmbeddingsSpec) -> Embeddings:
    from langchain_openai import AzureOpenAIEmbeddings

    return AzureOpenAIEmbeddings(
        azure_deployment=_require(spec.model, "an embeddings deployment", "azure-openai"),
        azure_endpoint=_require(spec.base_url, "an endpoint (CKS_BASE_URL)", "azure-openai"),
        api_key=_require(spec.api_key, "an API key (CKS_API_KEY)", "azure-openai"),  # type: ignore[arg-type]
        api_version=spec.api_version,
        timeout=spec.timeout_s,
        max_retries=0,
        check_embedding_ctx_length=False,
        **_openai_clients(),
    )


_EMBEDDINGS_FACTORIES: dict[str, Callable[[EmbeddingsSpec], Embeddings]] = {
    "local": _local_embeddings,
    "ollama": _ollama_embeddings,
    "openai": _openai_embeddings,
    "azure-openai": _azure_embeddings,
}


@lru_cache(maxsize=8)
def get_embeddings(spec: EmbeddingsSpec) -> Embeddings:
    """The embeddings client for `spec`, built once per distinct spec."""
    return _EMBEDDINGS_FACTORIES[spec.provider](spec)
