// Unit tests of the client SDK's edits, deletes, presence and settings
// (client/dist) against a fake WebSocket and a manual clock: edit/delete
// through the outbox, op entries as `change` events, watch renewals and
// re-watches after reconnects, presence and settings frames.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChatError, MemoryStore, applyChange, isDeleted } from "../../../client/dist/index.js";
import { open, setup } from "../fake.mjs";

const MID = "0123456789abcdef0123456789ab";
const MID2 = "ba9876543210fedcba9876543210";



/** Drops the socket and welcomes the next one; returns it. */
async function reconnect(t, ws, over) {
  ws.drop();
  await t.clock.advance(1000);
  const next = t.S.last();
  assert.notEqual(next, ws);
  next.welcome(over);
  await t.clock.advance(0);
  return next;
}

const limits = (over) => ({ frame_bytes: 65536, history_page: 200, cmid_chars: 64, sends_per_second: 20, send_burst: 60, edit_window_s: 86400, watch_ttl_s: 60, ...over });

describe("edit and delete", () => {
  test("edit and delete frames go through the outbox and resolve with the op's sent reply", async () => {
    const t = setup();
    const ws = await open(t);
    const e = t.chat.edit(MID, { message: "fixed", extra: 1 });
    const d = t.chat.deleteMessage(MID2, { for: "me" });
    await t.clock.advance(0);
    assert.equal(t.chat.pending, 2);
    const [ef] = ws.frames("edit");
    const [df] = ws.frames("delete");
    assert.deepEqual({ ...ef, id: 0, cmid: "" }, { op: "edit", id: 0, mid: MID, cmid: "", body: { message: "fixed", extra: 1 } });
    assert.deepEqual({ ...df, id: 0, cmid: "" }, { op: "delete", id: 0, mid: MID2, for: "me", cmid: "" });
    assert.equal(typeof ef.cmid, "string");
    assert.notEqual(ef.cmid, df.cmid);
    ws.push({ op: "sent", re: ef.id, mid: "E1", seq: 10, duplicate: false });
    ws.push({ op: "sent", re: df.id, mid: "D1", seq: 11, duplicate: false });
    assert.deepEqual(await e, { mid: "E1", seq: 10, duplicate: false });
    assert.deepEqual(await d, { mid: "D1", seq: 11, duplicate: false });
    assert.equal(t.chat.pending, 0);
    assert.deepEqual(t.r.sent, [], "`sent` events are for sends; ops show as `change` entries");
  });

  test("an unanswered edit is re-sent with the same cmid after a reconnect and resolves once", async () => {
    const t = setup();
    let ws = await open(t);
    let resolved = 0;
    const p = t.chat.edit(MID, "v2", { cmid: "edit-1" }).then((r) => (resolved++, r));
    await t.clock.advance(0);
    const [first] = ws.frames("edit");
    assert.equal(first.cmid, "edit-1");
    ws = await reconnect(t, ws);
    const again = ws.frames("edit");
    assert.equal(again.length, 1);
    assert.deepEqual({ ...again[0], id: 0 }, { ...first, id: 0 });
    ws.push({ op: "sent", re: again[0].id, mid: "E", seq: 5, duplicate: true });
    ws.push({ op: "sent", re: again[0].id, mid: "E", seq: 5, duplicate: true });
    assert.deepEqual(await p, { mid: "E", seq: 5, duplicate: true });
    await t.clock.advance(100);
    assert.equal(resolved, 1);
    assert.equal(t.chat.pending, 0);
  });

  test("ops of one message go one at a time, in call order; other messages and sends do not wait", async () => {
    const t = setup();
    const ws = await open(t);
    const e1 = t.chat.edit(MID, "one");
    const e2 = t.chat.edit(MID, "two");
    const del = t.chat.deleteMessage(MID, { for: "everyone" });
    const other = t.chat.edit(MID2, "other");
    const s = t.chat.send("2", "new chat");
    await t.clock.advance(0);
    const out = () => ws.frames().map((f) => `${f.op}:${f.body?.message ?? f.for}`);
    assert.deepEqual(out(), ["edit:one", "edit:other", "send:new chat"]);
    const reply = (f, seq) => ws.push({ op: "sent", re: f.id, mid: `M${seq}`, seq, duplicate: false });
    reply(ws.frames("edit")[0], 1);
    await t.clock.advance(0);
    assert.deepEqual(out().slice(3), ["edit:two"]);
    reply(ws.frames("edit")[2], 2);
    await t.clock.advance(0);
    assert.deepEqual(out().slice(4), ["delete:everyone"]);
    reply(ws.frames("delete")[0], 3);
    reply(ws.frames("edit")[1], 4);
    reply(ws.frames("send")[0], 5);
    assert.deepEqual((await Promise.all([e1, e2, del, other, s])).map((r) => r.seq), [1, 2, 3, 4, 5]);
  });

  test("not_found, too_late, deleted and forbidden reject with typed errors; the next op of that message goes out", async () => {
    const t = setup();
    const ws = await open(t);
    for (const code of ["not_found", "too_late", "deleted", "forbidden"]) {
      const p = t.chat.deleteMessage(MID, { for: "everyone" });
      await t.clock.advance(0);
      const f = ws.frames("delete").at(-1);
      ws.push({ op: "error", re: f.id, code, retry: false, message: "no" });
      await assert.rejects(p, (e) => e instanceof ChatError && e.code === code && e.retry === false && e.cmid === f.cmid);
    }
    assert.equal(ws.frames("delete").length, 4);
    assert.equal(t.chat.pending, 0);
    assert.equal(t.r.errors.length, 0, "the promise reports it");
  });

  test("unavailable is retried with the same cmid", async () => {
    const t = setup({ backoff: { baseMs: 1000 } });
    const ws = await open(t);
    const p = t.chat.edit(MID, "x");
    await t.clock.advance(0);
    const f1 = ws.frames("edit")[0];
    ws.push({ op: "error", re: f1.id, code: "unavailable", retry: true });
    await t.clock.advance(499);
    assert.equal(ws.frames("edit").length, 1);
    await t.clock.advance(1);
    const f2 = ws.frames("edit")[1];
    assert.equal(f2.cmid, f1.cmid);
    ws.push({ op: "sent", re: f2.id, mid: "E", seq: 1, duplicate: false });
    assert.equal((await p).mid, "E");
  });

  test("ops survive a reload (stored with their cmid); a refusal of a restored one is an error event", async () => {
    const store = new MemoryStore();
    const t = setup({ store });
    void t.chat.edit(MID, "stored edit", { cmid: "e1" });
    void t.chat.deleteMessage(MID2, { for: "me", cmid: "d1" });
    await t.clock.advance(0);
    assert.deepEqual(store.state.outbox, [
      { op: "edit", cmid: "e1", mid: MID, body: { message: "stored edit" } },
      { op: "delete", cmid: "d1", mid: MID2, for: "me" },
    ]);
    const t2 = setup({ store });
    const ws = await open(t2);
    assert.equal(t2.chat.pending, 2);
    const [ef] = ws.frames("edit");
    const [df] = ws.frames("delete");
    assert.deepEqual([ef.cmid, ef.mid, ef.body.message, df.cmid, df.mid, df.for], ["e1", MID, "stored edit", "d1", MID2, "me"]);
    ws.push({ op: "sent", re: ef.id, mid: "E", seq: 3, duplicate: false });
    ws.push({ op: "error", re: df.id, code: "not_found", retry: false });
    await t2.clock.advance(0);
    assert.deepEqual(t2.r.errors.map((e) => [e.code, e.cmid]), [["not_found", "d1"]]);
    assert.deepEqual(store.state.outbox, []);
  });

  test("invalid edits and deletes are refused locally", async () => {
    const t = setup();
    await assert.rejects(t.chat.edit("", "x"), (e) => e.code === "bad_field" && e.field === "mid");
    await assert.rejects(t.chat.edit("no/slash", "x"), (e) => e.code === "bad_field" && e.field === "mid");
    await assert.rejects(t.chat.edit(MID, { message: "" }), (e) => e.code === "bad_field" && e.field === "body.message");
    await assert.rejects(t.chat.edit(MID, "x".repeat(70000)), (e) => e.code === "too_large");
    await assert.rejects(t.chat.deleteMessage(MID, { for: "all" }), (e) => e.code === "bad_field" && e.field === "for");
    await assert.rejects(t.chat.deleteMessage(MID, {}), (e) => e.code === "bad_field" && e.field === "for");
    assert.equal(t.chat.pending, 0);
  });
});

