// End-to-end walk through the admin console in a real headless Chromium (Debian's, driven by
// playwright-core), against the real stack behind the console edge. Driven by
// services/console/tests/e2e/test_console_browser.py, which starts the stack, seeds an org
// (a contact, a signed-in agent with a NEW conversation) and passes it in E2E_SEED (JSON).
//
// Prints one JSON line `RESULT {...}` (timings, axe findings, screenshots); exit code 1 on the
// first failed expectation (with a screenshot `failure.png`).

import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");
const BASE = process.env.CONSOLE_URL ?? "http://127.0.0.1:8080";
const SEED = JSON.parse(process.env.E2E_SEED ?? "{}");
const ARTIFACTS = process.env.E2E_ARTIFACTS ?? path.resolve("artifacts");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const TIMEOUT = 20_000;

const result = { steps: {}, axe: {}, screenshots: [] };

function expect(condition, message) {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

async function eventually(check, message, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (exc) {
      last = exc;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out: ${message} (last: ${last})`);
}

async function step(name, fn) {
  const started = Date.now();
  await fn();
  result.steps[name] = Date.now() - started;
  console.log(`ok   ${name} (${result.steps[name]} ms)`);
}

async function screenshot(page, name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  result.screenshots.push(file);
}

async function axeCheck(page, name) {
  await page.addScriptTag({ path: AXE });
  const report = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] }),
  );
  const found = report.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  result.axe[name] = found;
  const serious = report.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(
    serious.length === 0,
    `axe on ${name}: ${serious.map((v) => `${v.id} (${v.impact}): ${v.nodes[0]?.target} ${v.help}`).join("; ")}`,
  );
}

async function mintToken(request, role, agentId) {
  const reply = await request.post(`${BASE}/api/dev/login`, {
    data: { org_id: SEED.org, agent_id: agentId, role, teams: SEED.teams ?? [] },
  });
  expect(reply.ok(), `dev login ${reply.status()}`);
  return (await reply.json()).token;
}

async function agentCard(request, agentToken) {
  const reply = await request.get(`${BASE}/api/contacts/${encodeURIComponent(SEED.contact)}/card`, {
    headers: { authorization: `Bearer ${agentToken}` },
  });
  expect(reply.ok(), `agent's card ${reply.status()}`);
  return (await reply.json()).fields.map((f) => f.key);
}

async function dragBefore(page, key, beforeKey) {
  const handle = await page.locator(`#attribute-list li[data-key="${key}"] .handle`).boundingBox();
  const target = await page.locator(`#attribute-list li[data-key="${beforeKey}"]`).boundingBox();
  await page.mouse.move(handle.x + handle.width / 2, handle.y + handle.height / 2);
  await page.mouse.down();
  await page.mouse.move(target.x + 30, target.y + 4, { steps: 10 });
  await page.mouse.up();
}

const listedKeys = (page) =>
  page.locator("#attribute-list li").evaluateAll((items) => items.map((li) => li.dataset.key));

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  // bypassCSP: axe-core is injected as an inline script, which the console's CSP forbids.
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, bypassCSP: true });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("dialog", (dialog) => dialog.accept());
  const request = context.request;
  try {
    await step("dev login", async () => {
      await page.goto(BASE);
      await page.getByLabel("Organization id").fill(SEED.org);
      await page.getByLabel("Agent id").fill(SEED.admin);
      await page.getByLabel("Role").selectOption("admin");
      await page.locator("#dev-login button[type=submit]").click();
      await page.locator("#who").waitFor();
      expect((await page.locator("#who").textContent()).includes(SEED.admin), "signed in as the admin");
    });
    const agentToken = await mintToken(request, "agent", SEED.agent);
    const adminToken = await mintToken(request, "admin", `${SEED.admin}-2`);

    // --- Routing and automation: switch on Remove assignment ---------------------------------
    await step("remove assignment switched on", async () => {
      await page.goto(`${BASE}/#/routing`);
      const toggle = page.getByRole("switch", { name: "Remove assignment when an agent signs out" });
      await eventually(async () => (await toggle.getAttribute("aria-checked")) === "false", "switch loaded off");
      await toggle.click();
      await eventually(async () => (await toggle.getAttribute("aria-checked")) === "true", "switch on");
      await page.locator("#settings-changed", { hasText: SEED.admin }).waitFor();
      await axeCheck(page, "routing");
      await screenshot(page, "routing");
    });

    // --- Live view: sign the agent out, watch R1 unassign their NEW conversation -------------
    await step("sign-out unassigns the NEW conversation on the live view", async () => {
      await page.goto(`${BASE}/#/live`);
      const row = page.locator(`#conversation-rows tr[data-conversation="${SEED.conversation}"]`);
      await eventually(async () => (await row.locator(".assignee").textContent()) === SEED.agent, "assigned row shown");
      await row.getByRole("button", { name: `Audit trail of ${SEED.conversation}` }).click();
      await page.locator('#audit-entries li[data-kind="AUDIT_ENTRY_KIND_ASSIGNED"]').waitFor();
      const clicked = Date.now();
      await page.getByRole("button", { name: `Sign out ${SEED.agent}` }).click();
      await eventually(async () => (await row.locator(".assignee").textContent()) === "unassigned", "row unassigned");
      result.unassigned_seen_ms = Date.now() - clicked;
      await page.locator('#audit-entries li[data-kind="AUDIT_ENTRY_KIND_AUTO_UNASSIGNED"]').waitFor();
      const audit = await page.locator('#audit-entries li[data-kind="AUDIT_ENTRY_KIND_AUTO_UNASSIGNED"]').textContent();
      expect(audit.includes(SEED.agent) && audit.includes("Agent signed out"), `audit says why: ${audit}`);
      await page.locator("#change-log li", { hasText: `unassigned from ${SEED.agent}` }).waitFor();
      await axeCheck(page, "live");
      await screenshot(page, "live");
    });

    // --- Contact attributes: drag, keyboard, toggle, stale reorder, custom attributes --------
    await page.goto(`${BASE}/#/attributes`);
    await page.locator('#attribute-list li[data-key="email"]').waitFor();
    await page.getByLabel("Contact id").fill(SEED.contact);
    await page.getByRole("button", { name: "Show card" }).click();
    await page.locator('#card-preview dt[data-key="name"]').waitFor();

    await step("dragging an attribute changes the agent's contact card", async () => {
      const before = await agentCard(request, agentToken);
      expect(before[0] === "name" && before.includes("email"), `initial card ${before}`);
      await page.getByRole("button", { name: "Reorder" }).click();
      await dragBefore(page, "email", "name");
      expect((await listedKeys(page))[0] === "email", "email dragged to the top");
      await page.getByRole("button", { name: "Save order" }).click();
      await page.getByRole("status").filter({ hasText: "Order saved." }).waitFor();
      await eventually(async () => (await page.locator("#card-preview dt").first().textContent()) === "Email", "preview card");
      const after = await eventually(async () => {
        const keys = await agentCard(request, agentToken);
        return keys[0] === "email" ? keys : null;
      }, "agent's card starts with email");
      result.card_after_drag = after;
    });

    await step("reorder by keyboard", async () => {
      await page.getByRole("button", { name: "Reorder" }).click();
      const handle = page.locator('#attribute-list li[data-key="language"] .handle');
      const before = await listedKeys(page);
      await handle.focus();
      await page.keyboard.press("ArrowUp");
      await page.keyboard.press("ArrowUp");
      const moved = await listedKeys(page);
      expect(moved.indexOf("language") === before.indexOf("language") - 2, `keyboard moved: ${moved}`);
      expect(
        (await page.evaluate(() => document.activeElement?.closest("li")?.dataset.key)) === "language",
        "focus stays on the moved handle",
      );
      await page.getByRole("button", { name: "Save order" }).click();
      await page.getByRole("status").filter({ hasText: "Order saved." }).waitFor();
      const saved = await agentCard(request, agentToken);
      expect(saved.indexOf("language") === moved.indexOf("language"), `saved keyboard order ${saved}`);
    });

    await step("a toggle hides the attribute from agents", async () => {
      const toggle = page.getByRole("switch", { name: "Show Email to agents" });
      await toggle.click();
      await eventually(async () => (await toggle.getAttribute("aria-checked")) === "false", "email off");
      const keys = await eventually(async () => {
        const k = await agentCard(request, agentToken);
        return k.includes("email") ? null : k;
      }, "email gone from the agent's card");
      expect(!keys.includes("email"), "email hidden");
      await eventually(async () => (await page.locator('#card-preview dt[data-key="email"]').count()) === 0, "preview");
    });

    await step("a stale reorder says: changed meanwhile, reload", async () => {
      await page.getByRole("button", { name: "Reorder" }).click();
      const meanwhile = await request.post(`${BASE}/api/attributes`, {
        headers: { authorization: `Bearer ${adminToken}` },
        data: { key: "tier", label: "Tier", type: "ATTRIBUTE_TYPE_TEXT" },
      });
      expect(meanwhile.ok(), `another admin created an attribute: ${meanwhile.status()}`);
      await page.locator('#attribute-list li[data-key="phone"] .handle').focus();
      await page.keyboard.press("ArrowDown");
      await page.getByRole("button", { name: "Save order" }).click();
      await page.getByRole("alert").filter({ hasText: "changed meanwhile, reload" }).waitFor();
      await page.getByRole("button", { name: "Reload" }).click();
      await page.locator('#attribute-list li[data-key="tier"]').waitFor();
    });

    await step("create, rename and delete a custom attribute", async () => {
      const form = page.locator("#create-attribute");
      await form.getByLabel("Key").fill("plan");
      await form.getByLabel("Label").fill("Plan");
      await form.getByLabel("Type").selectOption("LIST");
      await form.getByLabel("Options").fill("free, pro");
      await form.getByRole("button", { name: "Create attribute" }).click();
      const item = page.locator('#attribute-list li[data-key="plan"]');
      await item.waitFor();
      await item.getByRole("button", { name: "Rename Plan" }).click();
      await item.getByLabel("New label for Plan").fill("Subscription plan");
      await item.getByRole("button", { name: "Save" }).click();
      await page.locator('#attribute-list li[data-key="plan"] .attribute-label', { hasText: "Subscription plan" }).waitFor();
      await page.getByRole("button", { name: "Delete Subscription plan" }).click();
      await eventually(async () => (await page.locator('#attribute-list li[data-key="plan"]').count()) === 0, "deleted");
      await axeCheck(page, "attributes");
      await screenshot(page, "attributes");
    });

    // --- Saved replies: collection shared with a team and a channel, a reply, search, preview -
    await step("saved reply created, found by /shortcut and previewed with the contact's name", async () => {
      await page.goto(`${BASE}/#/replies`);
      const create = page.locator("#create-collection");
      await create.getByLabel("Name").fill("Billing FAQ");
      await create.getByLabel("Share with teams").fill("t-billing");
      await create.getByLabel("Share with channels").fill("ch-web");
      await create.getByRole("button", { name: "Create collection" }).click();
      await page.locator("#collection-title", { hasText: "Billing FAQ" }).waitFor();
      await page.locator(".collection-button", { hasText: "Shared with teams t-billing and channels ch-web" }).waitFor();
      const reply = page.locator("#create-reply");
      await reply.getByLabel("Title").fill("Refund policy");
      await reply.getByLabel("Body").fill('Hi {{contact.name | fallback: "there"}}, refunds take 5 days.');
      await reply.getByLabel("Shortcut").fill(SEED.shortcut);
      await reply.getByLabel("Tags").fill("billing, refund");
      await reply.getByRole("button", { name: "Create saved reply" }).click();
      await page.locator("#reply-list li", { hasText: "Refund policy" }).waitFor();
      await page.getByLabel("Search replies").fill(`/${SEED.shortcut}`);
      await page.getByRole("button", { name: "Search", exact: true }).click();
      const hit = page.locator("#search-results li", { hasText: "Refund policy" });
      await hit.waitFor();
      expect((await hit.textContent()).includes("Shortcut exact"), "found by its exact shortcut");
      await page.locator("#preview-contact").fill(SEED.contact);
      await hit.getByRole("button", { name: "Preview Refund policy" }).click();
      await page.locator("#reply-preview", { hasText: `Hi ${SEED.contact_name}, refunds take 5 days.` }).waitFor();
      await page.getByRole("button", { name: "Edit Refund policy" }).click();
      const edit = page.getByRole("form", { name: "Edit Refund policy" });
      await edit.getByLabel("Title").fill("Refund policy (EU)");
      await edit.getByRole("button", { name: "Save reply" }).click();
      await page.locator("#reply-list li", { hasText: "Refund policy (EU)" }).waitFor();
      await axeCheck(page, "replies");
      await screenshot(page, "replies");
    });

    // Last of the admin's routing steps: on, it would auto-assign the live view's conversation.
    await step("automatic assignment switched on with a capacity, kept after a reload", async () => {
      await page.goto(`${BASE}/#/routing`);
      const form = page.getByRole("form", { name: "Automatic assignment" });
      const enabled = form.getByLabel("Assign waiting conversations automatically");
      await page.locator("#assignment-changed", { hasText: "Never changed" }).waitFor();
      await enabled.check();
      await form.getByLabel("Default capacity per agent").fill("3");
      await form.getByRole("button", { name: "Save automatic assignment" }).click();
      await page.locator("#assignment-changed", { hasText: SEED.admin }).waitFor();
      await page.reload();
      await page.locator("#assignment-changed", { hasText: SEED.admin }).waitFor();
      expect(await enabled.isChecked(), "still on after a reload");
      expect((await form.getByLabel("Default capacity per agent").inputValue()) === "3", "capacity kept");
      await axeCheck(page, "routing-assignment");
    });

    await step("tablet width", async () => {
      await page.setViewportSize({ width: 820, height: 1180 });
      for (const [hash, name] of [["#/live", "live-tablet"], ["#/attributes", "attributes-tablet"]]) {
        await page.goto(`${BASE}/${hash}`);
        await page.locator("main h1").waitFor();
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        expect(overflow <= 0, `${name}: no horizontal scrolling (${overflow}px too wide)`);
        await screenshot(page, name);
      }
      await axeCheck(page, "attributes-tablet");
    });

    await step("login page", async () => {
      await page.setViewportSize({ width: 1366, height: 900 });
      await page.getByRole("button", { name: "Sign out", exact: true }).click();
      await page.locator("#dev-login").waitFor();
      await axeCheck(page, "login");
      await screenshot(page, "login");
    });

    await step("an agent is refused admin writes, with the service's message", async () => {
      await page.getByLabel("Organization id").fill(SEED.org);
      await page.getByLabel("Agent id").fill(SEED.agent);
      await page.getByLabel("Role").selectOption("agent");
      await page.locator("#dev-login button[type=submit]").click();
      await page.locator("#who", { hasText: "agent" }).waitFor();
      await page.goto(`${BASE}/#/routing`);
      const toggle = page.getByRole("switch", { name: "Remove assignment when an agent signs out" });
      await eventually(async () => (await toggle.getAttribute("aria-checked")) === "true", "agents may read it");
      await toggle.click();
      await page.getByRole("alert").filter({ hasText: "admin" }).waitFor();
      expect((await toggle.getAttribute("aria-checked")) === "true", "the setting did not change");
    });
  } catch (exc) {
    await page.screenshot({ path: path.join(ARTIFACTS, "failure.png"), fullPage: true }).catch(() => {});
    console.log(`RESULT ${JSON.stringify({ ...result, error: String(exc.stack ?? exc) })}`);
    await browser.close();
    process.exit(1);
  }
  await browser.close();
  console.log(`RESULT ${JSON.stringify(result)}`);
}

await main();
