// Protocol v1 (chat.v1) against the real runtime: handshake, resume, acks,
// idempotent sends, devices, receipts, unread counts, history, typing.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { API_KEY, connectV1, eventually, openClient, startWorker, token } from "../harness.mjs";

const text = (message) => ({ message });

describe("protocol v1", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("handshake: subprotocol, welcome with head, limits and heartbeat", async () => {
    const c = await connectV1(w, "v1a");
    assert.equal(c.ws.protocol, "chat.v1");
    const { welcome } = c;
    assert.equal(welcome.v, 1);
    assert.equal(welcome.user, "v1a");
    assert.equal(welcome.head, 0);
    assert.equal(welcome.recovered, true);
    assert.equal(welcome.limits.frame_bytes, 65536);
    assert.equal(typeof welcome.heartbeat_ms, "number");
    c.send("heartbeat");
    assert.deepEqual(await c.take(), { op: "heartbeat" });
    await c.close();
    await assert.rejects(openClient(w.wsUrl(`/ws?token=${token("v1a")}`), ["chat.v1"]), (e) => e.status === 400 && /device/.test(e.body));
  });

  test("send: the sender gets sent and its own msg, the recipient a msg", async () => {
    const a = await connectV1(w, "s1");
    const b = await connectV1(w, "s2");
    const reply = await a.request({ op: "send", to: "s2", cmid: "c-1", body: { message: "hello", extra: 5 } });
    assert.equal(reply.op, "sent");
    assert.equal(reply.duplicate, false);
    const own = await a.msg();
    assert.deepEqual([own.kind, own.peer, own.seq, own.mid], ["out", "s2", reply.seq, reply.mid]);
    const got = await b.msg();
    assert.equal(got.kind, "in");
    assert.equal(got.peer, "s1");
    assert.equal(got.seq, 1);
    assert.equal(got.mid, reply.mid);
    assert.deepEqual({ ...got.body, time: 0 }, { fromUser: "s1", toUser: "s2", message: "hello", extra: 5, id: reply.mid, time: 0 });
    await Promise.all([a.close(), b.close()]);
  });

  test("errors carry a code and whether to retry; the socket stays usable", async () => {
    const a = await connectV1(w, "e1");
    const cases = [
      [{ op: "send", to: "e2", body: text("m") }, "bad_field", "cmid"],
      [{ op: "send", to: "a b", cmid: "x", body: text("m") }, "bad_field", "to"],
      [{ op: "send", to: "e2", cmid: "x", body: { message: "" } }, "bad_field", "body.message"],
      [{ op: "fly" }, "unknown_op", undefined],
      [{ op: "read", peer: "nobody", up_to: 1 }, "bad_field", "peer"],
    ];
    for (const [frame, code, field] of cases) {
      const e = await a.request(frame);
      assert.equal(e.op, "error", JSON.stringify(frame));
      assert.equal(e.code, code);
      assert.equal(e.field, field);
      assert.equal(e.retry, false);
    }
    a.send("not json");
    const e = await a.take((f) => f.op === "error");
    assert.equal(e.code, "bad_frame");
    a.send(JSON.stringify({ op: "send", id: 1, to: "e2", cmid: "big", body: { message: "x".repeat(70000) } }));
    assert.equal((await a.take((f) => f.op === "error")).code, "too_large");
    const ok = await a.request({ op: "send", to: "e2", cmid: "fine", body: text("still works") });
    assert.equal(ok.op, "sent");
    await a.close();
  });

  test("resume after a drop mid-stream: no gap, no repeat", async () => {
    const a = await connectV1(w, "r1");
    let b = await connectV1(w, "r2");
    for (let i = 0; i < 5; i++) await a.request({ op: "send", to: "r2", cmid: `m${i}`, body: text(`m${i}`) });
    let processed = 0;
    for (let i = 0; i < 3; i++) processed = (await b.msg()).seq;
    b.kill();
    for (let i = 5; i < 10; i++) await a.request({ op: "send", to: "r2", cmid: `m${i}`, body: text(`m${i}`) });
    b = await connectV1(w, "r2", { since: processed });
    assert.equal(b.welcome.since, processed);
    assert.equal(b.welcome.head, 10);
    assert.equal(b.welcome.recovered, true);
    const seen = [];
    for (let i = processed; i < 10; i++) seen.push(await b.msg());
    assert.deepEqual(seen.map((m) => m.seq), [4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(seen.map((m) => m.body.message), ["m3", "m4", "m5", "m6", "m7", "m8", "m9"]);
    await a.request({ op: "send", to: "r2", cmid: "live", body: text("live") });
    assert.equal((await b.msg()).seq, 11);
    await b.expectNone((f) => f.op === "msg");
    await Promise.all([a.close(), b.close()]);
  });

  test("a send repeated after a reconnect is stored once and answered as before", async () => {
    let a = await connectV1(w, "d1");
    const b = await connectV1(w, "d2");
    a.send({ op: "send", id: 1, to: "d2", cmid: "once", body: text("exactly once") });
    const first = await a.take((f) => f.op === "sent");
    a.kill();
    a = await connectV1(w, "d1", { device: "d1b" });
    const again = await a.request({ op: "send", to: "d2", cmid: "once", body: text("exactly once") });
    assert.equal(again.duplicate, true);
    assert.equal(again.mid, first.mid);
    assert.equal(again.seq, first.seq);
    const got = await b.msg();
    assert.equal(got.body.message, "exactly once");
    await b.expectNone((f) => f.op === "msg", 300);
    assert.equal((await (await w.history("d2")).json()).usr.length, 1);
    await Promise.all([a.close(), b.close()]);
  });

  test("two devices: both see incoming and own outgoing, each acks on its own", async () => {
    const a = await connectV1(w, "m1");
    const phone = await connectV1(w, "m2", { device: "phone" });
    const laptop = await connectV1(w, "m2", { device: "laptop" });
    await a.request({ op: "send", to: "m2", cmid: "x1", body: text("to both") });
    assert.equal((await a.msg()).kind, "out");
    for (const d of [phone, laptop]) assert.equal((await d.msg()).body.message, "to both");
    const sent = await phone.request({ op: "send", to: "m1", cmid: "p1", body: text("from phone") });
    assert.equal((await phone.msg()).seq, sent.seq);
    const mirrored = await laptop.msg();
    assert.deepEqual([mirrored.kind, mirrored.body.message, mirrored.seq], ["out", "from phone", sent.seq]);
    assert.equal((await a.msg()).body.message, "from phone");
    // Only the phone acknowledges; the laptop will be replayed what it did not ack.
    phone.send({ op: "ack", up_to: sent.seq });
    await new Promise((r) => setTimeout(r, 200));
    await Promise.all([phone.close(), laptop.close()]);
    const phone2 = await connectV1(w, "m2", { device: "phone" });
    assert.equal(phone2.welcome.since, sent.seq);
    await phone2.expectNone((f) => f.op === "msg");
    const laptop2 = await connectV1(w, "m2", { device: "laptop" });
    assert.equal(laptop2.welcome.since, 0);
    assert.deepEqual([(await laptop2.msg()).seq, (await laptop2.msg()).seq], [1, 2]);
    await Promise.all([a.close(), phone2.close(), laptop2.close()]);
  });

  test("a legacy and a v1 client of the same user at once", async () => {
    const a = await connectV1(w, "l1");
    const old = await w.connect("l2");
    const modern = await connectV1(w, "l2");
    await a.request({ op: "send", to: "l2", cmid: "both", body: text("to legacy and v1") });
    assert.equal((await a.msg()).kind, "out");
    const legacyFrame = await old.nextJson();
    assert.deepEqual([legacyFrame.fromUser, legacyFrame.message, "op" in legacyFrame], ["l1", "to legacy and v1", false]);
    assert.equal((await modern.msg()).body.message, "to legacy and v1");
    old.send({ fromUser: "l2", toUser: "l1", message: "from legacy" });
    assert.equal(await old.next(), "ok");
    const mine = await modern.msg();
    assert.deepEqual([mine.kind, mine.body.message], ["out", "from legacy"]);
    assert.equal((await a.msg()).body.message, "from legacy");
    await old.expectSilence(150);
    await Promise.all([a.close(), old.close(), modern.close()]);
  });

  test("what a v1 device received is not replayed to a later legacy socket", async () => {
    const a = await connectV1(w, "lq1");
    // Queued while the user is offline, then delivered to their v1 device on connect.
    await a.request({ op: "send", to: "lq2", cmid: "offline", body: text("while offline") });
    const modern = await connectV1(w, "lq2", { since: 0 });
    assert.equal((await modern.msg()).body.message, "while offline");
    // Delivered live to the v1 device.
    await a.request({ op: "send", to: "lq2", cmid: "live", body: text("live") });
    assert.equal((await modern.msg()).body.message, "live");
    await modern.close();
    const old = await w.connect("lq2");
    await old.expectSilence(300);
    // And the legacy socket still gets what is new.
    await a.request({ op: "send", to: "lq2", cmid: "new", body: text("new") });
    assert.equal((await old.nextJson()).message, "new");
    await Promise.all([a.close(), old.close()]);
  });

  test("receipts and unread counts through an ack and a read", async () => {
    const a = await connectV1(w, "u1");
    const b = await connectV1(w, "u2", { device: "b1" });
    const b2 = await connectV1(w, "u2", { device: "b2" });
    const sends = [];
    for (let i = 0; i < 3; i++) sends.push(await a.request({ op: "send", to: "u2", cmid: `u${i}`, body: text(`u${i}`) }));
    const inbox = [];
    for (let i = 0; i < 3; i++) inbox.push(await b.msg());
    const list = async () => (await w.fetch("/v1/conversations", { headers: { authorization: `Bearer ${token("u2")}` } })).json();
    let conv = (await list()).items.find((c) => c.peer === "u1");
    assert.equal(conv.unread, 3);
    assert.equal(conv.last.body.message, "u2");
    b.send({ op: "ack", up_to: inbox[2].seq });
    const delivered = await a.take((f) => f.op === "receipt" && f.type === "delivered");
    assert.deepEqual([delivered.peer, delivered.up_to], ["u2", sends[2].seq]);
    const ok = await b.request({ op: "read", peer: "u1", up_to: inbox[1].seq });
    assert.equal(ok.op, "ok");
    for (const d of [b, b2]) {
      const u = await d.take((f) => f.op === "unread");
      assert.deepEqual([u.peer, u.count, u.read_up_to], ["u1", 1, inbox[1].seq]);
    }
    const read = await a.take((f) => f.op === "receipt" && f.type === "read");
    assert.equal(read.up_to, sends[1].seq);
    // The user's own messages never count as unread.
    await b.request({ op: "send", to: "u1", cmid: "reply", body: text("reply") });
    conv = (await list()).items.find((c) => c.peer === "u1");
    assert.deepEqual([conv.unread, conv.read_up_to, conv.peer_delivered, conv.peer_read], [1, inbox[1].seq, 0, 0]);
    const aConv = (await (await w.fetch("/v1/conversations", { headers: { authorization: `Bearer ${token("u1")}` } })).json()).items[0];
    assert.deepEqual([aConv.peer, aConv.unread, aConv.peer_delivered, aConv.peer_read], ["u2", 1, sends[2].seq, sends[1].seq]);
    await Promise.all([a.close(), b.close(), b2.close()]);
  });

  test("conversation list: newest activity first, paged", async () => {
    const me = await connectV1(w, "cl0");
    for (const p of ["cl1", "cl2", "cl3"]) await me.request({ op: "send", to: p, cmid: p, body: text(`to ${p}`) });
    const get = async (q) => (await w.fetch(`/v1/conversations?${q}`, { headers: { authorization: `Bearer ${token("cl0")}` } })).json();
    const first = await get("limit=2");
    assert.deepEqual(first.items.map((c) => c.peer), ["cl3", "cl2"]);
    const second = await get(`limit=2&before=${first.next}`);
    assert.deepEqual(second.items.map((c) => c.peer), ["cl1"]);
    assert.equal(second.next, null);
    await me.close();
  });

  test("history by seq, over the socket and over HTTP, per conversation", async () => {
    const a = await connectV1(w, "h1");
    for (let i = 0; i < 7; i++) await a.request({ op: "send", to: "h2", cmid: `h${i}`, body: text(`h${i}`) });
    await a.request({ op: "send", to: "h3", cmid: "other", body: text("other") });
    const newest = await a.request({ op: "history", peer: "h2", limit: 3 });
    assert.deepEqual(newest.items.map((m) => m.body.message), ["h6", "h5", "h4"]);
    const older = await a.request({ op: "history", peer: "h2", limit: 3, before: newest.next });
    assert.deepEqual(older.items.map((m) => m.seq), [4, 3, 2]);
    const forward = await a.request({ op: "history", peer: "h2", after: 5, limit: 10 });
    assert.deepEqual(forward.items.map((m) => m.seq), [6, 7]);
    assert.equal(forward.next, null);
    const http = await (await w.fetch(`/v1/history?peer=h2&after=0&limit=4`, { headers: { authorization: `Bearer ${token("h1")}` } })).json();
    assert.deepEqual(http.items.map((m) => m.seq), [1, 2, 3, 4]);
    assert.equal(http.next, 4);
    assert.ok(http.items.every((m) => m.kind === "out" && m.peer === "h2"));
    await a.close();
  });

  test("typing reaches the peer's live sockets and is never stored", async () => {
    const a = await connectV1(w, "t1");
    const b = await connectV1(w, "t2");
    // Typing goes only within a conversation (hardening.test.mjs).
    await a.request({ op: "send", to: "t2", cmid: "c1", body: { message: "hi" } });
    await b.msg();
    a.send({ op: "typing", to: "t2", active: true });
    const t = await b.take((f) => f.op === "typing");
    assert.deepEqual([t.from, t.active], ["t1", true]);
    await b.expectNone((f) => f.op === "msg");
    const items = (await (await w.fetch("/v1/history", { headers: { authorization: `Bearer ${token("t2")}` } })).json()).items;
    assert.deepEqual(items.map((m) => m.body.message), ["hi"], "the typing left nothing in history");
    await Promise.all([a.close(), b.close()]);
  });

  test("an expired token closes the socket with 4001", async () => {
    const c = await connectV1(w, "x1", { tokenValue: token("x1", { exp: Math.floor(Date.now() / 1000) + 2 }) });
    await new Promise((r) => setTimeout(r, 2200));
    const closed = new Promise((r) => c.ws.once("close", r));
    c.send({ op: "ack", up_to: 0 });
    assert.equal(await closed, 4001);
  });

  test("backend API calls with an idempotency key store once", async () => {
    const b = await connectV1(w, "k2");
    const post = (path, body) =>
      w.fetch(path, { method: "POST", headers: { authorization: `Bearer ${API_KEY}`, "idempotency-key": "job-42" }, body: JSON.stringify(body) });
    const one = await (await post("/api/sys-msg", [{ uid: "k2", type: "n1" }, { uid: "k2", type: "n2" }])).json();
    const two = await (await post("/api/sys-msg", [{ uid: "k2", type: "n1" }, { uid: "k2", type: "n2" }])).json();
    assert.deepEqual(two.ids, one.ids);
    const u1 = await (await post("/api/usr-msg", { fromUser: "k1", toUser: "k2", message: "once" })).json();
    const u2 = await (await post("/api/usr-msg", { fromUser: "k1", toUser: "k2", message: "once" })).json();
    assert.equal(u2.id, u1.id);
    const got = [await b.msg(), await b.msg(), await b.msg()];
    assert.deepEqual(got.map((m) => m.body.type ?? m.body.message), ["n1", "n2", "once"]);
    await b.expectNone((f) => f.op === "msg", 300);
    await b.close();
  });
});

describe("protocol v1 with a small log cap", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { LOG_CAP: "5" } })));
  after(() => w.close());

  test("recovered: false when entries the device needs are gone", async () => {
    let b = await connectV1(w, "q2");
    assert.equal(b.welcome.recovered, true);
    await b.close();
    // Another device of q2 is online meanwhile, so nothing queues: an offline
    // user's queue is bounded by QUEUE_MAX, which is at most LOG_CAP.
    const online = await connectV1(w, "q2", { device: "online" });
    const a = await connectV1(w, "q1");
    for (let i = 0; i < 20; i++) await a.request({ op: "send", to: "q2", cmid: `q${i}`, body: text(`q${i}`) });
    // Archive and prune run from the alarm; wait until the log is cut to its cap.
    await eventually(async () => {
      const c = await connectV1(w, "q2", { device: "probe", since: 0 });
      await c.close();
      return c.welcome.recovered === false;
    }, 8000, 200);
    b = await connectV1(w, "q2", { since: 0 });
    assert.equal(b.welcome.recovered, false);
    assert.equal(b.welcome.head, 20);
    const first = await b.msg();
    assert.equal(first.seq, b.welcome.since + 1);
    assert.ok(first.seq > 1);
    let last = first.seq;
    while (last < 20) last = (await b.msg()).seq;
    // What was cut from the log is still in history.
    const page = await b.request({ op: "history", limit: 50 });
    assert.equal(page.items.length, 20);
    await Promise.all([a.close(), b.close(), online.close()]);
  });
});

