"""The assistant graph with a scripted tool-calling model: whole message lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from context_kit_service.configuration import MODEL_KEY, SETTINGS_KEY
from context_kit_service.graphs.assistant import (
    ASSISTANT_TOOLS,
    MAX_TOOL_ROUNDS,
    builder,
    fit_to_window,
    graph,
)
from context_kit_service.tools.registry import TOOLS_BY_NAME
from tests.conftest import SAMPLE_REPO, SHARED_MODELS
from tests.fakes import ScriptedChatModel


def call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def script(*replies: AIMessage) -> ScriptedChatModel:
    return ScriptedChatModel(messages=iter(replies))


def shape(messages: list[BaseMessage]) -> list[tuple[Any, ...]]:
    rows = []
    for m in messages:
        calls = [(c["name"], c["args"], c["id"]) for c in getattr(m, "tool_calls", [])]
        rows.append((m.type, m.content, calls, getattr(m, "tool_call_id", None)))
    return rows


async def tool_output(name: str, repo: Path = SAMPLE_REPO, **args: Any) -> str:
    result = await TOOLS_BY_NAME[name].ainvoke({**args, "repo_root": str(repo)})
    return json.dumps(result, ensure_ascii=False)


async def run(agent: Any, payload: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """The whole final state: the graph's own output is only `answer` and `transcript`."""
    keys = ["messages", "answer", "transcript"]
    result: dict[str, Any] = await agent.ainvoke(payload, cfg, output_keys=keys)
    return result


def config(model: ScriptedChatModel, settings: Any, thread: str | None = None) -> dict[str, Any]:
    configurable = {SETTINGS_KEY: settings, MODEL_KEY: model}
    if thread:
        configurable["thread_id"] = thread
    return {"configurable": configurable}


async def test_tool_call_then_tool_result_then_answer(make_settings) -> None:
    model = script(
        AIMessage("", tool_calls=[call("get_entity", {"entity_id": "T-002"}, "c1")]),
        AIMessage("Recovery links expire after 15 minutes [T-002]."),
    )
    question = HumanMessage("How long is a recovery link valid?")
    out = await run(
        graph,
        {"messages": [question], "repo_path": str(SAMPLE_REPO)},
        config(model, make_settings()),
    )
    assert shape(out["messages"]) == [
        ("human", "How long is a recovery link valid?", [], None),
        ("ai", "", [("get_entity", {"entity_id": "T-002"}, "c1")], None),
        ("tool", await tool_output("get_entity", entity_id="T-002"), [], "c1"),
        ("ai", "Recovery links expire after 15 minutes [T-002].", [], None),
    ]
    assert model.prompts[0][0].type == "system"


async def test_the_output_is_plain_json_answer_and_transcript(make_settings) -> None:
    model = script(
        AIMessage("", tool_calls=[call("get_entity", {"entity_id": "T-002"}, "c1")]),
        AIMessage("Recovery links expire after 15 minutes [T-002]."),
    )
    payload = {"messages": [HumanMessage("How long?")], "repo_path": str(SAMPLE_REPO)}
    out = await graph.ainvoke(payload, config(model, make_settings()))
    assert out == {
        "answer": "Recovery links expire after 15 minutes [T-002].",
        "transcript": [
            {"role": "user", "content": "How long?"},
            {
                "role": "assistant",
                "content": "",
                "toolCalls": [{"id": "c1", "name": "get_entity", "args": {"entity_id": "T-002"}}],
            },
            {
                "role": "tool",
                "content": await tool_output("get_entity", entity_id="T-002"),
                "toolCallId": "c1",
            },
            {"role": "assistant", "content": "Recovery links expire after 15 minutes [T-002]."},
        ],
        "approval_request": None,
    }


async def test_two_tool_calls_in_one_turn(make_settings) -> None:
    model = script(
        AIMessage(
            "",
            tool_calls=[
                call("next_id", {"entity_type": "task"}, "a"),
                call("list_entities", {"entity_type": "task", "status": "blocked"}, "b"),
            ],
        ),
        AIMessage("The next task is T-011; T-009 is blocked."),
    )
    out = await run(
        graph,
        {
            "messages": [HumanMessage("Next task id, and what is blocked?")],
            "repo_path": str(SAMPLE_REPO),
        },
        config(model, make_settings()),
    )
    assert shape(out["messages"])[1:] == [
        (
            "ai",
            "",
            [
                ("next_id", {"entity_type": "task"}, "a"),
                ("list_entities", {"entity_type": "task", "status": "blocked"}, "b"),
            ],
            None,
        ),
        ("tool", await tool_output("next_id", entity_type="task"), [], "a"),
        ("tool", await tool_output("list_entities", entity_type="task", status="blocked"), [], "b"),
        ("ai", "The next task is T-011; T-009 is blocked.", [], None),
    ]


