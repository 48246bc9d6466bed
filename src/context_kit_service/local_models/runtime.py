"""One loaded GGUF model (llama.cpp) per (file, context size), on its own worker thread."""

from __future__ import annotations

import ctypes
import functools
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from context_kit_service.local_models.chat_template import ChatTemplate
from context_kit_service.local_models.grammar import without_patterns
from context_kit_service.local_models.packaged import PACKAGED_MODELS, packaged_gguf
from context_kit_service.provider_errors import ProviderError


def gguf_path(model: str, models_dir: Path) -> Path:
    """The file for a `CKS_MODEL` value: a packaged model's name (assembled into `models_dir`
    and verified) or a GGUF path."""
    packaged = PACKAGED_MODELS.get(model)
    return packaged_gguf(packaged, models_dir) if packaged else Path(model)


@functools.cache
def _llama_class() -> Any:
    """llama-cpp-python's `Llama` with lean saved prompt states. Its own `save_state` copies
    the logits of up to a batch of prompt positions with each state (512 × the vocabulary:
    300 MB for Qwen2.5), outside the byte count the RAM cache keeps under its capacity, so
    every cached prompt held 300 MB more than counted (measured: RSS +300 MB per prompt) and
    saving took 0.4 s. They are never read: a resumed prompt decodes at least its last token
    again before sampling (`_requires_eval`), so a lean state has the KV cache and tokens only."""
    import llama_cpp
    from llama_cpp.llama import LlamaState

    class LeanStateLlama(llama_cpp.Llama):
        def save_state(self) -> LlamaState:
            size = llama_cpp.llama_state_get_size(self._ctx.ctx)
            buffer = (ctypes.c_uint8 * size)()
            used = int(llama_cpp.llama_state_get_data(self._ctx.ctx, buffer, size))
            return LlamaState(
                input_ids=self.input_ids.copy(),
                scores=self.scores[:0].copy(),
                n_tokens=self.n_tokens,
                llama_state=ctypes.string_at(buffer, used),
                llama_state_size=used,
                seed=self._seed,
            )

        def load_state(self, state: LlamaState) -> None:
            size = state.llama_state_size
            data = (ctypes.c_uint8 * size).from_buffer_copy(state.llama_state)
            if llama_cpp.llama_state_set_data(self._ctx.ctx, data, size) != size:
                raise RuntimeError("llama.cpp refused a saved prompt state")
            self.input_ids = state.input_ids.copy()
            self.n_tokens = state.n_tokens
            self._seed = state.seed
            self._requires_eval = True

    return LeanStateLlama


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclass
class LlamaRuntime:
    """One loaded GGUF model, its worker thread, and a cache of compiled grammars."""

    model_path: str
    """A packaged model's name or a GGUF path."""
    models_dir: Path
    n_ctx: int
    n_threads: int | None
    prefix_cache_mb: int = 0
    """Memory for prompt states saved after each completion: a prompt sharing a longer start
    with a saved state than with the one loaded resumes from it (llama-cpp-python's RAM cache)."""
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="llama")
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held for a whole generation: one at a time per loaded model."""
    _load_lock: threading.Lock = field(default_factory=threading.Lock)
    _llama: Any = None
    _grammars: dict[str, Any] = field(default_factory=dict)
    _template: ChatTemplate | bool | None = None
    """The model's chat template once read (False: it has none)."""

    def llama(self) -> Any:
        with self._load_lock:
            return self._llama or self._load()

    def _load(self) -> Any:
        path = gguf_path(self.model_path, self.models_dir)
        if not path.is_file():
            raise ProviderError(
                "MODEL_NOT_FOUND", f"GGUF model file not found: {self.model_path}", status=503
            )
        from llama_cpp.llama_cache import LlamaRAMCache

        self._llama = _llama_class()(
            model_path=str(path),
            n_ctx=self.n_ctx,
            n_threads=self.n_threads or os.cpu_count() or 1,
            verbose=False,
        )
        if self.prefix_cache_mb:
            self._llama.set_cache(LlamaRAMCache(capacity_bytes=self.prefix_cache_mb << 20))
        return self._llama

    def grammar(self, json_schema: dict[str, Any] | None = None, gbnf: str | None = None) -> Any:
        """The compiled grammar for a JSON schema or a GBNF text, cached. Properties keep the
        schema's order: the model writes them in that order (a tool's name before its
        arguments)."""
        from llama_cpp.llama_grammar import LlamaGrammar

        if gbnf is not None:
            key = gbnf
            if key not in self._grammars:
                self._grammars[key] = LlamaGrammar.from_string(gbnf, verbose=False)
        else:
            key = json.dumps(without_patterns(json_schema))
            if key not in self._grammars:
                self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def chat_template(self) -> ChatTemplate | None:
        """The GGUF's chat template, or None for a model without one (a base model)."""
        if self._template is None:
            self._template = self._read_template() or False
        return self._template if isinstance(self._template, ChatTemplate) else None

    def _read_template(self) -> ChatTemplate | None:
        llama = self.llama()
        source = llama.metadata.get("tokenizer.chat_template")
        if not source:
            return None

        def token(key: str) -> str:
            found = llama.metadata.get(key)
            return llama.detokenize([int(found)], special=True).decode() if found else ""

        return ChatTemplate(
            source, token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")
        )

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return list(self.llama().tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def count_tokens(self, text: str, *, add_bos: bool) -> int:
        return len(self.tokenize(text, add_bos=add_bos))

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str],
        json_schema: dict[str, Any] | None = None,
        gbnf: str | None = None,
        repeat_penalty: float = 1.0,
        cancel: threading.Event | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Completion:
        """Generate a completion, token by token; stops early when `cancel` is set."""
        with self.lock:
            llama = self.llama()
            prompt_tokens = self.count_tokens(prompt, add_bos=True)
            room = self.n_ctx - prompt_tokens
            if room <= 0:
                raise ProviderError(
                    "CONTEXT_LENGTH_EXCEEDED",
                    f"the prompt has {prompt_tokens} tokens; the local model's context window "
                    f"is {self.n_ctx}",
                    status=422,
                )
            chunks: list[str] = []
            finish_reason = "cancelled"
            if cancel is None or not cancel.is_set():
                stream = llama.create_completion(
                    prompt,
                    max_tokens=min(max_tokens, room),
                    temperature=temperature,
                    repeat_penalty=repeat_penalty,
                    stop=[] if json_schema else stop,
                    grammar=self.grammar(json_schema, gbnf) if json_schema or gbnf else None,
                    stream=True,
                )
                try:
                    for chunk in stream:
                        choice = chunk["choices"][0]
                        if choice["text"]:
                            chunks.append(choice["text"])
                            if on_token is not None:
                                on_token(choice["text"])
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
                        if cancel is not None and cancel.is_set():
                            finish_reason = "cancelled"
                            break
                finally:
                    stream.close()
            text = "".join(chunks)
            completion_tokens = self.count_tokens(text, add_bos=False) if text else 0
            return Completion(text, prompt_tokens, completion_tokens, finish_reason)


_runtimes: dict[tuple[str, Path, int, int | None, int], LlamaRuntime] = {}
_runtimes_lock = threading.Lock()


def get_runtime(
    model_path: str, models_dir: Path, n_ctx: int, n_threads: int | None, prefix_cache_mb: int = 0
) -> LlamaRuntime:
    key = (model_path, models_dir, n_ctx, n_threads, prefix_cache_mb)
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = LlamaRuntime(model_path, models_dir, n_ctx, n_threads, prefix_cache_mb)
        return _runtimes[key]
