"""Shared fixtures. Every test runs with no ambient `CKS_*` variables and its own data dir."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from context_kit_service.settings import Settings, default_models_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MODELS = default_models_dir()
"""Where tests assemble the packaged models (`CKS_MODELS_DIR`): once per machine, not per test."""


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("CKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CKS_MODELS_DIR", str(SHARED_MODELS))
    return


SAMPLE_REPO = REPO_ROOT / "examples" / "context-repo"


@pytest.fixture(scope="session")
def sample_indexes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir's `indexes` folder holding the sample repository's index under the default
    embeddings, built once per session by the service's own sync."""
    from context_kit_service.retrieval.search import repository_index

    data_dir = tmp_path_factory.mktemp("sample-index")
    index, _ = repository_index(Settings(_env_file=None, data_dir=data_dir), SAMPLE_REPO)  # type: ignore[call-arg]
    index.sync()
    return data_dir / "indexes"


@pytest.fixture
def make_settings(tmp_path: Path, sample_indexes: Path) -> Callable[..., Settings]:
    """Settings that read no `.env` file, with a data dir under the test's tmp_path; the
    TestClient's `testserver` host is allowed (cross-site tests build their own settings).
    The data dir starts with the sample repository's index (as after a first start), so a
    test does not spend seconds embedding it again."""

    def build(**overrides: Any) -> Settings:
        data_dir = overrides.setdefault("data_dir", tmp_path / "data")
        if data_dir == tmp_path / "data" and not (data_dir / "indexes").exists():
            shutil.copytree(sample_indexes, data_dir / "indexes")
        overrides.setdefault("allowed_hosts", ["testserver"])
        return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]

    return build


BROKEN_REPO = REPO_ROOT / "tests" / "fixtures" / "broken-repo"


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A private, writable copy of the sample repository."""
    import shutil

    target = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, target)
    return target


@dataclass(frozen=True)
class AgentService:
    url: str
    token: str
    provider_url: str
    """The fake OpenAI-compatible server the service answers with."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def agent_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentService]:
    """The real service in its own process, with an auth token, answering with the fake
    OpenAI-compatible server's deterministic `agent` model (`tests/fake_providers.py`)."""
    from tests.fake_providers import serve_fake_providers
    from tests.service_process import start

    token = "e2e-token-0123456789"
    with serve_fake_providers() as (fake_url, _):
        env = {
            "CKS_PROVIDER": "openai",
            "CKS_MODEL": "agent",
            "CKS_BASE_URL": f"{fake_url}/v1",
            "CKS_API_KEY": "test-key",
            "CKS_AUTH_TOKEN": token,
            "CKS_REPO_PATH": str(SAMPLE_REPO),
        }
        service = start(tmp_path_factory.mktemp("agent-service") / "data", env=env, timeout=60)
        try:
            yield AgentService(service.url, token, f"{fake_url}/v1")
        finally:
            service.stop()
