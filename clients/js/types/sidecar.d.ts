// Declarations of the Sidecar helper (src/index.js); the wire types come from api.d.ts.
import type { EventEmitter } from "node:events";

import type { RemoteRunnable } from "@langchain/core/runnables/remote";

import type {
  AssistRequest,
  AssistantInput,
  AssistantOutput,
  GenerateEntityRequest,
  GenerateEntityResponse,
  GenerateInput,
  GenerateOutput,
  HealthResponse,
  RagInput,
  RagOutput,
  RagQueryRequest,
  RagQueryResponse,
  ThreadList,
  ThreadMessages,
  ToolExecuteRequest,
  ToolExecuteResponse,
  ToolsInput,
  ToolsOutput,
} from "./api.js";

export declare const GRAPH_PATHS: Readonly<{
  tools: "/graphs/tools";
  rag: "/graphs/rag";
  generate: "/graphs/generate";
  assistant: "/graphs/assistant";
}>;

export declare class SidecarError extends Error {
  constructor(message: string, options?: { code?: string; status?: number; details?: unknown });
  code: string;
  status?: number;
  details?: unknown;
}

export interface RestartOptions {
  retries?: number;
  initialDelayMs?: number;
  maxDelayMs?: number;
  stableAfterMs?: number;
}

export interface SidecarOptions {
  /** The service's command (default `context-kit-service`). */
  command?: string;
  args?: string[];
  env?: Record<string, string>;
  repoPath?: string;
  allowClientEndpoints?: boolean;
  token?: string;
  startTimeoutMs?: number;
  stopTimeoutMs?: number;
  requestTimeoutMs?: number;
  restart?: RestartOptions;
}

/** The events of the app's stream: the contract's three, and `approval` on opt-in. */
export type AssistEvent =
  | { type: "token"; token: string; metadata?: { tokenIndex: number } }
  | {
      type: "complete";
      fullContent: string;
      metadata: {
        totalTokens: number;
        durationMs: number;
        model?: string;
        threadId?: string;
        status?: "pending_approval";
        approvalRequest?: Record<string, unknown>;
      };
    }
  | { type: "error"; message: string; code?: string }
  | { type: "approval"; request: Record<string, unknown>; metadata: { threadId: string } };

export interface Graphs {
  tools: RemoteRunnable<ToolsInput, ToolsOutput>;
  rag: RemoteRunnable<RagInput, RagOutput>;
  generate: RemoteRunnable<GenerateInput, GenerateOutput>;
  assistant: RemoteRunnable<AssistantInput, AssistantOutput>;
}

export declare class Sidecar extends EventEmitter {
  constructor(options?: SidecarOptions);
  readonly token: string;
  url: string | null;
  pid: number | null;
  start(): Promise<{ url: string; pid: number }>;
  stop(): Promise<void>;
  health(): Promise<HealthResponse>;
  graph<Name extends keyof Graphs>(name: Name, options?: { timeoutMs?: number }): Graphs[Name];
  executeTool(body: ToolExecuteRequest): Promise<ToolExecuteResponse>;
  ragQuery(body: RagQueryRequest): Promise<RagQueryResponse>;
  generateEntity(body: GenerateEntityRequest): Promise<GenerateEntityResponse>;
  listThreads(): Promise<ThreadList>;
  getThread(threadId: string): Promise<ThreadMessages>;
  deleteThread(threadId: string): Promise<void>;
  assistStream(body: AssistRequest, options?: { signal?: AbortSignal }): AsyncGenerator<AssistEvent>;
}
