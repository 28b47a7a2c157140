// Hot recipients (issue 25 part 2, docs/scale.md "A hot recipient"): past
// INBOX_HOT_RATE a user's senders go through inbox shards, which hand the
// user's object batches. What must hold: every message acknowledged
// (`sent`) is in the recipient's log once, each sender's in order, with
// seqs the user's object gave; and a runtime restart while a shard holds a
// batch loses nothing acknowledged and repeats nothing.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectV1, eventually, resilient, sleep, startWorker, token } from "../harness.mjs";

/** A v1 socket that reopens after a restart; replies go to `onReply`. */
function sender(w, uid, onReply) {
  return resilient(w, () => `/ws?token=${token(uid)}&device=s`, ["chat.v1"], (t) => {
    if (t !== "heartbeat") onReply(JSON.parse(t));
  });
}

/** Sends `texts` in order, each until it is answered `sent` (same cmid on every try). */
async function sendAll(w, uid, to, texts, { onSent, timeoutMs = 5000 } = {}) {
  let waiting = null;
  const sock = sender(w, uid, (f) => f.re !== undefined && waiting?.(f));
  for (const [i, text] of texts.entries()) {
    for (let attempt = 0; ; attempt++) {
      if (!sock.up) await sock.open();
      const answer = await new Promise((resolve) => {
        waiting = resolve;
        sock.ws.once("close", () => resolve({ op: "closed" }));
        setTimeout(() => resolve({ op: "timeout" }), timeoutMs);
        sock.ws.send(JSON.stringify({ op: "send", id: `${i}.${attempt}`, to, cmid: `c-${text}`, body: { message: text } }));
      });
      if (answer.op === "sent") break;
      if (answer.op === "error" && !answer.retry) throw new Error(`refused: ${JSON.stringify(answer)}`);
      await sleep(answer.retry_after_ms ?? 50);
    }
    onSent?.(text);
  }
  sock.ws?.close();
}

/** The recipient's whole log, replayed from seq 0. */
async function logOf(w, uid, count) {
  const c = await connectV1(w, uid, { device: "check", since: 0 });
  const got = [];
  while (got.length < count) got.push(await c.msg(10000));
  await c.expectNone((f) => f.op === "msg", 300);
  await c.close();
  return got;
}

/** Contiguous seqs from 1, every text once, each sender's in the order sent. */
function checkLog(got, bySender) {
  assert.deepEqual(got.map((m) => m.seq), got.map((_, i) => i + 1), "contiguous seqs from the user's object");
  const texts = got.map((m) => m.body.message);
  assert.equal(new Set(texts).size, texts.length, "no message twice");
  for (const [s, sent] of Object.entries(bySender)) {
    assert.deepEqual(texts.filter((t) => t.startsWith(`${s}:`)), sent, `${s}'s messages, once each, in order`);
  }
}

describe("inbox shards", () => {
  let w;
  // INBOX_HOT_RATE 1: hot from the first delivery of a second sender, and
  // never cold again (under a quarter of 1 is none), so which path each
  // send takes is certain; src/fanin.rs tests the meter's windows.
  before(async () => (w = await startWorker({ bindings: { INBOX_HOT_RATE: "1", INBOX_SHARDS: "4", INBOX_FLUSH_MS: "20" } })));
  after(() => w.close());

  test("a hot user's 30 senders go through shards: the user's object sees batches; every message once, in order", async () => {
    const senders = Array.from({ length: 30 }, (_, i) => `fan${i}`);
    const texts = (s, from, n) => Array.from({ length: n }, (_, i) => `${s}:${from + i}`);
    // Two senders make the user hot; then each sender's first message goes
    // straight to the user's object, whose answer says so.
    for (const s of ["w1", "w2"]) await sendAll(w, s, "star", [`${s}:0`]);
    await Promise.all(senders.map((s) => sendAll(w, s, "star", texts(s, 0, 1))));
    const before = await w.metrics();
    assert.equal(before.inbox_hops, 0);
    await Promise.all(senders.map((s) => sendAll(w, s, "star", texts(s, 1, 10))));
    const m = await w.metrics();
    const delta = (name) => (m[name] ?? 0) - (before[name] ?? 0);
    const messages = delta("messages_stored");
    assert.equal(messages, 300);
    assert.equal(delta("inbox_hops"), 300, "every delivery went through a shard");
    assert.equal(delta("deliver_hops"), 0, "none went straight to the user's object");
    const batches = delta("inbox_batches");
    assert.ok(batches > 0 && batches < messages / 2, `batches carry several deliveries (${batches} for ${messages})`);
    console.log(`inbox shards: ${messages} messages, ${batches} batches reached the user's object (${(batches / messages).toFixed(3)} per message)`);
    const got = await logOf(w, "star", 332);
    checkLog(got, Object.fromEntries(senders.map((s) => [s, texts(s, 0, 11)])));
  });
});

