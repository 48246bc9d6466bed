"""An instruct GGUF is prompted by its own chat template, with native tool calls decoded under
a grammar; a GGUF without a template keeps the base-model transcript."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from context_kit_service.local_models import LocalChatModel
from context_kit_service.local_models.chat_template import (
    TemplateAnswerStream,
    parse_template_reply,
    template_messages,
    tool_call_grammar,
)
from tests.conftest import SHARED_MODELS

QWEN = "qwen2.5-coder-0.5b"


@tool
def get_entity(entity_id: str) -> str:
    """Read one entity of the context repository by its id, e.g. FEAT-001."""
    return entity_id


@tool
def impact_analysis(entity_id: str) -> str:
    """List the entities a change to the given entity affects."""
    return entity_id


CONVERSATION: list[BaseMessage] = [
    SystemMessage("You answer briefly."),
    SystemMessage("Open file: T-002."),
    HumanMessage("What is FEAT-001?"),
    AIMessage(
        "", tool_calls=[{"name": "get_entity", "args": {"entity_id": "FEAT-001"}, "id": "c1"}]
    ),
    ToolMessage('{"id": "FEAT-001", "title": "Passkeys"}', tool_call_id="c1"),
]


@pytest.fixture(scope="module")
def qwen() -> LocalChatModel:
    return LocalChatModel(
        model_path=QWEN, models_dir=SHARED_MODELS, temperature=0.0, max_tokens=48, n_ctx=2048
    )


def test_the_template_renders_system_tools_calls_and_results(qwen: LocalChatModel) -> None:
    template = qwen.runtime.chat_template()
    assert template is not None
    assert template.native_tools
    assert template.stop == ["<|im_end|>"]
    tools = [convert_to_openai_tool(get_entity)]
    assert template.render(CONVERSATION, tools) == (
        "<|im_start|>system\nYou answer briefly.\n\nOpen file: T-002.\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + json.dumps(tools[0], ensure_ascii=False)
        + "\n</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWhat is FEAT-001?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n"
        '{"name": "get_entity", "arguments": {"entity_id": "FEAT-001"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"id": "FEAT-001", "title": "Passkeys"}\n'
        "</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_model_without_a_template_keeps_the_transcript() -> None:
    gemma = LocalChatModel(model_path="gemma3-270m", models_dir=SHARED_MODELS, n_ctx=1024)
    assert gemma.runtime.chat_template() is None
    messages = [
        SystemMessage("You answer briefly."),
        HumanMessage("What is FEAT-001?"),
        AIMessage("A feature."),
        HumanMessage("And T-002?"),
    ]
    assert gemma._turn(messages, None, {}).prompt == (
        "You answer briefly.\n\nUser: What is FEAT-001?\nAssistant: A feature.\n"
        "User: And T-002?\nAssistant:"
    )


def test_leading_system_messages_become_one() -> None:
    assert template_messages(CONVERSATION[:3]) == [
        {"role": "system", "content": "You answer briefly.\n\nOpen file: T-002."},
        {"role": "user", "content": "What is FEAT-001?"},
    ]


async def test_a_forced_tool_call_parses_on_the_real_model(qwen: LocalChatModel) -> None:
    forced = qwen.bind_tools([get_entity, impact_analysis], tool_choice="impact_analysis")
    reply = await forced.ainvoke([HumanMessage("We are changing SVC-002.")])
    assert isinstance(reply, AIMessage)
    assert reply.content == ""
    assert [(c["name"], sorted(c["args"])) for c in reply.tool_calls] == [
        ("impact_analysis", ["entity_id"])
    ]


async def test_an_answer_under_the_tool_grammar_streams_token_by_token(
    qwen: LocalChatModel,
) -> None:
    bound = qwen.bind_tools([get_entity])
    chunks = [
        chunk.content
        async for chunk in bound.astream(
            [SystemMessage("Answer in one sentence."), HumanMessage("Thank you, that is all.")]
        )
    ]
    text = "".join(str(c) for c in chunks)
    assert len([c for c in chunks if c]) > 3
    assert text.startswith("You")


def test_the_grammar_allows_only_a_bound_tool_or_an_answer(qwen: LocalChatModel) -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    tools = [convert_to_openai_tool(get_entity)]
    free = tool_call_grammar(tools)
    required = tool_call_grammar(tools, "any")
    assert free.splitlines()[:4] == [
        "root ::= cks-answer | cks-call",
        'cks-call ::= "<tool_call>" cks-nl cks-call-json cks-nl "</tool_call>" | '
        '"```json" cks-nl cks-call-json cks-nl "```" | cks-call-json',
        'cks-nl ::= "\\n"?',
        r"cks-answer ::= [^<>{`\x00 \t\n] [^\x00]*",
    ]
    assert required.splitlines()[0] == "root ::= cks-call"
    assert tool_call_grammar(tools, "none").splitlines() == [
        "root ::= cks-answer",
        r"cks-answer ::= [^<>{`\x00 \t\n] [^\x00]*",
    ]
    assert '"\\"get_entity\\""' in free  # the only name a call can carry
    LlamaGrammar.from_string(free, verbose=False)
    LlamaGrammar.from_string(required, verbose=False)
    with pytest.raises(ValueError, match="names no bound tool"):
        tool_call_grammar(tools, "delete_everything")


@pytest.mark.parametrize(
    ("text", "calls", "content"),
    [
        (
            '<tool_call>\n{"name": "get_entity", "arguments": {"entity_id": "T-001"}}\n</tool_call>',
            [("get_entity", {"entity_id": "T-001"})],
            "",
        ),
        (
            '```json\n{"name": "get_entity", "arguments": {"entity_id": "T-001"}}\n```',
            [("get_entity", {"entity_id": "T-001"})],
            "",
        ),
        (
            '{"name": "list_entities", "arguments": {"entity_type": "task", "status": "todo"}}',
            [("list_entities", {"entity_type": "task", "status": "todo"})],
            "",
        ),
        (
            '{"name": "get_entity", "arguments": {"entity_id": "[T-001]"}}',
            [("get_entity", {"entity_id": "T-001"})],  # written as it would cite it
            "",
        ),
        ('<tool_call>\n{"name": "get_ent', [], ""),  # cut short
        ('{"name": "get_ent', [], ""),
        ("T-001 is a task. ", [], "T-001 is a task."),
    ],
)
def test_replies_are_read_back(text: str, calls: list[tuple[str, dict[str, str]]], content: str):
    reply = parse_template_reply(text)
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == calls
    assert reply.content == content


def test_the_answer_stream_hides_a_call_and_passes_an_answer() -> None:
    call, answer = TemplateAnswerStream(), TemplateAnswerStream()
    assert [call.feed(t) for t in ["<tool_call>", '{"name"', "}</tool_call>"]] == ["", "", ""]
    bare = TemplateAnswerStream()
    assert [bare.feed(t) for t in ['{"', 'name"', ': "next_id"}']] == ["", "", ""]
    assert [answer.feed(t) for t in ["It", " is", " T-001."]] == ["It", " is", " T-001."]


async def test_an_invented_citation_cannot_be_decoded(qwen: LocalChatModel) -> None:
    from context_kit_service.graphs.citations import CITATION
    from context_kit_service.local_models.grammar import citation_grammar

    asked = [HumanMessage("Repeat exactly, nothing else: See [T-999] and [FEAT-001].")]
    free = await qwen.ainvoke(asked)
    assert "[T-999]" in free.text  # what the model writes when nothing stops it
    cited = await qwen.bind(gbnf=citation_grammar(["FEAT-001", "SPEC-002"])).ainvoke(asked)
    assert "[T-999]" not in cited.text
    assert set(CITATION.findall(cited.text)) <= {"FEAT-001", "SPEC-002"}
    assert cited.text.startswith("See")


def test_the_citation_grammar_names_exactly_the_retrieved_ids() -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    from context_kit_service.local_models.grammar import citation_grammar

    grammar = citation_grammar(["FEAT-001", "docs/notes.md", "FEAT-001"])
    assert grammar.splitlines() == [
        "root ::= cks-first cks-part*",
        r"cks-first ::= [^\x5B\x00 \t\n] | cks-cite",
        r"cks-part ::= [^\x5B\x00] | cks-cite",
        'cks-cite ::= "[" ("FEAT-001" | "docs/notes.md") "]"',
    ]
    LlamaGrammar.from_string(grammar, verbose=False)


def test_a_final_assistant_message_can_be_continued(qwen: LocalChatModel) -> None:
    gemma = LocalChatModel(model_path="gemma3-270m", models_dir=SHARED_MODELS, n_ctx=1024)
    started = [HumanMessage("What is FEAT-001?"), AIMessage("A feature")]
    go_on = {"continue_final_message": True}
    assert qwen._turn(started, None, go_on).prompt == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.<|im_end|>\n<|im_start|>user\nWhat is FEAT-001?<|im_end|>\n"
        "<|im_start|>assistant\nA feature"
    )
    assert gemma._turn(started, None, go_on).prompt == (
        "User: What is FEAT-001?\nAssistant: A feature"
    )
    assert qwen._turn(started, None, {}).prompt.endswith(
        "<|im_start|>assistant\nA feature<|im_end|>\n<|im_start|>assistant\n"
    )


async def test_an_uncited_answer_gets_one_retrieved_source(qwen: LocalChatModel) -> None:
    from context_kit_service.local_models.grammar import source_grammar

    passages = (
        "Passages:\n[US-002] (userstory) Recover my account\nThe recovery link expires after 15 "
        "minutes.\n\n[SPEC-004] (spec) Reports\nCharts have a table alternative.\n\n"
        "Question: How long is a recovery link valid?"
    )
    answered = [HumanMessage(passages), AIMessage("A recovery link is valid for 15 minutes.")]
    sourcing = qwen.bind(gbnf=source_grammar(["US-002", "SPEC-004"]), continue_final_message=True)
    source = await sourcing.ainvoke(answered)
    assert source.text == "[US-002]"
    assert source_grammar(["US-002", "docs/a.md", "US-002"]) == (
        'root ::= " [" ("US-002" | "docs/a.md") "]"'
    )


def test_an_answer_that_says_the_passages_do_not_answer_gets_no_source() -> None:
    from context_kit_service.graphs.rag import UNANSWERED

    assert [
        bool(UNANSWERED.search(text))
        for text in (
            "The repository does not say.",
            "The passages don't mention who owns it.",
            "There is no information about that.",
            "It is not specified in the passages.",
            "Links expire after 15 minutes.",
            "The service does not store passwords.",
        )
    ] == [True, True, True, True, False, False]
