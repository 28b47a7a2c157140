// Every operator limit against the real runtime: set small through the vars,
// each is answered with a clear error and a counter, and nothing past it is
// stored; the socket stays usable.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectV1, eventually, startWorker, token } from "../harness.mjs";

const text = (message) => ({ message });

describe("limits", () => {
  let w;
  const tight = {
    FRAME_MAX_BYTES: "1024",
    BODY_MAX_BYTES: "2048",
    API_MAX_BATCH: "3",
    HISTORY_PAGE_MAX: "10",
    SOCKETS_PER_USER: "2",
    QUEUE_MAX: "3",
    INFLIGHT_SENDS: "1",
    ALLOWED_ORIGINS: "https://app.example, http://localhost:5173",
  };
  before(async () => (w = await startWorker({ bindings: tight })));
  after(() => w.close());

  /** Runs `fn` and returns how much each named counter grew. */
  async function counted(names, fn) {
    const before = await w.metrics();
    await fn();
    const after = await w.metrics();
    return Object.fromEntries(names.map((n) => [n, after[n] - before[n]]));
  }

  test("frames over FRAME_MAX_BYTES: 'error size' or too_large, the socket stays usable", async () => {
    const a = await w.connect("f1");
    const v = await connectV1(w, "f2");
    assert.equal(v.welcome.limits.frame_bytes, 1024);
    const big = "x".repeat(1024);
    const grew = await counted(["refused_frame"], async () => {
      a.send({ fromUser: "f1", toUser: "f3", message: big });
      assert.equal(await a.next(), "error size");
      v.send({ op: "send", id: 1, to: "f3", cmid: "c1", body: text(big) });
      const e = await v.take((f) => f.op === "error");
      assert.deepEqual([e.code, e.retry], ["too_large", false]);
    });
    assert.equal(grew.refused_frame, 2);
    a.send({ fromUser: "f1", toUser: "f3", message: "small" });
    assert.equal(await a.next(), "ok");
    assert.equal((await v.request({ op: "send", to: "f3", cmid: "c2", body: text("small") })).op, "sent");
    const stored = (await (await w.history("f3")).json()).usr.map((m) => m.message);
    assert.deepEqual(stored, ["small", "small"]);
    await Promise.all([a.close(), v.close()]);
  });

  test("backend bodies over BODY_MAX_BYTES and calls over API_MAX_BATCH are refused whole", async () => {
    const grew = await counted(["refused_body", "refused_batch"], async () => {
      const big = await w.api("/api/sys-msg", { uid: "b1", text: "x".repeat(3000) });
      assert.equal(big.status, 413);
      assert.match((await big.json()).error, /BODY_MAX_BYTES/);
      const four = await w.api("/api/sys-msg", [1, 2, 3, 4].map((i) => ({ uid: "b1", n: i })));
      assert.equal(four.status, 413);
      assert.match((await four.json()).error, /at most 3 messages per call \(API_MAX_BATCH\)/);
    });
    assert.deepEqual(grew, { refused_body: 1, refused_batch: 1 });
    assert.deepEqual((await (await w.history("b1")).json()).sys, [], "nothing stored");
    const three = await w.api("/api/sys-msg", [1, 2, 3].map((i) => ({ uid: "b1", n: i })));
    assert.equal(three.status, 200);
    assert.equal((await three.json()).ids.length, 3);
  });

  test("pages over HISTORY_PAGE_MAX are refused over HTTP and over the socket", async () => {
    const v = await connectV1(w, "p1");
    assert.equal(v.welcome.limits.history_page, 10);
    const auth = { headers: { authorization: `Bearer ${token("p1")}` } };
    const grew = await counted(["refused_page"], async () => {
      for (const path of ["/v1/history?limit=11", "/v1/conversations?limit=11", "/ws/history?limit=11"]) {
        const r = await w.fetch(path, auth);
        assert.equal(r.status, 400, path);
        assert.match((await r.json()).error, /^limit: over the page limit/);
      }
      const e = await v.request({ op: "history", limit: 11 });
      assert.deepEqual([e.op, e.code, e.field], ["error", "bad_field", "limit"]);
    });
    assert.equal(grew.refused_page, 4);
    assert.equal((await w.fetch("/v1/history?limit=10", auth)).status, 200);
    assert.equal((await v.request({ op: "history", limit: 10 })).op, "history");
    await v.close();
  });

  test("an upgrade past SOCKETS_PER_USER gets 429; closing one makes room; other users are unaffected", async () => {
    const a = await w.connect("s1");
    const b = await connectV1(w, "s1", { device: "d2" });
    const grew = await counted(["refused_sockets"], async () => {
      await assert.rejects(w.connect("s1"), (e) => e.status === 429 && /at most 2/.test(e.body));
      await assert.rejects(connectV1(w, "s1", { device: "d3" }), (e) => e.status === 429);
    });
    assert.equal(grew.refused_sockets, 2);
    const other = [await w.connect("s2"), await w.connect("s2")];
    await a.close();
    const c = await eventually(() => w.connect("s1").catch(() => null));
    c.send("heartbeat");
    assert.equal(await c.next(), "heartbeat");
    await Promise.all([b.close(), c.close(), ...other.map((o) => o.close())]);
  });

  test("a user's queue at QUEUE_MAX refuses new messages, the senders are told, nothing is lost", async () => {
    const a = await w.connect("q1");
    const v = await connectV1(w, "q2");
    for (let i = 0; i < 3; i++) {
      a.send({ fromUser: "q1", toUser: "q9", message: `m${i}` });
      assert.equal(await a.next(), "ok");
    }
    const grew = await counted(["refused_queue_full"], async () => {
      a.send({ fromUser: "q1", toUser: "q9", message: "over" });
      assert.equal(await a.next(), "error full");
      const e = await v.request({ op: "send", to: "q9", cmid: "over", body: text("over v1") });
      assert.deepEqual([e.code, e.retry], ["recipient_full", false]);
      const api = await w.api("/api/sys-msg", [{ uid: "q9", n: 1 }, { uid: "q8", n: 2 }]);
      assert.equal(api.status, 507);
      const doc = await api.json();
      assert.deepEqual(doc.errors, ["recipient_full", null]);
      assert.equal(doc.ids[0], null);
      assert.equal(typeof doc.ids[1], "string", "the other recipient's message was stored");
    });
    assert.equal(grew.refused_queue_full, 3);
    // The socket that was refused is still usable.
    a.send({ fromUser: "q1", toUser: "q8", message: "elsewhere" });
    assert.equal(await a.next(), "ok");
    // The recipient gets exactly what was accepted, then the queue takes more.
    const r = await w.connect("q9");
    assert.deepEqual([await r.nextJson(), await r.nextJson(), await r.nextJson()].map((m) => m.message), ["m0", "m1", "m2"]);
    await r.expectSilence();
    a.send({ fromUser: "q1", toUser: "q9", message: "after" });
    assert.equal(await a.next(), "ok");
    assert.equal((await r.nextJson()).message, "after");
    await Promise.all([a.close(), v.close(), r.close()]);
  });

  test("concurrent deliveries never take the queue past QUEUE_MAX", async () => {
    const answers = await Promise.all(Array.from({ length: 12 }, (_, n) => w.api("/api/sys-msg", { uid: "qc", n })));
    const codes = answers.map((r) => r.status);
    assert.equal(codes.filter((c) => c === 200).length, 3, `answers: ${codes}`);
    assert.equal(codes.filter((c) => c === 507).length, 9, `answers: ${codes}`);
    const r = await w.connect("qc");
    for (let i = 0; i < 3; i++) await r.nextJson();
    await r.expectSilence();
    await r.close();
  });

  test("with INFLIGHT_SENDS=1 a burst is answered rate_limited beyond one waiting send, and resent ones land once", async () => {
    const v = await connectV1(w, "i1");
    // The recipient is online, so QUEUE_MAX does not come into it.
    const r = await w.connect("i2");
    const grew = await counted(["refused_busy"], async () => {
      for (let i = 0; i < 10; i++) v.send({ op: "send", id: `b${i}`, to: "i2", cmid: `b${i}`, body: text(`b${i}`) });
      const replies = [];
      for (let i = 0; i < 10; i++) replies.push(await v.take((f) => f.re === `b${i}`));
      const refused = replies.filter((r) => r.op === "error");
      assert.ok(refused.length > 0, "some sends found another in flight");
      assert.ok(refused.every((r) => r.code === "rate_limited" && r.retry && r.retry_after_ms > 0));
      // Retrying the refused ones one at a time stores each once.
      for (const r of refused) {
        const i = r.re.slice(1);
        const again = await v.request({ op: "send", to: "i2", cmid: `b${i}`, body: text(`b${i}`) });
        assert.equal(again.op, "sent", JSON.stringify(again));
      }
    });
    assert.ok(grew.refused_busy > 0);
    const stored = (await (await w.history("i2")).json()).usr.map((m) => m.message);
    assert.deepEqual(stored.sort(), Array.from({ length: 10 }, (_, i) => `b${i}`).sort());
    await Promise.all([v.close(), r.close()]);
  });

  test("ALLOWED_ORIGINS: an upgrade from another site's page is refused; listed origins and non-browsers pass", async () => {
    const grew = await counted(["refused_origin"], async () => {
      await assert.rejects(w.connect("o1", { origin: "https://evil.example" }), (e) => e.status === 403);
      await assert.rejects(connectV1(w, "o1", { origin: "https://app.example.evil" }), (e) => e.status === 403);
    });
    assert.equal(grew.refused_origin, 2);
    const ok = [
      await w.connect("o1", { origin: "https://app.example" }),
      await connectV1(w, "o2", { origin: "http://localhost:5173" }),
      await w.connect("o3"),
    ];
    await Promise.all(ok.map((c) => c.close()));
  });
});

