// Unit tests of the client SDK's state machine (client/dist) against a fake
// WebSocket and a manual clock: backoff, resume, outbox, retries, dedupe,
// acks, dead sockets, tokens, persistence, requests.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChatError, LocalStorageStore, MemoryStore, backoffCeiling, backoffDelay } from "../../../client/dist/index.js";
import { open, setup } from "../fake.mjs";


/** A message handler that records every seq and keeps `seq` in the handler until `release()`. */
function holdAt(t, seq) {
  const seen = [];
  let resume;
  t.chat.on("message", async (m) => {
    seen.push(m.seq);
    if (m.seq === seq) await new Promise((r) => (resume = r));
  });
  return { seen, release: () => resume() };
}


describe("backoff", () => {
  test("ceiling doubles from baseMs and stops at maxMs", () => {
    const o = { baseMs: 100, maxMs: 1000 };
    assert.deepEqual([0, 1, 2, 3, 4, 5, 60, 5000].map((a) => backoffCeiling(a, o)), [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
  });

  test("full jitter: uniformly in [0, ceiling), not just the upper half", () => {
    const o = { baseMs: 100, maxMs: 1000 };
    assert.equal(backoffDelay(3, o, () => 0), 0);
    assert.equal(backoffDelay(3, o, () => 0.999999), 799);
    assert.equal(backoffDelay(3, o, () => 0.5), 400);
    const samples = Array.from({ length: 2000 }, () => backoffDelay(2, o));
    assert.ok(samples.every((d) => d >= 0 && d < 400), "every delay within [0, 400)");
    assert.ok(samples.some((d) => d < 100), "some delays near 0");
    assert.ok(samples.some((d) => d >= 300), "some delays near the ceiling");
  });

  test("reconnects wait random * min(max, base * 2^attempt); a welcome resets the attempt", async () => {
    const t = setup({ backoff: { baseMs: 100, maxMs: 350 } });
    let ws = await open(t);
    const expectReconnectAfter = async (ms) => {
      const n = t.S.sockets.length;
      await t.clock.advance(ms - 1);
      assert.equal(t.S.sockets.length, n, `no new socket before ${ms} ms`);
      await t.clock.advance(1);
      assert.equal(t.S.sockets.length, n + 1, `a new socket at ${ms} ms`);
      return t.S.last();
    };
    ws.drop();
    ws = await expectReconnectAfter(50); // 0.5 * 100
    ws.drop();
    ws = await expectReconnectAfter(100); // 0.5 * 200
    ws.drop();
    ws = await expectReconnectAfter(175); // 0.5 * min(350, 400)
    ws.drop();
    ws = await expectReconnectAfter(175);
    ws.welcome();
    await t.clock.advance(0);
    ws.drop();
    await expectReconnectAfter(50);
    assert.deepEqual(t.r.states.slice(0, 3), ["connecting", "open", "reconnecting"]);
  });
});

describe("connection", () => {
  test("first connect: subprotocol, device, no since for a new device; connect() resolves with the welcome", async () => {
    const t = setup();
    const p = t.chat.connect();
    assert.equal(t.chat.state, "connecting");
    await t.clock.advance(0);
    const ws = t.S.last();
    assert.equal(ws.protocols, "chat.v1");
    assert.equal(ws.url.pathname, "/ws");
    assert.deepEqual(ws.params, { ticket: "tk:tok", device: "dev1" }, "a one-time ticket, never the token");
    ws.welcome({ head: 7, since: 7 });
    const w = await p;
    assert.equal(w.user, "u1");
    assert.equal(t.chat.state, "open");
    assert.equal(t.chat.user, "u1");
    await t.clock.advance(0);
    assert.equal(t.chat.cursor, 7, "a new device starts at the welcome's since");
  });

  test("resume: since is the last processed seq, not the last received one", async () => {
    const t = setup();
    const { seen, release } = holdAt(t, 3);
    const ws = await open(t);
    ws.msg(1);
    ws.msg(2);
    ws.msg(3);
    ws.msg(4);
    await t.clock.advance(0);
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal(t.chat.cursor, 2);
    ws.drop();
    await t.clock.advance(1000);
    assert.equal(t.S.last().params.since, "2", "seq 3 is still in its handler");
    release();
    await t.clock.advance(0);
    // The frames received before the drop are still processed, in order.
    assert.deepEqual(seen, [1, 2, 3, 4]);
    assert.equal(t.chat.cursor, 4);
    const ws2 = t.S.last();
    ws2.welcome();
    ws2.msg(3);
    ws2.msg(4);
    ws2.msg(5);
    await t.clock.advance(100);
    assert.deepEqual(seen, [1, 2, 3, 4, 5], "the replay of 3 and 4 is dropped");
    ws2.drop();
    await t.clock.advance(1000);
    assert.equal(t.S.last().params.since, "5");
  });

  test("dedupe: replayed and out-of-order seqs never reach the handler", async () => {
    const t = setup();
    const seen = [];
    t.chat.on("message", (m) => seen.push(m.seq));
    const ws = await open(t);
    for (const s of [1, 2, 3, 2, 1, 3, 4]) ws.msg(s);
    await t.clock.advance(100);
    assert.deepEqual(seen, [1, 2, 3, 4]);
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [4], "one cumulative ack for the batch");
  });

  test("resync: recovered:false moves the cursor past the gap and tells the app", async () => {
    const t = setup({ since: 3 });
    const seen = [];
    t.chat.on("message", (m) => seen.push(m.seq));
    const p = t.chat.connect();
    await t.clock.advance(0);
    const ws = t.S.last();
    assert.equal(ws.params.since, "3");
    ws.welcome({ recovered: false, since: 50, head: 52 });
    await p;
    ws.msg(51);
    ws.msg(52);
    await t.clock.advance(100);
    assert.equal(t.r.resyncs.length, 1);
    assert.deepEqual(t.r.resyncs[0].gap, { after: 3, upTo: 50 });
    assert.deepEqual(seen, [51, 52]);
    assert.equal(t.chat.cursor, 52);
    assert.equal(t.r.errors.length, 0, "no gap error after a resync");
  });

  test("resync after old-socket messages were processed: the cursor never moves back, nothing is delivered twice", async () => {
    const t = setup();
    const { seen, release } = holdAt(t, 3);
    const ws = await open(t);
    for (const s of [1, 2, 3, 4]) ws.msg(s);
    await t.clock.advance(0);
    ws.drop();
    await t.clock.advance(1000);
    const ws2 = t.S.last();
    assert.equal(ws2.params.since, "2", "the URL was built while 3 was in its handler");
    // The server lost entries up to 3 and replays from 4; meanwhile the old socket's 3 and 4 get processed.
    ws2.welcome({ recovered: false, since: 3, head: 5 });
    release();
    ws2.msg(4);
    ws2.msg(5);
    await t.clock.advance(100);
    assert.deepEqual(seen, [1, 2, 3, 4, 5], "4 is not delivered again");
    assert.equal(t.chat.cursor, 5);
    assert.equal(t.r.resyncs.length, 0, "nothing the client had not processed was skipped");
    assert.deepEqual(ws2.frames("ack").map((f) => f.up_to), [5]);
    // A welcome whose since is beyond the cursor: the gap starts at what was processed.
    ws2.drop();
    await t.clock.advance(1000);
    const ws3 = t.S.last();
    assert.equal(ws3.params.since, "5");
    ws3.welcome({ recovered: false, since: 9, head: 10 });
    ws3.msg(10);
    await t.clock.advance(100);
    assert.equal(t.r.resyncs.length, 1);
    assert.deepEqual(t.r.resyncs[0].gap, { after: 5, upTo: 9 });
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 10]);
    assert.equal(t.chat.cursor, 10);
    assert.equal(t.r.errors.length, 0);
  });

  test("a gap without a resync is processed but reported", async () => {
    const t = setup();
    const seen = [];
    t.chat.on("message", (m) => seen.push(m.seq));
    const ws = await open(t);
    ws.msg(1);
    ws.msg(3);
    await t.clock.advance(0);
    assert.deepEqual(seen, [1, 3]);
    assert.equal(t.r.errors.length, 1);
    assert.equal(t.r.errors[0].code, "protocol");
  });
});

