// Edit, delete and presence from the demo page: a message edited in place
// ("edited" on both sides), deleted for everyone ("message deleted" on both
// sides) and for me (only on my side); the peer's presence in the
// conversation header (online, then last seen once they close the page),
// and hiding one's own presence.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { bubble, conv, openConversation, send, shot, shown, startStack, until } from "./lib.mjs";

let stack;
before(async () => {
  // A closed page's user goes offline 1 s after their last socket closed (10 s by default).
  stack = await startStack({ bindings: { DEV_TOKENS: "1", PRESENCE_GRACE_S: "1" } });
});
after(async () => {
  await stack?.close();
});

/** The bubble with data-mid `mid`. */
const byMid = (page, mid) => page.locator(`[data-testid="msg"][data-mid="${mid}"]`);

test("edit and delete a message; the peer's presence in the header; hiding one's own", async () => {
  const kate = await stack.user("kate");
  const liam = await stack.user("liam");
  await openConversation(liam.page, "kate");
  await send(liam.page, "hi kate");
  await conv(kate.page, "liam").click();
  await bubble(kate.page, "hi kate").waitFor();
  // Liam's page is open: Kate's header shows him online.
  const presence = kate.page.getByTestId("presence");
  await presence.getByText("online", { exact: true }).waitFor();

  // Kate sends with a typo; Liam sees it.
  await send(kate.page, "helo liam");
  const mine = bubble(kate.page, "helo liam");
  await mine.locator('[data-testid="tick"]:not([data-state="sending"])').waitFor();
  const mid = await mine.getAttribute("data-mid");
  assert.match(mid, /^[0-9a-f]{28}$/);
  await byMid(liam.page, mid).getByText("helo liam", { exact: true }).waitFor();
  assert.equal(await byMid(liam.page, mid).getByTestId("edit-msg").count(), 0, "no edit on someone else's message");

  // Edit: the text goes to the composer; sending it replaces the message on both sides, marked edited.
  await mine.hover();
  await shot(kate.page, "edits-0-kate-actions-on-hover");
  await mine.getByTestId("edit-msg").click();
  await kate.page.getByTestId("editing").waitFor();
  assert.equal(await kate.page.getByTestId("composer").inputValue(), "helo liam");
  await kate.page.getByTestId("composer").fill("hello liam");
  await shot(kate.page, "edits-0-kate-editing");
  await kate.page.getByTestId("send").click();
  await kate.page.getByTestId("editing").waitFor({ state: "hidden" });
  for (const page of [kate.page, liam.page]) {
    const b = byMid(page, mid);
    await b.getByText("hello liam", { exact: true }).waitFor();
    await b.getByTestId("edited").waitFor();
  }
  assert.deepEqual((await shown(liam.page)).map((m) => m.text), ["hi kate", "hello liam"], "edited in place, nothing added");
  assert.equal(await conv(liam.page, "kate").getByTestId("conv-last").textContent(), "hello liam");
  await shot(kate.page, "edits-1-kate-edited");
  await shot(liam.page, "edits-1-liam-sees-edited");

  // Delete for everyone: both sides show "message deleted", without actions.
  await byMid(kate.page, mid).hover();
  await byMid(kate.page, mid).getByTestId("delete-everyone").click();
  for (const page of [kate.page, liam.page]) {
    const b = byMid(page, mid);
    await b.getByText("message deleted", { exact: true }).waitFor();
    assert.equal(await b.getAttribute("data-deleted"), "1");
    assert.equal(await b.getByTestId("edited").count(), 0);
    assert.equal(await b.locator(".msg-actions").count(), 0);
  }
  await shot(liam.page, "edits-2-liam-sees-deleted");

  // Delete for me: Liam's message disappears for Kate only.
  const his = bubble(kate.page, "hi kate");
  const hisMid = await his.getAttribute("data-mid");
  await his.hover();
  assert.equal(await his.getByTestId("delete-everyone").count(), 0, "not Kate's to delete for everyone");
  await his.getByTestId("delete-me").click();
  await byMid(kate.page, hisMid).getByText("message deleted", { exact: true }).waitFor();
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual((await shown(liam.page)).map((m) => m.text), ["hi kate", "message deleted"]);
  await shot(kate.page, "edits-3-kate-deleted-for-me");

  // Liam closes his page: after the grace Kate's header says when he was last seen.
  await liam.page.close();
  await presence.getByText(/^last seen \d\d:\d\d$/).waitFor();
  assert.equal(await presence.getAttribute("data-state"), "seen");
  await shot(kate.page, "presence-1-kate-sees-last-seen");

  // He comes back, then hides his presence: Kate sees nothing (as for a user never seen).
  const page = await stack.open(liam.context);
  await page.getByTestId("me").getByText("liam", { exact: true }).waitFor();
  await presence.getByText("online", { exact: true }).waitFor();
  const hide = page.getByTestId("hide-presence");
  await until("the setting is loaded", () => hide.isEnabled());
  assert.equal(await hide.isChecked(), false);
  await hide.check();
  await presence.waitFor({ state: "hidden" });
  await shot(page, "presence-2-liam-hides");
  await shot(kate.page, "presence-2-kate-sees-nothing");
  // The setting survives a reload (it is the server's, from the welcome).
  await page.reload();
  await until("hidden after a reload", async () => (await page.getByTestId("hide-presence").isEnabled()) && (await page.getByTestId("hide-presence").isChecked()));
  await page.getByTestId("hide-presence").uncheck();
  await presence.getByText("online", { exact: true }).waitFor();
});
