"""Scripted chat models: the only fakes, at the model boundary."""

from __future__ import annotations

import itertools
import json
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import JsonOutputParser
from langchain_core.outputs import ChatGenerationChunk
from pydantic import Field

from context_kit_service.local_models import structured


class ScriptedChatModel(GenericFakeChatModel):
    """Replies from a script, records every prompt, and parses JSON for structured output."""

    prompts: list[Any] = Field(default_factory=list)

    def _generate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        self.prompts.append(messages)
        return super()._generate(messages, *args, **kwargs)

    def _stream(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        """Tool-call replies arrive as one chunk; text replies word by word."""
        message = next(self.messages)
        if isinstance(message, AIMessage) and message.tool_calls:
            self.prompts.append(messages)
            chunks = [
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(message.tool_calls)
            ]
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=chunks))
            return
        self.messages = itertools.chain([message], self.messages)
        yield from super()._stream(messages, *args, **kwargs)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self

    def with_structured_output(
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Any:  # type: ignore[override]
        return structured(self, JsonOutputParser(), include_raw=include_raw)


def replies(
    *items: dict[str, Any] | str, input_tokens: int = 100, output_tokens: int = 20
) -> ScriptedChatModel:
    """A model answering each call with the next item (dicts as JSON), with usage data."""
    messages = [
        AIMessage(
            content=json.dumps(item) if isinstance(item, dict) else item,
            usage_metadata={
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
        )
        for item in items
    ]
    return ScriptedChatModel(messages=iter(messages))
