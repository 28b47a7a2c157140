// The push webhook against the real runtime and a local HTTP receiver
// started here: the signature verifies; no push while a device acks; one
// after the delay when it does not; a burst is one call; a 500 is retried
// with the same id; a runtime restart loses and repeats nothing; a legacy
// socket, a mute and a block each suppress it; a read (or a delete of an
// unread message) is told silently.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { connectV1, eventually, freePort, sleep, startWorker, token } from "../harness.mjs";

const SECRET = "whsec_test";

/** An HTTP receiver: keeps every call; answers each with the next of `statuses` (then 200). */
async function receiver() {
  const port = await freePort();
  const r = { calls: [], statuses: [], url: `http://127.0.0.1:${port}/hook` };
  r.server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      r.calls.push({ headers: req.headers, body, json: JSON.parse(body), at: Date.now() });
      res.writeHead(r.statuses.shift() ?? 200).end();
    });
  });
  await new Promise((ok) => r.server.listen(port, "127.0.0.1", ok));
  r.for = (user) => r.calls.filter((c) => c.json.user === user);
  return r;
}

function verify(call) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(call.headers["x-signature"] ?? "");
  assert.ok(m, `signature header: ${call.headers["x-signature"]}`);
  const want = createHmac("sha256", SECRET).update(`${m[1]}.${call.body}`).digest("hex");
  assert.equal(m[2], want, "the HMAC verifies");
  assert.ok(Math.abs(Number(m[1]) - Date.now() / 1000) < 60, "a current timestamp");
}

