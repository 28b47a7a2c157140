// Edits and deletes against the real runtime: each op an entry of its own
// in both logs, history (the log, D1, legacy) holding the current state,
// who may and until when, idempotent cmids, resume across ops made while a
// device was offline (and a restart), unread counts and the conversation
// order, legacy sockets, and the backend's moderation calls.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { API_KEY, connectV1, eventually, sleep, startWorker, token } from "../harness.mjs";

const as = (w, uid, path, init = {}) =>
  w.fetch(path, { ...init, headers: { authorization: `Bearer ${token(uid)}`, ...(init.headers ?? {}) } });
const v1History = async (w, uid, q = "limit=50") => (await (await as(w, uid, `/v1/history?${q}`)).json()).items;
const conversations = async (w, uid) => (await (await as(w, uid, "/v1/conversations")).json()).items;
const send = (c, to, message, cmid = message) => c.request({ op: "send", to, cmid, body: { message } });
const edit = (c, mid, message, cmid = `e-${message}`) => c.request({ op: "edit", mid, cmid, body: { message } });
const del = (c, mid, scope, cmid = `d-${mid}-${scope}`) => c.request({ op: "delete", mid, for: scope, cmid });
const isOp = (f) => f.op === "msg" && (f.kind === "edit" || f.kind === "delete");