describe("acks", () => {
  test("ack only after the handler's promise resolved; batched and cumulative", async () => {
    const t = setup();
    const gates = [];
    t.chat.on("message", (m) => new Promise((r) => gates.push(r)));
    const ws = await open(t);
    ws.msg(1);
    ws.msg(2);
    ws.msg(3);
    await t.clock.advance(1000);
    assert.equal(ws.frames("ack").length, 0, "nothing acked while the handler runs");
    assert.equal(t.chat.cursor, 0);
    gates[0]();
    await t.clock.advance(0);
    assert.equal(ws.frames("ack").length, 0, "batched: not before the ack delay");
    await t.clock.advance(20);
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [1]);
    gates[1]();
    await t.clock.advance(0);
    gates[2]();
    await t.clock.advance(20);
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [1, 3], "2 and 3 in one ack");
  });

  test("all message handlers must finish, in order, before the ack", async () => {
    const t = setup();
    const log = [];
    let release;
    t.chat.on("message", (m) => log.push(`a${m.seq}`));
    t.chat.on("message", async (m) => {
      if (m.seq === 1) await new Promise((r) => (release = r));
      log.push(`b${m.seq}`);
    });
    const ws = await open(t);
    ws.msg(1);
    ws.msg(2);
    await t.clock.advance(100);
    assert.deepEqual(log, ["a1"]);
    assert.equal(ws.frames("ack").length, 0);
    release();
    await t.clock.advance(100);
    assert.deepEqual(log, ["a1", "b1", "a2", "b2"]);
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [2]);
  });

  test("a throwing handler: no ack, error, the socket is replaced and the message delivered again", async () => {
    const t = setup({ backoff: { baseMs: 100 } });
    const calls = [];
    let fail = true;
    t.chat.on("message", (m) => {
      calls.push(m.seq);
      if (m.seq === 2 && fail) throw new Error("disk full");
    });
    const ws = await open(t);
    ws.msg(1);
    ws.msg(2);
    ws.msg(3);
    await t.clock.advance(20);
    assert.deepEqual(calls, [1, 2], "3 is not processed after 2 failed");
    assert.equal(t.chat.cursor, 1);
    assert.ok(!ws.frames("ack").some((f) => f.up_to >= 2), "2 is not acked");
    const err = t.r.errors.find((e) => e.code === "handler_failed");
    assert.ok(err instanceof ChatError);
    assert.equal(err.seq, 2);
    assert.equal(err.cause.message, "disk full");
    assert.ok(ws.closedWith, "the socket was closed");
    assert.equal(t.chat.state, "reconnecting");
    fail = false;
    await t.clock.advance(50);
    const ws2 = t.S.last();
    assert.notEqual(ws2, ws);
    assert.equal(ws2.params.since, "1");
    ws2.welcome();
    ws2.msg(2);
    ws2.msg(3);
    await t.clock.advance(20);
    assert.deepEqual(calls, [1, 2, 2, 3]);
    assert.deepEqual(ws2.frames("ack").map((f) => f.up_to), [3]);
  });
});

