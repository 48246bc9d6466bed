"""Prompting an instruct GGUF by its own chat template, with native tool calls.

The template is the one in the GGUF's metadata (`tokenizer.chat_template`), rendered by
llama-cpp-python's sandboxed Jinja formatter; its end-of-turn token is the stop. Templates in
the Hermes/Qwen convention take the tools' JSON schemas and expect a call written as
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`: decoding is then constrained by
a grammar to either such a call of a bound tool (also accepted in a ```json fence, the form
small models fall back to), with arguments that fit its parameters, or an answer (text that
does not start with `<`, `>`, `{`, a backquote or a space), so every call parses and answers still
stream.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage

from context_kit_service.local_models.grammar import without_patterns

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
FENCE_OPEN, FENCE_CLOSE = "```json", "```"
"""The other way small instruct models write a call (Qwen2.5-Coder 0.5B prefers it)."""
CITED = re.compile(r"\[[A-Za-z][\w-]*\]")
"""An id written as an answer cites it: `[FEAT-001]`."""
ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
ANSWER_RULE = r"cks-answer ::= [^<>{`\x00 \t\n] [^\x00]*"
"""An answer: it cannot start like a call (`<tool_call>`, a fence, bare JSON) or with a blank."""
_ROOT = re.compile(r"(?<![\w-])root(?![\w-])")


@dataclass(frozen=True)
class ChatTemplate:
    """A GGUF's chat template and what ends its assistant turn."""

    source: str
    bos_token: str
    eos_token: str

    @property
    def native_tools(self) -> bool:
        """Whether the template takes tools and writes calls as `<tool_call>` blocks."""
        return CALL_OPEN in self.source and "tools" in self.source

    @property
    def stop(self) -> list[str]:
        return [self.eos_token]

    def render(
        self, messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]] | None = None
    ) -> str:
        """The prompt for `messages` (and `tools`, OpenAI format), ending with the opening of
        the assistant's turn."""
        chat: Any = template_messages(messages)  # the dicts llama-cpp-python's TypedDicts describe
        listed: Any = list(tools or []) or None
        prompt: str = self._formatter(messages=chat, tools=listed).prompt
        return prompt

    @cached_property
    def _formatter(self) -> Any:
        """The compiled template, built once (every turn renders it, some twice)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        return Jinja2ChatFormatter(self.source, eos_token=self.eos_token, bos_token=self.bos_token)


def template_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as the dicts chat templates read. Leading system messages become one
    (templates place only the first one before the tools)."""
    system = []
    for message in messages:
        if not isinstance(message, SystemMessage):
            break
        system.append(message.text)
    rest = messages[len(system) :]
    rendered: list[dict[str, Any]] = (
        [{"role": "system", "content": "\n\n".join(system)}] if system else []
    )
    for message in rest:
        item: dict[str, Any] = {"role": ROLES.get(message.type, "user"), "content": message.text}
        if isinstance(message, AIMessage) and message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["args"]},
                }
                for call in message.tool_calls
            ]
        if isinstance(message, ToolMessage):
            item["tool_call_id"] = message.tool_call_id
        rendered.append(item)
    return rendered


def tool_call_grammar(tools: Sequence[dict[str, Any]], tool_choice: Any = None) -> str:
    """A GBNF grammar for one reply with `tools` bound: a call of one of them with arguments
    that fit its parameters, or (unless `tool_choice` requires a call) an answer. The call is
    `{"name": ..., "arguments": ...}` in a `<tool_call>` block, a ```json fence, or bare: the
    template asks for the block, but the 0.5B model's likeliest first token for a call is
    `{"`, and refused it, it answers instead. `tool_choice` as in LangChain's `bind_tools`;
    "none" admits the answer only."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    if tool_choice == "none":
        return f"root ::= cks-answer\n{ANSWER_RULE}"

    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": {
                    "type": "object",
                    "properties": {},
                    **(t["function"].get("parameters") or {}),
                    "additionalProperties": False,
                },
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
        if tool_choice in (None, "auto", "any", "required") or t["function"]["name"] == tool_choice
    ]
    if not calls:
        raise ValueError(f"tool_choice {tool_choice!r} names no bound tool")
    schema = json.dumps(without_patterns({"anyOf": calls}))
    call_rules = _ROOT.sub("cks-call-json", json_schema_to_gbnf(schema, ["name", "arguments"]))
    required = tool_choice not in (None, "auto")
    return "\n".join(
        [
            "root ::= cks-call" if required else "root ::= cks-answer | cks-call",
            f'cks-call ::= "{CALL_OPEN}" cks-nl cks-call-json cks-nl "{CALL_CLOSE}" | '
            f'"{FENCE_OPEN}" cks-nl cks-call-json cks-nl "{FENCE_CLOSE}" | cks-call-json',
            'cks-nl ::= "\\n"?',
            ANSWER_RULE,
            call_rules,
        ]
    )


def uncited(value: Any) -> Any:
    """An argument as meant: a small model told to cite ids as `[FEAT-001]` writes them so in
    arguments too."""
    if isinstance(value, str) and CITED.fullmatch(value):
        return value[1:-1]
    return value


def parse_template_reply(text: str) -> AIMessage:
    """A reply decoded under `tool_call_grammar`: a tool call, or the answer text."""
    stripped = text.strip()
    for opening, closing in ((CALL_OPEN, CALL_CLOSE), (FENCE_OPEN, FENCE_CLOSE), ("{", None)):
        if stripped.startswith(opening):
            body = stripped if closing is None else stripped[len(opening) :].split(closing, 1)[0]
            break
    else:
        return AIMessage(content=stripped)
    try:
        call = json.loads(body)
    except json.JSONDecodeError:  # cut short by max_tokens or a cancel
        return AIMessage(content="")
    return AIMessage(
        content="",
        tool_calls=[
            {
                "name": call["name"],
                "args": {k: uncited(v) for k, v in call["arguments"].items()},
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "tool_call",
            }
        ],
    )


class TemplateAnswerStream:
    """The answer part of a streamed reply: under `tool_call_grammar` an answer cannot start
    with `<`, a backquote or `{`, so the first character tells a call from an answer."""

    def __init__(self) -> None:
        self._seen = ""

    def feed(self, token: str) -> str:
        self._seen += token
        return "" if self._seen[:1] in ("<", "`", "{") else token
