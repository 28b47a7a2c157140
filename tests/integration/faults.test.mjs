// Faults in the real runtime: a panic inside a handler, runtime restarts
// while traffic flows, sockets that vanish without a close frame. What must
// hold: every message the server answered `ok` (legacy) or `sent` (v1)
// reaches every device of its recipient exactly once, in order.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectV1, eventually, resilient, sleep, startWorker, token } from "../harness.mjs";

/** A v1 device that processes its log in order, checks it, and acks. */
function device(w, uid, name) {
  const d = { uid, name, last: 0, texts: [], problems: [], stop: false, welcomed: false };
  const sock = resilient(w, () => `/ws?token=${token(uid)}&device=${name}&since=${d.last}`, ["chat.v1"], (text) => {
    if (text === "heartbeat") return;
    const f = JSON.parse(text);
    if (f.op === "welcome") d.welcomed = true;
    if (f.op === "welcome" && !f.recovered) d.problems.push(`not recovered at ${f.since}`);
    if (f.op !== "msg") return;
    if (f.seq !== d.last + 1) d.problems.push(`seq ${f.seq} after ${d.last}`);
    if (f.seq <= d.last) return;
    d.last = f.seq;
    d.texts.push(f.body.message);
    sock.ws.send(JSON.stringify({ op: "ack", up_to: f.seq }));
  });
  d.run = (async () => {
    while (!d.stop) {
      if (!sock.up) await sock.open();
      await sleep(20);
    }
    sock.ws?.close();
  })();
  return d;
}

/** Sends `n` chats; returns the texts the server acknowledged. */
async function legacySender(w, uid, to, n) {
  const acked = [];
  let reply = null;
  const sock = resilient(w, () => `/ws?token=${token(uid)}`, undefined, (t) => reply?.(t));
  for (let i = 0; i < n; i++) {
    if (!sock.up) await sock.open();
    const text = `${uid}:${i}`;
    const answer = await new Promise((resolve) => {
      reply = resolve;
      sock.ws.once("close", () => resolve("closed"));
      setTimeout(() => resolve("timeout"), 3000);
      sock.ws.send(JSON.stringify({ fromUser: uid, toUser: to, message: text }));
    });
    // A legacy client cannot tell whether an unanswered chat was stored, so
    // it does not send it again: only `ok` counts.
    if (answer === "ok") acked.push(text);
  }
  sock.ws?.close();
  return acked;
}

/** Sends `n` chats, each until the server answers `sent` (same cmid on every try). */
async function v1Sender(w, uid, to, n) {
  const acked = [];
  let waiting = null;
  const sock = resilient(w, () => `/ws?token=${token(uid)}&device=s`, ["chat.v1"], (t) => {
    if (t === "heartbeat") return;
    const f = JSON.parse(t);
    if (f.re !== undefined) waiting?.(f);
  });
  for (let i = 0; i < n; i++) {
    const text = `${uid}:${i}`;
    for (let attempt = 0; ; attempt++) {
      if (!sock.up) await sock.open();
      const answer = await new Promise((resolve) => {
        waiting = resolve;
        sock.ws.once("close", () => resolve({ op: "closed" }));
        setTimeout(() => resolve({ op: "timeout" }), 3000);
        sock.ws.send(JSON.stringify({ op: "send", id: `${i}.${attempt}`, to, cmid: `c${i}`, body: { message: text } }));
      });
      if (answer.op === "sent") break;
      if (answer.op === "error" && !answer.retry) throw new Error(`refused: ${JSON.stringify(answer)}`);
      await sleep(answer.retry_after_ms ?? 50);
    }
    acked.push(text);
  }
  sock.ws?.close();
  return acked;
}

/** Every acked text exactly once per device, each sender's texts in order. */
function check(devices, ackedBy, recipientOf) {
  for (const d of devices) {
    assert.deepEqual(d.problems, [], `${d.uid}/${d.name}: gap, repeat or lost resume`);
    assert.equal(new Set(d.texts).size, d.texts.length, `${d.uid}/${d.name}: a message arrived twice`);
    for (const [sender, texts] of Object.entries(ackedBy)) {
      if (recipientOf[sender] !== d.uid) continue;
      const got = d.texts.filter((t) => t.startsWith(`${sender}:`));
      const order = got.map((t) => Number(t.split(":")[1]));
      assert.deepEqual(order, [...order].sort((a, b) => a - b), `${d.uid}/${d.name}: ${sender}'s messages out of order`);
      for (const t of texts) if (t.split(":")[0] === sender) assert.ok(got.includes(t), `${d.uid}/${d.name} lacks ${t}`);
    }
  }
}

