// Two people chatting in two browsers: both see every message, own messages'
// ticks go sent -> delivered -> read, unread badges, typing indicator, and a
// page that was closed catches up on reopening, in order and without repeats.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { bubble, conv, openConversation, send, shot, shown, startStack, until } from "./lib.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

test("two users exchange messages; ticks become delivered, then read", async () => {
  const alice = await stack.user("alice");
  const bob = await stack.user("bob");
  await openConversation(alice.page, "bob");
  await alice.page.getByTestId("history-start").waitFor(); // an empty conversation

  // Bob is on his conversation list: the message reaches his device (delivered) but is not read.
  await send(alice.page, "hello bob");
  await bubble(alice.page, "hello bob").locator('[data-testid="tick"][data-state="delivered"]').waitFor();
  await conv(bob.page, "alice").getByTestId("unread-badge").getByText("1", { exact: true }).waitFor();
  assert.equal(await conv(bob.page, "alice").getByTestId("conv-last").textContent(), "hello bob");
  await shot(alice.page, "chat-1-alice-delivered");
  await shot(bob.page, "chat-1-bob-unread-badge");

  // Bob opens it: read, and Alice sees the read tick; Bob's badge is gone.
  await conv(bob.page, "alice").click();
  await bubble(bob.page, "hello bob").and(bob.page.locator('[data-kind="in"]')).waitFor();
  await bubble(alice.page, "hello bob").locator('[data-testid="tick"][data-state="read"]').waitFor();
  await conv(bob.page, "alice").getByTestId("unread-badge").waitFor({ state: "detached" });

  // Bob answers; Alice has the conversation open, so it is read at once.
  await send(bob.page, "hi alice");
  await bubble(alice.page, "hi alice").and(alice.page.locator('[data-kind="in"]')).waitFor();
  await bubble(bob.page, "hi alice").locator('[data-testid="tick"][data-state="read"]').waitFor();
  assert.equal(await conv(alice.page, "bob").getByTestId("unread-badge").count(), 0);

  for (const [page, kinds] of [
    [alice.page, ["out", "in"]],
    [bob.page, ["in", "out"]],
  ]) {
    const msgs = await shown(page);
    assert.deepEqual(msgs.map((m) => m.text), ["hello bob", "hi alice"]);
    assert.deepEqual(msgs.map((m) => m.kind), kinds);
    assert.ok(msgs[0].seq < msgs[1].seq, `seqs in order: ${JSON.stringify(msgs)}`);
  }
  await shot(alice.page, "chat-2-alice-read");
  await shot(bob.page, "chat-2-bob-read");
});

test("typing indicator shows while the peer types and goes away when they send", async () => {
  const gina = await stack.user("gina");
  const hank = await stack.user("hank");
  await openConversation(gina.page, "hank");
  await openConversation(hank.page, "gina");
  const typing = hank.page.getByTestId("typing");
  assert.equal(await typing.isVisible(), false);
  // Typing shows within a conversation that exists (strangers' is dropped).
  await gina.page.getByTestId("composer").fill("hello");
  await gina.page.getByTestId("send").click();
  await bubble(hank.page, "hello").waitFor();

  await gina.page.getByTestId("composer").pressSequentially("are you th", { delay: 30 });
  await typing.getByText("gina is typing…").waitFor();
  await shot(hank.page, "typing-1-hank-sees-typing");
  // Gina's own page shows no indicator.
  assert.equal(await gina.page.getByTestId("typing").isVisible(), false);

  // Sending ends it (well before the indicator's own 6 s expiry).
  await gina.page.getByTestId("composer").pressSequentially("ere?");
  await gina.page.getByTestId("send").click();
  await bubble(hank.page, "are you there?").waitFor();
  await typing.waitFor({ state: "hidden", timeout: 3000 });
  await shot(hank.page, "typing-2-hank-got-message");
});

test("a closed page reopens to everything it missed, in order, once, with an unread badge first", async () => {
  const carol = await stack.user("carol");
  const dave = await stack.user("dave");
  await openConversation(carol.page, "dave");
  await send(carol.page, "are you there?");
  await conv(dave.page, "carol").click();
  await bubble(dave.page, "are you there?").waitFor();
  await bubble(carol.page, "are you there?").locator('[data-testid="tick"][data-state="read"]').waitFor();

  // Dave closes his page; Carol sends five more, each confirmed stored (tick shown, not "sending").
  await dave.page.close();
  const missed = ["one", "two", "three", "four", "five"].map((n) => `while away ${n}`);
  for (const text of missed) await send(carol.page, text);
  for (const text of missed) await bubble(carol.page, text).locator('[data-testid="tick"][data-state="sent"]').waitFor();
  await shot(carol.page, "offline-1-carol-sent-while-dave-away");

  // Dave reopens the page: it resumes the same user and device without signing in.
  const page = await stack.open(dave.context);
  await page.getByTestId("me").getByText("dave", { exact: true }).waitFor();
  await conv(page, "carol").getByTestId("unread-badge").getByText("5", { exact: true }).waitFor();
  assert.equal(await conv(page, "carol").getByTestId("conv-last").textContent(), "while away five");
  await shot(page, "offline-2-dave-reopened-badge");

  await conv(page, "carol").click();
  const expected = ["are you there?", ...missed];
  const msgs = await until("dave sees the six messages", async () => {
    const m = await shown(page);
    return m.length >= expected.length && m;
  });
  assert.deepEqual(msgs.map((m) => m.text), expected);
  assert.ok(msgs.every((m) => m.kind === "in"));
  assert.ok(msgs.every((m, i) => i === 0 || m.seq > msgs[i - 1].seq), `seqs increase: ${JSON.stringify(msgs)}`);
  // Opened and visible: read, so Carol's ticks turn to read and Dave's badge goes.
  await conv(page, "carol").getByTestId("unread-badge").waitFor({ state: "detached" });
  await bubble(carol.page, "while away five").locator('[data-testid="tick"][data-state="read"]').waitFor();

  // A message sent after all of them arrives after them: nothing repeated meanwhile.
  await send(carol.page, "welcome back");
  await bubble(page, "welcome back").waitFor();
  assert.deepEqual((await shown(page)).map((m) => m.text), [...expected, "welcome back"]);
  await shot(page, "offline-3-dave-caught-up");
});