describe("edit and delete", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("an edit is an entry in both logs; every history shows the new body, never the op", async () => {
    const a = await connectV1(w, "ea");
    const b = await connectV1(w, "eb");
    const sent = await send(a, "eb", "helo");
    const original = await b.msg();
    const op = await edit(a, sent.mid, "hello");
    assert.equal(op.op, "sent");
    assert.notEqual(op.mid, sent.mid, "the op has an id of its own");
    assert.ok(op.seq > sent.seq, "and a seq of its own");

    const theirs = await b.take(isOp);
    assert.equal(theirs.kind, "edit");
    assert.equal(theirs.peer, "ea");
    assert.equal(theirs.seq, original.seq + 1);
    assert.equal(theirs.body.target, sent.mid);
    assert.equal(theirs.body.body.message, "hello");
    assert.equal(theirs.body.body.edit_version, 1);
    assert.match(theirs.body.body.edited_at, /^\d{4}-\d\d-\d\dT/);
    assert.equal(theirs.body.body.id, sent.mid, "the message keeps its id, sender and time");
    assert.equal(theirs.body.body.time, original.body.time);
    const mine = await a.take((f) => isOp(f) && f.seq === op.seq);
    assert.equal(mine.body.body.message, "hello");

    // A second edit counts up.
    await edit(a, sent.mid, "hello!");
    assert.equal((await b.take(isOp)).body.body.edit_version, 2);

    for (const uid of ["ea", "eb"]) {
      const items = await v1History(w, uid);
      assert.deepEqual(items.map((m) => m.kind), [uid === "ea" ? "out" : "in"], "ops are not history items");
      assert.equal(items[0].body.message, "hello!");
      assert.equal(items[0].body.edit_version, 2);
      const legacy = await (await w.history(uid)).json();
      assert.deepEqual(legacy.usr.map((m) => m.message), ["hello!"]);
    }
    // D1 holds the current state once the passes ran.
    await eventually(async () => {
      const rows = await w.historyRows(`id = '${sent.mid}'`);
      return rows.length === 1 && JSON.parse(rows[0].body).message === "hello!";
    });
    assert.equal((await w.historyRows(`id = '${op.mid}'`)).length, 0, "no row for the op itself");
    await Promise.all([a.close(), b.close()]);
  });

  test("a delete for everyone leaves a tombstone, never a gap; nothing may follow it", async () => {
    const a = await connectV1(w, "da");
    const b = await connectV1(w, "db");
    const first = await send(a, "db", "one");
    const second = await send(a, "db", "two");
    await b.msg();
    await b.msg();
    const op = await del(a, first.mid, "everyone");
    assert.equal(op.op, "sent");
    const theirs = await b.take(isOp);
    assert.equal(theirs.kind, "delete");
    assert.equal(theirs.body.for, "everyone");
    assert.equal(theirs.body.target, first.mid);
    assert.deepEqual(Object.keys(theirs.body.body).sort(), ["deleted_at", "fromUser", "id", "time", "toUser"]);

    for (const uid of ["da", "db"]) {
      const items = await v1History(w, uid);
      assert.equal(items.length, 2, "the tombstone keeps its place");
      const tomb = items.find((m) => m.mid === first.mid);
      assert.equal(tomb.body.message, undefined);
      assert.ok(tomb.body.deleted_at);
      assert.equal(items.find((m) => m.mid === second.mid).body.message, "two");
    }
    const refused = await edit(a, first.mid, "back");
    assert.deepEqual([refused.code, refused.retry], ["deleted", false]);
    assert.equal((await del(a, first.mid, "everyone", "again")).code, "deleted");
    await b.expectNone(isOp, 200);
    await eventually(async () => {
      const rows = await w.historyRows(`id = '${first.mid}'`);
      return rows.length === 1 && JSON.parse(rows[0].body).deleted_at !== undefined && !rows[0].body.includes('"one"');
    });
    await Promise.all([a.close(), b.close()]);
  });

  test("only the sender edits or deletes for everyone; 'for me' changes only the deleter's view", async () => {
    const a = await connectV1(w, "wa");
    const b = await connectV1(w, "wb");
    const sent = await send(a, "wb", "mine");
    await b.msg();
    assert.equal((await edit(b, sent.mid, "theirs")).code, "forbidden");
    assert.equal((await del(b, sent.mid, "everyone")).code, "forbidden");
    const unknown = await edit(a, "0".repeat(28), "x");
    assert.equal(unknown.code, "not_found");
    const badMid = await a.request({ op: "edit", mid: "x", cmid: "c", body: { message: "m" } });
    assert.deepEqual([badMid.code, badMid.field], ["bad_field", "mid"]);
    const badFor = await a.request({ op: "delete", mid: sent.mid, cmid: "c2", for: "all" });
    assert.deepEqual([badFor.code, badFor.field], ["bad_field", "for"]);

    const mine = await del(b, sent.mid, "me");
    assert.equal(mine.op, "sent");
    const own = await b.take(isOp);
    assert.deepEqual([own.kind, own.body.for, own.body.target], ["delete", "me", sent.mid]);
    await a.expectNone(isOp, 300);
    const bView = (await v1History(w, "wb")).find((m) => m.mid === sent.mid);
    assert.ok(bView.body.deleted_at && bView.body.message === undefined, JSON.stringify(bView));
    const aView = (await v1History(w, "wa")).find((m) => m.mid === sent.mid);
    assert.equal(aView.body.message, "mine", "the sender still sees it");
    const bLast = (await conversations(w, "wb")).find((c) => c.peer === "wa").last;
    assert.ok(bLast.body.deleted_at, "the conversation list shows it deleted, to the deleter");
    // The shared row in D1 is untouched by a delete for oneself.
    await eventually(async () => (await w.historyRows(`id = '${sent.mid}'`)).length === 1);
    await sleep(300);
    assert.equal(JSON.parse((await w.historyRows(`id = '${sent.mid}'`))[0].body).message, "mine");
    await Promise.all([a.close(), b.close()]);
  });

  test("a client cannot forge an edit or a tombstone through a send", async () => {
    const a = await connectV1(w, "fa");
    const b = await connectV1(w, "fb");
    const sent = await a.request({ op: "send", to: "fb", cmid: "forge", body: { message: "real", deleted_at: "x", edit_version: 7, edited_at: "y" } });
    const got = await b.msg();
    assert.deepEqual([got.body.deleted_at, got.body.edit_version, got.body.edited_at], [undefined, undefined, undefined]);
    assert.equal((await conversations(w, "fb")).find((c) => c.peer === "fa").unread, 1, "counted as unread, not deleted");
    assert.equal((await edit(a, sent.mid, "still editable")).op, "sent");
    await Promise.all([a.close(), b.close()]);
  });

  test("a repeated cmid is stored once", async () => {
    const a = await connectV1(w, "ia");
    const b = await connectV1(w, "ib");
    const sent = await send(a, "ib", "x");
    await b.msg();
    const one = await edit(a, sent.mid, "y", "same");
    const two = await edit(a, sent.mid, "z", "same");
    assert.deepEqual([two.mid, two.seq, two.duplicate], [one.mid, one.seq, true]);
    assert.equal((await b.take(isOp)).body.body.message, "y");
    await b.expectNone(isOp, 300);
    const d1 = await del(a, sent.mid, "everyone", "del-once");
    const d2 = await del(a, sent.mid, "everyone", "del-once");
    assert.deepEqual([d2.seq, d2.duplicate], [d1.seq, true]);
    await b.take(isOp);
    await b.expectNone(isOp, 300);
    await Promise.all([a.close(), b.close()]);
  });

  test("a device offline during an edit and a delete gets both on resume, in order, across a restart", async () => {
    const a = await connectV1(w, "ra");
    let b = await connectV1(w, "rb", { device: "phone" });
    const m1 = await send(a, "rb", "first");
    const m2 = await send(a, "rb", "second");
    const got = [await b.msg(), await b.msg()];
    b.send({ op: "ack", up_to: got[1].seq });
    await sleep(100);
    await b.close();
    const e = await edit(a, m1.mid, "first, edited");
    const d = await del(a, m2.mid, "everyone");
    await a.close();
    await w.restart();
    b = await connectV1(w, "rb", { device: "phone" });
    assert.equal(b.welcome.since, got[1].seq);
    const replay = [await b.msg(), await b.msg()];
    assert.deepEqual(replay.map((f) => [f.seq, f.kind, f.body.target]), [
      [got[1].seq + 1, "edit", m1.mid],
      [got[1].seq + 2, "delete", m2.mid],
    ]);
    assert.equal(replay[0].body.body.message, "first, edited");
    assert.ok(replay[1].body.body.deleted_at);
    await b.expectNone((f) => f.op === "msg", 200);
    assert.ok(e.seq < d.seq);
    await b.close();
  });

  test("a delete of an unread message lowers the count; edits change neither count nor order", async () => {
    const a = await connectV1(w, "ua");
    const c = await connectV1(w, "uc");
    const b = await connectV1(w, "ub");
    const m1 = await send(a, "ub", "u1");
    const m2 = await send(a, "ub", "u2");
    await send(c, "ub", "from c, newer");
    for (let i = 0; i < 3; i++) await b.msg();
    let list = await conversations(w, "ub");
    assert.deepEqual(list.map((x) => [x.peer, x.unread]), [["uc", 1], ["ua", 2]]);

    await edit(a, m2.mid, "u2 edited");
    await b.take(isOp);
    list = await conversations(w, "ub");
    assert.deepEqual(list.map((x) => [x.peer, x.unread]), [["uc", 1], ["ua", 2]], "an edit moves nothing");
    assert.equal(list[1].last.body.message, "u2 edited", "the list shows the current body");
    assert.equal(list[1].last.mid, m2.mid);

    await del(a, m1.mid, "everyone");
    await b.take(isOp);
    const unread = await b.take((f) => f.op === "unread" && f.peer === "ua");
    assert.equal(unread.count, 1);
    list = await conversations(w, "ub");
    assert.deepEqual(list.map((x) => [x.peer, x.unread]), [["uc", 1], ["ua", 1]]);
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  test("legacy sockets get no op frames; their history shows the current state", async () => {
    const a = await connectV1(w, "la");
    const legacy = await w.connect("lb");
    const sent = await send(a, "lb", "old text");
    assert.equal(JSON.parse(await legacy.next()).message, "old text");
    await edit(a, sent.mid, "new text");
    const gone = await send(a, "lb", "to delete");
    assert.equal(JSON.parse(await legacy.next()).message, "to delete", "the next chat, not the edit");
    await del(a, gone.mid, "everyone");
    await send(a, "lb", "after");
    assert.equal(JSON.parse(await legacy.next()).message, "after", "no delete frame either");
    const page = await (await w.history("lb")).json();
    const texts = page.usr.map((m) => m.message ?? (m.deleted_at ? "<deleted>" : "?"));
    assert.deepEqual(texts.sort(), ["<deleted>", "after", "new text"].sort());
    await Promise.all([a.close(), legacy.close()]);
  });

  test("the backend edits and deletes for moderation, idempotently, with no window", async () => {
    const a = await connectV1(w, "ma");
    const b = await connectV1(w, "mb");
    const sent = await send(a, "mb", "rude");
    await b.msg();
    const call = (path, body, headers = {}) =>
      w.fetch(path, { method: "POST", headers: { authorization: `Bearer ${API_KEY}`, ...headers }, body: JSON.stringify(body) });
    let r = await call("/api/edit", { user: "ma", mid: sent.mid, body: { message: "[edited by a moderator]" } }, { "idempotency-key": "k1" });
    assert.equal(r.status, 200);
    const { id } = await r.json();
    assert.match(id, /^[0-9a-f]{28}$/);
    r = await call("/api/edit", { user: "ma", mid: sent.mid, body: { message: "[edited by a moderator]" } }, { "idempotency-key": "k1" });
    assert.deepEqual([r.status, (await r.json()).id], [200, id], "a retry answers the same id");
    const op = await b.take(isOp);
    assert.equal(op.body.body.message, "[edited by a moderator]");
    await b.expectNone(isOp, 300);
    assert.equal((await a.take(isOp)).mid, id);

    r = await call("/api/delete", { user: "ma", mid: sent.mid });
    assert.equal(r.status, 200);
    assert.equal((await b.take(isOp)).kind, "delete");
    r = await call("/api/delete", { user: "ma", mid: sent.mid });
    assert.equal(r.status, 409, "already deleted");
    r = await call("/api/delete", { user: "mb", mid: sent.mid });
    assert.equal(r.status, 404, "not a chat of that user's");
    r = await call("/api/edit", { user: "ma", mid: sent.mid });
    assert.equal(r.status, 400);
    r = await call("/api/edit", { user: "ma", mid: "0".repeat(28), body: { message: "x" } });
    assert.equal(r.status, 404);
    r = await call("/api/delete", { user: "ma", mid: sent.mid }, { authorization: "Bearer wrong" });
    assert.equal(r.status, 401);
    await Promise.all([a.close(), b.close()]);
  });
});

describe("the edit window", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { EDIT_WINDOW_S: "1" } })));
  after(() => w.close());

  test("past EDIT_WINDOW_S an edit or delete for everyone is refused; for me and moderation still work", async () => {
    const a = await connectV1(w, "ta");
    const b = await connectV1(w, "tb");
    assert.equal(a.welcome.limits.edit_window_s, 1);
    const sent = await send(a, "tb", "quick");
    await b.msg();
    assert.equal((await edit(a, sent.mid, "in time")).op, "sent");
    await b.take(isOp);
    await sleep(1300);
    const late = await edit(a, sent.mid, "too late");
    assert.deepEqual([late.code, late.retry], ["too_late", false]);
    assert.equal((await del(a, sent.mid, "everyone")).code, "too_late");
    await b.expectNone(isOp, 200);
    assert.equal((await del(a, sent.mid, "me")).op, "sent");
    assert.ok((await w.metrics()).refused_edit_window >= 2);
    const r = await w.api("/api/delete", { user: "ta", mid: sent.mid });
    assert.equal(r.status, 200);
    assert.equal((await b.take(isOp)).kind, "delete");
    await Promise.all([a.close(), b.close()]);
  });
});

