"""The endpoint policy: the app's endpoints work in its launch mode (no token); addresses the
user did not choose are refused fast with 403 ENDPOINT_NOT_ALLOWED, on every route, before
any model or index loads, and LangServe's `configurable` is no way around it."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding

from context_kit_service.endpoints import check_endpoint, check_resolved
from context_kit_service.provider_errors import ProviderError
from context_kit_service.server import create_app
from tests.conftest import SAMPLE_REPO
from tests.fake_providers import closed_port_url, serve_fake_providers
from tests.fakes import replies

ALLOWED = [
    "http://localhost:11434",
    "http://127.0.0.1:11434",
    "http://[::1]:11434",
    "https://my-resource.openai.azure.com",
    "https://my-gateway.azure-api.net/openai",
    "https://api.openai.com/v1",
    "https://8.8.8.8",
]
REFUSED = {
    "http://169.254.169.254/latest/meta-data": "169.254.169.254 is a link-local (cloud metadata) address",
    "https://169.254.169.254": "169.254.169.254 is a link-local (cloud metadata) address",
    "https://[fe80::1]": "fe80::1 is a link-local (cloud metadata) address",
    "https://[::ffff:169.254.169.254]": "::ffff:169.254.169.254 is a link-local (cloud metadata) address",
    "https://10.0.0.5": "10.0.0.5 is a private or reserved address",
    "https://192.168.1.20:11434": "192.168.1.20 is a private or reserved address",
    "https://172.16.0.1": "172.16.0.1 is a private or reserved address",
    "https://100.64.0.1": "100.64.0.1 is a private or reserved address",
    "https://0.0.0.0": "0.0.0.0 is a private or reserved address",
    "https://[fd00::1]": "fd00::1 is a private or reserved address",
    "http://example.com": "plain http is only for loopback hosts",
    "https://metadata.google.internal": "metadata.google.internal is a local-network name",
    "https://gpu-box:11434": "gpu-box is a local-network name",
    "https://printer.local": "printer.local is a local-network name",
    "ftp://example.com": "it is not an http(s) URL with a host",
    "file:///etc/passwd": "it is not an http(s) URL with a host",
    "https://user:secret@example.com": "it carries credentials",
}


@pytest.mark.parametrize("endpoint", ALLOWED)
def test_the_apps_endpoints_are_allowed(make_settings, endpoint: str) -> None:
    check_endpoint(endpoint, make_settings())


@pytest.mark.parametrize(("endpoint", "why"), REFUSED.items())
def test_addresses_the_user_did_not_choose_are_refused(
    make_settings, endpoint: str, why: str
) -> None:
    with pytest.raises(ProviderError) as raised:
        check_endpoint(endpoint, make_settings())
    assert (raised.value.code, raised.value.status) == ("ENDPOINT_NOT_ALLOWED", 403)
    assert raised.value.message == (
        f"config.endpoint {endpoint!r} is not allowed: {why} (loopback, public https and "
        "CKS_ENDPOINT_HOSTS endpoints are)"
    )


def test_listed_hosts_a_token_or_the_switch_open_the_policy(make_settings) -> None:
    check_endpoint("http://gpu-box:11434", make_settings(endpoint_hosts=["GPU-box"]))
    check_endpoint("http://10.0.0.5:11434", make_settings(endpoint_hosts=["10.0.0.5"]))
    check_endpoint("http://10.0.0.5", make_settings(auth_token="a-token-of-16-chars-or-more"))
    check_endpoint("http://169.254.169.254", make_settings(allow_client_endpoints=True))
    check_endpoint("http://10.0.0.5:11434", make_settings(base_url="http://10.0.0.5:11434/"))


def test_a_public_name_that_resolves_to_a_private_address_is_refused(make_settings) -> None:
    async def resolve(host: str) -> list[str]:
        return {"rebound.example.com": ["93.184.216.34", "169.254.169.254"]}.get(
            host, ["93.184.216.34"]
        )

    settings = make_settings()
    asyncio.run(check_resolved("https://fine.example.com", settings, resolve))
    with pytest.raises(ProviderError) as raised:
        asyncio.run(check_resolved("https://rebound.example.com", settings, resolve))
    assert (
        "rebound.example.com resolves to a link-local (cloud metadata) address"
        in raised.value.message
    )
    # A name that does not resolve is left to fail when the provider is called.
    asyncio.run(check_resolved("https://no-such-host.invalid", settings))


ROUTES = [
    ("/ai/rag/query", {"query": "Who owns the ledger?"}),
    ("/ai/generate-entity", {"entityType": "task", "userPrompt": "A task about exports"}),
    ("/ai/tools/execute", {"toolId": "context.list"}),
]


def test_every_route_refuses_before_anything_loads(make_settings) -> None:
    model = replies("unused")
    app = create_app(make_settings(repo_path=SAMPLE_REPO), chat_model=model)
    config = {"provider": "ollama", "endpoint": "http://169.254.169.254", "model": "m"}
    with TestClient(app) as client:
        for path, body in ROUTES:
            started = time.perf_counter()
            response = client.post(path, json={**body, "config": config})
            elapsed = time.perf_counter() - started
            assert (response.status_code, response.json()["code"]) == (403, "ENDPOINT_NOT_ALLOWED")
            assert elapsed < 0.05, (path, elapsed)
        sent = {"question": "hi", "config": config}
        with client.stream("POST", "/ai/assist/stream", json=sent) as stream:
            lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
        assert '"code":"ENDPOINT_NOT_ALLOWED"' in lines[0]
        assert lines[-1] == "data: [DONE]"
    assert model.prompts == []


def test_langserve_configurable_is_no_way_around_it(make_settings) -> None:
    """The server's provider key sent in `configurable` is dropped: the run calls the
    configured endpoint (here one where nothing listens), never the one the client named."""
    with serve_fake_providers() as (fake_url, recorder):
        settings = make_settings(
            repo_path=SAMPLE_REPO, provider="openai", model="agent", base_url=closed_port_url()
        )
        app = create_app(settings, embeddings=DeterministicFakeEmbedding(size=16))
        sneaky = {
            "input": {"query": "Who owns the ledger?"},
            "config": {
                "configurable": {
                    "provider": "openai",
                    "cks_provider": {"endpoint": f"{fake_url}/v1", "api_key": "k"},
                }
            },
        }
        with TestClient(app) as client:
            response = client.post("/graphs/rag/invoke", json=sneaky)
    assert (response.status_code, response.json()["code"]) == (503, "PROVIDER_UNAVAILABLE")
    assert recorder.requests == []
