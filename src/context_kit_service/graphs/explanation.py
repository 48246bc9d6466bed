"""Explaining entities in plain words with the chat model, for retrieval
(`retrieval.explanations` says why and how they are searched).

Not a graph: one model call per entity not yet explained, run as a batch by
`context-kit-service index --explain`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from context_kit_service.graphs.prompts import EXPLAIN_SYSTEM
from context_kit_service.repository.model import Repository
from context_kit_service.retrieval import explanations

MAX_TOKENS = 96
"""Room for the two sentences asked for; a longer answer is cut."""


@dataclass(frozen=True)
class ExplainStats:
    entities: int
    already: int
    """Explained before this run."""
    explained: int
    """Explained by this run."""


def explain(
    repo: Repository,
    data_dir: Path,
    chat: BaseChatModel,
    model: str,
    *,
    concurrency: int = 1,
    progress: Callable[[int], None] | None = None,
    config: RunnableConfig | None = None,
) -> ExplainStats:
    """Explain every entity of `repo` that has no explanation yet, storing each as soon as it
    is written (an interrupted run keeps what it finished)."""
    todo = explanations.missing(repo.entities.values(), data_dir)
    keys = list(todo)
    prompts = [
        [SystemMessage(EXPLAIN_SYSTEM), HumanMessage(explanations.source(todo[k]))] for k in keys
    ]

    def written() -> Iterator[tuple[str, str, str]]:
        answers = chat.batch_as_completed(
            prompts, config={**(config or {}), "max_concurrency": concurrency}
        )
        for position, message in answers:
            if progress is not None:
                progress(1)
            yield keys[position], model, str(message.content)

    stored = explanations.save(data_dir, written()) if keys else 0
    return ExplainStats(
        entities=len(repo.entities), already=len(repo.entities) - len(todo), explained=stored
    )
