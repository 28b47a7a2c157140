// Client tokens, hardening (issue 24): a far-future `exp` on every route and
// the socket's alarm (item 1), and one-time socket tickets, so that a
// long-lived token never travels in a URL (item 8): one use, also when two
// upgrades race and after the user's object restarted.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectV1, eventually, openClient, startWorker, token } from "../harness.mjs";

describe("a far-future exp (item 1)", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  // 2^53 - 1, 2^53, 2^64 - 1 (JSON.stringify writes 18446744073709552000), 1e308,
  // and 1e13 (a socket opened, but its alarm was past a JS Date's range).
  const far = [["2^53-1", 2 ** 53 - 1], ["2^53", 2 ** 53], ["2^64-1", 2 ** 64 - 1], ["1e308", 1e308], ["1e13", 1e13]];

  for (const [name, exp] of far) {
    test(`exp ${name}: /v1/history, a legacy socket and a chat.v1 socket all accept the token`, async () => {
      const uid = `far-${name.replace(/\W/g, "")}`;
      const t = token(uid, { exp });
      const r = await w.fetch("/v1/history", { headers: { authorization: `Bearer ${t}` } });
      assert.equal(r.status, 200);
      const legacy = await w.connect(uid, { tokenValue: t });
      const v1 = await connectV1(w, uid, { tokenValue: t });
      assert.equal(v1.welcome.user, uid);
      await Promise.all([legacy.close(), v1.close()]);
    });
  }

  test("exp 1e13: the socket's alarm is set and runs (the archive reaches history)", async () => {
    const t = token("far-alarm", { exp: 1e13 });
    const a = await connectV1(w, "far-alarm", { tokenValue: t });
    const sent = await a.request({ op: "send", to: "far-peer", cmid: "c1", body: { message: "to the archive" } });
    assert.equal(sent.op, "sent");
    // The archive runs from the object's alarm (ARCHIVE_DELAY_MS 50 here).
    await eventually(async () => (await w.historyRows()).some((r) => r.sender === "far-alarm"), 10000);
    assert.doesNotMatch(w.output, /alarm_not_set/);
    assert.doesNotMatch(w.output, /can't be represented/);
    await a.close();
  });
});

describe("one-time socket tickets (item 8)", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  const ticketFor = (t) => w.fetch("/v1/ws-ticket", { method: "POST", headers: { authorization: `Bearer ${t}` } });
  const ticket = async (uid) => {
    const r = await ticketFor(token(uid));
    assert.equal(r.status, 200);
    return r.json();
  };
  /** Opens a socket with `?ticket=` alone (chat.v1 unless `legacy`); resolves with its first frame. */
  const open = async (t, { legacy = false, device = "d1" } = {}) => {
    const q = new URLSearchParams(legacy ? { ticket: t } : { ticket: t, device });
    const c = await openClient(w.wsUrl(`/ws?${q}`), legacy ? undefined : ["chat.v1"]);
    return { c, first: legacy ? null : JSON.parse(await c.next()) };
  };
  const refused = async (p) => {
    const e = await p.then(() => null, (e) => e);
    assert.ok(e, "the upgrade was refused");
    return e;
  };

  test("POST /v1/ws-ticket with the bearer token answers a ticket that opens one socket, with no token in its URL", async () => {
    const { ticket: t, expires_in } = await ticket("tk1");
    assert.equal(expires_in, 30);
    assert.doesNotMatch(t, /^ey/, "not the JWT");
    const { c, first } = await open(t);
    assert.deepEqual([first.op, first.user, first.device], ["welcome", "tk1", "d1"]);
    // The same ticket again: refused, whatever the protocol.
    const again = await refused(open(t, { device: "d2" }));
    assert.equal(again.status, 401);
    assert.match(again.body, /already used/);
    assert.equal((await refused(open(t, { legacy: true }))).status, 401);
    await c.close();
  });

  test("two upgrades racing with one ticket: exactly one opens", async () => {
    const { ticket: t } = await ticket("tk2");
    const both = await Promise.allSettled([open(t, { device: "a" }), open(t, { device: "b" })]);
    const opened = both.filter((r) => r.status === "fulfilled");
    assert.equal(opened.length, 1, JSON.stringify(both.map((r) => r.status)));
    assert.equal(both.find((r) => r.status === "rejected").reason.status, 401);
    await opened[0].value.c.close();
  });

  test("a legacy socket opens with a ticket too", async () => {
    const { ticket: t } = await ticket("tk3");
    const { c } = await open(t, { legacy: true });
    const r = await w.api("/api/sys-msg", { uid: "tk3", type: "hello" });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(await c.next()).type, "hello");
    await c.close();
  });

  test("no token, a bad one, a forged or tampered ticket: 401", async () => {
    assert.equal((await w.fetch("/v1/ws-ticket", { method: "POST" })).status, 401);
    assert.equal((await ticketFor(token("tk4", { secret: "wrong" }))).status, 401);
    assert.equal((await ticketFor(token("tk4", { exp: 1 }))).status, 401);
    const { ticket: t } = await ticket("tk4");
    assert.ok(t.endsWith(".tk4"), t);
    const forged = t.replace(/\.tk4$/, ".someone-else");
    for (const bad of [forged, `${t}x`, "t1.AAAA.1.2.n.tk4", "", token("tk4")]) {
      const e = await refused(open(bad));
      assert.equal(e.status, 401, bad);
    }
    // None of that used the real ticket up.
    const { c, first } = await open(t);
    assert.equal(first.user, "tk4");
    await c.close();
  });

  test("a ticket issued before the user's object restarted is refused, never honoured twice", async () => {
    const { ticket: t } = await ticket("tk5");
    await w.restart();
    const e = await refused(open(t));
    assert.equal(e.status, 401);
    const { ticket: fresh } = await ticket("tk5");
    const { c, first } = await open(fresh);
    assert.equal(first.user, "tk5");
    await c.close();
  });
});
