"""The embedded default for real: the packaged Gemma 3 270M GGUF through llama.cpp."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import jsonschema
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from context_kit_service.local_models import DEFAULT_LOCAL_MODEL, LocalChatModel, format_transcript
from context_kit_service.provider_errors import ProviderError
from context_kit_service.providers import chat_spec, get_chat_model
from tests.conftest import SHARED_MODELS

pytestmark = pytest.mark.model

PROMPT = [
    SystemMessage("You write one short sentence about software projects."),
    HumanMessage("Describe a login feature."),
]


@pytest.fixture(scope="module")
def model() -> Iterator[LocalChatModel]:
    return LocalChatModel(
        model_path=DEFAULT_LOCAL_MODEL,
        models_dir=SHARED_MODELS,
        temperature=0.0,
        max_tokens=24,
        n_ctx=1024,
    )


def test_the_factory_builds_the_local_model_on_the_packaged_gguf(make_settings) -> None:
    model = get_chat_model(chat_spec(make_settings(), temperature=0.0, max_tokens=5))
    assert isinstance(model, LocalChatModel)
    assert (model.model_path, model.temperature, model.max_tokens, model.prefix_cache_mb) == (
        "qwen2.5-coder-0.5b",
        0.0,
        5,
        256,
    )
    off = get_chat_model(chat_spec(make_settings(local_prefix_cache_mb=0)))
    assert isinstance(off, LocalChatModel)
    assert off.prefix_cache_mb == 0


def test_transcript_is_a_completion_prompt() -> None:
    assert format_transcript([*PROMPT, AIMessage("Sure."), HumanMessage("More?")]) == (
        "You write one short sentence about software projects.\n\n"
        "User: Describe a login feature.\n"
        "Assistant: Sure.\n"
        "User: More?\n"
        "Assistant:"
    )


async def test_streaming_matches_invoke_and_reports_real_usage(model: LocalChatModel) -> None:
    chunks = [chunk async for chunk in model.astream(PROMPT)]
    streamed = "".join(str(chunk.content) for chunk in chunks)
    invoked = await model.ainvoke(PROMPT)

    assert len([c for c in chunks if c.content]) >= 2
    assert streamed.strip() == invoked.content
    assert invoked.content != ""
    usage = invoked.usage_metadata
    assert usage is not None
    runtime = model.runtime
    prompt = model._turn(PROMPT, None, {}).prompt  # the chat template's, or the transcript
    assert usage["input_tokens"] == runtime.count_tokens(prompt, add_bos=True)
    assert usage["output_tokens"] == runtime.count_tokens(str(invoked.content), add_bos=False)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    streamed_usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert [u["input_tokens"] for u in streamed_usage] == [usage["input_tokens"]]


async def test_max_tokens_is_honoured(model: LocalChatModel) -> None:
    reply = await model.ainvoke(PROMPT, max_tokens=3)
    assert reply.response_metadata["finish_reason"] == "length"
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] <= 3


SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "status": {"type": "string", "enum": ["proposed", "in-progress", "done"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 2},
    },
    "required": ["title", "status", "tags"],
    "additionalProperties": False,
}


async def test_json_schema_constrained_output_parses_and_validates(model: LocalChatModel) -> None:
    structured = model.bind(max_tokens=120).with_structured_output(SCHEMA)  # type: ignore[attr-defined]
    result = await structured.ainvoke(
        [HumanMessage("A feature for exporting reports as PDF, as JSON:")]
    )
    jsonschema.validate(result, SCHEMA)
    assert set(result) == {"title", "status", "tags"}


async def test_cancelling_a_stream_stops_the_model_between_tokens(model: LocalChatModel) -> None:
    long = LocalChatModel(
        model_path=model.model_path,
        models_dir=model.models_dir,
        temperature=0.0,
        max_tokens=400,
        n_ctx=1024,
    )
    stream = long.astream([HumanMessage("Write a long story about a dragon.")])
    first = await anext(stream)
    assert first.content != ""
    started = time.monotonic()
    await stream.aclose()
    assert time.monotonic() - started < 1.0
    assert long.runtime.lock.acquire(timeout=1.0)
    long.runtime.lock.release()


async def test_generation_does_not_block_the_event_loop(model: LocalChatModel) -> None:
    gaps: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(stop))
    first, second = await asyncio.gather(model.ainvoke(PROMPT), model.ainvoke(PROMPT))
    stop.set()
    await tick
    assert first.content == second.content  # temperature 0, serialised on one instance
    assert max(gaps) < 0.1


async def test_a_prompt_longer_than_the_context_window_is_refused() -> None:
    small = LocalChatModel(
        model_path=DEFAULT_LOCAL_MODEL, models_dir=SHARED_MODELS, max_tokens=8, n_ctx=512
    )
    with pytest.raises(ProviderError) as raised:
        await small.ainvoke([HumanMessage("word " * 800)])
    assert raised.value.code == "CONTEXT_LENGTH_EXCEEDED"
    assert raised.value.message.endswith("the local model's context window is 512")


async def test_a_schema_with_a_regex_pattern_does_not_crash_the_model(
    model: LocalChatModel,
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$", "maxLength": 12}
        },
        "required": ["version"],
        "additionalProperties": False,
    }
    result = (
        await model.bind(max_tokens=30)
        .with_structured_output(schema)
        .ainvoke([HumanMessage("A version as JSON:")])
    )  # type: ignore[attr-defined]
    assert set(result) == {"version"}
    assert isinstance(result["version"], str)


async def test_counting_tokens_does_not_wait_for_a_generation(model: LocalChatModel) -> None:
    long = LocalChatModel(
        model_path=model.model_path,
        models_dir=model.models_dir,
        temperature=0.0,
        max_tokens=400,
        n_ctx=1024,
    )
    stream = long.astream([HumanMessage("Write a long story about a dragon.")])
    await anext(stream)  # a generation is running and holds the model's lock
    assert long.runtime.lock.locked()
    started = time.monotonic()
    count = long.get_num_tokens("hello world")
    assert time.monotonic() - started < 0.5
    assert count == len(long.runtime.tokenize("hello world", add_bos=False))
    await stream.aclose()


async def test_the_prefix_cache_resumes_a_prompt_that_starts_like_a_saved_one() -> None:
    def local(cache_mb: int) -> LocalChatModel:
        return LocalChatModel(
            model_path=DEFAULT_LOCAL_MODEL,
            models_dir=SHARED_MODELS,
            temperature=0.0,
            max_tokens=6,
            n_ctx=1024,
            prefix_cache_mb=cache_mb,
        )

    cached, plain = local(64), local(0)
    system = SystemMessage("You answer in a few words about colours and nature. " * 20)
    await cached.ainvoke([system, HumanMessage("What colour is the sky?")])
    await cached.ainvoke([HumanMessage("Say hi.")])  # what llama.cpp alone would keep
    resumed = await cached.ainvoke([system, HumanMessage("What colour is grass?")])
    cache = cached.runtime.llama().cache
    assert (cache.capacity_bytes, len(cache.cache_state)) == (64 << 20, 3)
    # A saved state holds the KV cache and tokens, not the prompt's logits (300 MB a state
    # for this vocabulary, outside the capacity), so the capacity bounds what the cache holds.
    assert [state.scores.nbytes for state in cache.cache_state.values()] == [0, 0, 0]
    assert plain.runtime.llama().cache is None
    fresh = await plain.ainvoke([system, HumanMessage("What colour is grass?")])
    assert resumed.content == fresh.content != ""
