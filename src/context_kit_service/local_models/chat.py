"""`LocalChatModel`: the LangChain chat model over the embedded llama.cpp runtime."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
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

from context_kit_service.local_models.chat_template import (
    TemplateAnswerStream,
    parse_template_reply,
    tool_call_grammar,
)
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


def _plain_reply(text: str) -> AIMessage:
    return AIMessage(text.strip())


@dataclass
class Turn:
    """One generation: the prompt, how decoding is constrained, and how the text is read back."""

    prompt: str
    options: dict[str, Any]
    """`LlamaRuntime.complete`'s keyword arguments."""
    parse: Callable[[str], AIMessage]
    answer: Callable[[], AnswerStream | TemplateAnswerStream] | None
    """With tools bound: what picks the answer's text out of the streamed reply."""


def _usage(completion: Completion) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=completion.prompt_tokens,
        output_tokens=completion.completion_tokens,
        total_tokens=completion.prompt_tokens + completion.completion_tokens,
    )


class LocalChatModel(BaseChatModel):
    """A chat model over an in-process GGUF (llama.cpp), suited to base and instruct models.

    `json_schema=` (via `bind` or `with_structured_output`) constrains decoding to the schema,
    `gbnf=` (via `bind`) to a llama.cpp grammar. `continue_final_message=True` (via `bind`)
    continues a final assistant message instead of starting a new turn.
    """

    model_path: str
    """A packaged model's name (`PACKAGED_MODELS`) or a GGUF path."""
    models_dir: Path
    """Where a packaged model is assembled (`CKS_MODELS_DIR`)."""
    temperature: float = 0.7
    max_tokens: int = 512
    n_ctx: int = 4096
    n_threads: int | None = None
    prefix_cache_mb: int = 256
    """Memory for saved prompt states, resumed by a later prompt with the same start (0: off)."""
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
        return get_runtime(
            self.model_path, self.models_dir, self.n_ctx, self.n_threads, self.prefix_cache_mb
        )

    def follows_tool_template(self) -> bool:
        """Whether the model is an instruct model whose chat template writes native tool calls
        (loads the model)."""
        template = self.runtime.chat_template()
        return template is not None and template.native_tools

    def _turn(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Turn:
        """The model's own chat template when its GGUF has one (native tool calls when the
        template writes them), else the base-model transcript. Loads the model."""
        tools: list[dict[str, Any]] = kwargs.get("tools") or []
        json_schema = kwargs.get("json_schema")
        options = {
            "max_tokens": int(kwargs.get("max_tokens", self.max_tokens)),
            "temperature": float(kwargs.get("temperature", self.temperature)),
            "repeat_penalty": float(kwargs.get("repeat_penalty", self.repeat_penalty)),
            "json_schema": json_schema,
            "gbnf": kwargs.get("gbnf"),
        }
        calls = bool(tools) and json_schema is None
        started = ""
        if kwargs.get("continue_final_message") and isinstance(messages[-1], AIMessage):
            messages, started = messages[:-1], messages[-1].text
        template = self.runtime.chat_template()
        if template is not None and (not tools or template.native_tools):
            if calls:
                options["gbnf"] = tool_call_grammar(tools, kwargs.get("tool_choice"))
            return Turn(
                template.render(messages, tools) + started,
                options | {"stop": stop or self.stop or template.stop},
                parse_template_reply if calls else _plain_reply,
                TemplateAnswerStream if calls else None,
            )
        if calls:
            options["json_schema"] = tool_reply_schema(tools, kwargs.get("tool_choice"))
        return Turn(
            format_transcript(messages, tools) + (" " + started if started else ""),
            options | {"stop": stop or self.stop or TRANSCRIPT_STOP},
            parse_tool_reply if calls else _plain_reply,
            AnswerStream if calls else None,
        )

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Tokens of the prompt these messages (and tools) become, by the model's tokenizer."""
        openai_tools = [convert_to_openai_tool(t) for t in tools] if tools else None
        prompt = self._turn(messages, None, {"tools": openai_tools}).prompt
        return self.runtime.count_tokens(prompt, add_bos=True)

    def get_token_ids(self, text: str) -> list[int]:
        """The model's own tokenizer (LangChain's default would download GPT-2's). Tokenizing
        reads only the vocabulary, so it does not wait for a generation in progress."""
        return self.runtime.tokenize(text, add_bos=False)

    @staticmethod
    def _result(completion: Completion, turn: Turn) -> ChatResult:
        """The completion as a message: its text, or with tools bound, the parsed reply."""
        message = turn.parse(completion.text)
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
        turn = self._turn(messages, stop, kwargs)
        return self._result(self.runtime.complete(turn.prompt, **turn.options), turn)

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

        def emit(kind: str, payload: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))

        def work() -> None:
            try:
                turn = self._turn(messages, stop, kwargs)  # may load the model: off the loop
                answer = turn.answer() if turn.answer else None

                def on_token(token: str) -> None:
                    emit("token", answer.feed(token) if answer else token)

                completion = runtime.complete(
                    turn.prompt, cancel=cancel, on_token=on_token, **turn.options
                )
                emit("done", (completion, turn.parse(completion.text) if answer else None))
            except BaseException as exc:
                emit("error", exc)

        job = loop.run_in_executor(runtime.executor, work)
        try:
            first = True
            while True:
                kind, payload = await queue.get()
                if kind == "token":
                    text = payload.lstrip() if first else payload
                    if not text:
                        continue
                    first = False
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(text)
                    yield ChatGenerationChunk(message=AIMessageChunk(content=text))
                elif kind == "done":
                    completion, reply = payload
                    yield ChatGenerationChunk(
                        message=AIMessageChunk(
                            content="",
                            tool_call_chunks=_call_chunks(reply) if reply else [],
                            usage_metadata=_usage(completion),
                            response_metadata={
                                "finish_reason": completion.finish_reason,
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
        """Offer `tools`: in the chat template's own tool format (or, for a base model,
        described in the transcript), with decoding constrained to an answer or one
        well-formed call of a bound tool (`tool_call_grammar`, `tool_reply_schema`)."""
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
