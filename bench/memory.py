"""Memory of the running service after first use: RSS at ready (the baseline, measured in the
same run), after the first index build, after N RAG queries, and a few seconds after the last.

Each configuration is a real `serve` process on a copy of the sample repository with a fresh
data dir and the shared models dir (so the ONNX export is cached, as on a user's second
start; `--fresh-export` empties a private cache first, to include the one-time export):

- `minilm` and `mpnet`: the packaged embeddings, the chat model a remote server (the fake
  OpenAI-protocol server of the tests, so only the service's own memory is measured);
- `embedded`: the default embedded chat model (Qwen2.5-Coder 0.5B) with MiniLM.

Target (issue 30): memory comes back once the work is done (no torch in the serving process)
and RAG queries do not make it grow.

    .venv/bin/python bench/memory.py [--queries 100] [--configs minilm,mpnet,embedded]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake model server lives with the tests

from tests.fake_providers import serve_fake_providers  # noqa: E402
from tests.service_process import read_line  # noqa: E402

QUESTIONS = [
    "Who owns the ledger service?",
    "How are budgets exported?",
    "What does FEAT-001 do?",
    "Which tasks belong to the passkey sign-in feature?",
    "What is the status of the CSV import?",
]
CONFIGS = ("minilm", "mpnet", "embedded")


def _environment(config: str, data_dir: Path, repo: Path, fake_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKS_")}
    env |= {"CKS_DATA_DIR": str(data_dir), "CKS_REPO_PATH": str(repo), "HF_HUB_OFFLINE": "1"}
    if config != "embedded":
        env |= {
            "CKS_PROVIDER": "openai",
            "CKS_MODEL": "agent",
            "CKS_BASE_URL": f"{fake_url}/v1",
            "CKS_API_KEY": "bench",
        }
    if config == "mpnet":
        env["CKS_EMBEDDINGS_MODEL"] = "all-mpnet-base-v2"
    return env


def _rss(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def measure(config: str, queries: int, cache: Path | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch, serve_fake_providers() as (fake_url, _):
        repo = Path(scratch) / "repo"
        shutil.copytree(ROOT / "examples" / "context-repo", repo)
        env = _environment(config, Path(scratch) / "data", repo, fake_url)
        if cache is not None:
            env["XDG_CACHE_HOME"] = str(cache)
        command = [sys.executable, "-m", "context_kit_service.cli", "serve", "--port", "0"]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        try:
            url = json.loads(read_line(process, 120))["url"]
            time.sleep(1.0)
            figures = {"ready": _rss(process.pid)}
            with httpx.Client(base_url=url, timeout=600) as client:
                started = time.perf_counter()
                built = client.post(
                    "/ai/tools/execute", json={"toolId": "pipeline.build-embeddings"}
                )
                assert built.json()["metadata"]["status"] == "completed", built.text
                figures["index_s"] = time.perf_counter() - started
                figures["after_index"] = _rss(process.pid)
                started = time.perf_counter()
                for number in range(queries):
                    body = {"query": QUESTIONS[number % len(QUESTIONS)], "topK": 5}
                    answer = client.post("/ai/rag/query", json=body)
                    assert answer.status_code == 200, answer.text
                figures["query_s"] = (time.perf_counter() - started) / max(queries, 1)
                figures["after_queries"] = _rss(process.pid)
            time.sleep(5.0)
            figures["idle"] = _rss(process.pid)
            return figures
        finally:
            process.terminate()
            process.communicate(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--fresh-export", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = {}
    for config in args.configs.split(","):
        cache = Path(tempfile.mkdtemp()) if args.fresh_export else None
        try:
            results[config] = measure(config, args.queries, cache)
        finally:
            if cache is not None:
                shutil.rmtree(cache, ignore_errors=True)
    print(
        f"| configuration | ready MB | after first index MB | after {args.queries} RAG "
        "queries MB | 5 s later MB | growth over ready | index build s | s per query |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for config, f in results.items():
        growth = f["idle"] / f["ready"]
        print(
            f"| {config} | {f['ready']:.0f} | {f['after_index']:.0f} | {f['after_queries']:.0f}"
            f" | {f['idle']:.0f} | {growth:.2f}x | {f['index_s']:.1f} | {f['query_s']:.2f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
