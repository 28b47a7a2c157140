// The backend's moderation of a group message on the demo page: Alice and
// Bob have the group open; the backend deletes one of Alice's messages and
// edits another (POST /api/delete, /api/edit naming the group): both pages
// show "message deleted" and the new text in place, without a reload, and
// a page opened afterwards shows the same from the group's history.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { API_KEY, token } from "../harness.mjs";
import { groupBubble, groupEntry as entry, shot, startStack } from "./lib.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});


/** A moderation call with the API key. */
async function moderate(path, body) {
  const res = await stack.w.fetch(path, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

test("a group message the backend deletes or edits changes in place on every member's page", async () => {
  const alice = await stack.user("alice");
  const bob = await stack.user("bob");
  await alice.page.getByTestId("new-group-members").fill("bob");
  await alice.page.getByTestId("new-group-go").click();
  await alice.page.getByTestId("group-view").waitFor();
  const group = await alice.page.locator('[data-testid="group"].active').getAttribute("data-group");
  await entry(bob.page, group).waitFor();
  await entry(bob.page, group).click();
  await bob.page.getByTestId("group-view").waitFor();
  for (const text of ["buy cheap pills", "helo all"]) {
    await alice.page.getByTestId("group-composer").fill(text);
    await alice.page.getByTestId("group-send").click();
    await groupBubble(bob.page, text).waitFor();
  }
  // The messages' ids, from the group's history (as the backend would know them).
  const res = await stack.w.fetch(`/v1/history?group=${group}`, { headers: { authorization: `Bearer ${token("bob")}` } });
  assert.equal(res.status, 200);
  const page = await res.json();
  const mid = (text) => page.items.find((i) => i.body.message === text).mid;

  const del = await moderate("/api/delete", { group, mid: mid("buy cheap pills") });
  assert.equal(del.status, 200, JSON.stringify(del.body));
  const edit = await moderate("/api/edit", { group, mid: mid("helo all"), body: { message: "hello all" } });
  assert.equal(edit.status, 200, JSON.stringify(edit.body));
  for (const p of [alice.page, bob.page]) {
    await p.locator('[data-testid="group-msg"][data-deleted="1"]').getByText("message deleted", { exact: true }).waitFor();
    await groupBubble(p, "hello all").getByTestId("edited").waitFor();
    assert.equal(await groupBubble(p, "buy cheap pills").count(), 0);
    assert.equal(await groupBubble(p, "helo all").count(), 0);
  }
  await shot(bob.page, "group-moderated");

  // A page opened afterwards reads the current state from the group's history.
  const later = await stack.open(bob.context);
  await entry(later, group).click();
  await later.getByTestId("group-view").waitFor();
  await groupBubble(later, "hello all").waitFor();
  await later.locator('[data-testid="group-msg"][data-deleted="1"]').waitFor();
  assert.equal(await groupBubble(later, "buy cheap pills").count(), 0);
});
