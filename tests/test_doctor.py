from __future__ import annotations

import subprocess
from pathlib import Path

from tests.service_process import run_cli


def _doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp_path / "data", "doctor", cwd=tmp_path, timeout=60, **env)


def test_doctor_passes_on_the_embedded_default(tmp_path: Path) -> None:
    done = _doctor(tmp_path)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split(":")[0] for line in lines[1:-1]] == [
        "[ok  ] model",
        "[ok  ] embeddings",
        "[ok  ] index",
        "[ok  ] checkpointer",
        "[ok  ] repository",
    ]
    assert lines[-1] == "all good"


def test_doctor_says_what_is_missing_and_how_to_fix_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    done = _doctor(
        tmp_path,
        CKS_MODEL=str(missing),
        CKS_REPO_PATH=str(tmp_path / "no-repo"),
        CKS_DATABASE_URL="postgresql://127.0.0.1:1/none",
    )
    assert done.returncode == 1
    assert f"[FAIL] model: GGUF file not found (set CKS_MODEL) ({missing})" in done.stdout
    assert "[FAIL] checkpointer: PostgreSQL unreachable (OperationalError)" in done.stdout
    assert (
        f"[FAIL] repository: not a directory (CKS_REPO_PATH) ({tmp_path / 'no-repo'})"
        in done.stdout
    )
    assert done.stdout.splitlines()[-1] == "3 problem(s) found"


def test_doctor_finds_an_unpacked_packaged_embeddings_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "all-mpnet-base-v2").mkdir(parents=True)
    done = _doctor(tmp_path, CKS_EMBEDDINGS_MODEL="all-mpnet-base-v2", CKS_MODELS_DIR=str(models))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "[ok  ] embeddings: all-mpnet-base-v2 installed (loads on first use) "
        f"({models / 'all-mpnet-base-v2'})" in done.stdout
    )
