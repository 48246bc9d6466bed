// The TypeScript declarations: `types/api.d.ts` is what scripts/generate-types.mjs makes of the
// running service's schemas (CKS_E2E_URL), and `tsc --noEmit` accepts the example that uses
// the declarations as the app would.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { generate } from "../scripts/generate-types.mjs";

const url = process.env.CKS_E2E_URL;
const token = process.env.CKS_E2E_TOKEN;

test("the declarations match the running service's schemas", async () => {
  assert.ok(url, "set CKS_E2E_URL to a running service (the Python test run does)");
  const committed = readFileSync(new URL("../types/api.d.ts", import.meta.url), "utf8");
  const fresh = await generate(url, token);
  assert.equal(committed, fresh, "types/api.d.ts drifted: run `npm run types -- <url> > types/api.d.ts`");
});

test("tsc --noEmit accepts the example", () => {
  const tsc = new URL("../node_modules/typescript/bin/tsc", import.meta.url).pathname;
  execFileSync(process.execPath, [tsc, "-p", "tsconfig.json"], {
    cwd: new URL("..", import.meta.url).pathname,
    stdio: "pipe",
  });
});
