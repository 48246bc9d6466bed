"""The HTTP foundation in-process: health, error bodies, request ids, size cap, CORS, auth."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from context_kit_service import __version__
from context_kit_service.server import create_app
from context_kit_service.server.health import CheckResult, HealthChecker
from context_kit_service.server.served import SPECS
from context_kit_service.settings import Settings


def _checks(**statuses: str) -> dict[str, Callable[[Settings], CheckResult]]:
    return {
        name: (lambda _s, status=status, name=name: CheckResult(status, f"{name} is {status}"))  # type: ignore[misc]
        for name, status in statuses.items()
    }


def _no_nulls(value: object) -> bool:
    if isinstance(value, dict):
        return all(v is not None and _no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_nulls(v) for v in value)
    return value is not None


def test_health_reports_real_checks_in_camel_case(make_settings) -> None:
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        response = client.get("/health")
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {
        "status",
        "version",
        "uptimeSeconds",
        "timestamp",
        "dependencies",
        "dependencyDetails",
    }
    assert body["status"] == "healthy"
    assert body["version"] == __version__
    assert 0 <= body["uptimeSeconds"] < 60
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["timestamp"])
    assert body["dependencies"] == {  # strings: the app's client refuses anything else
        "model": "available",
        "embeddings": "available",
        "index": "available",
        "checkpointer": "available",
        "repository": "available",
    }
    assert {name: dep["status"] for name, dep in body["dependencyDetails"].items()} == {
        "model": "healthy",
        "embeddings": "healthy",
        "index": "healthy",
        "checkpointer": "healthy",
        "repository": "healthy",
    }
    assert body["dependencyDetails"]["checkpointer"]["detail"] == "SQLite checkpointer"
    assert _no_nulls(body)


def test_health_names_no_path_unless_an_operator_asks(make_settings) -> None:
    """Paths of the machine (data dir, models, virtualenv) are for the token holder or with
    CKS_HEALTH_DETAILS; an open /health names none."""
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        open_body = client.get("/health").text
    assert str(settings.data_dir) not in open_body
    assert "/.venv/" not in open_body
    assert str(settings.local_models_dir) not in open_body
    detailed = make_settings(health_details=True)
    with TestClient(create_app(detailed)) as client:
        details = client.get("/health").json()["dependencyDetails"]
    assert details["checkpointer"]["detail"] == f"SQLite checkpointer ({detailed.sqlite_path})"


def test_a_missing_model_makes_the_service_unhealthy(make_settings, tmp_path) -> None:
    settings = make_settings(model=str(tmp_path / "missing.gguf"))
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        ready = client.get("/ready")
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy"
    assert health.json()["dependencies"]["model"] == "unavailable"
    assert health.json()["dependencyDetails"]["model"] == {
        "status": "unhealthy",
        "detail": "GGUF file not found (set CKS_MODEL)",  # no path of the machine
    }
    assert (ready.status_code, ready.json()) == (503, {"ready": False, "status": "unhealthy"})


def test_an_unreachable_checkpointer_degrades_the_service(make_settings) -> None:
    settings = make_settings()
    checker = HealthChecker(
        settings, _checks(model="healthy", embeddings="healthy", checkpointer="unhealthy")
    )
    with TestClient(create_app(settings, health=checker)) as client:
        health = client.get("/health")
        ready = client.get("/ready")
    assert (health.status_code, health.json()["status"]) == (200, "degraded")
    assert health.json()["dependencies"]["checkpointer"] == "unavailable"
    assert (ready.status_code, ready.json()) == (200, {"ready": True, "status": "degraded"})


def test_unknown_route_gets_the_contract_error_body(make_settings) -> None:
    with TestClient(create_app(make_settings())) as client:
        response = client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": "Not Found",
        "message": "Not Found",
        "type": "client_error",
        "code": "NOT_FOUND",
    }


def test_unexpected_errors_leak_nothing(make_settings) -> None:
    app = create_app(make_settings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail /home/user/.ssh/id_rsa")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-1"
    assert response.json() == {
        "error": "Internal Server Error",
        "message": "internal error; the service log has the details under request id boom-1",
        "type": "server_error",
        "code": "INTERNAL_ERROR",
    }


def test_request_id_is_echoed_or_generated(make_settings) -> None:
    with TestClient(create_app(make_settings())) as client:
        given = client.get("/health", headers={"X-Request-ID": "req-123"})
        generated = client.get("/health")
        hostile = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert given.headers["x-request-id"] == "req-123"
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])


def test_request_body_size_is_capped(make_settings) -> None:
    app = create_app(make_settings(max_request_bytes=100))

    @app.post("/echo")
    async def echo(payload: dict[str, str]) -> dict[str, str]:
        return payload

    with TestClient(app) as client:
        small = client.post("/echo", json={"a": "b"})
        declared = client.post("/echo", json={"a": "x" * 200})
        streamed = client.post(
            "/echo",
            content=iter([b'{"a": "', b"x" * 200, b'"}']),
            headers={"content-type": "application/json"},
        )
    assert (small.status_code, small.json()) == (200, {"a": "b"})
    expected = {
        "error": "Request Entity Too Large",
        "message": "request body larger than 100 bytes (CKS_MAX_REQUEST_BYTES)",
        "type": "client_error",
        "code": "PAYLOAD_TOO_LARGE",
    }
    assert (declared.status_code, declared.json()) == (413, expected)
    assert (streamed.status_code, streamed.json()) == (413, expected)


def test_no_cors_unless_configured(make_settings) -> None:
    origin = {"Origin": "http://evil.example"}
    with TestClient(create_app(make_settings())) as client:
        assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    allowed = make_settings(cors_origins=["http://localhost:5173"])
    with TestClient(create_app(allowed)) as client:
        ok = client.get("/health", headers={"Origin": "http://localhost:5173"})
        other = client.get("/health", headers=origin)
    assert ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "access-control-allow-origin" not in other.headers


TOKEN = "t0ken-with-some-length-1234567890"


DOC_ROUTES = [
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/docs/assets/swagger-ui-bundle.js"),
]


def _route_calls(app: FastAPI) -> list[tuple[str, str]]:
    """Every route of the app: those in its OpenAPI document, the docs, and an unknown path."""
    playgrounds = [("GET", f"{graph.path}/playground/") for graph in SPECS]
    calls = [("GET", "/openapi.json"), *DOC_ROUTES, *playgrounds, ("GET", "/no-such-route")]
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        calls += [(method.upper(), concrete) for method in operations]
    return calls


@pytest.fixture
def authed_app(make_settings) -> FastAPI:
    return create_app(make_settings(auth_token=TOKEN))


def test_every_route_requires_the_token(authed_app: FastAPI) -> None:
    calls = _route_calls(authed_app)
    assert {
        ("GET", "/health"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("POST", "/ai/tools/execute"),
        ("POST", "/graphs/tools/invoke"),
        ("POST", "/graphs/tools/stream_events"),
        ("GET", "/graphs/tools/playground/"),
    } <= set(calls)
    with TestClient(authed_app) as client:
        for method, path in calls:
            response = client.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.json()["code"] == "UNAUTHORIZED"
            assert response.headers["www-authenticate"] == "Bearer"


def test_the_right_token_opens_every_route(authed_app: FastAPI) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    calls = _route_calls(authed_app)
    with TestClient(authed_app) as client:
        for method, path in calls:
            status = client.request(method, path, headers=headers, json={}).status_code
            assert status != 401, (method, path)
            templated = "/x/" in f"{path}/"  # a path parameter: any answer but 401 will do
            if method == "GET" and not templated and path != "/no-such-route":
                assert status == 200, (method, path)


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN[:-1]}X",  # same length, one character off
        f"bearer {TOKEN}",
        TOKEN,
        f"Bearer {TOKEN} ",
        "Bearer ",
    ],
)
def test_wrong_tokens_are_refused(authed_app: FastAPI, header: str) -> None:
    with TestClient(authed_app) as client:
        assert client.get("/health", headers={"Authorization": header}).status_code == 401


def test_the_docs_load_nothing_from_outside(make_settings) -> None:
    with TestClient(create_app(make_settings())) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        urls = re.findall(r"url: '([^']+)'", page.text)
        assert sorted(sources + urls) == [
            "/docs/assets/favicon-32x32.png",
            "/docs/assets/swagger-ui-bundle.js",
            "/docs/assets/swagger-ui.css",
            "/openapi.json",
        ]
        assert "https://" not in page.text
        for asset in sources:
            response = client.get(asset)
            assert response.status_code == 200, asset
            assert len(response.content) > 1000, asset
        assert client.get("/redoc").status_code == 404