describe("op entries", () => {
  test("edits and deletes are change events, not messages; processed in seq order and acked", async () => {
    const t = setup();
    const seen = [];
    t.chat.on("message", (m) => seen.push(`message ${m.seq}`));
    t.chat.on("change", (c) => seen.push(`change ${c.seq}`));
    const ws = await open(t);
    ws.msg(1, { mid: MID });
    const edited = { fromUser: "2", toUser: "u1", message: "hello again", id: MID, time: "t", edit_version: 1, edited_at: "t2" };
    ws.op(2, "edit", MID, edited);
    const tomb = { fromUser: "2", toUser: "u1", id: MID, time: "t", deleted_at: "t3" };
    ws.op(3, "delete", MID, tomb, { peer: "2" });
    ws.msg(4);
    await t.clock.advance(100);
    assert.deepEqual(seen, ["message 1", "change 2", "change 3", "message 4"]);
    assert.deepEqual(t.r.changes, [
      { seq: 2, kind: "edit", peer: "2", mid: "op2", target: MID, body: edited },
      { seq: 3, kind: "delete", peer: "2", mid: "op3", target: MID, body: tomb, for: "everyone" },
    ]);
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [4]);
    assert.equal(t.chat.cursor, 4);
    // Replayed after a reconnect: not delivered again.
    const ws2 = await reconnect(t, ws);
    assert.equal(ws2.params.since, "4");
    ws2.op(3, "delete", MID, tomb);
    await t.clock.advance(100);
    assert.equal(t.r.changes.length, 2);
  });

  test("a failing change handler: not acked, the socket is replaced and the op delivered again", async () => {
    const t = setup({ backoff: { baseMs: 100 } });
    let fail = true;
    const calls = [];
    t.chat.on("change", (c) => {
      calls.push(c.seq);
      if (fail) throw new Error("db locked");
    });
    const ws = await open(t);
    ws.msg(1, { mid: MID });
    ws.op(2, "edit", MID, { message: "x", edit_version: 1 });
    await t.clock.advance(20);
    assert.ok(!ws.frames("ack").some((f) => f.up_to >= 2), "2 is not acked");
    assert.equal(t.chat.cursor, 1);
    assert.equal(t.r.errors.find((e) => e.code === "handler_failed")?.seq, 2);
    fail = false;
    await t.clock.advance(100);
    const ws2 = t.S.last();
    assert.notEqual(ws2, ws);
    assert.equal(ws2.params.since, "1");
    ws2.welcome();
    ws2.op(2, "edit", MID, { message: "x", edit_version: 1 });
    await t.clock.advance(20);
    assert.deepEqual(calls, [2, 2]);
    assert.deepEqual(ws2.frames("ack").map((f) => f.up_to), [2]);
  });

  test("an op entry without a target is a protocol error and not delivered", async () => {
    const t = setup();
    const ws = await open(t);
    ws.push({ op: "msg", seq: 1, kind: "edit", peer: "2", mid: "op1", body: { body: { message: "x" } } });
    await t.clock.advance(100);
    assert.deepEqual(t.r.changes, []);
    assert.equal(t.r.errors[0]?.code, "protocol");
    // History pages never hold op entries.
    const h = t.chat.history({ peer: "2" });
    await t.clock.advance(0);
    const [hf] = ws.frames("history");
    ws.push({ op: "history", re: hf.id, items: [{ op: "msg", seq: 2, kind: "edit", peer: "2", mid: "x", body: { target: MID, body: {} } }], next: null });
    assert.equal(t.r.errors[1]?.code, "protocol");
    ws.push({ op: "history", re: hf.id, items: [], next: null });
    assert.deepEqual(await h, { items: [], next: null });
  });

  test("applyChange replaces the target's body once, never with an older state; a tombstone is final", () => {
    const m = { seq: 1, kind: "in", peer: "2", mid: MID, body: { message: "v0" } };
    const change = (seq, kind, body) => ({ seq, kind, peer: "2", mid: `op${seq}`, target: MID, body });
    const v1 = applyChange(m, change(2, "edit", { message: "v1", edit_version: 1 }));
    assert.equal(v1.body.message, "v1");
    assert.equal(m.body.message, "v0", "a copy, the original untouched");
    const v2 = applyChange(v1, change(3, "edit", { message: "v2", edit_version: 2 }));
    assert.equal(applyChange(v2, change(2, "edit", { message: "v1", edit_version: 1 })), v2, "an older edit changes nothing");
    assert.equal(applyChange(m, { ...change(2, "edit", { message: "x", edit_version: 1 }), target: MID2 }), m, "another message's change");
    const gone = applyChange(v2, change(4, "delete", { id: MID, deleted_at: "t" }));
    assert.ok(isDeleted(gone.body) && gone.body.message === undefined);
    assert.equal(applyChange(gone, change(5, "edit", { message: "v3", edit_version: 3 })), gone);
  });
});

