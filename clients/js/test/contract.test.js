// The desktop app's client contract, as its Zod schemas (zod 3, the app's pinned major) encode
// it (from ../shared/docs/seed-contract.md), parsing every answer of a service started exactly
// as the app starts it (`python -m uvicorn context_kit_service.main:app`: no repository, no
// token). Requests carry the `config` the app sends, pointing at the tests' fake Ollama and
// Azure servers (CKS_FAKE_URL). The Python side (tests/test_app_contract.py) starts both.
import assert from "node:assert/strict";
import { test } from "node:test";

import { z } from "zod";

const url = process.env.CKS_APP_URL;
const fake = process.env.CKS_FAKE_URL;
const repoPath = process.env.CKS_APP_REPO;

// --- the app's schemas ------------------------------------------------------------------------

const Health = z.object({
  status: z.enum(["healthy", "degraded", "unhealthy", "unknown"]),
  version: z.string(),
  uptimeSeconds: z.number().min(0),
  dependencies: z.record(z.string()),
  timestamp: z.string().optional(),
});
const GenerateResponse = z.object({
  entity: z.record(z.any()),
  metadata: z.object({
    promptTokens: z.number().int().min(0),
    completionTokens: z.number().int().min(0),
    durationMs: z.number().min(0),
    model: z.string(),
    provider: z.string().optional(),
  }),
});
const StreamEvent = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("token"),
    token: z.string(),
    metadata: z.object({ tokenIndex: z.number().int().min(0) }).optional(),
  }),
  z.object({
    type: z.literal("complete"),
    fullContent: z.string(),
    metadata: z.object({
      totalTokens: z.number().int().min(0),
      durationMs: z.number().min(0),
      model: z.string().optional(),
    }),
  }),
  z.object({ type: z.literal("error"), message: z.string(), code: z.string().optional() }),
]);
const ToolResponse = z.object({
  result: z.record(z.any()).optional(),
  error: z.string().optional(),
  metadata: z.object({ durationMs: z.number().min(0), toolId: z.string() }),
});
const RagResponse = z.object({
  answer: z.string(),
  sources: z.array(
    z.object({
      entityId: z.string(),
      entityType: z.string(),
      relevanceScore: z.number().min(0).max(1),
      excerpt: z.string(),
      filePath: z.string().optional(),
    }),
  ),
  metadata: z.object({
    retrievalTimeMs: z.number(),
    generationTimeMs: z.number(),
    totalSources: z.number().int().min(0),
    model: z.string().optional(),
  }),
});

// --- the app's requests -----------------------------------------------------------------------

const azure = () => ({
  provider: "azure-openai",
  endpoint: fake,
  model: "agent",
  apiKey: "test-key",
  apiVersion: "2024-02-15-preview",
  temperature: 0,
});
const ollama = () => ({ provider: "ollama", endpoint: fake, model: "llama3.2", temperature: 0.7 });

async function post(path, body) {
  assert.ok(url && fake && repoPath, "run from tests/test_app_contract.py");
  const response = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, `${path}: ${await response.clone().text()}`);
  return response;
}

async function events(body) {
  const text = await (await post("/ai/assist/stream", body)).text();
  const frames = text.split("\n\n").filter((frame) => frame.startsWith("data: "));
  assert.equal(frames.at(-1), "data: [DONE]");
  // Parsed as the app parses them; returned whole (Zod drops the keys it does not know).
  const sent = frames.slice(0, -1).map((frame) => JSON.parse(frame.slice(6)));
  for (const event of sent) StreamEvent.parse(event);
  assert.equal(sent.filter((event) => event.type !== "token").length, 1, "one complete or error");
  return sent;
}

// --- the tests ----------------------------------------------------------------------------------

test("/health", async () => {
  const response = await fetch(`${url}/health`);
  assert.equal(response.status, 200);
  Health.parse(await response.json());
});

for (const entityType of ["feature", "userstory", "spec", "task", "governance"]) {
  test(`generate a ${entityType} without a repository`, async () => {
    const body = { entityType, userPrompt: `A ${entityType} about budget exports`, config: azure() };
    const out = GenerateResponse.parse(await (await post("/ai/generate-entity", body)).json());
    assert.match(out.entity.id, /^[A-Z]+-001$/);
  });
  test(`generate a ${entityType} with linkedFeatureId`, async () => {
    const body = {
      entityType,
      userPrompt: `A ${entityType} about budget exports`,
      linkedFeatureId: "FEAT-001",
      config: azure(),
    };
    GenerateResponse.parse(await (await post("/ai/generate-entity", body)).json());
  });
}

