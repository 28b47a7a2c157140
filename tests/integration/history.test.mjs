// History over HTTP: what D1 holds, who may read it, paging, delivery state,
// and D1 failing for a while.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually, startWorker } from "../harness.mjs";

async function chat(a, from, to, message) {
  a.send({ fromUser: from, toUser: to, message });
  assert.equal(await a.next(), "ok");
}

describe("history", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("sys and usr, newest first, each item as delivered plus isSend", async () => {
    const a = await w.connect("301");
    const b = await w.connect("302");
    await chat(a, 301, 302, "one");
    await w.api("/api/sys-msg", { uid: 302, type: "like" });
    const delivered = [await b.nextJson(), await b.nextJson()];
    await chat(b, 302, 301, "two");
    const r = await w.history("302");
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type"), /application\/json/);
    const page = await r.json();
    assert.deepEqual(page.sys, [{ ...delivered[1], isSend: 1 }]);
    assert.deepEqual(page.usr.map((m) => m.message), ["two", "one"]);
    assert.deepEqual(page.usr[1], { ...delivered[0], isSend: 1 });
    assert.equal(page.next, null);
    await Promise.all([a.close(), b.close()]);
  });

  test("a user sees only their own history", async () => {
    const a = await w.connect("311");
    await chat(a, 311, 312, "private");
    await w.api("/api/sys-msg", { uid: 311, type: "mine" });
    const other = await (await w.history("313")).json();
    assert.deepEqual(other, { sys: [], usr: [], next: null });
    const peerFilter = await (await w.history("313", { peer: "311" })).json();
    assert.deepEqual(peerFilter, { sys: [], usr: [], next: null });
    await a.close();
  });

  test("isSend is 2 while queued and 1 once delivered, for both sides", async () => {
    const a = await w.connect("321");
    await chat(a, 321, 322, "while offline");
    const queuedForB = await (await w.history("322")).json();
    assert.equal(queuedForB.usr[0].isSend, 2);
    const queuedForA = await (await w.history("321")).json();
    assert.equal(queuedForA.usr[0].isSend, 2, "the sender sees it is not delivered yet");
    const b = await w.connect("322");
    assert.equal((await b.nextJson()).message, "while offline");
    assert.equal((await (await w.history("322")).json()).usr[0].isSend, 1);
    await eventually(async () => (await (await w.history("321")).json()).usr[0].isSend === 1);
    await Promise.all([a.close(), b.close()]);
  });

  test("pages with before, limit and peer, without gaps or repeats", async () => {
    const a = await w.connect("331");
    const c = await w.connect("333");
    for (let i = 0; i < 120; i++) {
      a.send({ fromUser: 331, toUser: 332, message: `m${i}` });
      if (i % 10 === 0) c.send({ fromUser: 333, toUser: 332, message: `c${i}` });
    }
    for (let i = 0; i < 120; i++) assert.equal(await a.next(), "ok");
    for (let i = 0; i < 12; i++) assert.equal(await c.next(), "ok");
    await w.api("/api/sys-msg", { uid: 332, type: "sys" });

    const seen = [];
    let before;
    let pages = 0;
    do {
      const page = await (await w.history("332", { peer: "331", limit: 50, ...(before ? { before } : {}) })).json();
      pages++;
      assert.ok(page.usr.every((m) => m.fromUser === 331), "peer narrows usr to one conversation");
      seen.push(...page.usr.map((m) => m.message), ...page.sys.map((m) => m.type));
      before = page.next;
    } while (before !== null);
    assert.equal(pages, 3);
    const expected = ["sys", ...Array.from({ length: 120 }, (_, i) => `m${119 - i}`)];
    assert.deepEqual(seen.sort(), expected.sort());
    assert.equal(new Set(seen).size, seen.length);

    const all = await (await w.history("332", { limit: 200 })).json();
    assert.equal(all.usr.length + all.sys.length, 133);
    assert.equal(all.next, null);
    const first = await (await w.history("332", { limit: 3 })).json();
    assert.deepEqual(first.sys.map((m) => m.type), ["sys"]);
    assert.equal(first.usr.length, 2);
    assert.equal(typeof first.next, "number");
    await Promise.all([a.close(), c.close()]);
  });

  for (const [q, param] of [[{ limit: "0" }, "limit"], [{ limit: "ten" }, "limit"], [{ limit: "201" }, "limit"], [{ before: "-3" }, "before"], [{ peer: "a b" }, "peer"]]) {
    test(`a bad ${param} is a 400`, async () => {
      const r = await w.history("340", q);
      assert.equal(r.status, 400);
      assert.match((await r.json()).error, new RegExp(param));
    });
  }

  test("history survives a runtime restart", async () => {
    const a = await w.connect("351");
    await chat(a, 351, 352, "durable");
    await a.close();
    await w.restart();
    const page = await (await w.history("352")).json();
    assert.deepEqual(page.usr.map((m) => m.message), ["durable"]);
  });
});

describe("D1 failing", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("messages still flow, history waits, and is complete after recovery", async () => {
    await w.d1Outage();
    const a = await w.connect("401");
    const b = await w.connect("402");
    for (let i = 0; i < 5; i++) {
      await chat(a, 401, 402, `during outage ${i}`);
      assert.equal((await b.nextJson()).message, `during outage ${i}`);
    }
    // Let the archive alarm fail at least once.
    await new Promise((r) => setTimeout(r, 400));
    assert.match(w.output, /"event":"archive_failed"/);
    // The newest pages come from the user's own log: no D1 needed.
    const during = await (await w.history("402")).json();
    assert.deepEqual(during.usr.map((m) => m.message), [4, 3, 2, 1, 0].map((i) => `during outage ${i}`));
    await w.d1Restore();
    // Recovery comes from the alarm's retry, not from a history request.
    await eventually(async () => (await w.historyRows("recipient = '402'")).length === 5, 10000);
    const page = await (await w.history("402")).json();
    assert.deepEqual(page.usr.map((m) => m.message), [4, 3, 2, 1, 0].map((i) => `during outage ${i}`));
    const sent = await (await w.history("401")).json();
    assert.equal(sent.usr.length, 5);
    await Promise.all([a.close(), b.close()]);
  });
});