describe("inbox shards under faults", () => {
  let w;
  // One shard, which starts a batch at most every 10 s: after a first batch,
  // the next deliveries wait there while the runtime restarts.
  before(async () => (w = await startWorker({ bindings: { INBOX_HOT_RATE: "1", INBOX_SHARDS: "1", INBOX_FLUSH_MS: "10000" } })));
  after(() => w.close());

  test("a restart while a shard holds a batch: nothing was acknowledged early; the retries land once, in order", async () => {
    const senders = ["ev1", "ev2", "ev3"];
    const acked = Object.fromEntries(senders.map((s) => [s, []]));
    const onSent = (s) => (t) => acked[s].push(t);
    // Two senders make the user hot; then three go direct, each answered "hot".
    for (const s of ["w1", "w2"]) await sendAll(w, s, "held", [`${s}:0`]);
    await Promise.all(senders.map((s) => sendAll(w, s, "held", [`${s}:0`], { onSent: onSent(s) })));
    assert.equal((await w.metrics()).inbox_hops, 0, "no shard used yet");
    // The shard's first batch goes at once...
    await sendAll(w, "ev1", "held", ["ev1:1"], { onSent: onSent("ev1") });
    assert.equal((await w.metrics()).inbox_batches, 1);
    // ...and the next deliveries wait in it.
    const next = { ev1: ["ev1:2"], ev2: ["ev2:1"], ev3: ["ev3:1"] };
    const sending = senders.map((s) => sendAll(w, s, "held", next[s], { onSent: onSent(s), timeoutMs: 15000 }));
    await eventually(async () => (await w.metrics()).inbox_hops >= 4, 8000);
    assert.equal((await w.metrics()).inbox_batches, 1, "the shard holds the deliveries");
    assert.deepEqual(acked, { ev1: ["ev1:0", "ev1:1"], ev2: ["ev2:0"], ev3: ["ev3:0"] }, "nothing held is acknowledged");
    // The runtime goes away with the batch; the senders reconnect and send again.
    await w.restart();
    await Promise.all(sending);
    assert.deepEqual(acked, { ev1: ["ev1:0", "ev1:1", "ev1:2"], ev2: ["ev2:0", "ev2:1"], ev3: ["ev3:0", "ev3:1"] });
    const got = await logOf(w, "held", 9);
    checkLog(got, acked);
  });
});

describe("inbox shards under restarts", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { INBOX_HOT_RATE: "3", INBOX_SHARDS: "2", INBOX_FLUSH_MS: "5" } })));
  after(() => w.close());

  test("3 restarts while 4 senders go through shards (batches cut short at the shard or the user's object): every message once, in order", async () => {
    const senders = ["rs1", "rs2", "rs3", "rs4"];
    const N = 25;
    const acked = Object.fromEntries(senders.map((s) => [s, []]));
    const before = await w.metrics();
    const sending = senders.map((s) =>
      sendAll(w, s, "busy", Array.from({ length: N }, (_, i) => `${s}:${i}`), { onSent: (t) => acked[s].push(t) }),
    );
    // The first restart comes once shards carry traffic.
    await eventually(async () => (await w.metrics()).inbox_batches - (before.inbox_batches ?? 0) > 0, 10000);
    for (let r = 0; r < 3; r++) {
      await w.restart();
      await sleep(300);
    }
    await Promise.all(sending);
    const got = await logOf(w, "busy", senders.length * N);
    checkLog(got, acked);
  });
});