describe("runtime restarts under load", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  // FAULT_RESTARTS=k restarts k times instead (docs/reliability.md's longer run).
  const K = Number(process.env.FAULT_RESTARTS ?? 4);
  const N = 15 * K;

  test(`${K} restarts while 4 senders and 4 devices run: nothing acknowledged is lost or repeated`, async () => {
    const devices = [device(w, "rr1", "a"), device(w, "rr1", "b"), device(w, "rr2", "a"), device(w, "rr2", "b")];
    // Every device registers before traffic starts, so none joins late.
    await eventually(() => devices.every((d) => d.welcomed), 5000);
    const senders = [
      legacySender(w, "ls1", "rr1", N),
      legacySender(w, "ls2", "rr2", N),
      v1Sender(w, "vs1", "rr1", N),
      v1Sender(w, "vs2", "rr2", N),
    ];
    let restarts = 0;
    const restarting = (async () => {
      for (; restarts < K; restarts++) {
        await sleep(400);
        await w.restart();
      }
    })();
    const [ls1, ls2, vs1, vs2] = await Promise.all(senders);
    await restarting;
    assert.equal(restarts, K);
    assert.equal(vs1.length + vs2.length, 2 * N, "every v1 send is eventually acknowledged");
    assert.ok(ls1.length + ls2.length > N, "most legacy chats were acknowledged");
    const ackedBy = { ls1, ls2, vs1, vs2 };
    const want = { rr1: [...ls1, ...vs1], rr2: [...ls2, ...vs2] };
    await eventually(() => devices.every((d) => want[d.uid].every((t) => d.texts.includes(t))), 20000);
    for (const d of devices) d.stop = true;
    await Promise.all(devices.map((d) => d.run));
    check(devices, ackedBy, { ls1: "rr1", vs1: "rr1", ls2: "rr2", vs2: "rr2" });
    const acked = ls1.length + ls2.length + vs1.length + vs2.length;
    console.log(`restarts under load: ${K} restarts, ${acked} acknowledged, ${4 * N - acked} unacknowledged legacy, 0 lost or repeated`);
  });
});

describe("a panic inside a handler", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { FAULTS: "1" } })));
  after(() => w.close());

  test("the object recovers on the same sockets; sends in flight are retried once each; the queue stays in order", async () => {
    const legacy = await w.connect("pa");
    const v = await connectV1(w, "pa", { device: "pd" });
    legacy.send({ fromUser: "pa", toUser: "pq", message: "before" });
    assert.equal(await legacy.next(), "ok");
    // Ten sends in flight, then a panic in the same object.
    const send = (i, attempt) =>
      v.send({ op: "send", id: `${i}.${attempt}`, to: "pq", cmid: `c${i}`, body: { message: `v${i}` } });
    for (let i = 0; i < 10; i++) {
      send(i, 0);
      if (i === 4) v.send("__panic");
    }
    // Whatever the panic cut short gets no answer; the client sends it again
    // with the same cmid until it is acknowledged.
    let answered = 0;
    let retried = 0;
    for (let i = 0; i < 10; i++) {
      for (let attempt = 0; ; attempt++) {
        const r = await v.take((f) => f.re === `${i}.${attempt}`, 1500).catch(() => null);
        if (r?.op === "sent") break;
        retried++;
        send(i, attempt + 1);
      }
      answered++;
    }
    assert.equal(answered, 10);
    assert.ok(retried > 0, "the panic cut some sends short");
    assert.match(w.output, /fault injected by a test/, "the panic happened");
    // Both sockets that saw the panic still work.
    legacy.send({ fromUser: "pa", toUser: "pq", message: "after" });
    assert.equal(await legacy.next(), "ok");
    const q = await connectV1(w, "pq", { since: 0 });
    const got = [];
    for (;;) {
      const m = await q.msg(1000).catch(() => null);
      if (!m) break;
      got.push(m);
    }
    assert.deepEqual(got.map((m) => m.seq), got.map((_, i) => i + 1), "contiguous seqs from 1");
    const texts = got.map((m) => m.body.message);
    assert.deepEqual(texts.filter((t) => t.startsWith("v")).sort(), Array.from({ length: 10 }, (_, i) => `v${i}`).sort(), "each send stored once");
    assert.equal(texts[0], "before");
    assert.equal(texts.at(-1), "after");
    await Promise.all([legacy.close(), v.close(), q.close()]);
  });
});

describe("fault injection is off unless configured", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("without FAULTS=1, __panic is an ordinary malformed frame", async () => {
    const a = await w.connect("np");
    a.send("__panic");
    assert.equal(await a.next(), "error format");
    assert.doesNotMatch(w.output, /fault injected/);
    await a.close();
  });
});

describe("sockets that vanish", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("a v1 socket dropped without a close frame: later messages wait for the device's next connect", async () => {
    const d = await connectV1(w, "vx");
    const s = await connectV1(w, "vy");
    assert.equal((await s.request({ op: "send", to: "vx", cmid: "1", body: { message: "seen" } })).op, "sent");
    const first = await d.msg();
    d.send({ op: "ack", up_to: first.seq });
    // A request answered after the ack means the ack was processed.
    assert.equal((await d.request({ op: "history", limit: 1 })).op, "history");
    d.kill();
    for (const i of [2, 3, 4]) {
      assert.equal((await s.request({ op: "send", to: "vx", cmid: `${i}`, body: { message: `m${i}` } })).op, "sent");
    }
    // No `since`: the device resumes from what it acknowledged.
    const again = await eventually(async () => {
      const c = await connectV1(w, "vx");
      return c;
    });
    assert.equal(again.welcome.since, first.seq);
    const got = [await again.msg(), await again.msg(), await again.msg()].map((m) => m.body.message);
    assert.deepEqual(got, ["m2", "m3", "m4"]);
    await again.expectNone((f) => f.op === "msg");
    await Promise.all([s.close(), again.close()]);
  });
});
