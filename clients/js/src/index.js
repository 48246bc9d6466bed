// Start, watch and call the context-kit AI sidecar from Electron's main process.
//
//   const sidecar = new Sidecar({ repoPath });
//   await sidecar.start();
//   const { answer } = await sidecar.graph("rag").invoke({ query: "How do passkeys work?" });
//   await sidecar.stop();

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

import { RemoteRunnable } from "@langchain/core/runnables/remote";

/** The LangServe routes of the service, by graph name. */
export const GRAPH_PATHS = Object.freeze({
  tools: "/graphs/tools",
  rag: "/graphs/rag",
  generate: "/graphs/generate",
  assistant: "/graphs/assistant",
});

/** An error from the service or from starting it; `code` is the service's error code. */
export class SidecarError extends Error {
  constructor(message, { code = "SIDECAR_ERROR", status, details } = {}) {
    super(message);
    this.name = "SidecarError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

const DEFAULTS = {
  command: "context-kit-service",
  args: [],
  startTimeoutMs: 60_000,
  stopTimeoutMs: 5_000,
  requestTimeoutMs: 600_000,
  restart: { retries: 5, initialDelayMs: 500, maxDelayMs: 10_000, stableAfterMs: 30_000 },
};

/**
 * The Python service as a child process: spawned on a free loopback port, watched, restarted
 * with backoff after a crash, and stopped with SIGTERM (then SIGKILL after `stopTimeoutMs`).
 * The backoff doubles from `restart.initialDelayMs` up to `restart.maxDelayMs`, for at most
 * `restart.retries` attempts; a service that ran for `restart.stableAfterMs` starts over.
 *
 * Events: `ready` ({url, pid}), `exit` ({code, signal, expected}), `restarting` ({attempt,
 * delayMs}), `gave-up` ({attempts}), `stderr` (a line of the service's JSON log).
 */
export class Sidecar extends EventEmitter {
  constructor(options = {}) {
    super();
    this.options = {
      ...DEFAULTS,
      ...options,
      restart: { ...DEFAULTS.restart, ...options.restart },
    };
    this.token = options.token ?? randomBytes(24).toString("hex");
    this.url = null;
    this.pid = null;
    this.child = null;
    this.stopping = false;
    this.restarts = 0;
    this.startedAt = 0;
    this.runnables = new Map();
  }

  /** Spawn the service and resolve with `{url, pid}` once it has said it is ready and healthy. */
  async start() {
    this.stopping = false;
    const { command, args, env, repoPath, allowClientEndpoints } = this.options;
    const child = spawn(
      command,
      [...args, "serve", "--port", "0", "--parent-pid", String(process.pid)],
      {
        env: {
          ...process.env,
          ...env,
          CKS_AUTH_TOKEN: this.token,
          ...(repoPath ? { CKS_REPO_PATH: repoPath } : {}),
          ...(allowClientEndpoints ? { CKS_ALLOW_CLIENT_ENDPOINTS: "true" } : {}),
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    this.child = child;
    createInterface({ input: child.stderr }).on("line", (line) => this.emit("stderr", line));
    const exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    child.once("exit", (code, signal) => this.#onExit(child, code, signal));

    const ready = await this.#readyLine(child, exited);
    this.startedAt = Date.now();
    this.url = ready.url;
    this.pid = ready.pid;
    this.runnables.clear();
    await this.health();
    this.emit("ready", { url: this.url, pid: this.pid });
    return { url: this.url, pid: this.pid };
  }

  async #readyLine(child, exited) {
    const lines = createInterface({ input: child.stdout });
    const timeout = AbortSignal.timeout(this.options.startTimeoutMs);
    const firstLine = new Promise((resolve) => lines.once("line", resolve));
    const aborted = new Promise((resolve) => {
      timeout.addEventListener("abort", () => resolve(null), { once: true });
    });
    const line = await Promise.race([firstLine, exited.then(() => undefined), aborted]);
    if (line === null) {
      child.kill("SIGKILL");
      throw new SidecarError(`the service was not ready in ${this.options.startTimeoutMs} ms`, {
        code: "START_TIMEOUT",
      });
    }
    if (line === undefined) {
      const { code, signal } = await exited;
      throw new SidecarError(`the service exited before it was ready (${signal ?? code})`, {
        code: "START_FAILED",
      });
    }
    const ready = JSON.parse(line);
    if (ready.event !== "ready") {
      throw new SidecarError(`unexpected first line from the service: ${line}`, {
        code: "START_FAILED",
      });
    }
    return ready;
  }

  #onExit(child, code, signal) {
    if (child !== this.child) return;
    const expected = this.stopping;
    this.child = null;
    this.emit("exit", { code, signal, expected });
    if (Date.now() - this.startedAt >= this.options.restart.stableAfterMs) this.restarts = 0;
    if (!expected && this.url !== null) void this.#restart();
  }

  async #restart() {
    const { retries, initialDelayMs, maxDelayMs } = this.options.restart;
    while (!this.stopping && this.restarts < retries) {
      const delayMs = Math.min(maxDelayMs, initialDelayMs * 2 ** this.restarts);
      this.restarts += 1;
      this.emit("restarting", { attempt: this.restarts, delayMs });
      await sleep(delayMs);
      if (this.stopping) return;
      try {
        await this.start();
        return;
      } catch (error) {
        this.emit("restart-failed", { attempt: this.restarts, error });
      }
    }
    if (!this.stopping) this.emit("gave-up", { attempts: this.restarts });
  }

  /**
   * Stop the service: SIGTERM, then SIGKILL when it has not exited after `stopTimeoutMs`.
   * Resolves with how it ended: `{code, signal, killed}`.
   */
  async stop() {
    this.stopping = true;
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) {
      return { code: child?.exitCode ?? null, signal: child?.signalCode ?? null, killed: false };
    }
    const exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    child.kill("SIGTERM");
    const timer = sleep(this.options.stopTimeoutMs, "timeout");
    if ((await Promise.race([exited, timer])) !== "timeout") {
      return { ...(await exited), killed: false };
    }
    child.kill("SIGKILL");
    return { ...(await exited), killed: true };
  }

  /** The service's `/health` document; throws a SidecarError when it is not healthy. */
  async health() {
    return this.#request("GET", "/health");
  }

  /** A LangServe RemoteRunnable for one graph: `tools`, `rag`, `generate` or `assistant`. */
  graph(name, { timeoutMs = this.options.requestTimeoutMs } = {}) {
    const path = GRAPH_PATHS[name];
    if (path === undefined) {
      throw new SidecarError(`unknown graph ${name}; use one of ${Object.keys(GRAPH_PATHS)}`);
    }
    const key = `${name}:${timeoutMs}`;
    if (!this.runnables.has(key)) {
      this.runnables.set(
        key,
        new RemoteRunnable({
          url: this.#url(path),
          options: { timeout: timeoutMs, headers: this.#headers() },
        }),
      );
    }
    return this.runnables.get(key);
  }

  /** `POST /ai/tools/execute` (the app's contract). */
  executeTool(body) {
    return this.#request("POST", "/ai/tools/execute", body);
  }

  /** `POST /ai/rag/query`. */
  ragQuery(body) {
    return this.#request("POST", "/ai/rag/query", body);
  }

  /** `POST /ai/generate-entity`. */
  generateEntity(body) {
    return this.#request("POST", "/ai/generate-entity", body);
  }

  /** `GET /ai/threads`, `GET /ai/threads/{id}`, `DELETE /ai/threads/{id}`. */
  listThreads() {
    return this.#request("GET", "/ai/threads");
  }

  getThread(threadId) {
    return this.#request("GET", `/ai/threads/${encodeURIComponent(threadId)}`);
  }

  deleteThread(threadId) {
    return this.#request("DELETE", `/ai/threads/${encodeURIComponent(threadId)}`);
  }

  /**
   * `POST /ai/assist/stream`: yields the contract's events (`token`, `complete`, `error`,
   * `approval`) as objects. Aborting `signal` closes the stream, which cancels the run on the
   * service (a Stop button).
   */
  async *assistStream(body, { signal } = {}) {
    const response = await this.#fetch("POST", "/ai/assist/stream", body, signal);
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const bytes of response.body) {
      buffer += decoder.decode(bytes, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame
          .split("\n")
          .filter((line) => line.startsWith("data: "))
          .map((line) => line.slice(6))
          .join("\n");
        if (data === "[DONE]") return;
        if (data) yield JSON.parse(data);
      }
    }
  }

  #url(path) {
    if (this.url === null) throw new SidecarError("the service is not running", { code: "NOT_RUNNING" });
    return `${this.url}${path}`;
  }

  #headers() {
    return { Authorization: `Bearer ${this.token}` };
  }

  async #fetch(method, path, body, signal) {
    const response = await fetch(this.#url(path), {
      method,
      headers: { ...this.#headers(), ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: signal ?? AbortSignal.timeout(this.options.requestTimeoutMs),
    });
    if (!response.ok) {
      const text = await response.text();
      let error = {};
      try {
        error = JSON.parse(text);
      } catch {
        error = { error: text };
      }
      throw new SidecarError(error.message ?? error.error ?? `HTTP ${response.status}`, {
        code: error.code ?? `HTTP_${response.status}`,
        status: response.status,
        details: error,
      });
    }
    return response;
  }

  async #request(method, path, body) {
    const response = await this.#fetch(method, path, body);
    return response.status === 204 ? null : response.json();
  }
}
