"""llama.cpp build flags: prompt processing and generation speed of the installed
llama-cpp-python against another build of it, on the default embedded model, in one run.

Build the candidate into a folder of its own, then point this script at it:

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON" .venv/bin/python -m pip install \\
        --no-deps --no-binary llama-cpp-python --target /tmp/avx512 llama-cpp-python==0.3.36
    .venv/bin/python bench/build_flags.py --candidate /tmp/avx512

Each build runs in its own process (rounds alternate between them, so both see the same
machine); a build whose instructions this CPU lacks dies with SIGILL, which is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

MEASURE = """
import json, sys, time
import llama_cpp
path, threads, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = llama_cpp.Llama(path, n_ctx=2048, n_threads=threads, n_batch=512, verbose=False)
words = "The service indexes the repository and answers questions about its entities. "
prompt = llm.tokenize((words * 64).encode())[:tokens]
rates = []
for _ in range(3):
    llm.reset()
    started = time.perf_counter()
    llm.eval(prompt)
    rates.append(len(prompt) / (time.perf_counter() - started))
started, made = time.perf_counter(), 0
for token in llm.generate(prompt[:32], temp=0.0, reset=True):
    made += 1
    if made == 64:
        break
generation = made / (time.perf_counter() - started)
print(json.dumps({"prompt": max(rates), "generation": generation,
                  "system": llama_cpp.llama_print_system_info().decode()}))
"""


def measure(site: Path | None, model: Path, threads: int, tokens: int) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(model), str(threads), str(tokens)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if done.returncode < 0:
        return {"crashed": signal.Signals(-done.returncode).name}
    if done.returncode != 0:
        return {"crashed": done.stderr.strip().splitlines()[-1]}
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def flags(system: str) -> str:
    wanted = ("AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8")
    found = {p.split("=")[0].strip(): p.split("=")[-1].strip() for p in system.split("|")}
    return " ".join(f for f in wanted if found.get(f) == "1") or "-"


def main() -> None:
    from context_kit_service.local_models.packaged import (
        DEFAULT_LOCAL_MODEL,
        PACKAGED_MODELS,
        packaged_gguf,
    )
    from context_kit_service.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", type=Path, required=True, help="folder holding a build")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=400, help="prompt tokens per measurement")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    model = packaged_gguf(PACKAGED_MODELS[DEFAULT_LOCAL_MODEL], load_settings().local_models_dir)
    builds: dict[str, Path | None] = {"installed": None, "candidate": args.candidate}
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in builds}
    for _ in range(args.rounds):
        for name, site in builds.items():
            runs[name].append(measure(site, model, args.threads, args.tokens))
    print(
        f"{DEFAULT_LOCAL_MODEL}, {args.tokens}-token prompt, {args.threads} threads, "
        f"{args.rounds} rounds (best of 3 per round, median of rounds)"
    )
    print("| build | CPU features used | prompt tok/s | generation tok/s |")
    print("|---|---|---|---|")
    medians: dict[str, float] = {}
    for name, results in runs.items():
        crashed = [r["crashed"] for r in results if "crashed" in r]
        if crashed:
            print(f"| {name} | - | crashed ({crashed[0]}) | - |")
            continue
        prompt = statistics.median(float(r["prompt"]) for r in results)  # type: ignore[arg-type]
        generation = statistics.median(float(r["generation"]) for r in results)  # type: ignore[arg-type]
        medians[name] = prompt
        print(f"| {name} | {flags(str(results[0]['system']))} | {prompt:.0f} | {generation:.1f} |")
    if len(medians) == 2:
        ratio = medians["candidate"] / medians["installed"]
        print(f"candidate / installed, prompt processing: {ratio:.2f}x")


if __name__ == "__main__":
    main()
