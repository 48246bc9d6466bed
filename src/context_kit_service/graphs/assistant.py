"""The assistant: a tool-calling agent over the repository, with retrieval and approval
before any tool that writes.

    prepare -> call_model -> tools -> call_model -> ... -> finish -> END
                          \\-> propose_change -> request_approval -> tools | call_model

The output is plain JSON (`answer`, `transcript`), not LangChain messages, so every client
receives it whole (the JavaScript RemoteRunnable rewrites any output with a `messages` key).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    messages_from_dict,
)
from langchain_core.messages.utils import count_tokens_approximately, trim_messages
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import TOOL_CALL_ERROR_TEMPLATE
from pydantic import BaseModel, BeforeValidator, Field

from context_kit_service.configuration import Configuration, chat_model_for, service_settings
from context_kit_service.graphs import prompts
from context_kit_service.graphs.approval import ask_approval
from context_kit_service.local_models import LocalChatModel
from context_kit_service.provider_errors import as_provider_error
from context_kit_service.providers import model_name
from context_kit_service.repository.cache import repositories
from context_kit_service.repository.journal import StorageError
from context_kit_service.settings import Settings
from context_kit_service.tools.confinement import resolve_repository
from context_kit_service.tools.registry import CORE_TOOLS, REPOSITORY_TOOLS, WRITE_TOOLS
from context_kit_service.tools.retrieval_tool import search_context

MAX_TOOL_ROUNDS = 6
ANSWER_TAG = "assistant_answer"
"""Tags the model call whose tokens are the assistant's reply (what a token stream shows)."""
ASSISTANT_TOOLS: list[BaseTool] = [*REPOSITORY_TOOLS, search_context]


MESSAGE_TYPES = ("human", "ai", "system", "tool")


JSON_KINDS = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    list: "a list",
    type(None): "null",
}


def check_messages(value: Any) -> Any:
    """Refuse, as a validation error, message shapes the assistant cannot take (no `type`,
    `chat` and `function` messages, malformed tool calls): LangChain's message constructors
    and its type discriminator raise TypeError on some of them, which would be a server
    error."""
    if not isinstance(value, list):
        return value
    for index, item in enumerate(value):
        if isinstance(item, BaseMessage):
            continue
        if not isinstance(item, dict):
            raise ValueError(
                f"messages[{index}]: must be an object with a type and content, "
                f"not {JSON_KINDS.get(type(item), type(item).__name__)}"
            )
        kind = item.get("type")
        if kind not in MESSAGE_TYPES:  # a missing type too: LangChain's check raises TypeError
            raise ValueError(f"messages[{index}]: type must be one of {', '.join(MESSAGE_TYPES)}")
        try:
            messages_from_dict([{"type": kind, "data": item}])
        except Exception as exc:
            raise ValueError(f"messages[{index}]: {str(exc)[:200]}") from None
    return value


class InputState(BaseModel):
    messages: Annotated[list[AnyMessage], BeforeValidator(check_messages), add_messages] = Field(
        default_factory=list, description="The conversation; new turns are appended."
    )
    repo_path: str = Field(default="", description="Repository; empty means the default.")
    context_snapshot: dict[str, Any] | None = Field(
        default=None, description="What the user has open in the app, given to the model."
    )


class OutputState(BaseModel):
    answer: str = Field(default="", description="The assistant's final reply.")
    transcript: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The whole conversation as plain JSON: role, content, toolCalls, toolCallId.",
    )
    approval_request: dict[str, Any] | None = Field(
        default=None,
        description="A change waiting for approval: answer with `approval` on the same thread.",
    )


class State(InputState, OutputState):
    repo_root: str = Field(default="", description="The checked repository root.")
    tool_rounds: int = Field(default=0, description="Model turns that asked for tools.")
    model: str = Field(default="", description="The chat model of the latest turn.")
    approval_key: str = Field(default="", description="The pause that approved the writes.")


