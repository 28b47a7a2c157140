// Group conversations on the demo page, three users in their own browser
// contexts: Alice creates a group with Bob and adds Carol; a message reaches
// both once; "read by N of M" on Alice's message grows as each of them opens
// the group; Carol's typing and reply reach Alice; Bob leaves (the group
// goes from his list, the others see that he left, and he gets nothing more).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { groupBubble, groupEntry as entry, shot, startStack, until } from "./lib.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

/** The texts of the open group's messages and change lines, top to bottom. */
const lines = (page) => page.locator('[data-testid="group-msg"], [data-testid="group-change"]').evaluateAll((els) => els.map((e) => e.querySelector('[data-testid="msg-text"]')?.textContent ?? e.textContent));
/** "read by N of M" of an own message: [N, M], or null. */
async function readBy(bubble) {
  const tick = bubble.getByTestId("read-by");
  if ((await tick.count()) === 0) return null;
  const [read, of] = [await tick.getAttribute("data-read"), await tick.getAttribute("data-of")];
  return read === null ? null : [Number(read), Number(of)];
}

test("create a group, add a member, chat with read-by ticks and typing, leave", async () => {
  const alice = await stack.user("alice");
  const bob = await stack.user("bob");
  const carol = await stack.user("carol");

  // Alice creates a group with Bob: it opens on her side and shows in Bob's list.
  await alice.page.getByTestId("new-group-members").fill("bob");
  await alice.page.getByTestId("new-group-go").click();
  await alice.page.getByTestId("group-view").waitFor();
  const group = await alice.page.locator('[data-testid="group"].active').getAttribute("data-group");
  assert.match(group, /^g:[a-z0-9_-]{1,32}$/);
  await alice.page.getByTestId("group-members").getByText("alice (owner), bob", { exact: true }).waitFor();
  await entry(bob.page, group).waitFor();
  assert.equal(await entry(carol.page, group).count(), 0, "not Carol's group yet");

  // She adds Carol by id: Carol's list shows it too, and the members line says so.
  await alice.page.getByTestId("add-member-user").fill("carol");
  await alice.page.getByTestId("add-member-go").click();
  await alice.page.getByTestId("group-members").getByText("alice (owner), bob, carol", { exact: true }).waitFor();
  await entry(carol.page, group).waitFor();

  // Bob opens the group; Alice writes: Bob sees it (once, from Alice); read by 1 of 2 as Carol has not opened it.
  await entry(bob.page, group).click();
  await bob.page.getByTestId("group-view").waitFor();
  await alice.page.getByTestId("group-composer").fill("hello team");
  await alice.page.getByTestId("group-send").click();
  const mine = groupBubble(alice.page, "hello team");
  await groupBubble(bob.page, "hello team").waitFor();
  assert.equal(await groupBubble(bob.page, "hello team").getAttribute("data-from"), "alice");
  await until("read by 1 of 2", async () => JSON.stringify(await readBy(mine)) === "[1,2]");
  assert.equal(await mine.getByTestId("read-by").getAttribute("data-state"), "sent");
  // Carol sees the unread message in her list, then opens the group: read by 2 of 2.
  await entry(carol.page, group).getByTestId("group-unread").getByText("1", { exact: true }).waitFor();
  await entry(carol.page, group).click();
  await groupBubble(carol.page, "hello team").waitFor();
  await until("read by 2 of 2", async () => JSON.stringify(await readBy(mine)) === "[2,2]");
  assert.equal(await mine.getByTestId("read-by").getAttribute("data-state"), "read");
  await shot(alice.page, "groups-1-alice-read-by-all");

  // Carol types, then replies: Alice sees her typing, then her message.
  await carol.page.getByTestId("group-composer").pressSequentially("hi");
  await alice.page.getByTestId("group-typing").getByText("carol is typing…", { exact: true }).waitFor();
  await carol.page.getByTestId("group-composer").fill("hi alice");
  await carol.page.getByTestId("group-send").click();
  await groupBubble(alice.page, "hi alice").waitFor();
  assert.equal(await groupBubble(alice.page, "hi alice").getAttribute("data-from"), "carol");
  await shot(carol.page, "groups-2-carol-replied");

  // Bob leaves: the group goes from his page; Alice and Carol see that he left.
  await bob.page.getByTestId("leave-group").click();
  await entry(bob.page, group).waitFor({ state: "detached" });
  await bob.page.getByTestId("group-view").waitFor({ state: "hidden" });
  for (const page of [alice.page, carol.page]) await page.getByTestId("group-change").getByText("bob left", { exact: true }).waitFor();
  await alice.page.getByTestId("group-members").getByText("alice (owner), carol", { exact: true }).waitFor();
  await alice.page.getByTestId("group-composer").fill("bob is gone");
  await alice.page.getByTestId("group-send").click();
  await groupBubble(carol.page, "bob is gone").waitFor();
  await until("read by 1 of 1 after Bob left", async () => JSON.stringify(await readBy(groupBubble(alice.page, "bob is gone"))) === "[1,1]");
  await shot(alice.page, "groups-3-bob-left");
  assert.equal(await entry(bob.page, group).count(), 0, "nothing brings the group back to Bob");
  // Everyone who stayed saw the same entries, each once, in the same order.
  const want = ["alice created the group with bob", "carol was added (by alice)", "hello team", "hi alice", "bob left", "bob is gone"];
  assert.deepEqual(await lines(alice.page), want);
  assert.deepEqual(await lines(carol.page), want.slice(1));
});