describe("presence", () => {
  test("watch: a presence event now, renewals at half the ttl while held, none once let go", async () => {
    const t = setup();
    const ws = await open(t, { limits: limits({ watch_ttl_s: 10 }) });
    const unwatch = t.chat.watch("2");
    await t.clock.advance(0);
    const [w1] = ws.frames("watch");
    assert.deepEqual({ ...w1, id: 0 }, { op: "watch", id: 0, peer: "2" });
    assert.equal(t.chat.presence("2"), null);
    ws.push({ op: "presence", re: w1.id, user: "2", online: true, last_seen: 60000 });
    assert.deepEqual(t.r.presence, [{ user: "2", online: true, last_seen: 60000 }]);
    assert.deepEqual(t.chat.presence("2"), { online: true, last_seen: 60000 });
    await t.clock.advance(4999);
    assert.equal(ws.frames("watch").length, 1, "not before ttl * 0.5");
    await t.clock.advance(1);
    assert.equal(ws.frames("watch").length, 2, "renewed at ttl * 0.5 after the answer");
    // A push (no re) between renewals.
    ws.push({ op: "presence", user: "2", online: false, last_seen: 120000 });
    assert.deepEqual(t.chat.presence("2"), { online: false, last_seen: 120000 });
    ws.push({ op: "presence", re: ws.frames("watch")[1].id, user: "2", online: false, last_seen: 120000 });
    await t.clock.advance(5000);
    assert.equal(ws.frames("watch").length, 3);
    ws.push({ op: "presence", re: ws.frames("watch")[2].id, user: "2", online: false, last_seen: 120000 });
    unwatch();
    unwatch(); // idempotent
    await t.clock.advance(60000);
    assert.equal(ws.frames("watch").length, 3, "no renewal once let go");
    assert.equal(t.r.presence.length, 4);
    assert.deepEqual(t.chat.presence("2"), { online: false, last_seen: 120000 }, "the last known stays");
  });

  test("two handles of one peer share one watch; it lives until both are let go", async () => {
    const t = setup();
    const ws = await open(t);
    const a = t.chat.watch("2");
    const b = t.chat.watch("2");
    await t.clock.advance(0);
    assert.equal(ws.frames("watch").length, 1);
    ws.push({ op: "presence", re: ws.frames("watch")[0].id, user: "2", online: true, last_seen: 0 });
    a();
    await t.clock.advance(30000);
    assert.equal(ws.frames("watch").length, 2, "still renewed: b holds it");
    ws.push({ op: "presence", re: ws.frames("watch")[1].id, user: "2", online: true, last_seen: 0 });
    b();
    await t.clock.advance(30000);
    assert.equal(ws.frames("watch").length, 2);
  });

  test("after a reconnect every held watch is sent again at once; one in flight is sent once", async () => {
    const t = setup();
    let ws = await open(t);
    t.chat.watch("2");
    t.chat.watch("3");
    await t.clock.advance(0);
    const [w2] = ws.frames("watch");
    ws.push({ op: "presence", re: w2.id, user: "2", online: true, last_seen: 0 }); // "3" stays unanswered
    await t.clock.advance(1000);
    ws = await reconnect(t, ws);
    assert.deepEqual(ws.frames("watch").map((f) => f.peer).sort(), ["2", "3"], "both at the welcome, once each");
    for (const f of ws.frames("watch")) ws.push({ op: "presence", re: f.id, user: f.peer, online: false, last_seen: 60000 });
    assert.deepEqual(t.r.presence.slice(1).map((p) => p.user).sort(), ["2", "3"]);
    // The renewal clock restarts from the new answers.
    await t.clock.advance(29999);
    assert.equal(ws.frames("watch").length, 2);
    await t.clock.advance(1);
    assert.equal(ws.frames("watch").length, 4);
  });

  test("a watch made before connect() goes out at the welcome; close() stops renewals, connect() resumes them", async () => {
    const t = setup();
    t.chat.watch("2");
    let ws = await open(t);
    assert.equal(ws.frames("watch").length, 1);
    ws.push({ op: "presence", re: ws.frames("watch")[0].id, user: "2", online: true, last_seen: 0 });
    await t.chat.close();
    await t.clock.advance(120000);
    assert.equal(t.S.sockets.length, 1);
    assert.equal(t.r.errors.length, 0, "a watch is no error when closed");
    ws = await open(t);
    assert.deepEqual(ws.frames("watch").map((f) => f.peer), ["2"]);
  });

  test("a watch refused with rate_limited is retried after retry_after_ms", async () => {
    const t = setup();
    const ws = await open(t);
    t.chat.watch("2");
    await t.clock.advance(0);
    ws.push({ op: "error", re: ws.frames("watch")[0].id, code: "rate_limited", retry: true, retry_after_ms: 700 });
    await t.clock.advance(699);
    assert.equal(ws.frames("watch").length, 1);
    await t.clock.advance(1);
    assert.equal(ws.frames("watch").length, 2);
    assert.throws(() => t.chat.watch("not an id"), (e) => e.code === "bad_field" && e.field === "peer");
  });

  test("a watch answered 'never seen' before the conversation existed is sent again at its first message, either way, once", async () => {
    const t = setup();
    const ws = await open(t);
    // Watched before anyone wrote: the server answers "never seen" and keeps no watch.
    t.chat.watch("2");
    t.chat.watch("3");
    await t.clock.advance(0);
    for (const f of ws.frames("watch")) ws.push({ op: "presence", re: f.id, user: f.peer, online: false, last_seen: null });
    // The peer writes first: watched again at once, not at the renewal.
    ws.msg(1);
    await t.clock.advance(0);
    assert.deepEqual(ws.frames("watch").map((f) => f.peer), ["2", "3", "2"]);
    ws.push({ op: "presence", re: ws.frames("watch")[2].id, user: "2", online: true, last_seen: 60000 });
    assert.deepEqual(t.chat.presence("2"), { online: true, last_seen: 60000 });
    // This user writes first (their own chat comes back as an `out` entry).
    ws.msg(2, { kind: "out", peer: "3", mid: "m2", body: { fromUser: "u1", toUser: "3", message: "hi" } });
    await t.clock.advance(0);
    assert.deepEqual(ws.frames("watch").map((f) => f.peer), ["2", "3", "2", "3"]);
    // Once per watch: a peer who hides their presence costs one more watch, not one per message.
    ws.push({ op: "presence", re: ws.frames("watch")[3].id, user: "3", online: false, last_seen: null });
    ws.msg(3, { kind: "in", peer: "3", mid: "m3", body: { fromUser: "3", toUser: "u1", message: "yo" } });
    ws.msg(4);
    await t.clock.advance(0);
    assert.equal(ws.frames("watch").length, 4);
    assert.equal(t.r.errors.length, 0);
  });

  test("a message that comes while the first watch is out has it sent again if its answer is 'never seen'", async () => {
    const t = setup();
    const ws = await open(t);
    t.chat.watch("2");
    await t.clock.advance(0);
    ws.msg(1); // stored at the peer's object after it answered the watch
    await t.clock.advance(0);
    assert.equal(ws.frames("watch").length, 1, "one watch out at a time");
    ws.push({ op: "presence", re: ws.frames("watch")[0].id, user: "2", online: false, last_seen: null });
    await t.clock.advance(0);
    assert.equal(ws.frames("watch").length, 2);
  });
});

