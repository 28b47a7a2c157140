// Own sends: a message shows at once as pending ("sending") and becomes the
// stored message when the SDK confirms its cmid. Pending bubbles are matched
// by cmid, never by text: two identical texts sent quickly are two messages,
// and the same text arriving from another device of the same user neither
// confirms nor hides a send still in flight, whose failure then shows (with
// a click to retry).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sleep } from "../harness.mjs";
import { bubble, openConversation, send, shot, shown, signIn, startStack, until } from "./lib.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

test("two identical texts sent quickly both show, and both get ticks", async () => {
  const olga = await stack.user("olga");
  const pete = await stack.user("pete");
  await openConversation(olga.page, "pete");
  await openConversation(pete.page, "olga");
  await send(olga.page, "ping");
  await send(olga.page, "ping");
  const mine = await until("olga's two pings stored", async () => {
    const m = await shown(olga.page);
    return m.length === 2 && m.every((x) => x.seq !== null && x.tick !== "sending") && m;
  });
  assert.deepEqual(mine.map((m) => m.text), ["ping", "ping"]);
  assert.ok(mine[0].seq < mine[1].seq, `two stored messages: ${JSON.stringify(mine)}`);
  await until("both read by pete", async () => (await shown(olga.page)).every((m) => m.tick === "read"));
  const theirs = await until("pete sees both", async () => {
    const m = await shown(pete.page);
    return m.length === 2 && m;
  });
  assert.deepEqual(theirs.map((m) => [m.text, m.kind]), [["ping", "in"], ["ping", "in"]]);
  // Still two a moment later: nothing left pending or shown twice.
  await sleep(300);
  assert.equal((await shown(olga.page)).length, 2);
  await shot(olga.page, "send-1-identical-texts");
});

test("a send in flight is not confirmed by the same text from another device; its failure shows and a retry sends it", async () => {
  const TEXT = "same words";
  // Quinn's laptop: its socket goes through the test, which holds back the
  // first send of TEXT and later answers it with an error the SDK does not retry.
  const laptop = await stack.context();
  let held = null;
  let heldSeen;
  const heldArrived = new Promise((r) => (heldSeen = r));
  await laptop.routeWebSocket(
    (url) => url.pathname === "/ws",
    (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((data) => {
        let f = null;
        try {
          f = JSON.parse(data);
        } catch {}
        if (!held && f?.op === "send" && f.body?.message === TEXT) {
          held = { ws, id: f.id };
          heldSeen();
          return;
        }
        server.send(data);
      });
    },
  );
  const page = await stack.open(laptop);
  await signIn(page, "quinn");
  await openConversation(page, "rosa");
  const phone = await stack.user("quinn"); // another device of the same user
  await openConversation(phone.page, "rosa");
  const rosa = await stack.user("rosa");
  await openConversation(rosa.page, "quinn");

  await send(page, TEXT);
  await heldArrived;
  await bubble(page, TEXT).locator('[data-testid="tick"][data-state="sending"]').waitFor();

  // The phone sends the same text: the laptop gets it as its own ("out") message...
  await send(phone.page, TEXT);
  await page.locator('[data-testid="msg"][data-seq]').filter({ hasText: TEXT }).waitFor();
  // ...and its own send is still shown pending beside it.
  await until("the laptop shows the phone's message and its own pending one", async () => {
    const m = await shown(page);
    return m.length === 2 && m[0].seq !== null && m[1].seq === null && m[1].tick === "sending";
  });

  // The held send is refused: the bubble shows it failed.
  held.ws.send(JSON.stringify({ op: "error", re: held.id, code: "forbidden", retry: false, message: "refused by the test" }));
  const failed = bubble(page, TEXT).locator('[data-testid="tick"][data-state="failed"]');
  await failed.waitFor();
  assert.match(await failed.getAttribute("title"), /refused by the test.*retry/i);
  await shot(page, "send-2-failed-beside-same-text");

  // A click retries it (the socket now passes it on): two stored messages.
  await failed.click();
  const msgs = await until("the retried send stored", async () => {
    const m = await shown(page);
    return m.length === 2 && m.every((x) => x.seq !== null && x.tick !== "sending" && x.tick !== "failed") && m;
  });
  assert.deepEqual(msgs.map((m) => [m.text, m.kind]), [[TEXT, "out"], [TEXT, "out"]]);
  assert.ok(msgs[0].seq < msgs[1].seq);
  await until("rosa gets both", async () => (await shown(rosa.page)).filter((m) => m.text === TEXT).length === 2);
  await until("the phone shows both", async () => (await shown(phone.page)).filter((m) => m.text === TEXT).length === 2);
  await shot(page, "send-3-retried");
});
