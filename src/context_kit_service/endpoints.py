"""Which provider endpoints a request's `config.endpoint` may make the service call.

The desktop app sends the user's own endpoint with every request, so the service must call
it; nobody else may make the service reach an address the user did not choose (a cloud
metadata service, a router's admin page, another machine on the network). Allowed:

- the configured endpoints (CKS_BASE_URL, CKS_OLLAMA_URL);
- loopback hosts (`localhost`, 127.0.0.0/8, ::1) over http or https: a model server on the
  user's own machine, like Ollama at `http://localhost:11434`;
- public hosts over https (`https://<resource>.openai.azure.com`, `https://<name>.azure-api.net`);
- hosts listed in CKS_ENDPOINT_HOSTS (a model server on the local network);
- anything when the service has an auth token (the token holder is trusted) or
  CKS_ALLOW_CLIENT_ENDPOINTS=true.

Everything else is refused with 403 ENDPOINT_NOT_ALLOWED before any model or index loads:
other schemes, credentials in the URL, plain http to a host that is not loopback, IP
addresses in private, link-local (metadata), shared, reserved or multicast ranges, names
that only exist on a local network (one label, `.local`, `.internal`, ...), and names that
resolve to any such address.

What is checked is the URL a request names: no provider client follows a redirect
(`providers.FOLLOW_REDIRECTS`), so a 3xx cannot lead the request elsewhere. The address is not
pinned: the check resolves a public name, and the provider's client (the OpenAI, Azure and
Ollama SDKs, each with its own httpx transport) resolves it again when it connects, so a name
whose DNS answer changes between the two (rebinding with a short TTL) can still reach a
private address. Pinning would need a transport per SDK that connects to the checked address
while keeping the name for TLS (SNI and certificate checks) and for proxies; where that risk
matters, run with `CKS_ENDPOINT_HOSTS` and no client endpoints (`config.endpoint` then only
names the configured or listed hosts), or behind an egress proxy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from context_kit_service.provider_errors import ProviderError
from context_kit_service.settings import Settings

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
LOCAL_SUFFIXES = (".local", ".localdomain", ".internal", ".lan", ".home", ".home.arpa", ".corp")
RESOLVE_TIMEOUT_S = 2.0


def refused(endpoint: str, why: str) -> ProviderError:
    return ProviderError(
        "ENDPOINT_NOT_ALLOWED",
        f"config.endpoint {endpoint!r} is not allowed: {why} (loopback, public https and "
        "CKS_ENDPOINT_HOSTS endpoints are)",
        status=403,
    )


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None
    if address.is_link_local:
        return "a link-local (cloud metadata) address"
    if not address.is_global or address.is_multicast:
        return "a private or reserved address"
    return None


def _trusted(endpoint: str, settings: Settings) -> bool:
    """A configured endpoint, or any when the policy is off (a token, or the setting)."""
    if settings.allow_client_endpoints or settings.auth_token is not None:
        return True
    return endpoint in {(settings.base_url or "").rstrip("/"), settings.ollama_url.rstrip("/")}


def _host(endpoint: str) -> str:
    return (urlsplit(endpoint).hostname or "").lower().rstrip(".")


def check_endpoint(endpoint: str, settings: Settings) -> str | None:
    """Refuse `endpoint` unless the policy allows it, from the URL alone (no lookup). Returns
    the host name whose addresses are still to be checked (None: nothing to look up)."""
    if _trusted(endpoint, settings):
        return None
    parts = urlsplit(endpoint)
    host = _host(endpoint)
    if parts.scheme not in ("http", "https") or not host:
        raise refused(endpoint, "it is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise refused(endpoint, "it carries credentials")
    if host in {h.lower() for h in settings.endpoint_hosts}:
        return None
    address = _address(host)
    if host in LOOPBACK_NAMES or (address is not None and address.is_loopback):
        return None
    problem = _address_problem(address) if address is not None else None
    if problem is not None:
        raise refused(endpoint, f"{host} is {problem}")
    if address is None and ("." not in host or host.endswith(LOCAL_SUFFIXES)):
        raise refused(endpoint, f"{host} is a local-network name")
    if parts.scheme != "https":
        raise refused(endpoint, "plain http is only for loopback hosts")
    return host if address is None else None


async def _resolve(host: str) -> list[str]:
    found = await asyncio.get_running_loop().getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in found]


Resolver = Callable[[str], Awaitable[list[str]]]
"""A host name -> its addresses (the system resolver unless another is given)."""


async def check_resolved(
    endpoint: str, settings: Settings, resolve: Resolver | None = None
) -> None:
    """`check_endpoint`, and then the addresses the host's name resolves to: a public-looking
    name that points at a private or metadata address is refused too. A name that does not
    resolve is left to fail when the provider is called."""
    host = check_endpoint(endpoint, settings)
    if host is None:
        return
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            found = await (resolve or _resolve)(host)
    except (OSError, TimeoutError):
        return
    for found_address in found:
        address = _address(found_address.split("%")[0])
        problem = None if address is None else _address_problem(address)
        if problem is not None:
            raise refused(endpoint, f"{host} resolves to {problem}")