describe("outbox", () => {
  test("send resolves with the server's sent reply; frames carry id, to, cmid, body", async () => {
    const t = setup();
    const ws = await open(t);
    const p = t.chat.send("2", { message: "hi", extra: 1 });
    await t.clock.advance(0);
    const [f] = ws.frames("send");
    assert.equal(f.to, "2");
    assert.deepEqual(f.body, { message: "hi", extra: 1 });
    assert.equal(typeof f.cmid, "string");
    assert.equal(t.chat.pending, 1);
    ws.push({ op: "sent", re: f.id, mid: "M1", seq: 9, duplicate: false });
    assert.deepEqual(await p, { mid: "M1", seq: 9, duplicate: false });
    assert.equal(t.chat.pending, 0);
    assert.deepEqual(t.r.sent, [{ cmid: f.cmid, to: "2", mid: "M1", seq: 9, duplicate: false }]);
  });

  test("an unanswered send is re-sent with the same cmid after a reconnect and resolves once", async () => {
    const t = setup();
    let ws = await open(t);
    let resolved = 0;
    const p = t.chat.send("2", "hello").then((r) => (resolved++, r));
    await t.clock.advance(0);
    const [first] = ws.frames("send");
    ws.drop();
    // A late reply on the dead socket is not seen.
    ws.push({ op: "sent", re: first.id, mid: "M", seq: 5, duplicate: false });
    await t.clock.advance(1000);
    assert.equal(resolved, 0);
    ws = t.S.last();
    assert.equal(ws.frames("send").length, 0, "nothing is sent before the welcome");
    ws.welcome();
    await t.clock.advance(0);
    const again = ws.frames("send");
    assert.equal(again.length, 1);
    assert.equal(again[0].cmid, first.cmid);
    assert.deepEqual(again[0].body, first.body);
    ws.push({ op: "sent", re: again[0].id, mid: "M", seq: 5, duplicate: true });
    ws.push({ op: "sent", re: again[0].id, mid: "M", seq: 5, duplicate: true });
    assert.deepEqual(await p, { mid: "M", seq: 5, duplicate: true });
    await t.clock.advance(100);
    assert.equal(resolved, 1);
    assert.equal(t.r.sent.length, 1);
    assert.equal(t.chat.pending, 0);
  });

  test("sends made while disconnected go out at the welcome, in order", async () => {
    const t = setup();
    const p1 = t.chat.send("2", "one");
    const p2 = t.chat.send("3", "two");
    await t.clock.advance(0);
    assert.equal(t.chat.pending, 2);
    const ws = await open(t);
    const fs = ws.frames("send");
    assert.deepEqual(fs.map((f) => f.body.message), ["one", "two"]);
    fs.forEach((f, i) => ws.push({ op: "sent", re: f.id, mid: `M${i}`, seq: i + 1, duplicate: false }));
    assert.equal((await p1).mid, "M0");
    assert.equal((await p2).mid, "M1");
  });

  test("one send per peer in flight: a conversation keeps its order", async () => {
    const t = setup();
    const ws = await open(t);
    const a = t.chat.send("2", "a1");
    const b = t.chat.send("2", "a2");
    const c = t.chat.send("3", "b1");
    await t.clock.advance(0);
    assert.deepEqual(ws.frames("send").map((f) => f.body.message), ["a1", "b1"]);
    ws.push({ op: "sent", re: ws.frames("send")[0].id, mid: "x", seq: 1, duplicate: false });
    await t.clock.advance(0);
    assert.deepEqual(ws.frames("send").map((f) => f.body.message), ["a1", "b1", "a2"]);
    for (const f of ws.frames("send").slice(1)) ws.push({ op: "sent", re: f.id, mid: f.cmid, seq: 2, duplicate: false });
    await Promise.all([a, b, c]);
  });

  test("unavailable is retried with backoff, with the same cmid", async () => {
    const t = setup({ backoff: { baseMs: 1000 } });
    const ws = await open(t);
    const p = t.chat.send("2", "x");
    await t.clock.advance(0);
    const f1 = ws.frames("send")[0];
    ws.push({ op: "error", re: f1.id, code: "unavailable", retry: true, message: "try again" });
    await t.clock.advance(499);
    assert.equal(ws.frames("send").length, 1, "waits 0.5 * 1000 ms");
    await t.clock.advance(1);
    const f2 = ws.frames("send")[1];
    assert.equal(f2.cmid, f1.cmid);
    assert.notEqual(f2.id, f1.id);
    ws.push({ op: "error", re: f2.id, code: "unavailable", retry: true });
    await t.clock.advance(999);
    assert.equal(ws.frames("send").length, 2, "second retry waits 0.5 * 2000 ms");
    await t.clock.advance(1);
    const f3 = ws.frames("send")[2];
    ws.push({ op: "sent", re: f3.id, mid: "M", seq: 1, duplicate: false });
    assert.equal((await p).mid, "M");
    assert.equal(t.r.errors.length, 0, "retried errors are not reported");
  });

  test("rate_limited waits retry_after_ms", async () => {
    const t = setup();
    const ws = await open(t);
    const p = t.chat.send("2", "x");
    await t.clock.advance(0);
    const f1 = ws.frames("send")[0];
    ws.push({ op: "error", re: f1.id, code: "rate_limited", retry: true, retry_after_ms: 321 });
    await t.clock.advance(320);
    assert.equal(ws.frames("send").length, 1);
    await t.clock.advance(1);
    const f2 = ws.frames("send")[1];
    assert.equal(f2.cmid, f1.cmid);
    ws.push({ op: "sent", re: f2.id, mid: "M", seq: 1, duplicate: false });
    assert.equal((await p).seq, 1);
  });

  test("retry:false rejects with a typed ChatError and the next send to that peer goes out", async () => {
    const t = setup();
    const ws = await open(t);
    const p = t.chat.send("2", "x");
    const q = t.chat.send("2", "y");
    await t.clock.advance(0);
    const f1 = ws.frames("send")[0];
    ws.push({ op: "error", re: f1.id, code: "bad_field", field: "body.message", retry: false, message: "bad" });
    await assert.rejects(p, (e) => e instanceof ChatError && e.code === "bad_field" && e.field === "body.message" && e.retry === false && e.cmid === f1.cmid);
    await t.clock.advance(0);
    assert.equal(t.chat.pending, 1);
    const f2 = ws.frames("send")[1];
    assert.equal(f2.body.message, "y");
    ws.push({ op: "sent", re: f2.id, mid: "M", seq: 1, duplicate: false });
    await q;
  });

  test("a send with the cmid of a pending one joins it: one frame, both resolve", async () => {
    const t = setup();
    const ws = await open(t);
    const p1 = t.chat.send("2", "x", { cmid: "fixed-1" });
    const p2 = t.chat.send("2", "x", { cmid: "fixed-1" });
    await t.clock.advance(0);
    assert.equal(t.chat.pending, 1);
    const fs = ws.frames("send");
    assert.deepEqual(fs.map((f) => f.cmid), ["fixed-1"]);
    ws.push({ op: "sent", re: fs[0].id, mid: "M", seq: 1, duplicate: false });
    assert.deepEqual([(await p1).mid, (await p2).mid], ["M", "M"]);
  });

  test("invalid sends are refused locally", async () => {
    const t = setup();
    await assert.rejects(t.chat.send("a b", "x"), (e) => e.code === "bad_field" && e.field === "to");
    await assert.rejects(t.chat.send("2", { message: "" }), (e) => e.code === "bad_field" && e.field === "body.message");
    await assert.rejects(t.chat.send("2", { message: "x".repeat(70000) }), (e) => e.code === "too_large");
    assert.equal(t.chat.pending, 0);
  });
});

