// A user who is in a group reloads the page, or signs in from a new
// browser (issue 24, item 10): the sidebar shows their 1:1 conversations
// and their groups, all learnt from the server's conversation list (which
// holds both kinds of items) and nothing from the browser's storage.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { bubble, connected, conv, groupEntry as entry, openConversation, send, shot, startStack, until } from "./lib.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});


test("after a reload or in a new browser, a user in a group sees their 1:1 conversations and the group", async () => {
  const alice = await stack.user("alice");
  const bob = await stack.user("bob");
  await openConversation(alice.page, "bob");
  await send(alice.page, "hi bob");
  await conv(bob.page, "alice").waitFor();

  // Alice makes a group with Bob and writes there.
  await alice.page.getByTestId("new-group-members").fill("bob");
  await alice.page.getByTestId("new-group-go").click();
  await alice.page.getByTestId("group-view").waitFor();
  const group = await alice.page.locator('[data-testid="group"].active').getAttribute("data-group");
  await alice.page.getByTestId("group-composer").fill("hello group");
  await alice.page.getByTestId("group-send").click();
  await entry(bob.page, group).getByTestId("group-unread").getByText("1", { exact: true }).waitFor();

  // Alice reloads: her conversation with Bob is listed, with its last message.
  await alice.page.reload();
  await connected(alice.page);
  await conv(alice.page, "bob").getByTestId("conv-last").getByText("You: hi bob", { exact: true }).waitFor();
  await entry(alice.page, group).waitFor();
  assert.equal(await alice.page.getByTestId("no-conversations").isHidden(), true);

  // Bob signs in from a new browser (no storage of the old one): both show,
  // the group with its unread message and its newest entry.
  const bob2 = await stack.user("bob");
  await conv(bob2.page, "alice").getByTestId("conv-last").getByText("hi bob", { exact: true }).waitFor();
  await entry(bob2.page, group).getByTestId("group-unread").getByText("1", { exact: true }).waitFor();
  assert.equal(await entry(bob2.page, group).getByTestId("group-last").textContent(), "alice: hello group");
  assert.equal(await bob2.page.getByTestId("no-conversations").isHidden(), true);
  await shot(bob2.page, "reload-1-new-browser-conversations-and-group");

  // Both open as usual from there.
  await conv(bob2.page, "alice").click();
  await bubble(bob2.page, "hi bob").waitFor();
  await entry(bob2.page, group).click();
  await bob2.page.getByTestId("group-msg").filter({ hasText: "hello group" }).first().waitFor();
  await until("the group read", async () => (await entry(bob2.page, group).getByTestId("group-unread").count()) === 0);
});
