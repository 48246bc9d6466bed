"""Schema fuzzing of the whole OpenAPI document (`make fuzz`, and a bounded run in `make test`).

Starts the real service (`context-kit-service serve`) on a private copy of the sample
repository, answering with the fake OpenAI-compatible server's scripted models, then runs
schemathesis over every operation. Fails on any 5xx, any response that does not match its
documented schema or content type, and any undocumented status code.

    python -m tests.fuzz_service [--examples N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.conftest import SAMPLE_REPO
from tests.fake_providers import fake_service_env, serve_fake_providers
from tests.service_process import start

TOKEN = "fuzzing-token-0123456789"
RESULTS = Path(__file__).resolve().parents[1] / "test-results"
LOG = RESULTS / "fuzz-service.log"
"""The service's own log of the last run (JSON lines), kept for reading after a failure."""
JUNIT = RESULTS / "fuzz-junit.xml"
"""Schemathesis's report of the last run: each failing operation with its check and request."""
EVENTS = RESULTS / "fuzz-events.ndjson"
"""Every event of the last run (a scenario Hypothesis found flaky is reported as failed with
no check in the summary; its events are here)."""
HYPOTHESIS_CI_VARIABLES = ("CI", "TF_BUILD", "GITLAB_CI")
"""What `hypothesis._settings.is_in_ci` looks for."""
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def _outside_ci(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without the variables that load Hypothesis's `ci` profile.

    Under that profile schemathesis lets the profile's `suppress_health_check=[too_slow]`
    replace the `--suppress-health-check` given here, and the run fails on health checks
    that are limits of the generator, not answers of the service."""
    return {key: value for key, value in environ.items() if key not in HYPOTHESIS_CI_VARIABLES}


def fuzz(examples: int, seed: int, extra: list[str]) -> int:
    with (
        tempfile.TemporaryDirectory(prefix="cks-fuzz-") as folder,
        serve_fake_providers() as (
            fake_url,
            _,
        ),
    ):
        repo = Path(folder) / "repo"
        shutil.copytree(SAMPLE_REPO, repo)
        env = fake_service_env(
            fake_url,
            AUTH_TOKEN=TOKEN,
            REPO_PATH=str(repo),
            REQUEST_TIMEOUT_S="120",
            # A request that picks Ollama without an endpoint reaches the fake server too.
            OLLAMA_URL=fake_url,
            # A request may pick the embedded model: keep its answers short.
            MAX_TOKENS="16",
            MAX_TOKENS_LIMIT="32",
        )
        RESULTS.mkdir(exist_ok=True)
        service = start(Path(folder) / "data", env=env, timeout=60, log=LOG)
        try:
            command = [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{service.url}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                str(examples),
                "--seed",
                str(seed),
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--request-timeout",
                "30",
                "--no-color",
                "--generation-database",
                "none",
                # Generator limits on the deep LangServe schemas, not answers of the service.
                "--suppress-health-check",
                "filter_too_much,too_slow",
                # One worker: Hypothesis reads its strategies' lambdas with `ast`, which is not
                # thread-safe on Python 3.11 (CPython gh-106905: "AST constructor recursion
                # depth mismatch"). With two worker threads an operation now and then failed
                # while generating, with no request at fault, and was reported as flaky.
                "--workers",
                "1",
                "--report",
                "junit,ndjson",
                "--report-junit-path",
                str(JUNIT),
                "--report-ndjson-path",
                str(EVENTS),
                *extra,
            ]
            return subprocess.run(command, env=_outside_ci(os.environ), check=False).returncode
        finally:
            service.stop()


def failures() -> str:
    """What failed in the last run (from its event log), as text for an assertion message: each
    failed scenario with its failing checks, also those Hypothesis found flaky."""
    if not EVENTS.exists():
        return "no event log"
    found = []
    for line in EVENTS.read_text(encoding="utf-8").splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished or finished["status"] not in ("failure", "error"):
            continue
        recorder = finished["recorder"]
        checks = [
            f"{check.get('name')}: {str(check.get('failure_info') or check)[:1500]}"
            for group in (recorder.get("checks") or {}).values()
            for check in group
            if check.get("status") == "failure"
        ]
        found.append(f"{recorder['label']} ({finished['status']}): " + "; ".join(checks))
        if not checks:
            found.extend(_suspect_interactions(recorder))
    return "\n\n".join(found) or "none in the event log"


def _suspect_interactions(recorder: dict[str, Any]) -> list[str]:
    """For a scenario failed without a failing check (Hypothesis found it flaky: it failed
    once and passed when replayed), every request of it that got no answer, a 5xx, or took
    more than 10 s, with its case; else a tally of its answers."""
    interactions = recorder.get("interactions") or {}
    cases = recorder.get("cases") or {}
    suspects, tally = [], Counter[str]()
    for case_id, interaction in interactions.items():
        response = interaction.get("response") or {}
        status, elapsed = response.get("status_code"), response.get("elapsed") or 0.0
        tally[str(status)] += 1
        if status is None or status >= 500 or elapsed > 10:
            case = json.dumps((cases.get(case_id) or {}).get("value"))[:1500]
            suspects.append(f"  answer {status} after {elapsed:.1f} s to {case}")
    return suspects or [f"  answers: {dict(tally)}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50, help="examples per operation")
    parser.add_argument("--seed", type=int, default=1, help="hypothesis seed")
    args, extra = parser.parse_known_args()
    sys.exit(fuzz(args.examples, args.seed, extra))


if __name__ == "__main__":
    main()