async def test_the_iteration_bound_ends_the_loop_cleanly(make_settings) -> None:
    rounds = [
        AIMessage("", tool_calls=[call("next_id", {"entity_type": "spec"}, f"r{i}")])
        for i in range(MAX_TOOL_ROUNDS + 1)
    ]
    model = script(*rounds)
    out = await run(
        graph,
        {"messages": [HumanMessage("Keep looking things up")], "repo_path": str(SAMPLE_REPO)},
        config(model, make_settings()),
    )
    expected_tool = await tool_output("next_id", entity_type="spec")
    assert shape(out["messages"]) == [
        ("human", "Keep looking things up", [], None),
        *[
            row
            for i in range(MAX_TOOL_ROUNDS)
            for row in (
                ("ai", "", [("next_id", {"entity_type": "spec"}, f"r{i}")], None),
                ("tool", expected_tool, [], f"r{i}"),
            )
        ],
        (
            "ai",
            f"I stopped after {MAX_TOOL_ROUNDS} rounds of tool calls without a final answer. Ask again more narrowly, or ask me to continue.",
            [],
            None,
        ),
    ]
    assert len(model.prompts) == MAX_TOOL_ROUNDS + 1


async def test_a_failing_tool_call_goes_back_to_the_model(make_settings) -> None:
    model = script(
        AIMessage("", tool_calls=[call("get_entity", {"entity_id": "FEAT-404"}, "x")]),
        AIMessage("There is no FEAT-404."),
    )
    out = await run(
        graph,
        {"messages": [HumanMessage("Show FEAT-404")], "repo_path": str(SAMPLE_REPO)},
        config(model, make_settings()),
    )
    tool_message = out["messages"][2]
    assert (tool_message.type, tool_message.status, tool_message.tool_call_id) == (
        "tool",
        "error",
        "x",
    )
    assert "no entity with id 'FEAT-404'" in tool_message.content
    assert out["messages"][-1].content == "There is no FEAT-404."


def _write_call(status: str) -> AIMessage:
    return AIMessage(
        "",
        tool_calls=[
            call("patch_entity", {"entity_id": "T-004", "changes": {"status": status}}, "w1")
        ],
    )


async def test_writes_wait_for_approval_then_apply(make_settings, sample_copy: Path) -> None:
    task = sample_copy / "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"
    before = task.read_text()
    model = script(_write_call("doing"), AIMessage("T-004 is now in progress."))
    agent = builder.compile(checkpointer=InMemorySaver())
    cfg = config(model, make_settings(), thread="t-approve")
    paused = await run(
        agent, {"messages": [HumanMessage("Start T-004")], "repo_path": str(sample_copy)}, cfg
    )
    assert paused["__interrupt__"][0].value["toolCalls"] == [
        {
            "id": "w1",
            "tool": "patch_entity",
            "arguments": {"entity_id": "T-004", "changes": {"status": "doing"}},
        }
    ]
    assert task.read_text() == before
    done = await run(agent, Command(resume={"approved": True}), cfg)
    assert task.read_text() == before.replace("status: todo", "status: doing")
    assert done["messages"][-1].content == "T-004 is now in progress."


async def test_a_rejected_write_changes_nothing_and_the_model_is_told(
    make_settings, sample_copy: Path
) -> None:
    task = sample_copy / "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"
    before = task.read_text()
    model = script(_write_call("doing"), AIMessage("Understood, I left T-004 alone."))
    agent = builder.compile(checkpointer=InMemorySaver())
    cfg = config(model, make_settings(), thread="t-reject")
    await run(
        agent, {"messages": [HumanMessage("Start T-004")], "repo_path": str(sample_copy)}, cfg
    )
    done = await run(agent, Command(resume={"approved": False}), cfg)
    assert task.read_text() == before
    assert shape(done["messages"])[-2:] == [
        ("tool", "The user rejected this change; nothing was written.", [], "w1"),
        ("ai", "Understood, I left T-004 alone.", [], None),
    ]


async def test_an_approval_can_edit_the_arguments(make_settings, sample_copy: Path) -> None:
    task = sample_copy / "contexts/tasks/T-004-deduplicate-imported-transactions.yaml"
    before = task.read_text()
    model = script(_write_call("doing"), AIMessage("Marked as blocked instead."))
    agent = builder.compile(checkpointer=InMemorySaver())
    cfg = config(model, make_settings(), thread="t-edit")
    await run(
        agent, {"messages": [HumanMessage("Start T-004")], "repo_path": str(sample_copy)}, cfg
    )
    edited = {"w1": {"entity_id": "T-004", "changes": {"status": "blocked"}}}
    await run(agent, Command(resume={"approved": True, "arguments": edited}), cfg)
    assert task.read_text() == before.replace("status: todo", "status: blocked")


