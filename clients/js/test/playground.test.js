// LangServe's playground in Debian's Chromium (never a downloaded browser), driven by
// playwright-core: open the RAG graph's playground, submit a question, see the answer, and
// save a screenshot under CKS_E2E_OUTPUT.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { chromium } from "playwright-core";

const CHROMIUM = process.env.CKS_CHROMIUM ?? "/usr/bin/chromium";
// Headless and quiet: this machine has no network beyond loopback.
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

test("the RAG playground runs a question and shows the cited answer", async () => {
  const url = process.env.CKS_E2E_URL;
  const output = process.env.CKS_E2E_OUTPUT;
  assert.ok(url && output, "set CKS_E2E_URL and CKS_E2E_OUTPUT (the Python test run does)");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  try {
    // The service wants its token on every request, the playground's own assets included.
    const context = await browser.newContext({
      extraHTTPHeaders: { Authorization: `Bearer ${process.env.CKS_E2E_TOKEN}` },
      viewport: { width: 1280, height: 1400 },
    });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));

    await page.goto(`${url}/graphs/rag/playground/`);
    await page.locator('[id="#/properties/query-input"]').fill("How do people sign in with a passkey?");
    const start = page.getByRole("button", { name: "Start" });
    await start.click();
    const answer = page.getByText(/"answer": "See \[[A-Z]+-\d{3}\]\."/);
    await answer.waitFor({ timeout: 60_000 });
    await page.getByText('"completion_tokens"').waitFor();

    const body = await page.locator("body").innerText();
    assert.match(body, /"answer_question": \{\s+"answer": "See \[(US|FEAT|SPEC|T)-\d{3}\]\."/);
    assert.match(body, /"retrieve": \{\s+"sources": \[/);
    assert.deepEqual(errors, []);

    mkdirSync(output, { recursive: true });
    const path = join(output, "playground-rag.png");
    await page.screenshot({ path, fullPage: true }); // the form, the sources and the answer
    console.log(`screenshot: ${path}`);
  } finally {
    await browser.close();
  }
});
