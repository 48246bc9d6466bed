"""Conversation memory survives a SIGKILL of the real service (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLE_REPO
from tests.service_process import start

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def ask(url: str, thread: str, question: str) -> dict:
    body = {
        "question": question,
        "threadId": thread,
        "config": {"provider": "local", "temperature": 0, "maxTokens": 24},
    }
    with httpx.stream("POST", f"{url}/ai/assist/stream", json=body, timeout=180) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    complete = json.loads(events[-2])
    assert complete["type"] == "complete"
    return complete


@pytest.mark.model
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_thread_survives_sigkill_and_restart(tmp_path: Path, store: str) -> None:
    env = {"CKS_REPO_PATH": str(SAMPLE_REPO), "CKS_LOCAL_TOOLS": "false"}  # memory, not tools
    if store == "postgres":
        env["CKS_DATABASE_URL"] = POSTGRES_URL
    thread = f"restart-{uuid.uuid4().hex[:8]}"
    first = start(tmp_path / "data", env=env)
    answer = ask(first.url, thread, "My name is Ada. Remember it.")
    first.process.send_signal(signal.SIGKILL)
    first.finish(timeout=10)

    second = start(tmp_path / "data", env=env)
    try:
        remembered = httpx.get(f"{second.url}/ai/threads/{thread}").json()["messages"]
        assert [(m["role"], m["content"]) for m in remembered] == [
            ("user", "My name is Ada. Remember it."),
            ("assistant", answer["fullContent"]),
        ]
        ask(second.url, thread, "What is my name?")
        after = httpx.get(f"{second.url}/ai/threads/{thread}").json()["messages"]
        assert [m["role"] for m in after] == ["user", "assistant", "user", "assistant"]
        assert after[2]["content"] == "What is my name?"
        assert httpx.delete(f"{second.url}/ai/threads/{thread}").status_code == 204
    finally:
        assert second.stop() == 0


@pytest.mark.model
def test_two_replicas_share_threads_through_postgres(tmp_path: Path) -> None:
    env = {
        "CKS_REPO_PATH": str(SAMPLE_REPO),
        "CKS_DATABASE_URL": POSTGRES_URL,
        "CKS_LOCAL_TOOLS": "false",  # memory, not tools
    }
    thread = f"replicas-{uuid.uuid4().hex[:8]}"
    a = start(tmp_path / "a", env=env)
    b = start(tmp_path / "b", env=env)
    try:
        first = ask(a.url, thread, "Remember the word kumquat.")
        seen_by_b = httpx.get(f"{b.url}/ai/threads/{thread}").json()["messages"]
        assert [(m["role"], m["content"]) for m in seen_by_b] == [
            ("user", "Remember the word kumquat."),
            ("assistant", first["fullContent"]),
        ]
        ask(b.url, thread, "Which word?")
        seen_by_a = httpx.get(f"{a.url}/ai/threads/{thread}").json()["messages"]
        assert [m["content"] for m in seen_by_a][2] == "Which word?"
        assert len(seen_by_a) == 4
        assert httpx.delete(f"{a.url}/ai/threads/{thread}").status_code == 204
        assert httpx.get(f"{b.url}/ai/threads/{thread}").status_code == 404
    finally:
        assert a.stop() == 0
        assert b.stop() == 0
