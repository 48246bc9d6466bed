"""The evaluation suites: a dataset format (one JSON object per line), how one example runs
against a target, and the metrics it scores."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from context_kit_service.evaluation import metrics
from context_kit_service.evaluation.targets import Target
from context_kit_service.graphs.citations import CITATION
from context_kit_service.graphs.rag import UNANSWERED
from context_kit_service.repository.types import EntityTypeName

K = 5


class RagExample(BaseModel):
    id: str
    question: str = Field(min_length=1)
    relevant: list[str] = Field(
        default_factory=list,
        description="Entity ids that hold the answer (none for a question the repository "
        "cannot answer).",
    )
    facts: list[list[str]] = Field(
        default_factory=list,
        description="What a right answer states: each fact a list of accepted forms, "
        "compared after normalising case, punctuation and number formats.",
    )
    answerable: bool = Field(
        default=True, description="False: the repository does not hold the answer."
    )
    reference: str | None = Field(default=None, description="A reference answer (reported).")
    category: str | None = Field(
        default=None, description="Its kind (metrics are also reported per category)."
    )
    repo: str | None = Field(
        default=None,
        description="The repository it asks about, relative to the working directory "
        "(default: the run's repository).",
    )

    @field_validator("repo")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return os.path.abspath(value) if value else value

    @model_validator(mode="after")
    def _consistent(self) -> RagExample:
        if self.answerable and not self.relevant:
            raise ValueError("an answerable example needs at least one relevant id")
        if not self.answerable and (self.relevant or self.facts):
            raise ValueError("an unanswerable example has no relevant ids and no facts")
        return self


class LinkCheck(BaseModel):
    field: str = Field(description="Dotted field that must hold the id, e.g. related.feature.")
    id: str


class GenerationChecks(BaseModel):
    required: list[str] = Field(default_factory=list, description="Fields that must be filled.")
    link: LinkCheck | None = None


class GenerationExample(BaseModel):
    id: str
    entity_type: EntityTypeName
    prompt: str = Field(min_length=10)
    linked_feature_id: str | None = None
    checks: GenerationChecks = Field(default_factory=GenerationChecks)


class ToolUseExample(BaseModel):
    id: str
    request: str = Field(min_length=1)
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class AssistantExample(BaseModel):
    id: str
    turns: list[str] = Field(min_length=2, description="User turns, sent in order.")
    expect: list[str] = Field(min_length=1, description="Words the last answer must contain.")


@dataclass
class Scored:
    """What one example produced: the metrics, the output to inspect, token usage."""

    metrics: dict[str, float]
    output: dict[str, Any]
    prompt_tokens: int = 0
    completion_tokens: int = 0


E = TypeVar("E", bound=BaseModel)


@dataclass(frozen=True)
class Suite(Generic[E]):
    name: str
    example: type[E]
    run: Callable[[E, Target], Awaitable[Scored]]
    metrics: tuple[str, ...]
    """Every metric an example scores; an example that fails scores 0 on each."""

    def load(self, path: Path) -> list[E]:
        """The dataset; a bad line raises ValueError naming the file, line and problem."""
        examples = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                examples.append(self.example.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise ValueError(f"{path}:{number}: not a {self.name} example: {exc}") from None
        if not examples:
            raise ValueError(f"{path}: no examples")
        return examples


async def run_rag(example: RagExample, target: Target) -> Scored:
    payload: dict[str, Any] = {"query": example.question, "top_k": K}
    if example.repo:
        payload["repo_path"] = example.repo
    output = await target.invoke("rag", payload)
    retrieved = [s["entity_id"] for s in output["sources"]]
    answer: str = output["answer"]
    cited = list(dict.fromkeys(CITATION.findall(answer)))
    scores = {
        "grounded": float(metrics.grounded(cited, retrieved)),
        "wrong_citation": float(metrics.wrong_citation(cited, retrieved, example.relevant)),
    }
    if example.answerable:
        scores |= {
            f"recall@{K}": metrics.recall_at_k(retrieved, example.relevant, K),
            "mrr": metrics.reciprocal_rank(retrieved, example.relevant),
            "cites_sources": float(metrics.cites_sources(cited)),
            "cites_answering": float(metrics.cites_answering(cited, example.relevant)),
        }
        if example.facts:
            correct = metrics.answer_correct(answer, example.facts)
            scores["answer_correct"] = float(correct)
            scores["answered_right"] = float(correct and scores["cites_answering"] == 1.0)
    else:
        scores["abstained_right"] = float(metrics.abstained(answer, cited, UNANSWERED))
    return Scored(
        metrics=scores,
        output={"answer": output["answer"], "retrieved": retrieved, "cited": cited},
        prompt_tokens=output.get("prompt_tokens", 0),
        completion_tokens=output.get("completion_tokens", 0),
    )


async def repository_texts(target: Target) -> list[str]:
    """The text of every entity in the target's repository (what a generated entity must not
    copy: its worked examples are among them), read through the tool graph."""

    async def run(tool_id: str, **parameters: Any) -> dict[str, Any]:
        output = await target.invoke(
            "tool_execution", {"tool_id": tool_id, "parameters": parameters}
        )
        if output.get("status") != "completed":
            raise RuntimeError(f"{tool_id} failed: {output.get('error')}")
        result: dict[str, Any] = output["result"]
        return result

    listed = await run("list_entities")
    entities = [await run("get_entity", entity_id=e["id"]) for e in listed["entities"]]
    return [metrics.entity_text(e["data"]) for e in entities]


async def run_generation(example: GenerationExample, target: Target) -> Scored:
    payload = {
        "entity_type": example.entity_type,
        "user_prompt": example.prompt,
        "linked_feature_id": example.linked_feature_id,
    }
    output = await target.invoke("generation", payload)
    entity = output.get("entity") or {}
    link = example.checks.link
    text = metrics.entity_text({k: v for k, v in entity.items() if k != "id"})
    scores = {
        "schema_valid": float(bool(output.get("valid"))),
        "required_filled": metrics.required_filled(entity, example.checks.required),
        "novelty": metrics.novelty(text, await repository_texts(target)),
        "on_topic": metrics.on_topic(example.prompt, text),
    }
    if link is not None:
        scores["link_correct"] = float(metrics.link_correct(entity, link.field, link.id))
    return Scored(
        metrics=scores,
        output={k: output.get(k) for k in ("status", "entity", "problems", "error", "attempts")},
        prompt_tokens=output.get("prompt_tokens", 0),
        completion_tokens=output.get("completion_tokens", 0),
    )


async def run_tool_use(example: ToolUseExample, target: Target) -> Scored:
    thread = f"eval-{uuid.uuid4().hex}"
    message = {"type": "human", "content": example.request}
    await target.invoke("assistant", {"messages": [message]}, thread_id=thread)
    transcript = await target.transcript(thread)
    calls: list[dict[str, Any]] = next(
        (m["toolCalls"] for m in transcript if m.get("toolCalls")), []
    )
    return Scored(
        metrics={
            "tool_selected": float(metrics.tool_selected(calls, example.tool)),
            "argument_accuracy": metrics.argument_accuracy(calls, example.tool, example.arguments),
        },
        output={"calls": calls},
    )


async def run_assistant(example: AssistantExample, target: Target) -> Scored:
    thread = f"eval-{uuid.uuid4().hex}"
    answer = ""
    for turn in example.turns:
        message = {"type": "human", "content": turn}
        output = await target.invoke("assistant", {"messages": [message]}, thread_id=thread)
        answer = output.get("answer", "")
    found = [word for word in example.expect if word.casefold() in answer.casefold()]
    return Scored(
        metrics={"remembered": float(len(found) == len(example.expect))},
        output={"answer": answer, "found": found},
    )


SUITES: dict[str, Suite[Any]] = {
    "rag": Suite(
        "rag",
        RagExample,
        run_rag,
        (
            f"recall@{K}",
            "mrr",
            "grounded",
            "cites_sources",
            "answered_right",
            "answer_correct",
            "cites_answering",
            "wrong_citation",
            "abstained_right",
        ),
    ),
    "generation": Suite(
        "generation",
        GenerationExample,
        run_generation,
        ("schema_valid", "required_filled", "link_correct", "novelty", "on_topic"),
    ),
    "tool_use": Suite(
        "tool_use", ToolUseExample, run_tool_use, ("tool_selected", "argument_accuracy")
    ),
    "assistant": Suite("assistant", AssistantExample, run_assistant, ("remembered",)),
}