describe("push webhook", () => {
  let w, hook;
  before(async () => {
    hook = await receiver();
    w = await startWorker({
      bindings: { PUSH_WEBHOOK_URL: hook.url, PUSH_WEBHOOK_SECRET: SECRET, PUSH_DELAY_S: "1" },
    });
  });
  after(async () => {
    await w.close();
    hook.server.close();
  });

  const chat = (from, to, message) => w.api("/api/usr-msg", { fromUser: from, toUser: to, message });

  test("a user with no socket: one signed call at once, without the text", async () => {
    assert.equal((await chat("ps2", "ps1", "secret words")).status, 200);
    await eventually(() => hook.for("ps1").length === 1);
    const [c] = hook.for("ps1");
    verify(c);
    assert.equal(c.headers["x-webhook-attempt"], "1");
    assert.match(c.headers["x-webhook-id"], /^[0-9a-f]{28}$/);
    assert.equal(c.json.id, c.headers["x-webhook-id"]);
    assert.equal(c.json.type, "message");
    assert.equal(c.json.unread, 1);
    assert.deepEqual(c.json.conversations.map((v) => [v.peer, v.waiting]), [["ps2", 1]]);
    assert.doesNotMatch(c.body, /secret words/, "no message text without PUSH_PREVIEW_CHARS");
  });

  test("a group message is pushed to a member who did not get it, named by the group, never to its sender", async () => {
    const group = async (uid, method, path, body) =>
      w.fetch(`/v1/groups${path}`, {
        method,
        headers: { authorization: `Bearer ${token(uid)}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    assert.equal((await group("pg1", "POST", "", { group: "gpush", members: ["pg2", "pg3"] })).status, 201);
    const dev = await connectV1(w, "pg3");
    assert.equal((await group("pg1", "POST", "/gpush/messages", { message: "to the group" })).status, 200);
    // pg3 acks what it gets; pg2 has no socket at all.
    for (;;) {
      const m = await dev.msg();
      dev.send({ op: "ack", up_to: m.seq });
      if (m.body.message === "to the group") break;
    }
    await eventually(() => hook.for("pg2").length === 1, 8000);
    const [c] = hook.for("pg2");
    verify(c);
    assert.deepEqual(c.json.conversations.map((v) => [v.peer, v.waiting]), [["g:push", 1]], "the group in its namespace: no user id holds a colon");
    await sleep(2500);
    assert.equal(hook.for("pg1").length, 0, "not to its sender");
    assert.equal(hook.for("pg3").length, 0, "not to a member who acked it");
    assert.equal(hook.for("pg2").length, 1, "once");
    await dev.close();
  });

  test("no push while a device is online and acks", async () => {
    const dev = await connectV1(w, "pa1");
    await chat("pa2", "pa1", "hi");
    const m = await dev.msg();
    dev.send({ op: "ack", up_to: m.seq });
    await sleep(2500);
    assert.equal(hook.for("pa1").length, 0);
    await dev.close();
  });

  test("a push after the delay when the device does not ack; a burst is one call", async () => {
    // Ten chats reach the device within the delay and none is acked.
    const dev = await connectV1(w, "pd1");
    const started = Date.now();
    for (let i = 0; i < 10; i++) await chat("pd2", "pd1", `m${i}`);
    for (let i = 0; i < 10; i++) await dev.msg();
    await eventually(() => hook.for("pd1").length >= 1, 8000);
    await sleep(1500);
    const calls = hook.for("pd1");
    assert.equal(calls.length, 1, "one call for the burst");
    assert.ok(calls[0].at - started >= 900, `after the delay (${calls[0].at - started} ms)`);
    assert.deepEqual(calls[0].json.conversations.map((v) => [v.peer, v.waiting]), [["pd2", 10]]);
    await dev.close();
  });

  test("a legacy socket that received it needs no push", async () => {
    const legacy = await w.connect("pl1");
    await chat("pl2", "pl1", "hi");
    await legacy.next();
    await sleep(2500);
    assert.equal(hook.for("pl1").length, 0);
    await legacy.close();
  });

  test("a 500 is retried with the same id and the next attempt number", async () => {
    hook.statuses.push(500);
    await chat("pr2", "pr1", "hi");
    await eventually(() => hook.for("pr1").length === 2, 8000);
    const [a, b] = hook.for("pr1");
    assert.equal(a.headers["x-webhook-id"], b.headers["x-webhook-id"]);
    assert.deepEqual([a.headers["x-webhook-attempt"], b.headers["x-webhook-attempt"]], ["1", "2"]);
    assert.equal(a.body, b.body, "the same call");
    verify(b);
    await sleep(1500);
    assert.equal(hook.for("pr1").length, 2, "acknowledged: not again");
    const m = await w.metrics();
    assert.ok(m.push_retries >= 1 && m.pushes_sent >= 1, JSON.stringify(m));
  });

  test("mute and block suppress it", async () => {
    const dev = await connectV1(w, "pm1");
    await dev.request({ op: "mute", peer: "pm2" });
    await dev.request({ op: "block", user: "pm3" });
    await dev.close();
    await chat("pm2", "pm1", "muted");
    // A block holds back chats from sockets (the backend is never blocked).
    const blocked = await connectV1(w, "pm3");
    assert.equal((await blocked.request({ op: "send", to: "pm1", cmid: "c1", body: { message: "blocked" } })).op, "sent");
    await blocked.close();
    await sleep(2000);
    assert.equal(hook.for("pm1").length, 0, JSON.stringify(hook.for("pm1").map((c) => c.json)));
    // Anyone else still pushes.
    await chat("pm4", "pm1", "hi");
    await eventually(() => hook.for("pm1").length === 1);
    assert.deepEqual(hook.for("pm1")[0].json.conversations.map((v) => v.peer), ["pm4"]);
  });

  test("a read before the delay cancels the push; only the silent read event goes out", async () => {
    const dev = await connectV1(w, "rc1");
    await chat("rc2", "rc1", "hi");
    const m = await dev.msg();
    assert.equal((await dev.request({ op: "read", peer: "rc2", up_to: m.seq })).op, "ok");
    await sleep(2500);
    assert.deepEqual(hook.for("rc1").map((c) => c.json.type), ["read"]);
    await dev.close();
  });

  test("another 4xx drops the call at once, counted", async () => {
    const before = (await w.metrics()).pushes_dropped ?? 0;
    hook.statuses.push(410);
    await chat("dr2", "dr1", "hi");
    await eventually(() => hook.for("dr1").length === 1);
    await sleep(2000);
    assert.equal(hook.for("dr1").length, 1, "not retried");
    assert.equal((await w.metrics()).pushes_dropped, before + 1);
    // The next message is pushed as usual.
    await chat("dr2", "dr1", "again");
    await eventually(() => hook.for("dr1").length === 2);
  });

  test("a mute that ends lets pushes through again", async () => {
    const dev = await connectV1(w, "me1");
    await dev.request({ op: "mute", peer: "me2", until: Date.now() + 1500 });
    await dev.close();
    await chat("me2", "me1", "while muted");
    await sleep(2000);
    assert.equal(hook.for("me1").length, 0);
    await chat("me2", "me1", "after the mute");
    await eventually(() => hook.for("me1").length === 1);
    const [conv] = hook.for("me1")[0].json.conversations;
    assert.deepEqual([conv.newest.seq, conv.waiting], [2, 1], "the muted one is not pushed afterwards");
  });

  test("a read on a device sends a silent read event", async () => {
    await chat("rd2", "rd1", "hi");
    await eventually(() => hook.for("rd1").length === 1);
    const dev = await connectV1(w, "rd1", { since: 0 });
    const m = await dev.msg();
    assert.equal((await dev.request({ op: "read", peer: "rd2", up_to: m.seq })).op, "ok");
    await eventually(() => hook.for("rd1").length === 2);
    const read = hook.for("rd1")[1];
    verify(read);
    assert.equal(read.json.type, "read");
    assert.deepEqual(read.json.conversations, [{ peer: "rd2", unread: 0 }]);
    assert.equal(read.json.unread, 0);
    await dev.close();
  });

  test("a delete of an unread message sends the silent read event with the lower count", async () => {
    const sender = await connectV1(w, "dx2");
    const one = await sender.request({ op: "send", to: "dx1", cmid: "one", body: { message: "one" } });
    await sender.request({ op: "send", to: "dx1", cmid: "two", body: { message: "two" } });
    await eventually(() => hook.for("dx1").length >= 1);
    await sleep(300);
    const before = hook.for("dx1").length;
    assert.equal((await sender.request({ op: "delete", mid: one.mid, for: "everyone", cmid: "del" })).op, "sent");
    await eventually(() => hook.for("dx1").some((c) => c.json.type === "read"));
    const read = hook.for("dx1").find((c) => c.json.type === "read");
    verify(read);
    assert.deepEqual(read.json.conversations, [{ peer: "dx2", unread: 1 }]);
    assert.equal(read.json.unread, 1);
    assert.equal(hook.for("dx1").length, before + 1, "the delete itself is never pushed");
    await sender.close();
  });

  test("a runtime restart loses no push and repeats none that was answered 2xx", async () => {
    // The first call fails; the runtime restarts before the retry.
    hook.statuses.push(503);
    await chat("rs2", "rs1", "before the restart");
    await eventually(() => hook.for("rs1").length === 1);
    await w.restart();
    await eventually(() => hook.for("rs1").length === 2, 10_000);
    const [a, b] = hook.for("rs1");
    assert.equal(a.headers["x-webhook-id"], b.headers["x-webhook-id"], "the same call after the restart");
    assert.equal(b.headers["x-webhook-attempt"], "2");
    // Acknowledged before another restart: never sent again.
    await w.restart();
    await chat("rs3", "rs1", "after");
    await eventually(() => hook.for("rs1").length === 3);
    await sleep(1500);
    const ids = hook.for("rs1").map((c) => c.headers["x-webhook-id"]);
    assert.equal(ids.length, 3);
    assert.equal(new Set(ids).size, 2);
    assert.deepEqual(hook.for("rs1")[2].json.conversations.map((v) => v.peer), ["rs3"]);
  });
});
