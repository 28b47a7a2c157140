// Hardening, round three (issue 24, found trying the product as a new
// user would): each finding reproduced against the real runtime. The
// presence grace is 0 here, so a pull tells at once whether a close was
// handled, and the archive pass is far off, so nothing but the close can
// save a device's acks.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectV1, eventually, startWorker, token } from "../harness.mjs";

describe("hardening 3", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { PRESENCE_GRACE_S: "0", ARCHIVE_DELAY_MS: "600000" } })));
  after(() => w.close());

  const get = async (uid, path) => (await w.fetch(path, { headers: { authorization: `Bearer ${token(uid)}` } })).json();
  /** `of`'s presence as `uid`'s conversation list shows it. */
  const pulled = async (uid, of) => (await get(uid, "/v1/conversations")).items.find((c) => c.peer === of)?.presence;
  const isEdit = (f) => f.op === "msg" && f.kind === "edit";

  test("12: a delete for me wins over the sender's later edit on the deleter's devices", async () => {
    const a = await connectV1(w, "hd12a");
    const b = await connectV1(w, "hd12b");
    await a.request({ op: "send", to: "hd12b", cmid: "c1", body: { message: "secret" } });
    const { mid } = await b.msg();
    assert.equal((await b.request({ op: "delete", mid, for: "me", cmid: "d1" })).op, "sent");
    assert.equal((await a.request({ op: "edit", mid, cmid: "e1", body: { message: "revived" } })).op, "sent");

    // A sees the new text; B's devices get the edit carrying B's tombstone.
    assert.equal((await a.take(isEdit)).body.body.message, "revived");
    const live = await b.take(isEdit);
    assert.equal(live.body.target, mid);
    assert.equal(live.body.body.message, undefined, "no text for who deleted it");
    assert.equal(typeof live.body.body.deleted_at, "string");
    // A new device of B's replaying the log sees the same.
    const b2 = await connectV1(w, "hd12b", { device: "d2", since: 0 });
    const replayed = await b2.take(isEdit);
    assert.deepEqual(replayed.body, live.body);
    // History and the conversation list keep the tombstone, as before.
    const page = await get("hd12b", "/v1/history?peer=hd12a");
    assert.equal(page.items.find((m) => m.mid === mid).body.message, undefined);
    assert.equal((await get("hd12b", "/v1/conversations")).items[0].last.body.message, undefined);
    assert.equal((await get("hd12a", "/v1/history?peer=hd12b")).items.find((m) => m.mid === mid).body.message, "revived");

    // B's own message, deleted for B, then edited by B: A gets the text, B's devices do not.
    const own = await b.request({ op: "send", to: "hd12a", cmid: "c2", body: { message: "mine" } });
    await a.take((f) => f.op === "msg" && f.mid === own.mid);
    await b.request({ op: "delete", mid: own.mid, for: "me", cmid: "d2" });
    await b.request({ op: "edit", mid: own.mid, cmid: "e2", body: { message: "mine, edited" } });
    assert.equal((await a.take(isEdit)).body.body.message, "mine, edited");
    const ownEdit = await b.take((f) => isEdit(f) && f.body.target === own.mid);
    assert.equal(ownEdit.body.body.message, undefined);
    await Promise.all([a.close(), b.close(), b2.close()]);
  });

  test("13: a device's acks are saved with its socket's close and survive a runtime restart", async () => {
    const s = await connectV1(w, "hd13s");
    // The device is known (at head 0); five chats then wait for it.
    let r = await connectV1(w, "hd13r", { device: "phone" });
    await r.close();
    for (let i = 1; i <= 5; i++) await s.request({ op: "send", to: "hd13r", cmid: `c${i}`, body: { message: `m${i}` } });
    await eventually(async () => (await pulled("hd13s", "hd13r"))?.online === false);

    // One session: connect (the five replayed), ack them all, close cleanly.
    const before = (await w.metrics()).sql_rows_written;
    r = await connectV1(w, "hd13r", { device: "phone" });
    assert.equal(r.welcome.since, 0);
    let last;
    for (let i = 0; i < 5; i++) last = await r.msg();
    r.send({ op: "ack", up_to: last.seq });
    await r.close();
    // The close was handled once the pull shows the user offline (grace 0).
    await eventually(async () => (await pulled("hd13s", "hd13r"))?.online === false);
    const rows = (await w.metrics()).sql_rows_written - before;
    console.log(`# item 13: SQLite rows written by one session (connect, replay of 5, ack, close): ${rows}`);

    await s.close();
    await w.restart();
    r = await connectV1(w, "hd13r", { device: "phone" });
    assert.equal(r.welcome.since, last.seq, "resumed after what it acked, nothing sent again");
    await r.expectNone((f) => f.op === "msg", 300);
    await r.close();
  });

  test("22: sockets a restart dropped without close events do not leave the user online", async () => {
    const a = await connectV1(w, "hd22a");
    let b = await connectV1(w, "hd22b");
    await a.request({ op: "send", to: "hd22b", cmid: "c1", body: { message: "hi" } });
    await b.msg();
    assert.equal((await pulled("hd22a", "hd22b")).online, true);

    await w.restart(); // both sockets drop; no close event reaches the objects
    const p = await pulled("hd22a", "hd22b");
    assert.equal(p.online, false, "no socket survived");
    assert.equal(typeof p.last_seen, "number", `last seen is known, not "never seen": ${JSON.stringify(p)}`);

    // B coming back is a change a watcher hears of.
    const a2 = await connectV1(w, "hd22a", { device: "d2" });
    const answer = await a2.request({ op: "watch", peer: "hd22b" });
    assert.equal(answer.online, false);
    b = await connectV1(w, "hd22b");
    const told = await a2.take((f) => f.op === "presence" && f.re === undefined && f.user === "hd22b");
    assert.equal(told.online, true);
    await Promise.all([a2.close(), b.close()]);
  });
});
