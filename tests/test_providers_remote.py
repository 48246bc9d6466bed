"""ollama, openai and azure-openai through their real client libraries, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage

from context_kit_service.provider_errors import ProviderError, as_provider_error
from context_kit_service.providers import (
    ChatModelSpec,
    chat_spec,
    embeddings_spec,
    get_chat_model,
    get_embeddings,
    request_chat_spec,
)
from context_kit_service.settings import Settings
from tests.fake_providers import (
    PROMPT_TOKENS,
    REPLY,
    Recorder,
    closed_port_url,
    fake_vector,
    serve_fake_providers,
)

PROVIDERS = ["ollama", "openai", "azure-openai"]


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[str, Recorder]]:
    with serve_fake_providers() as server:
        yield server


def _base_url(provider: str, url: str) -> str:
    return f"{url}/v1" if provider == "openai" else url


def _spec(
    make_settings: Callable[..., Settings], provider: str, url: str, **kw: object
) -> ChatModelSpec:
    settings = make_settings(
        provider=provider, base_url=_base_url(provider, url), api_key="sk-test", model="m1"
    )
    return chat_spec(settings, temperature=0.0, max_tokens=7, **kw)


def _sent_options(provider: str, body: dict) -> tuple[float, int]:
    if provider == "ollama":
        return body["options"]["temperature"], body["options"]["num_predict"]
    return body["temperature"], body["max_completion_tokens"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_chat_invoke_reports_real_usage_and_keeps_temperature_zero(
    make_settings, fake, provider: str
) -> None:
    url, recorder = fake
    model = get_chat_model(_spec(make_settings, provider, url))
    reply = await model.ainvoke([HumanMessage("hi")])
    assert isinstance(reply, AIMessage)
    assert reply.content == "".join(REPLY)
    assert reply.usage_metadata is not None
    assert (
        reply.usage_metadata["input_tokens"],
        reply.usage_metadata["output_tokens"],
        reply.usage_metadata["total_tokens"],
    ) == (PROMPT_TOKENS, len(REPLY), PROMPT_TOKENS + len(REPLY))
    assert _sent_options(provider, recorder.last()["body"]) == (0.0, 7)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_chat_streams_tokens(make_settings, fake, provider: str) -> None:
    url, _ = fake
    model = get_chat_model(_spec(make_settings, provider, url))
    chunks = [chunk async for chunk in model.astream([HumanMessage("hi")])]
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    assert [chunk.content for chunk in chunks if chunk.content] == REPLY
    usage = [chunk.usage_metadata for chunk in chunks if chunk.usage_metadata]
    assert [(u["input_tokens"], u["output_tokens"]) for u in usage] == [(PROMPT_TOKENS, len(REPLY))]


def test_azure_sends_deployment_version_and_key(make_settings, fake) -> None:
    url, recorder = fake
    model = get_chat_model(_spec(make_settings, "azure-openai", url, api_version="2024-06-01"))
    model.invoke([HumanMessage("hi")])
    request = recorder.last()
    assert request["path"] == "/openai/deployments/m1/chat/completions"
    assert request["query"] == {"api-version": "2024-06-01"}
    assert request["headers"]["api-key"] == "sk-test"


def test_openai_sends_the_bearer_key(make_settings, fake) -> None:
    url, recorder = fake
    get_chat_model(_spec(make_settings, "openai", url)).invoke([HumanMessage("hi")])
    assert recorder.last()["headers"]["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_embeddings(make_settings, fake, provider: str) -> None:
    url, _ = fake
    settings = make_settings(
        provider=provider,
        embeddings_provider=provider,
        base_url=_base_url(provider, url),
        api_key="sk-test",
        embeddings_model="e1",
    )
    embeddings = get_embeddings(embeddings_spec(settings))
    vectors = await embeddings.aembed_documents(["alpha", "beta"])
    assert [[round(x, 4) for x in v] for v in vectors] == [
        fake_vector("alpha"),
        fake_vector("beta"),
    ]
    query = await embeddings.aembed_query("gamma")
    assert [round(x, 4) for x in query] == fake_vector("gamma")


def _failure(exc_info: pytest.ExceptionInfo[BaseException], provider: str) -> tuple[str, int]:
    error = as_provider_error(exc_info.value, provider)
    return error.code, error.status


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_provider_down_is_a_clear_error(make_settings, provider: str) -> None:
    model = get_chat_model(_spec(make_settings, provider, closed_port_url()))
    with pytest.raises(Exception) as raised:  # noqa: PT011 - each client raises its own type
        await model.ainvoke([HumanMessage("hi")])
    assert _failure(raised, provider) == ("PROVIDER_UNAVAILABLE", 503)
    assert as_provider_error(raised.value, provider).message == (
        f"cannot reach the {provider} provider; is it running and is the endpoint right?"
    )


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_timeout_is_enforced(make_settings, fake, provider: str) -> None:
    url, _ = fake
    model = get_chat_model(_spec(make_settings, provider, url, model="slow", timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(Exception) as raised:  # noqa: PT011
        await model.ainvoke([HumanMessage("hi")])
    assert time.monotonic() - started < 2.5
    assert _failure(raised, provider) == ("TIMEOUT", 504)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_unauthorized_is_a_clear_error(make_settings, fake, provider: str) -> None:
    url, _ = fake
    model = get_chat_model(_spec(make_settings, provider, url, model="deny"))
    with pytest.raises(Exception) as raised:  # noqa: PT011
        await model.ainvoke([HumanMessage("hi")])
    assert _failure(raised, provider) == ("PROVIDER_AUTH_FAILED", 502)
    assert as_provider_error(raised.value, provider).message == (
        f"{provider}: the provider rejected the credentials (HTTP 401)"
    )


def test_models_are_built_once_per_spec(make_settings) -> None:
    settings = make_settings(provider="ollama", base_url="http://127.0.0.1:1")
    assert get_chat_model(chat_spec(settings)) is get_chat_model(chat_spec(settings))
    assert get_chat_model(chat_spec(settings)) is not get_chat_model(
        chat_spec(settings, temperature=0.0)
    )
    assert get_embeddings(embeddings_spec(settings)) is get_embeddings(embeddings_spec(settings))


def test_switching_provider_per_request_drops_the_configured_credentials(make_settings) -> None:
    settings = make_settings(
        provider="openai", base_url="https://api.example/v1", api_key="sk-x", model="gpt"
    )
    spec = chat_spec(settings, provider="ollama")
    assert (spec.provider, spec.base_url, spec.api_key, spec.model) == (
        "ollama",
        "http://127.0.0.1:11434",  # CKS_OLLAMA_URL, not the configured provider's endpoint
        None,
        None,
    )
    assert "sk-x" not in repr(chat_spec(settings))


def test_azure_without_endpoint_is_a_config_error(make_settings) -> None:
    spec = chat_spec(make_settings(provider="azure-openai", model="dep", api_key="k"))
    with pytest.raises(ProviderError) as raised:
        get_chat_model(spec)
    assert (raised.value.code, raised.value.status, raised.value.message) == (
        "PROVIDER_CONFIG",
        422,
        "provider 'azure-openai' needs an endpoint (CKS_BASE_URL)",
    )


def test_request_config_maps_onto_the_provider(make_settings) -> None:
    settings = make_settings(provider="ollama", base_url="http://127.0.0.1:11434", model="llama3.2")
    spec = request_chat_spec(
        settings,
        provider="ollama",
        endpoint="http://127.0.0.1:11434/",
        model="qwen2.5",
        temperature=0.0,
        max_tokens=99,
    )
    assert (spec.provider, spec.base_url, spec.model, spec.temperature, spec.max_tokens) == (
        "ollama",
        "http://127.0.0.1:11434",
        "qwen2.5",
        0.0,
        99,
    )


def test_request_config_cannot_point_the_server_elsewhere(make_settings) -> None:
    settings = make_settings(provider="ollama", base_url="http://127.0.0.1:11434")
    with pytest.raises(ProviderError) as raised:
        request_chat_spec(settings, endpoint="http://169.254.169.254/latest")
    assert (raised.value.code, raised.value.status) == ("ENDPOINT_NOT_ALLOWED", 403)
    with pytest.raises(ProviderError):
        request_chat_spec(settings, provider="azure-openai", endpoint="http://10.1.2.3:11434")
    opened = make_settings(provider="ollama", allow_client_endpoints=True)
    assert (
        request_chat_spec(opened, endpoint="http://gpu-box:11434").base_url
        == "http://gpu-box:11434"
    )


def test_the_local_provider_ignores_an_endpoint(make_settings) -> None:
    spec = request_chat_spec(make_settings(), provider="local", endpoint="http://x")
    assert (spec.provider, spec.base_url) == ("local", None)


def test_a_request_cannot_make_the_local_provider_load_another_file(make_settings) -> None:
    with pytest.raises(ProviderError) as raised:
        request_chat_spec(make_settings(), provider="local", model="/etc/passwd")
    assert (raised.value.code, raised.value.status, raised.value.message) == (
        "INVALID_CONFIG",
        422,
        "the local provider serves only its configured model (CKS_MODEL); leave config.model out",
    )
    configured = make_settings(provider="local", model="/models/mine.gguf")
    assert request_chat_spec(configured, model="/models/mine.gguf").model == "/models/mine.gguf"