describe("outbox frame limit", () => {
  test("an oversized entry restored from the store is dropped and reported; it does not block its peer", async () => {
    const store = new MemoryStore({
      user: "u1",
      device: "dev1",
      cursor: 0,
      outbox: [
        { cmid: "big", to: "2", body: { message: "x".repeat(70000) } },
        { cmid: "small", to: "2", body: { message: "ok" } },
      ],
    });
    const t = setup({ store });
    const ws = await open(t);
    assert.deepEqual(ws.frames("send").map((f) => f.cmid), ["small"], "the oversized entry is never sent");
    const err = t.r.errors.find((e) => e.code === "too_large");
    assert.ok(err instanceof ChatError);
    assert.equal(err.cmid, "big");
    assert.equal(err.retry, false);
    assert.deepEqual(store.state.outbox.map((e) => e.cmid), ["small"], "and is gone from the store");
    ws.push({ op: "sent", re: ws.frames("send")[0].id, mid: "M", seq: 1, duplicate: false });
    await t.clock.advance(0);
    assert.equal(t.chat.pending, 0);
    assert.deepEqual(store.state.outbox, []);
  });

  test("a send queued before the welcome lowered frame_bytes rejects with too_large and is not sent", async () => {
    const t = setup();
    const big = t.chat.send("2", "y".repeat(2000));
    const bigResult = big.then(() => "resolved", (e) => e); // it rejects during the welcome
    const next = t.chat.send("2", "small");
    await t.clock.advance(0);
    assert.equal(t.chat.pending, 2);
    const ws = await open(t, { limits: { frame_bytes: 1024, history_page: 200, cmid_chars: 64, sends_per_second: 20, send_burst: 60 } });
    assert.deepEqual(ws.frames("send").map((f) => f.body.message), ["small"]);
    assert.equal(t.chat.pending, 1);
    const e = await bigResult;
    assert.ok(e instanceof ChatError && e.code === "too_large" && e.retry === false && typeof e.cmid === "string", String(e));
    assert.equal(t.r.errors.length, 0, "the rejected promise reports it; no error event on top");
    ws.push({ op: "sent", re: ws.frames("send")[0].id, mid: "M", seq: 1, duplicate: false });
    assert.equal((await next).mid, "M");
    await assert.rejects(t.chat.send("2", "z".repeat(2000)), (e) => e.code === "too_large", "send() checks the welcome's limit too");
  });
});