describe("send rate", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { SEND_RATE: "2", SEND_BURST: "3" } })));
  after(() => w.close());

  test("a user over the rate is refused, nothing is stored, and may send again later", async () => {
    const a = await connectV1(w, "rl1");
    assert.deepEqual([a.welcome.limits.sends_per_second, a.welcome.limits.send_burst], [2, 3]);
    const replies = [];
    for (let i = 0; i < 5; i++) replies.push(await a.request({ op: "send", to: "rl2", cmid: `r${i}`, body: text(`r${i}`) }));
    assert.deepEqual(replies.map((r) => r.op), ["sent", "sent", "sent", "error", "error"]);
    assert.equal(replies[3].code, "rate_limited");
    assert.equal(replies[3].retry, true);
    assert.ok(replies[3].retry_after_ms > 0 && replies[3].retry_after_ms <= 500);
    // The same user's legacy socket shares the bucket.
    const old = await w.connect("rl1");
    old.send({ fromUser: "rl1", toUser: "rl2", message: "legacy" });
    assert.equal(await old.next(), "error rate");
    await new Promise((r) => setTimeout(r, replies[4].retry_after_ms + 50));
    assert.equal((await a.request({ op: "send", to: "rl2", cmid: "r3", body: text("r3") })).op, "sent");
    const stored = (await (await w.history("rl2")).json()).usr.map((m) => m.message);
    assert.deepEqual(stored.sort(), ["r0", "r1", "r2", "r3"]);
    await Promise.all([a.close(), old.close()]);
  });
});