describe("queue age", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { QUEUE_TTL_S: "2" } })));
  after(() => w.close());

  test("entries no socket received within QUEUE_TTL_S leave the queue but stay in history", async () => {
    for (const n of [1, 2]) assert.equal((await w.api("/api/sys-msg", { uid: "t1", n })).status, 200);
    // Past the TTL for the first two; the third is sent now and read well within it.
    await new Promise((r) => setTimeout(r, 2300));
    assert.equal((await w.api("/api/sys-msg", { uid: "t1", n: 3 })).status, 200);
    const before = (await w.metrics()).queue_expired;
    const c = await w.connect("t1");
    assert.equal((await c.nextJson()).n, 3);
    await c.expectSilence();
    assert.equal((await w.metrics()).queue_expired - before, 2);
    const sys = (await (await w.history("t1")).json()).sys;
    assert.deepEqual(sys.map((m) => [m.n, m.isSend]), [[3, 1], [2, 2], [1, 2]], "expired ones: kept, never delivered");
    // A restart does not bring them back.
    await c.close();
    await w.restart();
    const again = await w.connect("t1");
    await again.expectSilence();
    await again.close();
  });
});

describe("misconfiguration", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { QUEUE_MAX: "lots" } })));
  after(() => w.close());

  test("an invalid limit var answers 500 naming it on every route but healthz", async () => {
    assert.equal((await w.fetch("/healthz")).status, 200);
    for (const path of ["/ws", "/ws/history", "/api/metrics"]) {
      const r = await w.fetch(path);
      assert.equal(r.status, 500);
      assert.match((await r.json()).error, /var QUEUE_MAX must be a whole number from 1 to 10000/);
    }
  });
});
