from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from context_kit_service.settings import Settings, SettingsError, load_settings


def test_defaults_are_the_offline_loopback_service(make_settings) -> None:
    settings = make_settings()
    assert (settings.provider, settings.embeddings_provider) == ("local", "local")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.auth_token is None
    assert settings.cors_origins == []
    assert settings.temperature == 0.7


def test_environment_variables_use_the_cks_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKS_PROVIDER", "ollama")
    monkeypatch.setenv("CKS_TEMPERATURE", "0")
    monkeypatch.setenv("CKS_MAX_TOKENS", "64")
    monkeypatch.setenv("CKS_CORS_ORIGINS", '["http://localhost:5173"]')
    monkeypatch.setenv("CKS_BASE_URL", "http://127.0.0.1:11434/")
    settings = load_settings(_env_file=None)
    assert settings.provider == "ollama"
    assert settings.temperature == 0.0
    assert settings.max_tokens == 64
    assert settings.cors_origins == ["http://localhost:5173"]
    assert settings.base_url == "http://127.0.0.1:11434"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CKS_PROVIDER=openai\nCKS_AUTH_TOKEN=s3cret-long-enough-token\n")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.provider == "openai"
    assert settings.auth_token is not None
    assert settings.auth_token.get_secret_value() == "s3cret-long-enough-token"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CKS_TEMPERATURE", "3", "CKS_TEMPERATURE: Input should be less than or equal to 2"),
        ("CKS_PORT", "http", "CKS_PORT: Input should be a valid integer"),
        ("CKS_PROVIDER", "gpt", "CKS_PROVIDER: Input should be 'local', 'ollama', 'openai' or"),
        ("CKS_BASE_URL", "localhost:11434", "CKS_BASE_URL: Value error, must start with http://"),
        ("CKS_MAX_TOKENS", "0", "CKS_MAX_TOKENS: Input should be greater than 0"),
    ],
)
def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None)
    assert expected in str(raised.value)


def test_serve_fails_at_startup_naming_the_variable(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CKS_TEMPERATURE": "-1"}
    done = subprocess.run(
        [sys.executable, "-m", "context_kit_service.cli", "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "error: invalid configuration:\n"
        "  CKS_TEMPERATURE: Input should be greater than or equal to 0\n"
    )


def test_paths_are_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None, repo_path="repo", allowed_repos=["a", "~/b"])  # type: ignore[call-arg]
    assert settings.repo_path == tmp_path / "repo"
    assert settings.allowed_repos == [tmp_path / "a", Path.home() / "b"]


def test_the_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"`CKS_{n.upper()}`" not in readme]
    assert missing == []