describe("liveness and tokens", () => {
  test("heartbeats every heartbeat period; a dead socket is closed and replaced", async () => {
    const t = setup({ heartbeatMs: 1000, deadAfterMs: 500 });
    const ws = await open(t);
    await t.clock.advance(1000);
    assert.equal(ws.heartbeats(), 1);
    await t.clock.advance(200);
    ws.push("heartbeat");
    await t.clock.advance(800);
    assert.equal(ws.heartbeats(), 2);
    assert.equal(ws.closedWith, null, "answered heartbeats keep it open");
    await t.clock.advance(499);
    assert.equal(ws.closedWith, null);
    await t.clock.advance(1);
    assert.ok(ws.closedWith, "no answer within deadAfterMs: closed");
    assert.equal(t.chat.state, "reconnecting");
    assert.equal(t.r.errors.at(-1).code, "dead_socket");
    await t.clock.advance(1000);
    assert.equal(t.S.sockets.length, 2);
  });

  test("the server's heartbeat_ms is used when smaller", async () => {
    const t = setup({}, { heartbeat_ms: 300 });
    const ws = await open(t);
    await t.clock.advance(900);
    assert.equal(ws.heartbeats(), 3);
  });

  test("no welcome within connectTimeoutMs: the attempt is abandoned", async () => {
    const t = setup({ connectTimeoutMs: 2000 });
    t.chat.connect();
    await t.clock.advance(0);
    const ws = t.S.last();
    ws.open();
    await t.clock.advance(1999);
    assert.equal(ws.closedWith, null);
    await t.clock.advance(1);
    assert.ok(ws.closedWith);
    assert.equal(t.chat.state, "connecting");
  });

  test("an unanswered request also arms the dead timer", async () => {
    const t = setup({ deadAfterMs: 500 });
    const ws = await open(t);
    t.chat.send("2", "x");
    await t.clock.advance(500);
    assert.ok(ws.closedWith);
  });

  test("the token provider is called for every connect", async () => {
    let n = 0;
    const t = setup({ token: async () => `t${++n}` });
    let ws = await open(t);
    assert.equal(ws.params.ticket, "tk:t1");
    ws.drop();
    await t.clock.advance(1000);
    ws = t.S.last();
    assert.equal(ws.params.ticket, "tk:t2");
    ws.drop(1012);
    await t.clock.advance(1000);
    assert.equal(t.S.last().params.ticket, "tk:t3");
    assert.deepEqual(t.tickets, ["t1", "t2", "t3"], "a ticket per attempt");
    assert.equal(n, 3);
  });

  test("4001: a fresh token from the provider, at once, resuming from the cursor", async () => {
    let n = 0;
    const t = setup({ token: () => `t${++n}`, backoff: { baseMs: 10000 } });
    const ws = await open(t);
    ws.msg(1);
    await t.clock.advance(20);
    ws.drop(4001);
    await t.clock.advance(0);
    const ws2 = t.S.last();
    assert.notEqual(ws2, ws);
    assert.equal(ws2.params.ticket, "tk:t2");
    assert.equal(ws2.params.since, "1");
  });

  test("socket tickets: asked for with the token in a header; a server without them (404) gets the token in the URL", async () => {
    const calls = [];
    const fetch = async (url, init) => {
      calls.push({ url, method: init.method, auth: init.headers.authorization });
      return Response.json({ error: "no such route" }, { status: 404 });
    };
    const t = setup({ url: "wss://chat.example.com/ws", fetch }, { tickets: false });
    const ws = await open(t);
    assert.deepEqual(calls, [{ url: "https://chat.example.com/v1/ws-ticket", method: "POST", auth: "Bearer tok" }]);
    assert.deepEqual(ws.params, { token: "tok", device: "dev1" });
  });

  test("socketTickets: false puts the token in the URL and asks for no ticket", async () => {
    const t = setup({ socketTickets: false });
    const ws = await open(t);
    assert.deepEqual(ws.params, { token: "tok", device: "dev1" });
    assert.deepEqual(t.tickets, []);
  });

  test("a ticket that cannot be had is reported and retried with backoff, with a fresh token from the provider", async () => {
    let n = 0;
    const answers = [() => Promise.reject(new TypeError("fetch failed")), () => Response.json({ error: "token expired" }, { status: 401 }), () => Response.json({ ticket: "T3", expires_in: 30 })];
    const seen = [];
    const fetch = async (_url, init) => {
      seen.push(init.headers.authorization);
      return answers.shift()();
    };
    const t = setup({ token: async () => `t${++n}`, fetch }, { tickets: false });
    const p = t.chat.connect();
    await t.clock.advance(0);
    assert.equal(t.S.sockets.length, 0, "no socket without a ticket");
    assert.equal(t.r.errors[0].code, "network");
    await t.clock.advance(250);
    assert.deepEqual([t.r.errors[1].code, t.r.errors[1].status], ["http", 401]);
    assert.equal(t.S.sockets.length, 0);
    await t.clock.advance(1000);
    assert.deepEqual(seen, ["Bearer t1", "Bearer t2", "Bearer t3"]);
    assert.deepEqual(t.S.last().params, { ticket: "T3", device: "dev1" });
    t.S.last().welcome();
    await p;
  });

  test("4001 with a fixed string token: token_expired and closed", async () => {
    const t = setup();
    const ws = await open(t);
    ws.drop(4001);
    await t.clock.advance(10000);
    assert.equal(t.chat.state, "closed");
    assert.equal(t.S.sockets.length, 1);
    assert.equal(t.r.errors.at(-1).code, "token_expired");
  });

  test("a failing token provider is reported and retried with backoff", async () => {
    let n = 0;
    const t = setup({
      token: async () => {
        if (++n === 1) throw new Error("auth server down");
        return "ok";
      },
    });
    const p = t.chat.connect();
    await t.clock.advance(0);
    assert.equal(t.S.sockets.length, 0);
    assert.equal(t.r.errors[0].code, "token_failed");
    await t.clock.advance(250);
    assert.equal(t.S.last().params.ticket, "tk:ok");
    t.S.last().welcome();
    await p;
  });
});