def test_history_is_trimmed_by_tokens_to_the_latest_turns() -> None:
    from langchain_core.messages import SystemMessage

    from context_kit_service.local_models import DEFAULT_LOCAL_MODEL, LocalChatModel

    model = LocalChatModel(model_path=DEFAULT_LOCAL_MODEL, models_dir=SHARED_MODELS, n_ctx=1024)
    system: list[BaseMessage] = [SystemMessage("system"), SystemMessage("snapshot")]
    conversation: list[BaseMessage] = []
    for i in range(40):
        conversation += [
            HumanMessage(f"question {i} " + "word " * 30),
            AIMessage(f"answer {i} " + "word " * 30),
        ]
    kept = fit_to_window(system, conversation, model, budget=200)
    assert [m.content for m in kept[:2]] == ["system", "snapshot"]
    assert kept[2].type == "human"
    assert kept[-1].content.startswith("answer 39 ")
    assert model.get_num_tokens_from_messages(kept) <= 200
    assert len(kept) < len(system) + len(conversation)
    short = conversation[:2]
    assert fit_to_window(system, short, model, budget=200) == [*system, *short]
    # The tools the local model describes in its prompt take room from the conversation.
    with_tools = fit_to_window(system, conversation, model, budget=2500, tools=ASSISTANT_TOOLS)
    assert model.get_num_tokens_from_messages(with_tools, tools=ASSISTANT_TOOLS) <= 2500
    assert len(with_tools) < len(fit_to_window(system, conversation, model, budget=2500))


async def test_the_retrieval_tool_searches_the_repository(make_settings) -> None:
    model = script(
        AIMessage(
            "",
            tool_calls=[
                call(
                    "search_context",
                    {"query": "how long a recovery link stays valid", "top_k": 2},
                    "s1",
                )
            ],
        ),
        AIMessage("Fifteen minutes [T-002]."),
    )
    out = await run(
        graph,
        {"messages": [HumanMessage("Recovery link lifetime?")], "repo_path": str(SAMPLE_REPO)},
        config(model, make_settings()),
    )
    found = json.loads(out["messages"][2].content)
    assert [(hit["entity_id"], hit["entity_type"]) for hit in found] == [
        ("US-002", "userstory"),
        ("T-002", "task"),
    ]
    assert set(found[0]) == {
        "entity_id",
        "entity_type",
        "title",
        "relevance_score",
        "excerpt",
        "supporting",
    }


def test_the_context_snapshot_is_given_whole_or_cut_to_its_token_budget() -> None:
    from context_kit_service.graphs.assistant import bounded_snapshot
    from context_kit_service.local_models import DEFAULT_LOCAL_MODEL, LocalChatModel

    model = LocalChatModel(model_path=DEFAULT_LOCAL_MODEL, models_dir=SHARED_MODELS, n_ctx=1024)
    small = {"openFile": "T-009"}
    assert bounded_snapshot(small, model, budget=100) == '{\n "openFile": "T-009"\n}'
    large = {"files": [f"contexts/tasks/T-{i:03d}.yaml" for i in range(300)]}
    cut = bounded_snapshot(large, model, budget=120)
    assert cut.endswith(" …(cut)")
    assert model.get_num_tokens(cut) <= 120
    assert cut.startswith('{\n "files": [\n  "contexts/tasks/T-000.yaml"')


def test_the_local_model_gets_tools_when_it_is_an_instruct_model_or_settings_say_so(
    make_settings,
) -> None:
    from context_kit_service.graphs.assistant import offered_tools
    from context_kit_service.local_models import LocalChatModel

    base = LocalChatModel(model_path="gemma3-270m", models_dir=SHARED_MODELS)
    instruct = LocalChatModel(model_path="qwen2.5-coder-0.5b", models_dir=SHARED_MODELS)
    scripted = script(AIMessage("hi"))
    every = [t.name for t in ASSISTANT_TOOLS]
    core = [
        "get_entity",
        "list_entities",
        "search_context",
        "impact_analysis",
        "next_id",
        "validate_repository",
    ]
    assert [
        [t.name for t in offered_tools(base, make_settings())],
        [t.name for t in offered_tools(base, make_settings(local_tools=True))],
        [t.name for t in offered_tools(instruct, make_settings())],
        [t.name for t in offered_tools(instruct, make_settings(local_toolset="all"))],
        [t.name for t in offered_tools(instruct, make_settings(local_tools=False))],
        [t.name for t in offered_tools(scripted, make_settings())],
        [t.name for t in offered_tools(scripted, make_settings(local_tools=False))],
    ] == [[], core, core, every, [], every, every]
    assert len(every) == 12


