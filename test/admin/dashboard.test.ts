/**
 * The live dashboard (SPEC §8) in a real browser against a real gateway:
 * Debian's chromium driven by playwright-core (no bundled browser download).
 * Every wait is on the DOM with a deadline, never a sleep: the page polls
 * /admin/stats once a second, so 3 s covers a health change plus a poll.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium, type Page } from "playwright-core";
import { backend, request } from "../helpers/index.js";
import { runtime } from "./helpers.js";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const SCREENSHOT = fileURLToPath(new URL("../artifacts/dashboard.png", import.meta.url));
const TOKEN = "dash-token-4c1e";
const WITHIN = { timeout: 3000 };

const target = (service: string, url: string) =>
  `[data-testid="target"][data-service="${service}"][data-target="${url}"]`;

/** Text of the first element matching `selector`. */
async function text(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).first().textContent()) ?? "";
}

test("dashboard: token prompt, live health and traffic, drain from the page, no console noise", async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}`);
    return;
  }
  const users = await backend("users");
  const orders = await backend("orders");
  const g = await runtime(`
admin: { port: 0, host: 127.0.0.1, token: ${TOKEN} }
services:
  users:
    targets: [${users.url}]
    healthCheck: { path: /health, interval: 300ms, timeout: 200ms, unhealthyThreshold: 1, healthyThreshold: 1 }
  orders:
    targets: [${orders.url}]
routes:
  - { name: users, match: { path: /users }, service: users }
  - { name: orders, match: { path: /orders }, service: orders }
`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  t.after(async () => {
    await browser.close();
    await g.close();
    await users.close();
    await orders.close();
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const noise: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning")
      noise.push(`${m.type()}: ${m.text()} (${m.location().url})`);
  });
  page.on("pageerror", (e) => noise.push(`uncaught: ${e.message}`));

  // 1. No token yet: the page asks for one inline and stops polling. The one
  // console line is the browser's own log of that 401 (the page cannot silence it).
  await page.goto(`${g.admin}/`);
  await page.waitForSelector('[data-testid="token-form"]', { state: "visible", ...WITHIN });
  assert.deepEqual(noise, [
    `error: Failed to load resource: the server responded with a status of 401 (Unauthorized) (${g.admin}/admin/stats)`,
  ]);
  noise.length = 0;
  await page.fill('[data-testid="token-input"]', TOKEN);
  await page.click('[data-testid="token-submit"]');
  await page.waitForSelector(`${target("users", users.url)}[data-health="healthy"]`, WITHIN);
  await page.waitForSelector('[data-testid="token-form"]', { state: "hidden", ...WITHIN });
  assert.equal(await text(page, '[data-testid="generation"]'), "1");
  assert.equal(await text(page, `${target("users", users.url)} [data-testid="health"]`), "healthy");

  // 2. Traffic shows up as rates, computed from two polls' counters.
  let sending = true;
  const traffic = (async () => {
    while (sending) {
      await request(g.url, { path: "/users" });
      await request(g.url, { path: "/orders" });
    }
  })();
  const positive = (sel: string) =>
    page.waitForFunction(
      (s) => Number.parseFloat(document.querySelector(s)?.textContent ?? "") > 0,
      sel,
      WITHIN,
    );
  try {
    await positive(`${target("users", users.url)} [data-testid="rps"]`);
    await positive('[data-testid="route"][data-route="users"] [data-testid="rps"]');
    await page.waitForFunction(
      () =>
        /\d (ms|s)$/.test(
          document.querySelector('[data-route="users"] [data-testid="p99"]')?.textContent ?? "",
        ),
      null,
      WITHIN,
    );
  } finally {
    sending = false;
    await traffic;
  }
  assert.match(await text(page, '[data-route="users"] [data-testid="error-rate"]'), /^0% · 0\/s$/);

  // 3. Drain from the page (with the token it was given), then undrain.
  await page.click(`${target("orders", orders.url)} [data-testid="drain-button"]`);
  await page.waitForSelector(`${target("orders", orders.url)}[data-health="draining"]`, WITHIN);
  const up = (await g.ask("/admin/upstreams", { token: TOKEN })).json<{
    services: { name: string; targets: { draining: boolean }[] }[];
  }>();
  assert.equal(up.services.find((s) => s.name === "orders")?.targets[0].draining, true);
  assert.equal(await text(page, `${target("orders", orders.url)} [data-testid="drain-button"]`), "Undrain");
  await page.click(`${target("orders", orders.url)} [data-testid="drain-button"]`);
  await page.waitForSelector(`${target("orders", orders.url)}[data-health="healthy"]`, WITHIN);

  // 4. The backend goes away: the health check marks it down and the page shows it within 3 s.
  await users.close();
  await page.waitForSelector(`${target("users", users.url)}[data-health="unhealthy"]`, WITHIN);
  assert.equal(
    await text(page, '[data-testid="service"][data-service="users"] [data-testid="service-health"]'),
    "0/1 healthy",
  );

  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  // Nothing overflows sideways at 1280 px.
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), 1280);
  assert.deepEqual(noise, [], "no console error or warning once the token is given");
});
