"""Approvals, one home for every graph and face: the user's answer (`Approval`), the pause that
asks for it (`ask_approval`), and the key that makes an approved change land once.

A pause is one task of one thread: LangGraph re-runs that same task (same checkpoint
namespace) when the pause is answered, however often and however concurrently the answer is
sent. So `thread + namespace` names the pause, and the write journal applies each change of
one pause once (`repository/journal.py`): graphs keep the key in their state as
`approval_key`, where the write tools read it.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import interrupt
from pydantic import AfterValidator, BaseModel, Field

from context_kit_service.repository.yaml_io import bounded


class Approval(BaseModel):
    """The user's answer to a pending approval."""

    approved: bool = Field(description="Whether the change may go ahead.")
    arguments: Annotated[dict[str, Any] | None, AfterValidator(bounded)] = Field(
        default=None, description="Edited tool arguments to use instead of the proposed ones."
    )


class PendingApprovalError(LookupError):
    """An approval was sent for a thread with nothing waiting for one."""


def pause_key(config: RunnableConfig) -> str:
    """The name of the pause the running task is (its thread and checkpoint namespace)."""
    configurable = config.get("configurable") or {}
    return f"{configurable.get('thread_id', '')}|{configurable.get('checkpoint_ns', '')}"


def ask_approval(request: dict[str, Any], config: RunnableConfig) -> tuple[Approval, str]:
    """Pause the run with `request` until the user answers; the answer, and this pause's key.
    An answer that is not an approval counts as a rejection."""
    answer = interrupt(request)
    try:
        decision = Approval.model_validate(answer)
    except ValueError:
        decision = Approval(approved=False)
    return decision, pause_key(config)
