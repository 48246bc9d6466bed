// The Electron helper against the real service (spawned from CKS_SERVICE_COMMAND) and against
// a stand-in that misbehaves on purpose (test/fixtures/fake-service.js).
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";

import { Sidecar, SidecarError } from "../src/index.js";

const service = process.env.CKS_SERVICE_COMMAND;
const sampleRepo = process.env.CKS_SAMPLE_REPO;
const fake = fileURLToPath(new URL("./fixtures/fake-service.js", import.meta.url));
const started = [];

// Each service gets its own data directory (threads, indexes).
function sidecar(options) {
  const dataDir = mkdtempSync(join(tmpdir(), "cks-sidecar-"));
  const created = new Sidecar({ ...options, env: { CKS_DATA_DIR: dataDir, ...options.env } });
  started.push(created);
  return created;
}

function fakeSidecar(mode, options = {}) {
  return sidecar({ command: process.execPath, args: [fake], env: { FAKE_MODE: mode }, ...options });
}

after(async () => {
  await Promise.all(started.map((s) => s.stop()));
});

test("starts the real service on a free port, calls it, and stops it with SIGTERM", async () => {
  assert.ok(service, "set CKS_SERVICE_COMMAND to the context-kit-service executable");
  const helper = sidecar({ command: service, repoPath: sampleRepo });
  const { url, pid } = await helper.start();
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(pid, helper.child.pid);

  const health = await helper.health();
  assert.equal(health.status, "healthy");

  const next = await helper.executeTool({
    toolId: "pipeline.next-id",
    parameters: { entity_type: "task" },
  });
  assert.deepEqual(next.result, { entityType: "task", id: "T-011" });
  assert.equal(next.metadata.status, "completed");

  const viaGraph = await helper.graph("tools").invoke({
    tool_id: "pipeline.next-id",
    parameters: { entity_type: "task" },
  });
  assert.deepEqual(viaGraph.result, next.result);

  await assert.rejects(helper.ragQuery({ query: " " }), (error) => {
    assert.ok(error instanceof SidecarError);
    assert.deepEqual([error.status, error.code], [422, "VALIDATION_ERROR"]);
    assert.equal(error.message, "invalid request: query: Value error, query must not be blank");
    return true;
  });

  const stopped = await helper.stop();
  assert.deepEqual(stopped, { code: 0, signal: null, killed: false });
});

test("requests without the token are refused", async () => {
  const helper = sidecar({ command: service, repoPath: sampleRepo });
  const { url } = await helper.start();
  const response = await fetch(`${url}/ai/threads`);
  assert.equal(response.status, 401);
  await helper.stop();
});

test("a service that ignores SIGTERM is killed after the stop timeout", async () => {
  const helper = fakeSidecar("stubborn", { stopTimeoutMs: 300 });
  await helper.start();
  const began = Date.now();
  const stopped = await helper.stop();
  assert.deepEqual(stopped, { code: null, signal: "SIGKILL", killed: true });
  assert.ok(Date.now() - began >= 300);
});

test("a crashed service is restarted, with a fresh port and pid", async () => {
  const helper = sidecar({ command: service, repoPath: sampleRepo, restart: { initialDelayMs: 10 } });
  const first = await helper.start();
  const restarted = once(helper, "ready");
  process.kill(first.pid, "SIGKILL");
  const [exit] = await once(helper, "exit");
  assert.deepEqual(exit, { code: null, signal: "SIGKILL", expected: false });
  const [second] = await restarted;
  assert.notEqual(second.pid, first.pid);
  assert.equal((await helper.health()).status, "healthy");
  await helper.stop();
});

test("restarts back off and give up after the retry limit", async () => {
  const helper = fakeSidecar("crash", {
    restart: { retries: 3, initialDelayMs: 20, maxDelayMs: 50 },
  });
  const delays = [];
  helper.on("restarting", ({ delayMs }) => delays.push(delayMs));
  await helper.start();
  const [gaveUp] = await once(helper, "gave-up");
  assert.deepEqual(gaveUp, { attempts: 3 });
  assert.deepEqual(delays, [20, 40, 50]);
});

test("a service that never says it is ready fails the start with a code", async () => {
  const helper = fakeSidecar("silent", { startTimeoutMs: 300 });
  await assert.rejects(helper.start(), (error) => {
    assert.equal(error.code, "START_TIMEOUT");
    return true;
  });
});

test("unknown graphs are refused by name", () => {
  const helper = new Sidecar();
  assert.throws(() => helper.graph("nope"), /unknown graph nope; use one of tools,rag,generate,assistant/);
});

test("the assistant's SSE contract through the helper: tokens, complete, threads", async () => {
  const provider = process.env.CKS_E2E_PROVIDER_URL;
  assert.ok(provider, "set CKS_E2E_PROVIDER_URL to the fake OpenAI-compatible server");
  const helper = sidecar({
    command: service,
    repoPath: sampleRepo,
    env: { CKS_PROVIDER: "openai", CKS_MODEL: "agent", CKS_BASE_URL: provider, CKS_API_KEY: "k" },
  });
  await helper.start();
  const events = [];
  for await (const event of helper.assistStream({ question: "What is FEAT-001?", threadId: "t1" })) {
    events.push(event);
  }
  assert.deepEqual(
    events.map((e) => e.type),
    ["token", "token", "complete"],
  );
  assert.deepEqual(events.slice(0, 2).map((e) => e.token), ["See ", "[FEAT-001]."]);
  assert.equal(events[2].fullContent, "See [FEAT-001].");
  assert.equal(events[2].metadata.threadId, "t1");

  const thread = await helper.getThread("t1");
  assert.deepEqual(thread.messages.map((m) => m.role), ["user", "assistant", "tool", "assistant"]);
  assert.deepEqual(await helper.listThreads(), { threads: [{ threadId: "t1" }] });
  assert.equal(await helper.deleteThread("t1"), null);
  await assert.rejects(helper.getThread("t1"), (error) => error.code === "THREAD_NOT_FOUND");
  await helper.stop();
});

test("aborting the assistant stream mid-answer (a Stop button) ends the iteration", async () => {
  const helper = sidecar({ command: service, repoPath: sampleRepo });
  await helper.start();
  const controller = new AbortController();
  const received = [];
  await assert.rejects(
    (async () => {
      const question = { question: "Describe every feature in detail.", config: { provider: "local", maxTokens: 400 } };
      for await (const event of helper.assistStream(question, { signal: controller.signal })) {
        received.push(event.type);
        controller.abort();
      }
    })(),
    { name: "AbortError" },
  );
  assert.deepEqual(received, ["token"]);
  assert.equal((await helper.health()).status, "healthy");
  await helper.stop();
});