test("assist: plain, with history, with a snapshot and no repository", async () => {
  const plain = await events({ question: "Hello", config: ollama() });
  assert.equal(plain.at(-1).type, "complete");
  const history = await events({
    question: "And then?",
    conversationHistory: [
      { role: "user", content: "Hi", timestamp: "2026-01-01T00:00:00Z" },
      { role: "assistant", content: "Hello" },
    ],
    config: ollama(),
  });
  assert.equal(history.at(-1).type, "complete");
  const snapshot = await events({
    question: "What is open?",
    contextSnapshot: { features: [{ id: "FEAT-001", title: "Passkeys" }] },
    config: azure(),
  });
  assert.equal(snapshot.at(-1).type, "complete");
});

test("assist: a tool read, a paused write, a provider failure", async () => {
  const read = await events({ question: "What is FEAT-001?", repoPath, config: azure() });
  assert.equal(read.at(-1).fullContent, "See [FEAT-001].");
  const down = await events({
    question: "Hello",
    config: { ...ollama(), endpoint: "http://127.0.0.1:9" },
  });
  assert.equal(down.at(-1).type, "error");
  assert.equal(down.at(-1).code, "PROVIDER_UNAVAILABLE");
});

test("assist: a write that waits for approval ends with a complete", async () => {
  const body = { question: "Create a task", repoPath, config: azure(), threadId: "write-1" };
  const paused = (await events(body)).at(-1);
  assert.equal(paused.type, "complete");
  assert.match(paused.fullContent, /^I would like to change the repository: create_entity with /);
  assert.equal(paused.metadata.status, "pending_approval");
  assert.equal(paused.metadata.threadId, "write-1");
  assert.equal(paused.metadata.approvalRequest.toolCalls[0].tool, "create_entity");
});

const TOOLS = [
  ["context.read", { path: "docs/glossary.md", format: "markdown", encoding: "utf-8" }],
  ["context.search", { query: "passkey" }],
  ["pipeline.run", { pipeline: "validate", args: {} }],
  ["pipeline.run", { pipeline: "build-graph", args: {} }],
  ["pipeline.run", { pipeline: "impact", args: { changedIds: ["FEAT-001"] } }],
  ["pipeline.run", { pipeline: "generate", args: { ids: ["T-001"] } }],
  ["pipeline.run", { pipeline: "build-embeddings", args: {} }],
  ["pipeline.validate", {}],
  ["pipeline.build-graph", {}],
  ["pipeline.impact", { changedIds: ["FEAT-001", "T-001"] }],
  ["pipeline.generate", { ids: ["T-001"] }],
  ["pipeline.build-embeddings", {}],
  ["entity.details", { id: "FEAT-001" }],
  ["entity.similar", { entityId: "FEAT-001", topK: 3 }],
  ["git.status", { includeDiff: true }],
  ["git.diff", {}],
  [
    "context.writePatch",
    { path: "README.md", patch: "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-x\n+y\n" },
  ],
  ["git.preparePr", { title: "Draft", description: "A draft." }],
];

for (const [toolId, parameters] of TOOLS) {
  test(`tool ${toolId} ${JSON.stringify(parameters).slice(0, 60)}`, async () => {
    const body = { toolId, parameters, repoPath, config: ollama() };
    const out = ToolResponse.parse(await (await post("/ai/tools/execute", body)).json());
    assert.ok(out.result || out.error, "a result or an error");
  });
}

test("tool context.read answers the app's keys", async () => {
  const body = { toolId: "context.read", parameters: { path: "docs/glossary.md" }, repoPath, config: ollama() };
  const out = await (await post("/ai/tools/execute", body)).json();
  assert.deepEqual(Object.keys(out.result).sort(), ["contents", "encoding", "path"]);
});

for (const [name, extra] of [
  ["no filters", {}],
  ["filters", { entityTypes: ["feature", "userstory"] }],
  ["topK 50", { topK: 50 }],
]) {
  test(`rag with ${name}`, async () => {
    const body = { query: "How do passkeys work?", repoPath, config: ollama(), ...extra };
    const out = RagResponse.parse(await (await post("/ai/rag/query", body)).json());
    assert.ok(out.sources.length > 0);
  });
}
