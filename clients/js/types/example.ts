// Type-checked by `tsc --noEmit` (test/types.test.js): the declarations as the app would use them.
import { Sidecar, type AssistEvent, type RagQueryRequest } from "@context-kit/sidecar";

export async function example(): Promise<string> {
  const sidecar = new Sidecar({ repoPath: "/repo" });
  await sidecar.start();
  const health = await sidecar.health();
  const state: string = health.dependencies.model ?? "unknown";
  const request: RagQueryRequest = { query: "How do passkeys work?", topK: 50 };
  const rag = await sidecar.ragQuery(request);
  const first: string | undefined = rag.sources[0]?.entityId;
  const out = await sidecar.graph("rag").invoke({ query: "What is FEAT-001?" });
  const answer: string | undefined = out.answer;
  const tool = await sidecar.executeTool({ toolId: "pipeline.impact", parameters: { changedIds: ["FEAT-001"] } });
  const entity = await sidecar.generateEntity({ entityType: "task", userPrompt: "Add an index on budget lines" });
  let text = "";
  for await (const event of sidecar.assistStream({ question: "What is open?" })) {
    const seen: AssistEvent = event;
    if (seen.type === "token") text += seen.token;
  }
  await sidecar.stop();
  return [state, first, answer, tool.metadata.toolId, entity.metadata.model, text].join(" ");
}
