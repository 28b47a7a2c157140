// History scroll-back: 120 messages stored through the backend API; the page
// shows the newest page, then loads older pages by scrolling to the top and
// by the "load older" button, down to the first message, in order, once each.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { conv, shot, shown, startStack, until } from "./lib.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

test("scrolling back pages in older messages down to the first one", async () => {
  const N = 120;
  const all = Array.from({ length: N }, (_, i) => `history ${i + 1}`);
  const res = await stack.w.api(
    "/api/usr-msg",
    all.map((message) => ({ fromUser: "ivan", toUser: "judy", message })),
  );
  assert.equal(res.status, 200, await res.text());

  const judy = await stack.user("judy");
  await conv(judy.page, "ivan").getByTestId("unread-badge").getByText(String(N), { exact: true }).waitFor();
  await conv(judy.page, "ivan").click();

  // The newest page first, scrolled to the bottom.
  const first = await until("the first page", async () => {
    const m = await shown(judy.page);
    return m.length > 0 && m;
  });
  assert.ok(first.length < N, `only a page is loaded at first (${first.length})`);
  assert.deepEqual(first.map((m) => m.text), all.slice(N - first.length));
  const box = judy.page.getByTestId("messages");
  assert.ok(await box.evaluate((e) => e.scrollHeight - e.scrollTop - e.clientHeight < 40), "starts at the bottom");
  assert.ok(await judy.page.getByTestId("load-older").isVisible());
  assert.equal(await judy.page.getByTestId("history-start").isVisible(), false);
  await shot(judy.page, "history-1-newest-page");

  // Scrolling to the top loads the page before.
  await box.evaluate((e) => e.scrollTo(0, 0));
  const second = await until("a second page after scrolling up", async () => {
    const m = await shown(judy.page);
    return m.length > first.length && m;
  });
  assert.deepEqual(second.map((m) => m.text), all.slice(N - second.length));
  // The message that was at the top stays in view (the older page went above it).
  assert.ok(await box.evaluate((e) => e.scrollTop > 100), "scroll position kept");
  await shot(judy.page, "history-2-second-page");

  // The button loads the next one.
  await judy.page.getByTestId("load-older").click();
  await until("a third page from the button", async () => (await shown(judy.page)).length > second.length);

  // Keep scrolling up until the beginning.
  await until(
    "the beginning of the conversation",
    async () => {
      if (await judy.page.getByTestId("history-start").isVisible()) return true;
      await box.evaluate((e) => e.scrollTo(0, 0));
      return false;
    },
    30_000,
    250,
  );
  const msgs = await shown(judy.page);
  assert.deepEqual(msgs.map((m) => m.text), all);
  assert.ok(msgs.every((m) => m.kind === "in"));
  assert.ok(msgs.every((m, i) => i === 0 || m.seq > msgs[i - 1].seq), "seqs increase");
  assert.equal(await judy.page.getByTestId("load-older").isVisible(), false);
  await shot(judy.page, "history-3-beginning");
});
