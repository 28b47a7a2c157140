// Hardening, round two (issue 16): each finding of the outside review,
// reproduced against the real runtime.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { API_KEY, ROOT, connectV1, startWorker, token } from "../harness.mjs";

describe("hardening", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  const api = (path, body, headers = {}) =>
    w.fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}`, ...headers },
      body: JSON.stringify(body),
    });

  test("3: a client cmid cannot name a backend call's idempotency key", async () => {
    const a = await connectV1(w, "ns1");
    const peer = await connectV1(w, "ns2");
    const sent = await a.request({ op: "send", to: "ns2", cmid: "api:k1#0", body: { message: "from the socket" } });
    assert.equal(sent.op, "sent");
    await peer.msg();
    const other = await connectV1(w, "ns3");
    const r = await api("/api/usr-msg", { fromUser: "ns1", toUser: "ns3", message: "from the backend" }, { "idempotency-key": "k1" });
    assert.equal(r.status, 200);
    const { id: answer } = await r.json();
    assert.notEqual(answer, sent.mid, "the backend call got its own message, not the socket's");
    assert.equal((await other.msg()).body.message, "from the backend", "the real recipient has it");
    // A cmid with a control character is refused (that is the backend's namespace).
    const bad = await a.request({ op: "send", to: "ns2", cmid: "\u001fapi:k1#0", body: { message: "x" } });
    assert.deepEqual([bad.op, bad.code, bad.field], ["error", "bad_field", "cmid"]);
    await Promise.all([a.close(), peer.close(), other.close()]);
  });

  test("4: a binary frame on a v1 socket gets a v1 error frame", async () => {
    const a = await connectV1(w, "bin1");
    a.ws.send(Buffer.from([1, 2, 3]));
    const e = await a.take((f) => f.op === "error");
    assert.equal(e.code, "bad_frame");
    // The socket stays usable.
    assert.equal((await a.request({ op: "history", limit: 1 })).op, "history");
    await a.close();
  });

  test("5: an over-long Idempotency-Key is refused with 400 naming the header, and stores nothing", async () => {
    const v = await connectV1(w, "ik1");
    const long = "k".repeat(129);
    for (const path of ["/api/sys-msg", "/api/usr-msg"]) {
      const body = path === "/api/sys-msg" ? { uid: "ik1", type: "x" } : { fromUser: "ik2", toUser: "ik1", message: "x" };
      const r = await api(path, body, { "idempotency-key": long });
      assert.equal(r.status, 400);
      assert.match((await r.json()).error, /Idempotency-Key must be 1 to 128 characters/);
    }
    await v.expectNone((f) => f.op === "msg", 300);
    const ok = await api("/api/sys-msg", { uid: "ik1", type: "x" }, { "idempotency-key": "k".repeat(128) });
    assert.equal(ok.status, 200);
    await v.close();
  });

  test("6: a conversations cursor past every seq reads from the newest, as history does", async () => {
    const a = await connectV1(w, "cv1");
    await a.request({ op: "send", to: "cv2", cmid: "c1", body: { message: "hi" } });
    const get = async (q) =>
      (await w.fetch(`/v1/conversations${q}`, { headers: { authorization: `Bearer ${token("cv1")}` } })).json();
    const newest = await get("");
    assert.equal(newest.items.length, 1);
    for (const before of ["9223372036854775808", "18446744073709551615", "9007199254740993"]) {
      assert.deepEqual((await get(`?before=${before}`)).items, newest.items, `before=${before}`);
    }
    assert.doesNotMatch(w.output, /conversion|out of range/i);
    await a.close();
  });
});

describe("1: typing", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("a stranger's typing reaches nobody, and a flood reaches a peer a few times only; both counted", async () => {
    const before = (await w.metrics()).dropped_typing;
    const victim = [await connectV1(w, "ty1", { device: "a" }), await connectV1(w, "ty1", { device: "b" })];
    const stranger = await connectV1(w, "ty2");
    for (let i = 0; i < 50; i++) stranger.send({ op: "typing", to: "ty1", active: true });
    for (const v of victim) await v.expectNone((f) => f.op === "typing", 300);
    // Once they talk, typing goes through, a few per second at most.
    await stranger.request({ op: "send", to: "ty1", cmid: "c1", body: { message: "hello" } });
    for (const v of victim) await v.msg();
    for (let i = 0; i < 50; i++) stranger.send({ op: "typing", to: "ty1", active: i % 2 === 0 });
    await new Promise((r) => setTimeout(r, 400));
    for (const v of victim) {
      const got = v.frames.filter((f) => f.op === "typing").length;
      assert.ok(got >= 1 && got <= 6, `${got} typing frames of 50`);
    }
    assert.ok((await w.metrics()).dropped_typing - before >= 50 + 44, "the dropped ones are counted");
    await Promise.all([...victim.map((v) => v.close()), stranger.close()]);
  });
});

describe("2: expired tokens", () => {
  let w;
  // Locally workerd ends a connection the object closed only once the object
  // has been idle a while (about 10 s); a presence grace keeps it busy that
  // much longer. The close frame itself goes out at the expiry either way.
  before(async () => (w = await startWorker({ bindings: { PRESENCE_GRACE_S: "0" } })));
  after(() => w.close());
  const expiring = (uid) => token(uid, { exp: Math.floor(Date.now() / 1000) + 2 });
  /** The close code of a socket, however early it closes (watch right after connecting). */
  const closeOf = (ws) => new Promise((r) => ws.once("close", (code) => r(code)));

  test("a legacy socket closes with 4001 once its token expired, and a chat after that stores nothing", async () => {
    const a = await w.connect("ex1", { tokenValue: expiring("ex1") });
    const closed = closeOf(a.ws);
    const b = await w.connect("ex2");
    await new Promise((r) => setTimeout(r, 2300));
    a.send({ fromUser: "ex1", toUser: "ex2", message: "too late" });
    assert.equal(await closed, 4001);
    assert.ok(!a.received.includes("ok"), "no ok for a chat after expiry");
    await b.expectSilence(300);
    await b.close();
  });

  test("a socket that only heartbeats is closed at the next message once expired, gets nothing, and the message waits for the next connection", async () => {
    const legacy = await w.connect("ex3", { tokenValue: expiring("ex3") });
    const v1 = await connectV1(w, "ex4", { tokenValue: expiring("ex4") });
    const legacyClosed = closeOf(legacy.ws);
    const v1Closed = closeOf(v1.ws);
    // Heartbeats only: answered by the runtime, the objects never see them.
    for (let i = 0; i < 3; i++) {
      legacy.send("heartbeat");
      v1.send("heartbeat");
      await new Promise((r) => setTimeout(r, 800));
    }
    const sender = await connectV1(w, "ex5");
    for (const to of ["ex3", "ex4"]) {
      const r = await sender.request({ op: "send", to, cmid: `c-${to}`, body: { message: `for ${to}` } });
      assert.equal(r.op, "sent", "stored for the recipient");
    }
    assert.equal(await legacyClosed, 4001);
    assert.equal(await v1Closed, 4001);
    assert.ok(!legacy.received.some((m) => String(m).includes("for ex3")), "nothing written to the expired legacy socket");
    assert.ok(!v1.frames.some((f) => f.op === "msg"), "nothing written to the expired v1 socket");
    // A fresh token gets what waited.
    const again = await w.connect("ex3");
    assert.equal((await again.nextJson()).message, "for ex3");
    const v1again = await connectV1(w, "ex4", { since: 0 });
    assert.equal((await v1again.msg()).body.message, "for ex4");
    await Promise.all([again.close(), v1again.close(), sender.close()]);
  });
  test("a socket that neither sends nor is sent anything is closed with 4001 by the alarm when its token expires", async () => {
    const legacy = await w.connect("ex6", { tokenValue: expiring("ex6") });
    const v1 = await connectV1(w, "ex7", { tokenValue: expiring("ex7") });
    // Nothing is sent either way: only the alarm can close them (a bound, not a timing).
    const never = new Promise((r) => setTimeout(() => r("still open after 20 s"), 20_000));
    const codes = await Promise.all([closeOf(legacy.ws), closeOf(v1.ws)].map((c) => Promise.race([c, never])));
    assert.deepEqual(codes, [4001, 4001]);
    // A socket with a longer token stays open meanwhile.
    const lasting = await w.connect("ex6");
    await lasting.expectSilence(300);
    assert.equal(lasting.closed, null);
    await lasting.close();
  });
});

describe("7: read rate", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { READ_RATE: "1", READ_BURST: "3" } })));
  after(() => w.close());

  test("history and conversation reads over READ_RATE are refused with when to retry, and counted", async () => {
    const before = (await w.metrics()).refused_read;
    const get = (path) => w.fetch(path, { headers: { authorization: `Bearer ${token("rr1")}` } });
    const answers = await Promise.all(["/ws/history", "/v1/history", "/v1/conversations", "/ws/history", "/v1/history"].map(get));
    const statuses = answers.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    const refused = answers.find((r) => r.status === 429);
    const body = await refused.json();
    assert.match(body.error, /READ_RATE/);
    assert.ok(body.retry_after_ms > 0 && body.retry_after_ms <= 1000);
    // The socket's history op shares the same bucket.
    const c = await connectV1(w, "rr1");
    assert.deepEqual([c.welcome.limits.reads_per_second, c.welcome.limits.read_burst], [1, 3]);
    const e = await c.request({ op: "history", limit: 5 });
    assert.deepEqual([e.op, e.code, e.retry], ["error", "rate_limited", true]);
    assert.ok(e.retry_after_ms > 0);
    // Another user's reads are their own.
    const other = await w.fetch("/ws/history", { headers: { authorization: `Bearer ${token("rr2")}` } });
    assert.equal(other.status, 200);
    assert.equal((await w.metrics()).refused_read - before, 3);
    await c.close();
  });
});

describe("8: one sender per queue", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { QUEUE_PER_SENDER: "3", QUEUE_MAX: "10" } })));
  after(() => w.close());

  test("a sender cannot fill an offline user's queue: past QUEUE_PER_SENDER they are told full, others are not", async () => {
    const before = (await w.metrics()).refused_sender_full;
    const mallory = await w.connect("qm");
    const answers = [];
    for (let i = 0; i < 5; i++) {
      mallory.send({ fromUser: "qm", toUser: "qv", message: `spam ${i}` });
      answers.push(await mallory.next());
    }
    assert.deepEqual(answers, ["ok", "ok", "ok", "error full", "error full"]);
    const v1 = await connectV1(w, "qm2");
    const e = await v1.request({ op: "send", to: "qv", cmid: "c1", body: { message: "fine" } });
    assert.equal(e.op, "sent", "another sender still gets in");
    assert.equal((await w.metrics()).refused_sender_full - before, 2);
    // The victim connects and gets what was stored; then the queue is empty.
    const victim = await w.connect("qv");
    const got = [];
    for (let i = 0; i < 4; i++) got.push((await victim.nextJson()).message);
    assert.deepEqual(got, ["spam 0", "spam 1", "spam 2", "fine"]);
    mallory.send({ fromUser: "qm", toUser: "qv", message: "live" });
    assert.equal(await mallory.next(), "ok");
    assert.equal((await victim.nextJson()).message, "live");
    await Promise.all([mallory.close(), v1.close(), victim.close()]);
  });
});

describe("9: deploy check", () => {
  /** Everything the check printed for a wrangler.toml holding `toml`; throws if it fails. */
  const output = (toml) => {
    const dir = mkdtempSync(join(tmpdir(), "edge-chat-config-"));
    writeFileSync(join(dir, "wrangler.toml"), toml);
    const script = join(ROOT, "scripts", "check-config.mjs");
    return execFileSync("bash", ["-c", `node "${script}" "${join(dir, "wrangler.toml")}" 2>&1`], { encoding: "utf8" });
  };

  test("warns while ALLOWED_ORIGINS is empty, and not once it is set (a warning, never a failure)", () => {
    assert.match(output(`[vars]\nALLOWED_ORIGINS = ""\n`), /warning: ALLOWED_ORIGINS is empty/);
    const set = output(`[vars]\nALLOWED_ORIGINS = "https://app.example.com"\n`);
    assert.doesNotMatch(set, /ALLOWED_ORIGINS/);
    assert.match(set, /no warnings/);
    assert.match(output(`[vars]\nDEV_TOKENS = "1"\nALLOWED_ORIGINS = "https://a.example"\n`), /warning: DEV_TOKENS is 1/);
  });
});
