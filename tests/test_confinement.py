"""Hostile paths and repositories: all refused, and a planted secret never leaks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from langchain_core.tools import ToolException

from context_kit_service.server import create_app
from context_kit_service.tools.confinement import (
    ConfinementError,
    RepositoryRefused,
    resolve_repository,
)
from tests.conftest import SAMPLE_REPO
from tests.test_tools import call

SECRET = "TOP-SECRET-7f3a9"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    (base / "secret.txt").write_text(SECRET)
    repo = base / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    (repo / "docs" / "leak.md").symlink_to(base / "secret.txt")
    (repo / "linked").symlink_to(base, target_is_directory=True)
    (repo / "docs" / "inside-link.md").symlink_to(repo / "docs" / "glossary.md")
    os.mkfifo(repo / "fifo")
    (repo / "big.md").write_text("x" * 2_000_000)
    return repo


def hostile_paths(repo: Path) -> list[str]:
    outside = repo.parent / "secret.txt"
    return [
        "../secret.txt",
        "../../etc/passwd",
        "..%2fsecret.txt",
        "%2e%2e/secret.txt",
        "%2e%2e%2fsecret.txt",
        str(outside),
        "/etc/passwd",
        "//etc/passwd",
        "~/secret.txt",
        "~root/.bashrc",
        "docs/leak.md",
        "linked/secret.txt",
        "docs/../../secret.txt",
        "contexts/../../secret.txt",
        "./../secret.txt",
        "docs/./../../secret.txt",
        "docs/glossary.md\x00.txt",
        "a/" * 3000 + "x",
        "..\\secret.txt",
        "docs\\..\\..\\secret.txt",
        "C:\\secret.txt",
        "docs",
        "fifo",
        "big.md",
        "",
        "   ",
    ]


@pytest.mark.parametrize("index", range(26))
async def test_hostile_paths_are_refused(hostile: Path, make_settings, index: int) -> None:
    path = hostile_paths(hostile)[index]
    with pytest.raises(ToolException) as raised:
        await call("read_context", hostile, make_settings(), path=path)
    assert SECRET not in str(raised.value)
    assert isinstance(raised.value, ConfinementError)


async def test_each_refusal_says_why(hostile: Path, make_settings) -> None:
    reasons = []
    for path in hostile_paths(hostile):
        with pytest.raises(ConfinementError) as raised:
            await call("read_context", hostile, make_settings(), path=path)
        reasons.append(str(raised.value).split(":")[0])
    assert reasons == [
        "path may not contain '..'",
        "path may not contain '..'",
        "path contains URL-encoded characters",
        "path contains URL-encoded characters",
        "path contains URL-encoded characters",
        "path must be relative to the repository root",
        "path must be relative to the repository root",
        "path must be relative to the repository root",
        "path must be relative to the repository root",
        "path must be relative to the repository root",
        "path leads outside the repository",
        "path leads outside the repository",
        "path may not contain '..'",
        "path may not contain '..'",
        "path may not contain '..'",
        "path may not contain '..'",
        "path contains a NUL byte",
        "path is longer than 512 characters",
        "path contains a backslash; use forward slashes",
        "path contains a backslash; use forward slashes",
        "path contains a backslash; use forward slashes",
        "not a regular file",
        "not a regular file",
        "file is larger than 1000000 bytes",
        "path is empty",
        "path is empty",
    ]


async def test_a_symlink_inside_the_repository_is_fine(hostile: Path, make_settings) -> None:
    result = await call("read_context", hostile, make_settings(), path="docs/inside-link.md")
    assert result["contents"] == (SAMPLE_REPO / "docs/glossary.md").read_text()


def test_the_secret_never_appears_over_http(hostile: Path, make_settings) -> None:
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        for path in hostile_paths(hostile):
            for tool_id, params in [
                ("context.read", {"path": path}),
                ("context.read", {"entity_id": path}),
                ("context.search", {"query": path or "x"}),
            ]:
                response = client.post(
                    "/ai/tools/execute",
                    json={"toolId": tool_id, "parameters": params, "repoPath": str(hostile)},
                )
                assert response.status_code == 200
                assert SECRET not in response.text
        direct = client.post(
            "/ai/tools/execute",
            json={
                "toolId": "context.read",
                "parameters": {"path": "secret.txt"},
                "repoPath": str(hostile.parent),
            },
        )
        assert (direct.status_code, direct.json()["code"], direct.json()["message"]) == (
            400,  # a folder that is no context repository is refused, as on every route
            "NOT_A_CONTEXT_REPOSITORY",
            f"{hostile.parent} is not a context repository: it has no contexts or .context folder",
        )


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("relative/repo", "repository path must be absolute: relative/repo"),
        ("/definitely/not/here", "repository not found: /definitely/not/here"),
        ("/tmp\x00/x", "repository path contains a NUL byte"),
        (None, "no repository given: send repoPath or set CKS_REPO_PATH"),
    ],
)
def test_bad_repositories_are_refused(make_settings, requested: str | None, message: str) -> None:
    with pytest.raises(RepositoryRefused) as raised:
        resolve_repository(requested, make_settings())
    assert str(raised.value) == message


def test_the_allow_list_restricts_repositories(hostile: Path, make_settings) -> None:
    settings = make_settings(allowed_repos=[hostile])
    assert resolve_repository(str(hostile), settings) == hostile
    with pytest.raises(RepositoryRefused) as raised:
        resolve_repository(str(hostile.parent), settings)
    assert str(raised.value) == (
        f"repository {hostile.parent} is outside the allowed roots (CKS_ALLOWED_REPOS)"
    )
    linked = resolve_repository
    with pytest.raises(RepositoryRefused):
        linked(str(hostile / "linked"), settings)  # a symlink out of an allowed root


def test_the_default_repository_comes_from_settings(make_settings) -> None:
    assert resolve_repository("", make_settings(repo_path=SAMPLE_REPO)) == SAMPLE_REPO.resolve()
