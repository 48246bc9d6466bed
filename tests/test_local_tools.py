"""Tool calling on the embedded model: the prompt format, the reply grammar, parsing and
streaming of the reply (no model), then the packaged GGUF calling a tool for real."""

from __future__ import annotations

import json

import jsonschema
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from context_kit_service.local_models import DEFAULT_LOCAL_MODEL, LocalChatModel
from context_kit_service.local_models.transcript import (
    AnswerStream,
    format_transcript,
    parse_tool_reply,
    tool_reply_schema,
)
from tests.conftest import SHARED_MODELS


@tool
def next_id(entity_type: str) -> str:
    """The next free id for an entity type."""
    return "T-011"


TOOLS = [convert_to_openai_tool(next_id)]


def test_the_transcript_lists_tools_and_writes_assistant_turns_as_json() -> None:
    call = {"name": "next_id", "args": {"entity_type": "task"}, "id": "c1", "type": "tool_call"}
    prompt = format_transcript(
        [
            SystemMessage("Be brief."),
            HumanMessage("Next task id?"),
            AIMessage("", tool_calls=[call]),
            ToolMessage("T-011", tool_call_id="c1", name="next_id"),
            AIMessage("T-011."),
            HumanMessage("Thanks"),
        ],
        TOOLS,
    )
    assert "- next_id(entity_type): The next free id for an entity type.\n" in prompt
    assert prompt.endswith(
        "Be brief.\n\n"
        "User: Next task id?\n"
        'Assistant: {"tool": "next_id", "arguments": {"entity_type": "task"}}\n'
        "Tool result (next_id): T-011\n"
        'Assistant: {"answer": "T-011."}\n'
        "User: Thanks\n"
        "Assistant:"
    )


def test_the_reply_schema_allows_an_answer_or_a_well_formed_call() -> None:
    schema = tool_reply_schema(TOOLS)
    valid = [{"answer": "Hi"}, {"tool": "next_id", "arguments": {"entity_type": "task"}}]
    invalid = [
        {"tool": "delete_everything", "arguments": {}},
        {"tool": "next_id", "arguments": {}},
        {"tool": "next_id", "arguments": {"entity_type": "task", "extra": 1}},
        {"answer": "Hi", "tool": "next_id"},
    ]
    for reply in valid:
        jsonschema.validate(reply, schema)
    for reply in invalid:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(reply, schema)
    forced = tool_reply_schema(TOOLS, tool_choice="any")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"answer": "Hi"}, forced)
    with pytest.raises(ValueError, match="tool_choice 'nope' names no bound tool"):
        tool_reply_schema(TOOLS, tool_choice="nope")


def test_replies_parse_to_a_call_or_an_answer() -> None:
    call = parse_tool_reply('{"tool": "next_id", "arguments": {"entity_type": "task"}}')
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [
        ("next_id", {"entity_type": "task"})
    ]
    assert call.content == ""
    assert parse_tool_reply('{"answer": "T-011 is next."}') == AIMessage("T-011 is next.")
    assert parse_tool_reply('{"answer": "cut sho') == AIMessage("cut sho")


def test_an_answer_streams_as_it_is_decoded() -> None:
    stream = AnswerStream()
    pieces = ['{"', "answer", '": "', "Line\\", "n2 caf\\u00", "e9", ' \\"ok\\"', '"}']
    assert [stream.feed(p) for p in pieces] == ["", "", "", "Line", "\n2 caf", "é", ' "ok"', ""]
    raw = AnswerStream()
    assert [raw.feed(p) for p in ['{"answer": "one', "\ntwo", '"}']] == ["one", "\ntwo", ""]
    call = AnswerStream()
    assert [call.feed(p) for p in ['{"tool": "next_id", ', '"arguments": {}}']] == ["", ""]


@pytest.mark.model
async def test_the_packaged_model_calls_a_bound_tool() -> None:
    model = LocalChatModel(
        model_path=DEFAULT_LOCAL_MODEL, models_dir=SHARED_MODELS, temperature=0.0, max_tokens=48
    )
    forced = model.bind_tools([next_id], tool_choice="next_id")
    reply = await forced.ainvoke([HumanMessage("Which id should the next task get?")])
    assert isinstance(reply, AIMessage)
    assert [c["name"] for c in reply.tool_calls] == ["next_id"]
    assert set(reply.tool_calls[0]["args"]) == {"entity_type"}
    chunks = [c async for c in model.bind_tools([next_id]).astream([HumanMessage("Say hello.")])]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.tool_calls or len([c for c in chunks if c.content]) >= 2
    json.dumps(merged.tool_calls)  # plain data
