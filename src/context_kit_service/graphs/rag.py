"""RAG query: retrieve passages from the repository, then answer only from them, citing ids.

check_request -> retrieve -> answer_question | say_nothing_found
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from context_kit_service.configuration import (
    Configuration,
    chat_model_for,
    service_settings,
)
from context_kit_service.graphs import prompts
from context_kit_service.graphs.citations import CITATION, recited
from context_kit_service.graphs.passages import source_passage
from context_kit_service.graphs.retrieval import RetrievalRequest, retrieve
from context_kit_service.local_models import LocalChatModel
from context_kit_service.local_models.grammar import citation_grammar, source_grammar
from context_kit_service.provider_errors import as_provider_error
from context_kit_service.providers import model_name
from context_kit_service.repository.cache import repositories
from context_kit_service.retrieval.search import Source
from context_kit_service.tools.confinement import resolve_repository
from context_kit_service.validators import not_blank

"""An id cited in an answer: `[FEAT-001]`."""
UNANSWERED = re.compile(
    r"\b(does not|doesn't|do not|don't|did not|cannot|can't) (say|mention|specify|state|answer"
    r"|contain|include|find)|\bno (information|mention|passage)|\bnot (mentioned|specified|stated)",
    re.IGNORECASE,
)
"""An answer saying the passages do not answer (`prompts.RAG_SYSTEM` asks for that): it gets
no citation."""


class InputState(RetrievalRequest):
    query: Annotated[str, not_blank("query")] = Field(
        min_length=1, description="What to look for (required, not blank)."
    )
    repo_path: str = Field(default="", description="Repository to search; empty means the default.")


class OutputState(BaseModel):
    answer: str = Field(default="", description="The answer, citing entity ids in brackets.")
    sources: list[Source] = Field(default_factory=list, description="Retrieved passages.")
    cited_ids: list[str] = Field(
        default_factory=list, description="Retrieved ids the answer cites."
    )
    retrieval_ms: float = Field(default=0.0, description="Time spent retrieving.")
    generation_ms: float = Field(default=0.0, description="Time spent generating the answer.")
    model: str = Field(default="", description="The model that answered (empty if none ran).")
    prompt_tokens: int = Field(default=0, description="Prompt tokens reported by the model.")
    completion_tokens: int = Field(default=0, description="Completion tokens reported.")
    index_stale: str | None = Field(
        default=None,
        description="Why the passages come from an older index (its last update failed).",
    )


class State(InputState, OutputState):
    repo_root: str = Field(default="", description="The checked repository root.")


# --- nodes -----------------------------------------------------------------------------------


async def check_request(state: State, config: RunnableConfig) -> dict[str, Any]:
    root = resolve_repository(state.repo_path, service_settings(config))
    return {"repo_root": str(root)}


def _passages(sources: list[Source], root: str, question: str) -> dict[str, str]:
    """The passages as the model reads them, by id: each source's entity, field by field."""
    entities = repositories.peek(Path(root)).entities
    return {s.entity_id: source_passage(s, entities.get(s.entity_id), question) for s in sources}


def _cited(answer: str, retrieved: set[str]) -> list[str]:
    return list(dict.fromkeys(m for m in CITATION.findall(answer) if m in retrieved))


async def answer_question(state: State, config: RunnableConfig) -> dict[str, Any]:
    """Answer from the passages. A local model can only cite a retrieved id (a grammar), and
    when its answer cites none and does not say the passages lack the answer, it is asked
    which passage the answer comes from: ` [<a retrieved id>]` is decoded after it."""
    model, spec = chat_model_for(config)
    passages = _passages(state.sources, state.repo_root, state.query)
    messages: list[BaseMessage] = [
        SystemMessage(prompts.RAG_SYSTEM),
        HumanMessage(prompts.RAG_EXAMPLE_QUESTION),
        AIMessage(prompts.RAG_EXAMPLE_ANSWER),
        HumanMessage(
            prompts.RAG_QUESTION.format(
                context="\n\n".join(passages.values()), question=state.query
            )
        ),
    ]
    ids = [s.entity_id for s in state.sources]
    retrieved = set(ids)
    local = isinstance(model, LocalChatModel)
    answering: Runnable[Any, BaseMessage] = (
        model.bind(gbnf=citation_grammar(ids)) if local else model
    )
    started = time.perf_counter()
    try:
        reply = await answering.ainvoke(messages, config)
        answer = reply.text.strip()
        replies = [reply]
        if local and answer and not _cited(answer, retrieved) and not UNANSWERED.search(answer):
            sourcing = model.bind(gbnf=source_grammar(ids), continue_final_message=True)
            replies.append(await sourcing.ainvoke([*messages, AIMessage(answer)], config))
            answer = f"{answer} {replies[-1].text.strip()}"
    except Exception as exc:
        raise as_provider_error(exc, spec.provider) from exc
    answer = recited(answer, state.query, passages)
    usage = [getattr(r, "usage_metadata", None) or {} for r in replies]
    return {
        "answer": answer,
        "cited_ids": _cited(answer, retrieved),
        "generation_ms": round((time.perf_counter() - started) * 1000, 3),
        "model": model_name(spec),
        "prompt_tokens": sum(u.get("input_tokens", 0) for u in usage),
        "completion_tokens": sum(u.get("output_tokens", 0) for u in usage),
    }


async def say_nothing_found(state: State) -> dict[str, Any]:
    return {
        "answer": prompts.RAG_NOTHING_FOUND,
        "cited_ids": [],
        "generation_ms": 0.0,
        "model": "",
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }


# --- routing ---------------------------------------------------------------------------------


async def route_after_retrieval(state: State) -> Literal["answer_question", "say_nothing_found"]:
    return "answer_question" if state.sources else "say_nothing_found"


# --- graph -----------------------------------------------------------------------------------

builder = StateGraph(
    State, input_schema=InputState, output_schema=OutputState, context_schema=Configuration
)
builder.add_node(check_request)
builder.add_node(retrieve)
builder.add_node(answer_question)
builder.add_node(say_nothing_found)
builder.add_edge(START, "check_request")
builder.add_edge("check_request", "retrieve")
builder.add_conditional_edges("retrieve", route_after_retrieval)
builder.add_edge("answer_question", END)
builder.add_edge("say_nothing_found", END)

graph = builder.compile(name="rag")
