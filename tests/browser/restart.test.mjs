// The runtime restarts mid-conversation (a deploy): the pages show the
// reconnecting banner, reconnect on their own, and every message sent before,
// during and after the restart reaches each page exactly once, in each
// sender's order. "Once" is checked where the page cannot hide it: the page
// shows each seq once whatever happens, so it also counts how many times the
// SDK passed each seq to its message handler (data-received), and that must
// be 1 for every message.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { bannerLog, bubble, connected, openConversation, recordBanner, send, shot, shown, startStack, until } from "./lib.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

test("a runtime restart mid-conversation: banner, recovery, every message handled exactly once", async () => {
  const erin = await stack.user("erin");
  const frank = await stack.user("frank");
  await openConversation(erin.page, "frank");
  await openConversation(frank.page, "erin");
  await send(erin.page, "before restart");
  await bubble(frank.page, "before restart").waitFor();
  for (const p of [erin.page, frank.page]) await recordBanner(p);

  // Sent right as the runtime goes down: stored or not, the SDK's outbox re-sends it with the same cmid.
  await send(erin.page, "around the restart");
  const restarted = stack.w.restart();
  await erin.page.locator('[data-testid="banner"][data-state="reconnecting"]').waitFor();
  await shot(erin.page, "restart-1-erin-reconnecting");
  // Sent while the runtime is down: they wait in the outbox.
  await send(erin.page, "while down from erin");
  await send(frank.page, "while down from frank");
  await bubble(erin.page, "while down from erin").locator('[data-testid="tick"][data-state="sending"]').waitFor();
  await restarted;

  // Both pages recover on their own.
  await connected(erin.page, 60_000);
  await connected(frank.page, 60_000);
  await send(erin.page, "after restart");
  // A last message from Frank: anything repeated would have reached Erin before it.
  await bubble(frank.page, "after restart").waitFor();
  await send(frank.page, "all good");
  await bubble(erin.page, "all good").waitFor();
  await bubble(frank.page, "all good").locator('[data-testid="tick"]:not([data-state="sending"])').waitFor();

  const fromErin = ["before restart", "around the restart", "while down from erin", "after restart"];
  const fromFrank = ["while down from frank", "all good"];
  for (const [who, page] of [
    ["erin", erin.page],
    ["frank", frank.page],
  ]) {
    const msgs = await shown(page);
    const texts = msgs.map((m) => m.text);
    assert.deepEqual([...texts].sort(), [...fromErin, ...fromFrank].sort(), `${who} sees each message once: ${JSON.stringify(texts)}`);
    assert.deepEqual(texts.filter((t) => fromErin.includes(t)), fromErin, `${who}: erin's in order`);
    assert.deepEqual(texts.filter((t) => fromFrank.includes(t)), fromFrank, `${who}: frank's in order`);
    assert.ok(msgs.every((m) => m.seq !== null), `${who}: nothing left pending: ${JSON.stringify(msgs)}`);
    assert.ok(msgs.every((m, i) => i === 0 || m.seq > msgs[i - 1].seq), `${who}: seqs increase`);
    // Each message passed to the page's handler once: own sends too (their
    // entry in the sender's log comes to the sender's device like any other).
    const received = await until(`${who}: every message reached the page's handler`, async () => {
      const m = await shown(page);
      return m.every((x) => x.received >= 1) && m;
    });
    assert.ok(received.every((m) => m.received === 1), `${who}: each message handled once: ${JSON.stringify(received)}`);
    const log = await bannerLog(page);
    assert.ok(log.includes("reconnecting"), `${who}: banner showed reconnecting: ${log}`);
    assert.equal(log.at(-1), "open", `${who}: banner gone at the end: ${log}`);
  }
  // Both ends have the conversation open: everything is read on both sides.
  await until("erin's messages read", async () => (await shown(erin.page)).every((m) => m.kind === "in" || m.tick === "read"));
  await shot(erin.page, "restart-2-erin-recovered");
  await shot(frank.page, "restart-2-frank-recovered");
});
