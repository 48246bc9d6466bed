"""Cross-site defences of a service with no token (the desktop app's launch) and token rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from context_kit_service.server import create_app
from context_kit_service.settings import SettingsError, load_settings
from tests.conftest import SAMPLE_REPO
from tests.fakes import replies

TOKEN = "a-token-of-24-characters"
READ = {"toolId": "context.read", "parameters": {"path": "docs/glossary.md"}}


def client(make_settings, base_url: str = "http://127.0.0.1:8000", **overrides) -> TestClient:
    overrides.setdefault("allowed_hosts", [])
    return TestClient(create_app(make_settings(**overrides)), base_url=base_url)


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST", "127.0.0.1"]
)
def test_loopback_hosts_are_answered(make_settings, host: str) -> None:
    with client(make_settings) as http:
        assert http.get("/ready", headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "10.0.0.5:8000", ""]
)
def test_other_hosts_are_refused_as_dns_rebinding(make_settings, host: str) -> None:
    with client(make_settings) as http:
        response = http.get("/health", headers={"host": host})
    assert response.status_code == 421
    assert response.json()["code"] == "HOST_NOT_ALLOWED"
    assert "CKS_ALLOWED_HOSTS" in response.json()["message"]


def test_a_configured_host_is_answered(make_settings) -> None:
    with client(make_settings, allowed_hosts=["sidecar.internal"]) as http:
        assert http.get("/ready", headers={"host": "sidecar.internal:8000"}).status_code == 200
        assert http.get("/ready", headers={"host": "other.internal"}).status_code == 421


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
@pytest.mark.parametrize("path", ["/ai/tools/execute", "/graphs/tools/invoke", "/graphs/rag/batch"])
def test_posts_without_a_json_body_type_are_refused(
    make_settings, sample_copy: Path, content_type: str | None, path: str
) -> None:
    """A cross-site form or a `text/plain` fetch needs no preflight: refuse it before it runs."""
    body = b'{"input": {"tool_id": "context.read", "parameters": {"path": "docs/glossary.md"}}}'
    headers = {"content-type": content_type} if content_type else {}
    with client(make_settings) as http:
        response = http.post(path, content=body, headers=headers)
    assert response.status_code == 415
    assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_json_posts_with_a_charset_are_served(make_settings) -> None:
    body = {**READ, "repoPath": str(SAMPLE_REPO)}
    with client(make_settings) as http:
        response = http.post(
            "/ai/tools/execute",
            json=body,
            headers={"content-type": "application/json; charset=utf-8"},
        )
    assert response.status_code == 200
    assert response.json()["result"]["path"] == "docs/glossary.md"


def test_options_needs_the_token_too(make_settings) -> None:
    with client(make_settings, auth_token=TOKEN) as http:
        anonymous = http.options("/ai/tools/execute")
        authed = http.options("/ai/tools/execute", headers={"Authorization": f"Bearer {TOKEN}"})
    assert anonymous.status_code == 401
    assert authed.status_code == 405


def test_only_a_configured_origin_gets_a_preflight_without_the_token(make_settings) -> None:
    preflight = {"access-control-request-method": "POST"}
    with client(make_settings, auth_token=TOKEN, cors_origins=["app://context-kit"]) as http:
        allowed = http.options(
            "/ai/tools/execute", headers={**preflight, "origin": "app://context-kit"}
        )
        other = http.options("/ai/tools/execute", headers={**preflight, "origin": "https://evil"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "app://context-kit"
    assert other.status_code == 401


@pytest.mark.parametrize(
    "token", [" ", "   \t ", "short-token", "fifteen-chars-x", " padded-token-of-20 "]
)
def test_weak_tokens_stop_startup_with_a_clear_message(tmp_path: Path, token: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None, auth_token=token, data_dir=tmp_path)
    assert "CKS_AUTH_TOKEN: Value error, must be at least 16 characters with no blanks" in str(
        raised.value
    )


def test_a_sixteen_character_token_is_accepted(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, auth_token="sixteen-chars-ok", data_dir=tmp_path)
    assert settings.auth_token is not None


@pytest.mark.parametrize(
    ("repo_path", "code", "message"),
    [
        (
            "/etc",
            "NOT_A_CONTEXT_REPOSITORY",
            "/etc is not a context repository: it has no contexts or .context folder",
        ),
        (
            "/",
            "NOT_A_CONTEXT_REPOSITORY",
            "/ is not a context repository: it has no contexts or .context folder",
        ),
        ("/nonexistent/repo", "REPOSITORY_NOT_FOUND", "repository not found: /nonexistent/repo"),
        ("relative/repo", "REPOSITORY_REFUSED", "repository path must be absolute: relative/repo"),
    ],
)
def test_without_a_token_only_a_context_repository_is_served(
    make_settings, repo_path: str, code: str, message: str
) -> None:
    """`/etc` is not a repository: `/etc/passwd` cannot be read by naming it one."""
    body = {"toolId": "context.read", "parameters": {"path": "passwd"}, "repoPath": repo_path}
    with client(make_settings) as http:
        response = http.post("/ai/tools/execute", json=body)
    assert (response.status_code, response.json()["code"]) == (400, code)
    assert response.json()["message"] == message
    assert "root:" not in response.text


def test_a_home_folder_is_not_a_repository_but_any_context_repository_is(
    make_settings, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    (home / "notes" / "diary.md").write_text("private")
    repo = tmp_path / "project"
    (repo / ".context").mkdir(parents=True)
    (repo / "README.md").write_text("# Project\n")
    with client(make_settings) as http:
        refused = http.post(
            "/ai/tools/execute",
            json={
                "toolId": "context.read",
                "parameters": {"path": "notes/diary.md"},
                "repoPath": str(home),
            },
        )
        served = http.post(
            "/ai/tools/execute",
            json={
                "toolId": "context.read",
                "parameters": {"path": "README.md"},
                "repoPath": str(repo),
            },
        )
    assert "is not a context repository" in refused.json()["message"]
    assert served.json()["result"] == {
        "path": "README.md",
        "contents": "# Project\n",
        "encoding": "utf-8",
    }


def test_allowed_repos_restricts_further(make_settings, sample_copy: Path) -> None:
    with client(make_settings, allowed_repos=[str(sample_copy)]) as http:
        inside = http.post("/ai/tools/execute", json={**READ, "repoPath": str(sample_copy)})
        outside = http.post("/ai/tools/execute", json={**READ, "repoPath": str(SAMPLE_REPO)})
    assert inside.json()["result"]["path"] == "docs/glossary.md"
    assert outside.json()["message"] == (
        f"repository {SAMPLE_REPO} is outside the allowed roots (CKS_ALLOWED_REPOS)"
    )


@pytest.mark.parametrize("max_tokens", [0, -1, 4097, 10**9])
def test_max_tokens_out_of_bounds_is_a_422_on_langserve(make_settings, max_tokens: int) -> None:
    """`max_tokens: 0` used to mean unlimited generation; now it never reaches a model."""
    config = {"configurable": {"max_tokens": max_tokens}}
    payload = {"messages": [{"type": "human", "content": "hi"}], "repo_path": str(SAMPLE_REPO)}
    app = create_app(make_settings(), chat_model=replies("never asked"))
    with TestClient(app) as http:
        response = http.post("/graphs/assistant/invoke", json={"input": payload, "config": config})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "INVALID_CONFIG"
    assert response.json()["message"] == (
        "max_tokens must be between 1 and 4096 (CKS_MAX_TOKENS_LIMIT)"
    )


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (
            1e20,
            "argument 'limit': Unable to parse input string as an integer, exceeded maximum size",
        ),
        (0, "argument 'limit': Input should be greater than or equal to 1"),
        (51, "argument 'limit': Input should be less than or equal to 50"),
    ],
)
def test_tool_limits_out_of_range_are_clear_errors(
    make_settings, limit: float, message: str
) -> None:
    parameters = {"query": "passkey", "limit": limit}
    body = {"toolId": "context.search", "parameters": parameters, "repoPath": str(SAMPLE_REPO)}
    with client(make_settings) as http:
        response = http.post("/ai/tools/execute", json=body)
    assert response.status_code == 200
    assert response.json()["error"] == message


@pytest.mark.parametrize("path", ["/ai/tools/execute", "/graphs/tools/invoke"])
def test_integers_past_64_bits_are_a_422(make_settings, path: str) -> None:
    parameters = {"query": "passkey", "limit": 10**30}
    if path == "/ai/tools/execute":
        body: dict[str, object] = {"toolId": "context.search", "parameters": parameters}
    else:
        body = {"input": {"tool_id": "context.search", "parameters": parameters}}
    with client(make_settings, repo_path=SAMPLE_REPO) as http:
        response = http.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert "an integer outside the 64-bit range" in response.json()["message"]
