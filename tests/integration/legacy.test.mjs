// The legacy WebSocket protocol, byte for byte as the existing front end
// speaks it: heartbeat, chat, ok / error strings, delivered JSON, fan-out,
// and the offline queue.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startWorker } from "../harness.mjs";

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

describe("legacy protocol", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("heartbeat is answered with heartbeat", async () => {
    const a = await w.connect("100");
    for (let i = 0; i < 3; i++) {
      a.send("heartbeat");
      assert.equal(await a.next(), "heartbeat");
    }
    await a.close();
  });

  test("a chat: ok to the sender, the JSON frame to the receiver", async () => {
    const a = await w.connect("1");
    const b = await w.connect("2");
    a.send({ fromUser: 1, toUser: 2, message: "hello", song: { id: 9 }, flag: true });
    assert.equal(await a.next(), "ok");
    const text = await b.next();
    const m = JSON.parse(text);
    assert.deepEqual(Object.keys(m).sort(), ["flag", "fromUser", "id", "message", "song", "time", "toUser"]);
    assert.equal(m.fromUser, 1, "digit ids are JSON numbers");
    assert.equal(m.toUser, 2);
    assert.equal(m.message, "hello");
    assert.deepEqual(m.song, { id: 9 });
    assert.equal(m.flag, true);
    assert.match(m.time, RFC3339);
    assert.equal(typeof m.id, "string");
    assert.ok(!("type" in m));
    await a.expectSilence(100);
    await Promise.all([a.close(), b.close()]);
  });

  test("string ids stay strings; ids sent as strings are accepted", async () => {
    const a = await w.connect("alice");
    const b = await w.connect("007");
    a.send({ fromUser: "alice", toUser: "007", message: "x" });
    assert.equal(await a.next(), "ok");
    const m = await b.nextJson();
    assert.equal(m.fromUser, "alice");
    assert.equal(m.toUser, "007", "a leading zero keeps the id a string");
    const c = await w.connect("3");
    c.send({ fromUser: "3", toUser: "007", message: "y" });
    assert.equal(await c.next(), "ok");
    assert.equal((await b.nextJson()).fromUser, 3);
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  test("a client cannot forge a system message through a chat", async () => {
    const a = await w.connect("11");
    const b = await w.connect("12");
    a.send({ fromUser: 11, toUser: 12, message: "m", type: "system" });
    assert.equal(await a.next(), "ok");
    assert.ok(!("type" in (await b.nextJson())));
    await Promise.all([a.close(), b.close()]);
  });

  test("a spoofed fromUser is refused, nothing is delivered, the socket stays usable", async () => {
    const a = await w.connect("21");
    const b = await w.connect("22");
    a.send({ fromUser: 23, toUser: 22, message: "as someone else" });
    assert.equal(await a.next(), "error forbidden");
    await b.expectSilence(200);
    a.send({ fromUser: 21, toUser: 22, message: "as me" });
    assert.equal(await a.next(), "ok");
    assert.equal((await b.nextJson()).message, "as me");
    await Promise.all([a.close(), b.close()]);
  });

  test("malformed frames get their error string and the socket stays open", async () => {
    const a = await w.connect("31");
    const b = await w.connect("32");
    const cases = [
      ["not json", "error format"],
      ["[1]", "error format"],
      ['"str"', "error format"],
      ['{"toUser":32,"message":"m"}', "error fromUser"],
      ['{"fromUser":31,"message":"m"}', "error toUser"],
      ['{"fromUser":31,"toUser":"a b","message":"m"}', "error toUser"],
      ['{"fromUser":31,"toUser":32,"message":""}', "error message"],
      ['{"fromUser":31,"toUser":32,"message":7}', "error message"],
    ];
    for (const [frame, want] of cases) {
      a.send(frame);
      assert.equal(await a.next(), want, frame);
    }
    a.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    assert.equal(await a.next(), "error format");
    await b.expectSilence(100);
    a.send({ fromUser: 31, toUser: 32, message: "still works" });
    assert.equal(await a.next(), "ok");
    assert.equal((await b.nextJson()).message, "still works");
    await Promise.all([a.close(), b.close()]);
  });

  test("a frame over 64 KiB is refused with an error string", async () => {
    const a = await w.connect("41");
    const b = await w.connect("42");
    const big = JSON.stringify({ fromUser: 41, toUser: 42, message: "x".repeat(64 * 1024) });
    a.send(big);
    assert.equal(await a.next(), "error size");
    await b.expectSilence(100);
    const fits = JSON.stringify({ fromUser: 41, toUser: 42, message: "y".repeat(64 * 1024 - 60) });
    assert.ok(fits.length <= 64 * 1024);
    a.send(fits);
    assert.equal(await a.next(), "ok");
    assert.equal((await b.nextJson()).message.length, 64 * 1024 - 60);
    await Promise.all([a.close(), b.close()]);
  });

  test("every socket of a user gets every message", async () => {
    const a = await w.connect("51");
    const tabs = await Promise.all([w.connect("52"), w.connect("52"), w.connect("52")]);
    a.send({ fromUser: 51, toUser: 52, message: "to all tabs" });
    assert.equal(await a.next(), "ok");
    for (const t of tabs) assert.equal((await t.nextJson()).message, "to all tabs");
    await Promise.all([a.close(), ...tabs.map((t) => t.close())]);
  });

  test("a chat to oneself reaches one's own sockets", async () => {
    const a = await w.connect("55");
    a.send({ fromUser: 55, toUser: 55, message: "note to self" });
    const got = [await a.next(), await a.next()];
    assert.equal(got.filter((f) => f === "ok").length, 1, "one ok");
    assert.equal(JSON.parse(got.find((f) => f !== "ok")).message, "note to self");
    await a.close();
  });

  test("messages from one socket arrive in the order sent", async () => {
    const a = await w.connect("61");
    const b = await w.connect("62");
    const n = 200;
    for (let i = 0; i < n; i++) a.send({ fromUser: 61, toUser: 62, message: `m${i}` });
    for (let i = 0; i < n; i++) assert.equal(await a.next(), "ok");
    for (let i = 0; i < n; i++) assert.equal((await b.nextJson()).message, `m${i}`);
    await Promise.all([a.close(), b.close()]);
  });
});

describe("offline queue", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("chat, system and backend messages queue in one FIFO, replayed before live ones", async () => {
    const a = await w.connect("71");
    const c = await w.connect("73");
    a.send({ fromUser: 71, toUser: 72, message: "first" });
    assert.equal(await a.next(), "ok");
    let r = await w.api("/api/sys-msg", { uid: 72, type: "like", contentId: 5 });
    assert.equal(r.status, 200);
    r = await w.api("/api/usr-msg", { fromUser: 73, toUser: 72, message: "third" });
    assert.equal(r.status, 200);
    c.send({ fromUser: 73, toUser: 72, message: "fourth" });
    assert.equal(await c.next(), "ok");
    r = await w.api("/api/sys-msg", [{ uid: 72, type: "a" }, { uid: 72, type: "b" }]);
    assert.equal(r.status, 200);

    const b = await w.connect("72");
    // A live message sent right after connecting must come after the queue.
    a.send({ fromUser: 71, toUser: 72, message: "live" });
    const got = [];
    for (let i = 0; i < 7; i++) got.push(await b.nextJson());
    assert.deepEqual(
      got.map((m) => m.message ?? m.type),
      ["first", "like", "third", "fourth", "a", "b", "live"],
    );
    assert.equal(got[1].contentId, 5);
    assert.equal(await a.next(), "ok");
    // Delivered means dequeued: a second connection gets nothing old.
    const b2 = await w.connect("72");
    await b2.expectSilence(200);
    await Promise.all([a.close(), b.close(), b2.close(), c.close()]);
  });

  test("a socket that vanishes without a close frame leaves later messages queued", async () => {
    const a = await w.connect("81");
    const b = await w.connect("82");
    b.kill();
    await new Promise((r) => setTimeout(r, 200));
    a.send({ fromUser: 81, toUser: 82, message: "after the drop" });
    assert.equal(await a.next(), "ok");
    const b2 = await w.connect("82");
    assert.equal((await b2.nextJson()).message, "after the drop");
    await Promise.all([a.close(), b2.close()]);
  });

  test("a queued message survives a runtime restart", async () => {
    const a = await w.connect("91");
    a.send({ fromUser: 91, toUser: 92, message: "before restart" });
    assert.equal(await a.next(), "ok");
    const r = await w.api("/api/sys-msg", { uid: "92", type: "after-ok" });
    assert.equal(r.status, 200);
    await w.restart();
    const b = await w.connect("92");
    assert.equal((await b.nextJson()).message, "before restart");
    assert.equal((await b.nextJson()).type, "after-ok");
    // Sequence numbers continue: new messages still flow after the restart.
    const a2 = await w.connect("91");
    a2.send({ fromUser: 91, toUser: 92, message: "after restart" });
    assert.equal(await a2.next(), "ok");
    assert.equal((await b.nextJson()).message, "after restart");
    await Promise.all([a2.close(), b.close()]);
  });
});