describe("settings", () => {
  test("the welcome's settings, setHidePresence, and settings events from any device", async () => {
    const t = setup();
    assert.deepEqual(t.chat.settings, { hide_presence: false, group_adds: "contacts" });
    const ws = await open(t, { settings: { hide_presence: true, group_adds: "nobody" } });
    assert.deepEqual(t.chat.settings, { hide_presence: true, group_adds: "nobody" });
    const p = t.chat.setHidePresence(false);
    await t.clock.advance(0);
    const [f] = ws.frames("settings");
    assert.deepEqual({ ...f, id: 0 }, { op: "settings", id: 0, hide_presence: false });
    ws.push({ op: "ok", re: f.id });
    await p;
    ws.push({ op: "settings", settings: { hide_presence: false, group_adds: "nobody" } });
    assert.deepEqual(t.r.settings, [{ hide_presence: false, group_adds: "nobody" }]);
    assert.deepEqual(t.chat.settings, { hide_presence: false, group_adds: "nobody" });
    await assert.rejects(t.chat.setHidePresence("yes"), (e) => e.code === "bad_field");
  });

  test("conversations carry each peer's presence", async () => {
    const last = { op: "msg", seq: 3, kind: "in", peer: "2", mid: MID, body: { message: "m" } };
    const items = [
      { peer: "2", unread: 1, read_up_to: 0, peer_delivered: 0, peer_read: 0, last, presence: { online: true, last_seen: 60000 } },
      { peer: "3", unread: 0, read_up_to: 0, peer_delivered: 0, peer_read: 0, last: { ...last, peer: "3" } },
    ];
    const t = setup({ fetch: async () => Response.json({ items, next: null }) });
    const page = await t.chat.conversations();
    assert.deepEqual(page.items.map((i) => i.presence), [{ online: true, last_seen: 60000 }, { online: false, last_seen: null }]);
  });
});
