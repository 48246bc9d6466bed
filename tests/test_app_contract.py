"""The app's client contract (its Zod schemas, in `clients/js/test/contract.test.js`) against a
service started exactly as the app starts it: `python -m uvicorn context_kit_service.main:app`
from the repository root, no repository, no token, the provider in each request's `config`
pointing at the fake Ollama and Azure server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, SAMPLE_REPO
from tests.fake_providers import serve_fake_providers
from tests.test_app_launch import _free_port, _wait_healthy
from tests.test_js_client import run_node_tests


def test_the_apps_client_parses_every_answer(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKS_")}
    env |= {"CKS_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "uvicorn", "context_kit_service.main:app"]
    with serve_fake_providers() as (fake_url, _):
        with (tmp_path / "service.log").open("w") as log:
            process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            assert _wait_healthy(url, process).status_code == 200
            test_env = {"CKS_APP_URL": url, "CKS_FAKE_URL": fake_url, "CKS_APP_REPO": str(repo)}
            run_node_tests("test/contract.test.js", test_env)
        finally:
            process.terminate()
            process.wait(timeout=15)