describe("edits in history older than the log", () => {
  let w;
  // A tiny log: the messages leave it for D1 within the test.
  before(async () => (w = await startWorker({ bindings: { LOG_CAP: "4" } })));
  after(() => w.close());

  test("pages from D1 show the edited body, and a delete for me to its user alone", async () => {
    const a = await connectV1(w, "ha");
    const b = await connectV1(w, "hb");
    const m1 = await send(a, "hb", "typo");
    const m2 = await send(a, "hb", "private");
    const [r1, r2] = [await b.msg(), await b.msg()];
    await edit(a, m1.mid, "fixed");
    await del(b, m2.mid, "me");
    for (let i = 0; i < 12; i++) await send(a, "hb", `filler ${i}`);
    const seen = [];
    while (seen.length < 14) seen.push(await b.msg());
    b.send({ op: "ack", up_to: Math.max(...seen.map((f) => f.seq)) });
    // Both logs drop the first messages once they are in D1.
    await eventually(async () => {
      const probe = await connectV1(w, "hb", { device: `probe${Date.now()}`, since: r1.seq - 1 });
      await probe.close();
      return probe.welcome.recovered === false;
    }, 10000, 200);
    const bItems = await v1History(w, "hb", "limit=50");
    const bOf = (mid) => bItems.find((m) => m.mid === mid);
    assert.equal(bOf(m1.mid).body.message, "fixed");
    assert.equal(bOf(m1.mid).body.edit_version, 1);
    assert.ok(bOf(m2.mid).body.deleted_at && bOf(m2.mid).body.message === undefined, JSON.stringify(bOf(m2.mid)));
    assert.equal(bOf(m2.mid).seq, r2.seq, "in its place");
    const aItems = await v1History(w, "ha", "limit=50");
    assert.equal(aItems.find((m) => m.mid === m2.mid).body.message, "private", "only b deleted it");
    assert.equal(aItems.find((m) => m.mid === m1.mid).body.message, "fixed");
    const legacy = await (await w.history("hb", { limit: 50 })).json();
    assert.ok(legacy.usr.some((m) => m.message === "fixed") && !legacy.usr.some((m) => m.message === "private"));
    assert.ok(!legacy.usr.some((m) => m.message === "typo"));
    await Promise.all([a.close(), b.close()]);
  });
});