def describe_proposal(request: dict[str, Any]) -> str:
    """A pending change in plain words, for clients that only show text."""
    calls = "; ".join(
        f"{call['tool']} with {json.dumps(call['arguments'], ensure_ascii=False)}"
        for call in request.get("toolCalls", [])
    )
    return prompts.ASSISTANT_PROPOSAL.format(calls=calls or "a change")


def plain_message(message: BaseMessage) -> dict[str, Any]:
    """A message as the app's wire format: `role`, `content`, and tool calls as plain data."""
    role = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}[message.type]
    item: dict[str, Any] = {"role": role, "content": message.text}
    if isinstance(message, AIMessage) and message.tool_calls:
        item["toolCalls"] = [
            {"id": c["id"], "name": c["name"], "args": c["args"]} for c in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        item["toolCallId"] = message.tool_call_id
    return item


# --- nodes -----------------------------------------------------------------------------------


async def prepare(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Check the repository; with none known (none sent, none configured) the assistant
    answers from the snapshot and the conversation, without repository tools."""
    settings = service_settings(config)
    if not state.repo_path and settings.repo_path is None:
        return {"repo_root": "", "tool_rounds": 0}
    root = resolve_repository(state.repo_path, settings)
    return {"repo_root": str(root), "tool_rounds": 0}


def _counter(model: BaseChatModel) -> Any:
    return model if isinstance(model, LocalChatModel) else count_tokens_approximately


def bounded_snapshot(snapshot: dict[str, Any], model: BaseChatModel, budget: int) -> str:
    """The snapshot as JSON, whole when it fits in `budget` tokens, else cut to fit."""
    text = json.dumps(snapshot, ensure_ascii=False, indent=1)
    count = _counter(model)
    measure = count.get_num_tokens if isinstance(count, BaseChatModel) else lambda t: count([t])
    tokens = measure(text)
    while tokens > budget:
        text = text[: max(0, int(len(text) * budget / tokens) - 16)] + " …(cut)"
        tokens = measure(text)
    return text


def fit_to_window(
    system: list[BaseMessage],
    conversation: list[BaseMessage],
    model: BaseChatModel,
    budget: int,
    tools: Sequence[Any] = (),
) -> list[BaseMessage]:
    """`system` then as much of the latest conversation as fits in `budget` tokens (the
    model's tokenizer when it has one offline, else LangChain's approximate counter), with
    room for the `tools` the model describes in its own prompt. When the conversation must be
    cut, the kept part starts on a human turn."""
    counter = _counter(model)
    count = (
        partial(counter.get_num_tokens_from_messages, tools=list(tools) or None)
        if isinstance(counter, BaseChatModel)
        else counter
    )
    if count([*system, *conversation]) <= budget:
        return [*system, *conversation]
    kept = trim_messages(
        conversation,
        max_tokens=max(0, budget - count(system)),
        token_counter=counter,
        strategy="last",
        start_on="human",
        allow_partial=False,
    )
    return [*system, *kept]


def offered_tools(model: BaseChatModel, settings: Settings) -> list[BaseTool]:
    """Every tool for a provider's model. For the local one, when it is an instruct model
    whose chat template writes tool calls (or `CKS_LOCAL_TOOLS` says so), the tools of
    `CKS_LOCAL_TOOLSET`. May load the local model."""
    if not isinstance(model, LocalChatModel):
        return ASSISTANT_TOOLS
    choice = settings.local_tools
    if not (model.follows_tool_template() if choice is None else choice):
        return []
    return CORE_TOOLS if settings.local_toolset == "core" else ASSISTANT_TOOLS


Step = Literal["look_up", "choose", "answer", "converse"]
ENTITY_ID = re.compile(r"\b[A-Z][A-Z0-9]*-\d+\b")
"""What may be an entity id in a message (checked against the repository)."""


REQUEST = re.compile(
    r"\?|(^|[.!;:]\s)\W*(please\s+)?(show|list|find|search|open|give|get|run|check|validate|look|tell|"
    r"describe|explain|summari[sz]e|compare|count|display|read|what|which|who|whom|whose|where|"
    r"when|why|how)\b",
    re.IGNORECASE,
)
"""A message that asks for something: it has a question mark, or a sentence of it starts with
a request verb or a question word. Anything else tells the assistant something."""


def next_step(messages: Sequence[BaseMessage], repo_root: str) -> Step:
    """What a step with the core tools may do: answer after a tool's result; reply from the
    conversation alone, tools unseen, to a message that asks nothing (a small model shown
    tools calls one for "My team is Harbour." too, or writes a call as its answer); look up
    after a request naming an entity of the repository (a small model answers about an entity
    from memory when it may choose); else choose between a tool and an answer. An empty
    conversation asks nothing."""
    if not messages:
        return "converse"
    last = messages[-1]
    if isinstance(last, ToolMessage):
        return "answer"
    if isinstance(last, HumanMessage) and not REQUEST.search(last.text):
        return "converse"
    named = ENTITY_ID.findall(last.text) if isinstance(last, HumanMessage) else []
    if named and any(i in repositories.get(Path(repo_root)).entities for i in named):
        return "look_up"
    return "choose"


def without_past_lookups(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The conversation without the tool calls and results of earlier turns (their answers
    stay): a small model given them answers the next question from them, or repeats them."""
    turn = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=0)
    return [
        m
        for i, m in enumerate(messages)
        if i >= turn
        or not (isinstance(m, ToolMessage) or (isinstance(m, AIMessage) and m.tool_calls))
    ]


def bind_step(
    model: BaseChatModel, tools: list[BaseTool], step: Step
) -> Runnable[Any, BaseMessage]:
    """The model as one step calls it. With the core tools, `step` decides whether it must
    call one, must answer, or chooses (the tools stay in the prompt either way, so every step
    shares its start). Other tool sets leave every choice to the model."""
    if not tools:
        return model
    if tools != CORE_TOOLS or step == "choose":
        return model.bind_tools(tools)
    return model.bind_tools(tools, tool_choice="any" if step == "look_up" else "none")


def cut_short(reply: AIMessage) -> bool:
    """A reply the token limit stopped before it said anything: a tool call cut short parses
    as nothing (the local model's `maxTokens` 8 cannot hold a call)."""
    metadata = reply.response_metadata
    stopped = metadata.get("finish_reason") or metadata.get("done_reason")
    return stopped == "length" and not reply.tool_calls and not reply.text.strip()


async def call_model(state: State, config: RunnableConfig) -> dict[str, Any]:
    model, spec = chat_model_for(config)
    settings = service_settings(config)
    budget = max(256, settings.context_window - spec.max_tokens)

    def window() -> tuple[Runnable[Any, BaseMessage], list[BaseMessage]]:
        tools = offered_tools(model, settings) if state.repo_root else []
        core = tools == CORE_TOOLS
        step = next_step(state.messages, state.repo_root) if core else "choose"
        prompt = prompts.ASSISTANT_CORE if core else prompts.ASSISTANT_SYSTEM
        if step == "converse":
            tools, prompt = [], prompts.ASSISTANT_CONVERSE
        system: list[BaseMessage] = [SystemMessage(prompt)]
        if state.context_snapshot:
            snapshot = bounded_snapshot(state.context_snapshot, model, settings.snapshot_tokens)
            system.append(SystemMessage(prompts.ASSISTANT_SNAPSHOT.format(snapshot=snapshot)))
        conversation: list[BaseMessage] = list(state.messages)
        if core:
            conversation = without_past_lookups(conversation)
        history = fit_to_window(system, conversation, model, budget, tools)
        return bind_step(model, tools, step), history

    # Reading the template and counting tokens may load the local model: off the event loop.
    step, history = await asyncio.to_thread(window)
    try:
        reply = await step.with_config(tags=[ANSWER_TAG]).ainvoke(history, config)
    except Exception as exc:
        raise as_provider_error(exc, spec.provider) from exc
    assert isinstance(reply, AIMessage)
    if cut_short(reply):
        cut = prompts.ASSISTANT_CUT_SHORT.format(max_tokens=spec.max_tokens)
        return {"messages": [AIMessage(id=reply.id, content=cut)], "model": model_name(spec)}
    if reply.tool_calls and state.tool_rounds >= MAX_TOOL_ROUNDS:
        limit = prompts.ASSISTANT_STEP_LIMIT.format(rounds=state.tool_rounds)
        return {"messages": [AIMessage(id=reply.id, content=limit)], "model": model_name(spec)}
    return {
        "messages": [reply],
        "tool_rounds": state.tool_rounds + bool(reply.tool_calls),
        "model": model_name(spec),
    }


async def propose_change(state: State) -> dict[str, Any]:
    """Put the proposed write in the output, so a client sees it while the run waits."""
    last = state.messages[-1]
    assert isinstance(last, AIMessage)
    request = {
        "type": "approval",
        "toolCalls": [
            {"id": c["id"], "tool": c["name"], "arguments": c["args"]} for c in last.tool_calls
        ],
        "repoPath": state.repo_root,
        "message": "The assistant wants to change the repository. Approve?",
    }
    return {
        "answer": "",
        "transcript": [plain_message(m) for m in state.messages],
        "approval_request": request,
    }


async def request_approval(state: State, config: RunnableConfig) -> dict[str, Any]:
    last = state.messages[-1]
    assert isinstance(last, AIMessage)
    decision, key = ask_approval(state.approval_request or {}, config)
    if decision.approved:
        edited = decision.arguments
        if edited is None:
            return {"approval_request": None, "approval_key": key}
        calls = [{**c, "args": edited.get(c["id"] or "", c["args"])} for c in last.tool_calls]
        return {
            "messages": [last.model_copy(update={"tool_calls": calls})],
            "approval_request": None,
            "approval_key": key,
        }
    return {
        "approval_request": None,
        "messages": [
            ToolMessage(
                prompts.ASSISTANT_REJECTED, tool_call_id=c["id"], name=c["name"], status="error"
            )
            for c in last.tool_calls
        ],
    }


def tool_error(exc: Exception) -> str:
    """A failed tool call, told to the model; a write the disk refused fails the run instead,
    so its approval can be sent again once the disk is fixed."""
    if isinstance(exc, StorageError):
        raise exc
    return TOOL_CALL_ERROR_TEMPLATE.format(error=repr(exc))


tools = ToolNode(ASSISTANT_TOOLS, name="tools", handle_tool_errors=tool_error)


async def finish(state: State) -> dict[str, Any]:
    return {
        "answer": state.messages[-1].text,
        "transcript": [plain_message(m) for m in state.messages],
        "approval_request": None,
    }


# --- routing ---------------------------------------------------------------------------------


async def route_model_output(state: State) -> Literal["tools", "propose_change", "finish"]:
    last = state.messages[-1]
    if not isinstance(last, AIMessage) or not last.tool_calls:
        return "finish"
    if any(call["name"] in WRITE_TOOLS for call in last.tool_calls):
        return "propose_change"
    return "tools"


async def route_after_approval(state: State) -> Literal["tools", "call_model"]:
    return "call_model" if isinstance(state.messages[-1], ToolMessage) else "tools"


# --- graph -----------------------------------------------------------------------------------

builder = StateGraph(
    State, input_schema=InputState, output_schema=OutputState, context_schema=Configuration
)
builder.add_node(prepare)
builder.add_node(call_model)
builder.add_node(propose_change)
builder.add_node(request_approval)
builder.add_node(tools)
builder.add_node(finish)
builder.add_edge(START, "prepare")
builder.add_edge("prepare", "call_model")
builder.add_conditional_edges("call_model", route_model_output)
builder.add_edge("propose_change", "request_approval")
builder.add_conditional_edges("request_approval", route_after_approval)
builder.add_edge("tools", "call_model")
builder.add_edge("finish", END)

graph = builder.compile(name="assistant")
"""Checkpointer-free, for LangGraph Studio; the server compiles `builder` with its checkpointer."""
