// Block and mute from the demo page: the header's block button and mute
// bell, the marks in the conversation list, a second device of the blocker
// showing the same lists, and a blocked peer's messages never shown.
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

test("block and mute from the conversation header; a blocked peer's messages never appear", async () => {
  const iris = await stack.user("iris");
  const iris2 = await stack.user("iris");
  const jack = await stack.user("jack");
  await openConversation(jack.page, "iris");
  await send(jack.page, "before the block");
  await conv(iris.page, "jack").waitFor();
  await conv(iris.page, "jack").click();
  await bubble(iris.page, "before the block").waitFor();

  // Block from the header: the button turns to Unblock, the list marks it, on both devices.
  const block = iris.page.getByTestId("block");
  assert.equal(await block.textContent(), "Block");
  await block.click();
  await iris.page.locator('[data-testid="block"][data-state="blocked"]').waitFor();
  assert.equal(await block.textContent(), "Unblock");
  await conv(iris.page, "jack").getByTestId("blocked-mark").waitFor();
  await conv(iris2.page, "jack").getByTestId("blocked-mark").waitFor();

  // Mute: the bell turns muted, in the header and in the list.
  await iris.page.getByTestId("mute").click();
  await iris.page.locator('[data-testid="mute"][data-state="muted"]').waitFor();
  assert.equal(await iris.page.getByTestId("mute").textContent(), "🔕 Muted");
  await conv(iris2.page, "jack").getByTestId("muted-bell").waitFor();
  await shot(iris.page, "blocks-1-iris-blocked-and-muted");

  // Jack sends: his page shows it sent (never delivered); Iris's pages show nothing.
  await send(jack.page, "while blocked");
  await bubble(jack.page, "while blocked").locator('[data-testid="tick"][data-state="sent"]').waitFor();
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual((await shown(iris.page)).map((m) => m.text), ["before the block"]);
  await shot(jack.page, "blocks-2-jack-sent-unaware");

  // Sending to a blocked user is refused with a clear message.
  await send(iris.page, "to jack");
  const failed = bubble(iris.page, "to jack").locator('[data-testid="tick"][data-state="failed"]');
  await failed.waitFor();
  assert.match(await failed.getAttribute("title"), /blocked this user/);

  // Unblock: later messages arrive again; the earlier one stays away.
  await block.click();
  await iris.page.locator('[data-testid="block"][data-state="open"]').waitFor();
  await conv(iris2.page, "jack").getByTestId("blocked-mark").waitFor({ state: "detached" });
  await send(jack.page, "after the unblock");
  await bubble(iris.page, "after the unblock").waitFor();
  await until("iris sees exactly the unblocked messages", async () => {
    const texts = (await shown(iris.page)).filter((m) => m.kind === "in").map((m) => m.text);
    return JSON.stringify(texts) === JSON.stringify(["before the block", "after the unblock"]) && texts;
  });
  await iris.page.getByTestId("mute").click();
  await iris.page.locator('[data-testid="mute"][data-state="on"]').waitFor();
  await shot(iris.page, "blocks-3-iris-unblocked");
});
