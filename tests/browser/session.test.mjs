// Signing in and out, resuming after a reload, the message shown when the
// server does not mint development tokens, and the resync notice when the
// server's log no longer holds what a device missed.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { connectV1 } from "../harness.mjs";
import { connected, conv, shot, shown, signIn, startStack, until } from "./lib.mjs";

const stacks = [];
after(async () => {
  for (const s of stacks) await s.close();
});

test("offline banner; sign in, reload resumes the same user, sign out returns to the form", async () => {
  const stack = await startStack();
  stacks.push(stack);
  const { context, page } = await stack.user("kate");
  // The browser going offline shows in the banner, and clears when it is back.
  await context.setOffline(true);
  await page.locator('[data-testid="banner"][data-state="offline"]').waitFor();
  await shot(page, "session-0-offline");
  await context.setOffline(false);
  await connected(page);
  await page.reload();
  await page.getByTestId("me").getByText("kate", { exact: true }).waitFor();
  assert.equal(await page.getByTestId("login").isVisible(), false);
  await page.getByTestId("logout").click();
  await page.getByTestId("login").waitFor();
  await page.reload();
  await page.getByTestId("login").waitFor();
  assert.equal(await page.getByTestId("chat").isVisible(), false);
  // Another user on the same browser signs in.
  await signIn(page, "kate2");
});

test("without DEV_TOKENS the sign-in form says development tokens are disabled", async () => {
  const stack = await startStack({ bindings: {} });
  stacks.push(stack);
  const context = await stack.context();
  const page = await stack.open(context);
  await page.getByTestId("login-user").fill("mallory");
  await page.getByTestId("login-submit").click();
  await page.getByTestId("login-error").getByText("DEV_TOKENS=1").waitFor();
  assert.match(await page.getByTestId("login-error").textContent(), /disabled/);
  assert.equal(await page.getByTestId("chat").isVisible(), false);
  await shot(page, "session-1-dev-tokens-disabled");
});

test("a device that fell behind the server's log shows the resync notice and reloads from history", async () => {
  // The log keeps 5 entries once archived: a device further behind cannot be replayed everything.
  const stack = await startStack({ bindings: { DEV_TOKENS: "1", LOG_CAP: "5" } });
  stacks.push(stack);
  const api = (items) => stack.w.api("/api/usr-msg", items).then(async (r) => assert.equal(r.status, 200, await r.text()));
  const liam = await stack.user("liam");
  await api({ fromUser: "nora", toUser: "liam", message: "first" });
  await conv(liam.page, "nora").click();
  await until("liam sees the first message", async () => (await shown(liam.page)).length === 1);
  await liam.page.close();

  // Liam's laptop stays online meanwhile, so the messages are delivered (to
  // it) rather than queued: an offline user's queue is bounded by QUEUE_MAX,
  // which is at most LOG_CAP.
  const laptop = await connectV1(stack.w, "liam", { device: "laptop" });
  const gap = Array.from({ length: 20 }, (_, i) => `gap ${i + 1}`);
  await api(gap.map((message) => ({ fromUser: "nora", toUser: "liam", message })));
  // Wait until the log was archived and cut to its bound: a device at seq 1 is then told recovered: false.
  await until("the log is cut", async () => {
    const probe = await connectV1(stack.w, "liam", { device: "probe", since: 1 });
    await probe.close();
    return probe.welcome.recovered === false;
  });
  await laptop.close();

  const page = await stack.open(liam.context);
  await page.locator('[data-testid="banner"][data-state="resync"]').waitFor();
  await shot(page, "session-2-resync-notice");
  await conv(page, "nora").getByTestId("unread-badge").getByText("20", { exact: true }).waitFor();
  await conv(page, "nora").click();
  const msgs = await until("the conversation reloaded from history", async () => {
    const m = await shown(page);
    return m.length >= 21 && m;
  });
  assert.deepEqual(msgs.map((m) => m.text), ["first", ...gap]);
  assert.ok(msgs.every((m, i) => i === 0 || m.seq > msgs[i - 1].seq), "seqs increase");
  await connected(page); // the notice goes away on its own
  await shot(page, "session-3-after-resync");
});
