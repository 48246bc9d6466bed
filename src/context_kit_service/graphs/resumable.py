"""Serving a graph that can pause for approval (LangGraph `interrupt`) over plain JSON.

Clients cannot send a LangGraph `Command`, so the served runnable takes an optional
`approval` field: without it a run starts on a thread; with it, the paused run on that
thread resumes with the approval as the interrupt's answer. A pause is reported in the
output as `status: "pending_approval"` with the `approval_request` and the `thread_id`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun
from langchain_core.runnables import ConfigurableFieldSpec, Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config
from langgraph.pregel import Pregel
from langgraph.types import Command
from pydantic import AfterValidator, BaseModel, Field, create_model

from context_kit_service.configuration import configuration_specs
from context_kit_service.repository.yaml_io import bounded


class Approval(BaseModel):
    """The user's answer to a pending approval."""

    approved: bool = Field(description="Whether the change may go ahead.")
    arguments: Annotated[dict[str, Any] | None, AfterValidator(bounded)] = Field(
        default=None, description="Edited tool arguments to use instead of the proposed ones."
    )


class PendingApprovalError(LookupError):
    """An approval was sent for a thread with nothing waiting for one."""


def approvable_input(name: str, input_state: type[BaseModel]) -> type[BaseModel]:
    """The graph's input plus `approval`, the answer that resumes a paused thread."""
    return create_model(
        f"{name}_input",
        __base__=input_state,
        approval=(
            Approval | None,
            Field(default=None, description="Answer to a pending approval (resumes the thread)."),
        ),
    )


async def start_run(
    graph: Pregel[Any, Any, Any, Any], input: Any, config: RunnableConfig | None
) -> tuple[Any, RunnableConfig]:
    """What to run `graph` with, and the config: on the given thread (a fresh one when none is
    given), the input without its `approval`; or, when it holds one, the Command that answers
    the thread's pending approval (PendingApprovalError when nothing waits)."""
    configurable = dict((config or {}).get("configurable") or {})
    configurable["thread_id"] = configurable.get("thread_id") or uuid.uuid4().hex
    config = patch_config(config, configurable=configurable)
    payload = input.model_dump() if isinstance(input, BaseModel) else input
    if not isinstance(payload, dict):
        return payload, config
    payload = dict(payload)
    approval = payload.pop("approval", None)
    if approval is None:
        return payload, config
    if not (await graph.aget_state(config)).interrupts:
        thread_id = configurable["thread_id"]
        raise PendingApprovalError(f"thread {thread_id} has no change waiting for approval")
    return Command(resume=Approval.model_validate(approval).model_dump()), config


def served_models(
    name: str, input_state: type[BaseModel], output_state: type[BaseModel]
) -> tuple[type[BaseModel], type[BaseModel]]:
    """The served input (the graph's, plus `approval`) and output (plus the pause details)."""
    served_input = approvable_input(name, input_state)
    served_output = create_model(
        f"{name}_output",
        __base__=output_state,
        approval_request=(
            dict[str, Any] | None,
            Field(default=None, description="What waits for approval (status pending_approval)."),
        ),
        thread_id=(str, Field(description="The thread of this run; send it back to approve.")),
    )
    return served_input, served_output


class ResumableGraph(Runnable[dict[str, Any], dict[str, Any]]):
    """A compiled graph (with a checkpointer) served with approval support."""

    def __init__(
        self,
        name: str,
        get_graph: Callable[[], Pregel[Any, Any, Any, Any]],
        input_model: type[BaseModel],
        output_model: type[BaseModel],
    ) -> None:
        self.name = name
        self._get_graph = get_graph
        self._input_model = input_model
        self._output_model = output_model

    @property
    def InputType(self) -> type[dict[str, Any]]:
        return dict

    @property
    def OutputType(self) -> type[dict[str, Any]]:
        return dict

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self._input_model

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self._output_model

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return configuration_specs()

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        raise TypeError(f"{self.name} runs asynchronously; call ainvoke/astream instead")

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return await self._acall_with_config(self._run, input, config, **kwargs)

    async def _run(
        self,
        payload: dict[str, Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> dict[str, Any]:
        graph = self._get_graph()
        start, config = await start_run(graph, payload, config)
        config = patch_config(config, callbacks=run_manager.get_child())
        thread_id = config["configurable"]["thread_id"]
        result = await graph.ainvoke(start, config)
        interrupts = result.pop("__interrupt__", None)
        if interrupts:
            result = {
                **result,
                "status": "pending_approval",
                "approval_request": interrupts[0].value,
            }
        complete = self._output_model.model_validate({**result, "thread_id": thread_id})
        return complete.model_dump()
