// Consent to be put in a group on the demo page, under the production
// default (contacts): Alice creates a group with Bob and Carol; Carol, a
// stranger to Alice, is left out and the page says so. Carol opens the
// setting and lets everyone add her: Alice's add then works. Bob picks
// "nobody" on one device and his other device shows it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { openConversation, send, shot, startStack } from "./lib.mjs";

let stack;
before(async () => {
  stack = await startStack({ bindings: { DEV_TOKENS: "1", GROUP_ADDS_DEFAULT: "contacts" } });
});
after(async () => {
  await stack?.close();
});

test("who may add me to groups: a refused member is named, the setting lets them in, and every device shows it", async () => {
  const alice = await stack.user("alice");
  const bob = await stack.user("bob");
  const carol = await stack.user("carol");
  assert.equal(await carol.page.getByTestId("group-adds").inputValue(), "contacts", "the default, from the welcome");

  // Bob wrote to Alice: she is his contact. Carol never did.
  await openConversation(bob.page, "alice");
  await send(bob.page, "hi alice");
  await alice.page.locator('[data-testid="conv"][data-peer="bob"]').waitFor();

  await alice.page.getByTestId("new-group-members").fill("bob, carol");
  await alice.page.getByTestId("new-group-go").click();
  await alice.page.getByTestId("group-view").waitFor();
  await alice.page.getByTestId("error").getByText("not added (they do not accept being added to groups by you): carol", { exact: true }).waitFor();
  await alice.page.getByTestId("group-members").getByText("alice (owner), bob", { exact: true }).waitFor();
  await shot(alice.page, "group-consent-1-carol-left-out");

  // An add is refused the same way until Carol lets everyone add her.
  await alice.page.getByTestId("add-member-user").fill("carol");
  await alice.page.getByTestId("add-member-go").click();
  await alice.page.getByTestId("error").getByText("carol does not accept being added to groups by you", { exact: true }).waitFor();
  await carol.page.getByTestId("group-adds").selectOption("everyone");
  await carol.page.locator('[data-testid="group-adds"]:not([disabled])').waitFor();
  assert.equal(await carol.page.getByTestId("group-adds").inputValue(), "everyone");
  await alice.page.getByTestId("add-member-user").fill("carol");
  await alice.page.getByTestId("add-member-go").click();
  await alice.page.getByTestId("group-members").getByText("alice (owner), bob, carol", { exact: true }).waitFor();

  // Bob's choice on one device shows on his other one.
  const bob2 = await stack.user("bob");
  await bob.page.getByTestId("group-adds").selectOption("nobody");
  await bob2.page.locator('[data-testid="group-adds"]').evaluate((el) => new Promise((resolve) => {
    const look = () => (el.value === "nobody" ? resolve() : setTimeout(look, 50));
    look();
  }));
  assert.equal(await bob2.page.getByTestId("group-adds").inputValue(), "nobody");
});
