"""`LocalChatModel`: the LangChain chat model over the embedded llama.cpp runtime."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict

from context_kit_service.local_models.runtime import (
    Completion,
    LlamaRuntime,
    get_runtime,
)
from context_kit_service.local_models.transcript import (
    TRANSCRIPT_STOP,
    AnswerStream,
    format_transcript,
    parse_tool_reply,
    tool_reply_schema,
)


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