def test_with_the_core_tools_a_step_looks_up_chooses_or_answers() -> None:
    from langchain_core.messages import ToolMessage
    from langchain_core.runnables import RunnableBinding

    from context_kit_service.graphs.assistant import bind_step, next_step
    from context_kit_service.local_models import LocalChatModel
    from context_kit_service.tools.registry import CORE_TOOLS

    root = str(SAMPLE_REPO)
    asked = [HumanMessage("What is my name?"), AIMessage("Ada."), HumanMessage("Show T-009.")]
    called = AIMessage("", tool_calls=[call("get_entity", {"entity_id": "T-009"}, "c1")])
    assert [
        next_step(asked, root),
        next_step(asked[:1], root),
        next_step([HumanMessage("What is T-999, and ab-1?")], root),  # no such entities
        next_step([*asked, called, ToolMessage("{}", tool_call_id="c1")], root),
        next_step([HumanMessage("The reviewer for T-004 is Hopper.")], root),
        next_step([HumanMessage("Remember the code word: pelican.")], root),
        next_step([HumanMessage("Find anything about CSV imports.")], root),
        next_step([HumanMessage("please list the blocked tasks")], root),
        next_step([HumanMessage("I want a new task. Which id will it get")], root),
        next_step([], root),  # an empty input on a new thread (was an IndexError, a 500)
    ] == [
        "look_up",
        "choose",
        "choose",
        "answer",
        "converse",
        "converse",
        "choose",
        "choose",
        "choose",
        "converse",
    ]

    model = LocalChatModel(model_path="qwen2.5-coder-0.5b", models_dir=SHARED_MODELS)

    def binding(step: Any) -> tuple[Any, int]:
        assert isinstance(step, RunnableBinding)
        return step.kwargs["tool_choice"], len(step.kwargs["tools"])

    assert binding(bind_step(model, CORE_TOOLS, "look_up")) == ("any", 6)
    assert binding(bind_step(model, CORE_TOOLS, "choose")) == (None, 6)
    assert binding(bind_step(model, CORE_TOOLS, "answer")) == ("none", 6)
    assert binding(bind_step(model, ASSISTANT_TOOLS, "answer")) == (None, 12)
    assert bind_step(model, [], "look_up") is model


def test_earlier_turns_reach_a_small_model_without_their_lookups() -> None:
    from langchain_core.messages import ToolMessage

    from context_kit_service.graphs.assistant import without_past_lookups

    looked = AIMessage("", tool_calls=[call("get_entity", {"entity_id": "T-009"}, "c1")])
    result = ToolMessage('{"id": "T-009"}', tool_call_id="c1")
    again = AIMessage("", tool_calls=[call("next_id", {"entity_type": "task"}, "c2")])
    messages = [
        HumanMessage("Show T-009."),
        looked,
        result,
        AIMessage("T-009 is blocked."),
        HumanMessage("And the next task id?"),
        again,
        ToolMessage('{"id": "T-011"}', tool_call_id="c2"),
    ]
    assert without_past_lookups(messages) == [
        messages[0],
        messages[3],
        *messages[4:],
    ]
    assert without_past_lookups([]) == []


async def test_the_embedded_instruct_model_looks_up_the_next_id_then_answers_with_it(
    make_settings,
) -> None:
    from context_kit_service.local_models import LocalChatModel

    model = LocalChatModel(model_path="qwen2.5-coder-0.5b", models_dir=SHARED_MODELS, temperature=0)
    question = "Which id should the next task get?"
    out = await graph.ainvoke(
        {"messages": [HumanMessage(question)], "repo_path": str(SAMPLE_REPO)},
        config(model, make_settings()),  # type: ignore[arg-type]
    )
    transcript = out["transcript"]
    assert [m["role"] for m in transcript] == ["user", "assistant", "tool", "assistant"]
    assert [(c["name"], c["args"]) for c in transcript[1]["toolCalls"]] == [
        ("next_id", {"entity_type": "task"})
    ]
    assert json.loads(transcript[2]["content"]) == {"entityType": "task", "id": "T-011"}
    assert "T-011" in out["answer"]


async def test_a_reply_the_token_limit_cut_short_says_so(make_settings) -> None:
    from context_kit_service.local_models import LocalChatModel

    model = LocalChatModel(
        model_path="qwen2.5-coder-0.5b", models_dir=SHARED_MODELS, temperature=0, max_tokens=8
    )
    cfg = config(model, make_settings())  # type: ignore[arg-type]
    cfg["configurable"]["max_tokens"] = 8
    out = await graph.ainvoke(
        {"messages": [HumanMessage("Show T-009.")], "repo_path": str(SAMPLE_REPO)}, cfg
    )
    assert out["answer"] == (
        "The token limit (8 tokens) ended my reply before it said anything (a tool call needs "
        "more room). Ask again with a larger maxTokens."
    )
    assert [m["role"] for m in out["transcript"]] == ["user", "assistant"]
