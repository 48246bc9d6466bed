"""No provider client follows a redirect: an allowed endpoint that answers `307 Location:
<an address the policy refuses>` delivers nothing there, for chat and embeddings alike, and
the request fails with the provider's error."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from langchain_core.messages import HumanMessage

from context_kit_service.provider_errors import as_provider_error
from context_kit_service.providers import chat_spec, embeddings_spec, get_chat_model, get_embeddings
from context_kit_service.settings import Settings
from tests.fake_providers import Recorder, serve_fake_providers

PROVIDERS = ["ollama", "openai", "azure-openai"]


@pytest.fixture(scope="module")
def refused() -> Iterator[tuple[str, Recorder]]:
    """Stands for the refused address: it must receive nothing."""
    with serve_fake_providers() as server:
        yield server


@pytest.fixture(scope="module")
def redirecting(refused: tuple[str, Recorder]) -> Iterator[str]:
    target = refused[0]

    class Redirect(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(307)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _settings(make_settings: Callable[..., Settings], provider: str, url: str) -> Settings:
    base = f"{url}/v1" if provider == "openai" else url
    return make_settings(
        provider=provider,
        embeddings_provider=provider,
        base_url=base,
        api_key="sk-test",
        model="m1",
        embeddings_model="e1",
    )


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_redirect_is_not_followed_by_chat_or_embeddings(
    make_settings, redirecting: str, refused: tuple[str, Recorder], provider: str
) -> None:
    settings = _settings(make_settings, provider, redirecting)
    model = get_chat_model(chat_spec(settings))
    with pytest.raises(Exception) as chat:  # noqa: PT011 - each client raises its own type
        await model.ainvoke([HumanMessage("the secret prompt")])
    with pytest.raises(Exception) as embed:  # noqa: PT011
        await get_embeddings(embeddings_spec(settings)).aembed_query("the secret text")
    assert refused[1].requests == []
    for raised in (chat, embed):
        error = as_provider_error(raised.value, provider)
        assert (error.code, error.status) == ("PROVIDER_ERROR", 502), error.message
