// Shared setup of the browser tests: the built worker in workerd (via the
// integration harness) with the demo page as static assets and development
// tokens on, on a fixed port so a runtime restart keeps the URL, and headless
// Chromium driven by playwright-core.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { ROOT, eventually, freePort, startWorker } from "../harness.mjs";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const SCREENSHOTS = join(ROOT, "tests", "browser", "screenshots");
const ASSETS = join(ROOT, "demo", "dist");

/**
 * Starts the worker (development tokens on, `bindings` added) and a browser.
 * `user(id)` opens a fresh browser context (its own localStorage: one
 * "device") with one page signed in as `id`.
 */
export async function startStack({ bindings = { DEV_TOKENS: "1" } } = {}) {
  if (!existsSync(join(ASSETS, "index.html")) || !existsSync(join(ASSETS, "app.js"))) {
    throw new Error("demo/dist is not built: run bash demo/build.sh (tests/browser/run.sh does)");
  }
  mkdirSync(SCREENSHOTS, { recursive: true });
  const port = await freePort();
  const w = await startWorker({ bindings, port, assets: ASSETS });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const contexts = [];
  const stack = {
    w,
    browser,
    /** A new context (device) with a page on the demo, not signed in yet. */
    async context() {
      const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
      context.setDefaultTimeout(15_000);
      contexts.push(context);
      return context;
    },
    /** Opens the demo in `context` (a new page) and waits for it to be ready. */
    async open(context) {
      const page = await context.newPage();
      page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
      await page.goto(w.url + "/");
      return page;
    },
    /** A new device signed in as `user`: { context, page }. */
    async user(user) {
      const context = await stack.context();
      const page = await stack.open(context);
      await signIn(page, user);
      return { context, page };
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => {});
      await browser.close().catch(() => {});
      await w.close();
    },
  };
  return stack;
}

/** Signs in through the form and waits for the connection to be open. */
export async function signIn(page, user) {
  await page.getByTestId("login-user").fill(user);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("me").getByText(user, { exact: true }).waitFor();
  await connected(page);
}

/** Waits until the page is connected (the banner is hidden). */
export async function connected(page, timeout) {
  await page.locator('[data-testid="banner"][data-state="open"]').waitFor({ state: "attached", timeout });
}

/** Opens the conversation with `peer` through the "new conversation" form. */
export async function openConversation(page, peer) {
  await page.getByTestId("new-peer").fill(peer);
  await page.getByTestId("new-peer-go").click();
  await page.getByTestId("peer").getByText(peer, { exact: true }).waitFor();
}

/** Types `text` into the composer and sends it. */
export async function send(page, text) {
  await page.getByTestId("composer").fill(text);
  await page.getByTestId("send").click();
}

/** The message bubble whose text is exactly `text`. */
export function bubble(page, text) {
  return page.getByTestId("msg").filter({ has: page.getByTestId("msg-text").getByText(text, { exact: true }) });
}

/** The conversation list entry of `peer`. */
/** A group's entry in the sidebar. */
export function groupEntry(page, group) {
  return page.locator(`[data-testid="group"][data-group="${group}"]`);
}

/** The group message bubble whose text is exactly `text`. */
export function groupBubble(page, text) {
  return page.getByTestId("group-msg").filter({ has: page.getByTestId("msg-text").getByText(text, { exact: true }) });
}

export function conv(page, peer) {
  return page.locator(`[data-testid="conv"][data-peer="${peer}"]`);
}

/**
 * The messages of the open conversation as shown, top to bottom: { text,
 * kind, seq (null while pending), tick, received }. `received` is how many
 * times the SDK passed that seq to the page's message handler (0 for one
 * only read from history, null while pending): the page shows each seq once
 * whatever happens, so this is what tells a redelivery.
 */
export function shown(page) {
  return page.getByTestId("msg").evaluateAll((els) =>
    els.map((e) => ({
      text: e.querySelector('[data-testid="msg-text"]').textContent,
      kind: e.dataset.kind,
      seq: e.dataset.seq === undefined ? null : Number(e.dataset.seq),
      tick: e.querySelector('[data-testid="tick"]')?.dataset.state ?? null,
      received: e.dataset.received === undefined ? null : Number(e.dataset.received),
    })),
  );
}

/** Polls `fn` until it returns a truthy value; fails with `what` and the last value otherwise. */
export async function until(what, fn, timeoutMs = 15_000, stepMs = 100) {
  try {
    return await eventually(fn, timeoutMs, stepMs);
  } catch (e) {
    throw new Error(`${what}: ${e.message}`);
  }
}

/** Saves a screenshot of the page as screenshots/<name>.png. */
export async function shot(page, name) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/**
 * Records every state the connection banner takes (a MutationObserver in
 * the page), so a short-lived state cannot be missed: read with bannerLog().
 */
export async function recordBanner(page) {
  await page.evaluate(() => {
    const banner = document.querySelector('[data-testid="banner"]');
    window.__bannerLog = [banner.dataset.state];
    new MutationObserver(() => {
      const s = banner.dataset.state;
      if (window.__bannerLog.at(-1) !== s) window.__bannerLog.push(s);
    }).observe(banner, { attributes: true, attributeFilter: ["data-state"] });
  });
}

export function bannerLog(page) {
  return page.evaluate(() => window.__bannerLog);
}