describe("persistence", () => {
  test("a reload keeps the outbox (same cmids), the cursor and the device", async () => {
    const store = new MemoryStore();
    const t = setup({ store, device: undefined });
    const ws = await open(t);
    const device = t.chat.device;
    assert.match(device, /^[A-Za-z0-9_.@-]{1,64}$/);
    assert.equal(ws.params.device, device);
    ws.msg(1);
    ws.msg(2);
    t.chat.send("2", "pending one");
    t.chat.send("3", "pending two");
    await t.clock.advance(100);
    const cmids = ws.frames("send").map((f) => f.cmid);
    assert.equal(cmids.length, 2);
    assert.equal(store.state.cursor, 2);
    assert.equal(store.state.user, "u1");
    assert.equal(store.state.outbox.length, 2);

    // "Reload": a new client on the same store; the old one is gone.
    const t2 = setup({ store, device: undefined });
    await t2.chat.ready;
    assert.equal(t2.chat.pending, 2);
    assert.equal(t2.chat.cursor, 2);
    assert.equal(t2.chat.device, device);
    const ws2 = await open(t2);
    assert.equal(ws2.params.since, "2");
    assert.equal(ws2.params.device, device);
    const again = ws2.frames("send");
    assert.deepEqual(again.map((f) => f.cmid), cmids);
    again.forEach((f) => ws2.push({ op: "sent", re: f.id, mid: "M" + f.cmid, seq: 3, duplicate: true }));
    await t2.clock.advance(100);
    assert.deepEqual(t2.r.sent.map((s) => s.cmid), cmids, "restored entries are reported as sent events");
    assert.equal(t2.chat.pending, 0);
    assert.deepEqual(store.state.outbox, []);
  });

  test("the cursor is saved before the ack that covers it", async () => {
    const saves = [];
    let ws;
    const store = {
      load: () => null,
      save: async (s) => {
        // A slow store: what was acked by the time the save completed?
        await new Promise((r) => setImmediate(r));
        saves.push({ cursor: s.cursor, acked: ws ? ws.frames("ack").map((f) => f.up_to) : [] });
      },
    };
    const t = setup({ store });
    ws = await open(t);
    ws.msg(1);
    await t.clock.advance(100);
    const i = saves.findIndex((s) => s.cursor === 1);
    assert.ok(i >= 0, "cursor 1 saved");
    assert.deepEqual(saves[i].acked, [], "and saved before ack 1 went out");
    assert.ok(saves.length >= 2);
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [1]);
  });

  test("a failed save: no ack for the unsaved cursor, a store error, the ack once a later save succeeds", async () => {
    let failing = true;
    const saved = [];
    const store = {
      load: () => null,
      save: (s) => {
        if (failing) throw new Error("quota exceeded");
        saved.push(s.cursor);
      },
    };
    const t = setup({ store, backoff: { baseMs: 1000 } });
    const ws = await open(t);
    ws.msg(1);
    await t.clock.advance(100);
    assert.deepEqual(ws.frames("ack"), [], "cursor 1 was not saved: not acked");
    const err = t.r.errors.find((e) => e.code === "store");
    assert.ok(err && err.retry === true && err.cause.message === "quota exceeded");
    failing = false;
    await t.clock.advance(1000);
    assert.equal(saved.at(-1), 1);
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [1], "acked after the retried save");
    // close() does not ack a cursor it could not save either.
    failing = true;
    ws.msg(2);
    await t.clock.advance(0);
    await t.chat.close();
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [1]);
    assert.equal(t.chat.cursor, 2);
    await t.clock.advance(100000);
    assert.equal(t.S.sockets.length, 1, "a closed client does not keep retrying");
  });

  test("a store holding another user's state is refused (wrong_user), nothing is sent", async () => {
    const store = new MemoryStore({ user: "someone-else", device: "d9", cursor: 4, outbox: [{ cmid: "c1", to: "2", body: { message: "theirs" } }] });
    const t = setup({ store, device: undefined });
    const p = t.chat.connect();
    await t.clock.advance(0);
    const ws = t.S.last();
    ws.welcome();
    await assert.rejects(p, (e) => e.code === "wrong_user");
    await t.clock.advance(100);
    assert.equal(ws.frames("send").length, 0);
    assert.equal(t.chat.state, "closed");
    assert.equal(store.state.outbox.length, 1, "their outbox is kept");
  });

  test("LocalStorageStore: JSON under its key; falls back to memory without storage", () => {
    const map = new Map();
    const storage = { getItem: (k) => (map.has(k) ? map.get(k) : null), setItem: (k, v) => map.set(k, v) };
    const s = new LocalStorageStore("edge-chat:u1", storage);
    assert.equal(s.persistent, true);
    assert.equal(s.load(), null);
    s.save({ device: "d", cursor: 3, outbox: [{ cmid: "c", to: "2", body: { message: "m" } }] });
    assert.deepEqual(JSON.parse(map.get("edge-chat:u1")).cursor, 3);
    assert.deepEqual(new LocalStorageStore("edge-chat:u1", storage).load().outbox[0].cmid, "c");
    map.set("edge-chat:u1", "{not json");
    assert.equal(s.load(), null, "a corrupt value reads as empty");
    assert.equal(LocalStorageStore.available(), false, "no localStorage in Node");
    const m = new LocalStorageStore();
    assert.equal(m.persistent, false);
    m.save({ cursor: 1 });
    assert.equal(m.load().cursor, 1);
  });
});

