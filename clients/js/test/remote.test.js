// Every graph through @langchain/core's RemoteRunnable (0.3.x), against the real service that
// the Python test run starts (CKS_E2E_URL, CKS_E2E_TOKEN) with the fake provider's `agent`
// model. Every output must arrive whole: no field dropped or rewritten by the client.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { RemoteRunnable } from "@langchain/core/runnables/remote";

const url = process.env.CKS_E2E_URL;
const token = process.env.CKS_E2E_TOKEN;
const headers = { Authorization: `Bearer ${token}` };

function remote(path) {
  assert.ok(url, "set CKS_E2E_URL to a running service (the Python test run does)");
  return new RemoteRunnable({ url: `${url}${path}`, options: { timeout: 120_000, headers } });
}

async function rest(path, body) {
  const response = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { ...headers, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

function without(output, ...keys) {
  return Object.fromEntries(Object.entries(output).filter(([key]) => !keys.includes(key)));
}

async function streamEvents(runnable, input) {
  return collect(runnable.streamEvents(input, { version: "v2" }));
}

test("tool execution: invoke, batch, stream and streamEvents", async () => {
  const tools = remote("/graphs/tools");
  const input = { tool_id: "pipeline.next-id", parameters: { entity_type: "task" } };
  const { result } = await rest("/ai/tools/execute", {
    toolId: "pipeline.next-id",
    parameters: { entity_type: "task" },
  });
  const expected = {
    status: "completed",
    tool: "next_id",
    result,
    error: null,
    approval_request: null,
  };

  const output = await tools.invoke(input);
  assert.deepEqual(Object.keys(output).sort(), [
    "approval_request", "duration_ms", "error", "result", "status", "thread_id", "tool",
  ]);
  assert.deepEqual(without(output, "duration_ms", "thread_id"), expected);

  const batch = await tools.batch([input, input]);
  assert.deepEqual(batch.map((o) => without(o, "duration_ms", "thread_id")), [expected, expected]);

  const chunks = await collect(await tools.stream(input));
  assert.deepEqual(chunks.map((c) => without(c, "duration_ms", "thread_id")), [expected]);

  const events = await streamEvents(tools, input);
  const end = events.at(-1);
  assert.equal(end.event, "on_chain_end");
  assert.deepEqual(without(end.data.output, "duration_ms", "thread_id"), expected);
});

test("RAG: invoke, batch, stream and streamEvents", async () => {
  const rag = remote("/graphs/rag");
  const input = { query: "How do people sign in with a passkey?" };
  const reference = await rest("/ai/rag/query", input);
  const top = reference.sources[0].entityId;

  const check = (output, completionTokens) => {
    assert.deepEqual(without(output, "sources", "retrieval_ms", "generation_ms"), {
      answer: `See [${top}].`,
      cited_ids: [top],
      model: "agent",
      prompt_tokens: 11,
      completion_tokens: completionTokens,
      index_stale: null,
    });
    assert.deepEqual(
      output.sources.map((s) => [s.entity_id, s.entity_type, s.file_path]),
      reference.sources.map((s) => [s.entityId, s.entityType, s.filePath]),
    );
    for (const source of output.sources) {
      assert.deepEqual(Object.keys(source).sort(), [
        "entity_id", "entity_type", "excerpt", "file_path", "relevance_score", "supporting", "title",
      ]);
      assert.equal(typeof source.title, "string");
      assert.equal(typeof source.excerpt, "string");
      assert.equal(typeof source.relevance_score, "number");
    }
  };

  check(await rag.invoke(input), 4);
  for (const output of await rag.batch([input, input])) check(output, 4);

  const chunks = await collect(await rag.stream(input));
  assert.deepEqual(chunks.map((c) => Object.keys(c)), [
    ["check_request"], ["retrieve"], ["answer_question"],
  ]);
  assert.deepEqual(without(chunks[2].answer_question, "generation_ms"), {
    answer: `See [${top}].`,
    cited_ids: [top],
    model: "agent",
    prompt_tokens: 11,
    completion_tokens: 4,
  });

  const events = await streamEvents(rag, input);
  const tokens = events
    .filter((e) => e.event === "on_chat_model_stream" && e.data.chunk.content)
    .map((e) => e.data.chunk.content);
  assert.deepEqual(tokens, ["See ", `[${top}].`]);
  check(events.at(-1).data.output, 2);
});

test("generation: invoke, batch, stream and streamEvents", async () => {
  const generate = remote("/graphs/generate");
  const input = {
    entity_type: "task",
    user_prompt: "Index the budget lines so the remaining view is fast",
    linked_feature_id: "FEAT-003",
  };
  const expected = (completionTokens) => ({
    status: "completed",
    entity: {
      id: "T-011",
      title: "Add an index on budget lines",
      status: "todo",
      steps: ["Write the migration"],
      related: { feature: "FEAT-003" },
    },
    yaml:
      "id: T-011\ntitle: Add an index on budget lines\nstatus: todo\nsteps:\n" +
      "  - Write the migration\nrelated:\n  feature: FEAT-003\n",
    valid: true,
    problems: [],
    error: null,
    attempts: 1,
    saved_path: null,
    prompt_tokens: 11,
    completion_tokens: completionTokens,
    model: "agent",
    provider: "openai",
    linked_feature: "FEAT-003",
    linked_by: "request",
    unchecked: [],
    approval_request: null,
  });

  assert.deepEqual(without(await generate.invoke(input), "duration_ms", "thread_id", "repository"), expected(4));
  const batch = await generate.batch([input, input]);
  assert.deepEqual(batch.map((o) => without(o, "duration_ms", "thread_id", "repository")), [expected(4), expected(4)]);
  const chunks = await collect(await generate.stream(input));
  assert.deepEqual(chunks.map((c) => without(c, "duration_ms", "thread_id", "repository")), [expected(4)]);
  const events = await streamEvents(generate, input);
  assert.deepEqual(without(events.at(-1).data.output, "duration_ms", "thread_id", "repository"), expected(13));
});

test("assistant: invoke, batch, stream and streamEvents, tool calls as plain data", async () => {
  const assistant = remote("/graphs/assistant");
  const input = { messages: [{ type: "human", content: "What is FEAT-001 about?" }] };
  const feature = await rest("/ai/tools/execute", {
    toolId: "context.get",
    parameters: { entity_id: "FEAT-001" },
  });
  const expected = {
    answer: "See [FEAT-001].",
    transcript: [
      { role: "user", content: "What is FEAT-001 about?" },
      {
        role: "assistant",
        content: "",
        toolCalls: [{ id: "call_1", name: "get_entity", args: { entity_id: "FEAT-001" } }],
      },
      { role: "tool", content: JSON.stringify(feature.result), toolCallId: "call_1" },
      { role: "assistant", content: "See [FEAT-001]." },
    ],
    approval_request: null,
  };
  const normalized = (output) => ({
    ...output,
    transcript: output.transcript.map((m) =>
      m.role === "tool" ? { ...m, content: JSON.stringify(JSON.parse(m.content)) } : m,
    ),
  });

  assert.deepEqual(normalized(await assistant.invoke(input)), expected);
  const batch = await assistant.batch([input, input]);
  assert.deepEqual(batch.map(normalized), [expected, expected]);

  const chunks = await collect(await assistant.stream(input));
  assert.deepEqual(chunks.map((c) => Object.keys(c)[0]), [
    "prepare", "call_model", "tools", "call_model", "finish",
  ]);
  assert.deepEqual(normalized(chunks.at(-1).finish), expected);

  const events = await streamEvents(assistant, input);
  const tokens = events
    .filter((e) => e.event === "on_chat_model_stream")
    .map((e) => e.data.chunk.content)
    .join("");
  assert.equal(tokens, "See [FEAT-001].");
  assert.deepEqual(normalized(events.at(-1).data.output), expected);
});

test("assistant threads: the same thread_id remembers, another does not", async () => {
  const assistant = remote("/graphs/assistant");
  const turn = (content, threadId) =>
    assistant.invoke(
      { messages: [{ type: "human", content }] },
      { configurable: { thread_id: threadId } },
    );
  const [a, b] = [randomUUID(), randomUUID()];
  await turn("Hi", a);
  const again = await turn("Again", a);
  const other = await turn("Hello", b);
  const userTurns = (output) => output.transcript.filter((m) => m.role === "user").map((m) => m.content);
  assert.deepEqual(userTurns(again), ["Hi", "Again"]);
  assert.deepEqual(userTurns(other), ["Hello"]);
});

test("without the token the service refuses the client", async () => {
  const anonymous = new RemoteRunnable({ url: `${url}/graphs/rag` });
  await assert.rejects(anonymous.invoke({ query: "passkeys" }), /401/);
});
