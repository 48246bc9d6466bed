"""How the chat model's messages become a completion prompt, and a constrained tool-format
reply becomes a message again (the JSON shapes, the grammar's schema, the streaming answer).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    SystemMessage,
    ToolMessage,
)

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
    "any"/"required" allows calls only, a tool's name that call only, "none" the answer only
    (the tools stay described in the prompt). (The answer has no
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
    if tool_choice == "none":
        return {"anyOf": [answer]}
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