describe("requests and events", () => {
  test("read and history over the socket; history is re-sent after a reconnect", async () => {
    const t = setup();
    let ws = await open(t);
    const r = t.chat.read("2", 17);
    const h = t.chat.history({ peer: "2", before: 100, limit: 50 });
    await t.clock.advance(0);
    const [rf] = ws.frames("read");
    assert.deepEqual({ ...rf, id: 0 }, { op: "read", id: 0, peer: "2", up_to: 17 });
    ws.push({ op: "ok", re: rf.id });
    await r;
    const [hf] = ws.frames("history");
    assert.deepEqual({ ...hf, id: 0 }, { op: "history", id: 0, peer: "2", before: 100, limit: 50 });
    ws.drop();
    await t.clock.advance(1000);
    ws = t.S.last();
    ws.welcome();
    await t.clock.advance(0);
    const [hf2] = ws.frames("history");
    assert.equal(hf2.before, 100);
    const item = { op: "msg", seq: 99, kind: "out", peer: "2", mid: "M", body: { message: "old" } };
    ws.push({ op: "history", re: hf2.id, items: [item], next: 98 });
    const page = await h;
    assert.deepEqual(page, { items: [{ seq: 99, kind: "out", peer: "2", mid: "M", body: { message: "old" } }], next: 98 });
  });

  test("a read refused with retry:false rejects; close() rejects what is pending", async () => {
    const t = setup();
    const ws = await open(t);
    const r = t.chat.read("2", 1);
    const h = t.chat.history({});
    await t.clock.advance(0);
    ws.push({ op: "error", re: ws.frames("read")[0].id, code: "bad_field", field: "peer", retry: false });
    await assert.rejects(r, (e) => e.code === "bad_field" && e.field === "peer");
    await t.chat.close();
    await assert.rejects(h, (e) => e.code === "closed");
    assert.equal(t.chat.state, "closed");
    assert.deepEqual(ws.closedWith, { code: 1000, reason: "client closed" });
    await assert.rejects(t.chat.read("2", 1), (e) => e.code === "closed");
  });

  test("close() acks what was processed; sends stay pending and go out after the next connect()", async () => {
    const t = setup({ ackDelayMs: 1000 });
    const ws = await open(t);
    ws.msg(1);
    await t.clock.advance(0);
    const p = t.chat.send("5", "later");
    await t.clock.advance(0);
    await t.chat.close();
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [1]);
    assert.equal(t.chat.pending, 1);
    const ws2 = await open(t);
    const [f] = ws2.frames("send");
    assert.equal(f.cmid, ws.frames("send")[0].cmid);
    ws2.push({ op: "sent", re: f.id, mid: "M", seq: 2, duplicate: false });
    assert.equal((await p).mid, "M");
  });

  test("receipt, unread, typing events; typing() sends only when open", async () => {
    const t = setup();
    assert.equal(t.chat.typing("2", true), false);
    const ws = await open(t);
    assert.equal(t.chat.typing("2", true), true);
    assert.deepEqual(ws.frames("typing"), [{ op: "typing", to: "2", active: true }]);
    ws.push({ op: "receipt", peer: "2", type: "read", up_to: 4 });
    ws.push({ op: "unread", peer: "2", count: 0, read_up_to: 9 });
    ws.push({ op: "typing", from: "2", active: false });
    ws.push({ op: "some_future_op", x: 1 });
    assert.deepEqual(t.r.receipts, [{ peer: "2", type: "read", up_to: 4 }]);
    assert.deepEqual(t.r.unread, [{ peer: "2", count: 0, read_up_to: 9 }]);
    assert.deepEqual(t.r.typing, [{ from: "2", active: false }]);
    ws.push("{broken");
    assert.equal(t.r.errors.length, 1);
    assert.equal(t.r.errors[0].code, "protocol");
  });

  test("on() returns an unsubscribe function; a throwing listener is reported", async () => {
    const t = setup();
    const got = [];
    const off = t.chat.on("typing", (x) => got.push(x));
    t.chat.on("receipt", () => {
      throw new Error("oops");
    });
    const ws = await open(t);
    ws.push({ op: "typing", from: "2", active: true });
    off();
    ws.push({ op: "typing", from: "2", active: false });
    assert.equal(got.length, 1);
    ws.push({ op: "receipt", peer: "2", type: "delivered", up_to: 1 });
    assert.equal(t.r.errors.at(-1).code, "listener_failed");
  });

  test("conversations: GET /v1/conversations on the same host with the bearer token; 401 refreshes once", async () => {
    const calls = [];
    let n = 0;
    const answers = [
      new Response("expired", { status: 401 }),
      Response.json({ items: [{ peer: "2", unread: 1, read_up_to: 0, peer_delivered: 0, peer_read: 0, last: { op: "msg", seq: 3, kind: "in", peer: "2", mid: "M", body: { message: "m" } } }], next: 3 }),
      new Response("down", { status: 503 }),
    ];
    const fetch = async (url, init) => {
      calls.push({ url, auth: init.headers.authorization });
      return answers.shift();
    };
    const t = setup({ url: "wss://chat.example.com/ws", token: async () => `t${++n}`, fetch });
    const page = await t.chat.conversations({ limit: 20, before: 50 });
    assert.deepEqual(calls, [
      { url: "https://chat.example.com/v1/conversations?limit=20&before=50", auth: "Bearer t1" },
      { url: "https://chat.example.com/v1/conversations?limit=20&before=50", auth: "Bearer t2" },
    ]);
    assert.equal(page.next, 3);
    assert.equal(page.items[0].last.seq, 3);
    assert.equal(page.items[0].last.op, undefined);
    await assert.rejects(t.chat.conversations(), (e) => e.code === "http" && e.status === 503 && e.retry === true);
    const plain = setup({ url: "ws://127.0.0.1:8787/ws", fetch: async (url) => (calls.push({ url }), Response.json({ items: [], next: null })) });
    await plain.chat.conversations();
    assert.equal(calls.at(-1).url, "http://127.0.0.1:8787/v1/conversations");
  });
});
