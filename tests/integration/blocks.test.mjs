// Block and mute lists against the real runtime: every line of "What each
// side sees" in docs/protocol.md, the HTTP routes, the backend's moderation
// call, BLOCKS_MAX, and the lists surviving a restart.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { API_KEY, connectV1, eventually, startWorker, token } from "../harness.mjs";

describe("blocks and mutes", () => {
  let w;
  before(async () => (w = await startWorker({ bindings: { BLOCKS_MAX: "3" } })));
  after(() => w.close());

  const as = (uid, path, init = {}) =>
    w.fetch(path, { ...init, headers: { authorization: `Bearer ${token(uid)}`, ...(init.headers ?? {}) } });
  const v1History = async (uid) => (await (await as(uid, "/v1/history?limit=50")).json()).items;
  const conversations = async (uid) => (await (await as(uid, "/v1/conversations")).json()).items;
  const send = (c, to, message, cmid = message) => c.request({ op: "send", to, cmid, body: { message } });

  test("a block: ok, a blocks frame on every device, in the welcome of the next", async () => {
    const phone = await connectV1(w, "bk1", { device: "phone" });
    const laptop = await connectV1(w, "bk1", { device: "laptop" });
    assert.deepEqual(phone.welcome.blocks, { blocked: [], muted: [] });
    assert.deepEqual(await phone.request({ op: "block", user: "bk2" }), { op: "ok", re: "r1" });
    for (const d of [phone, laptop]) {
      const f = await d.take((f) => f.op === "blocks");
      assert.deepEqual(f.lists, { blocked: ["bk2"], muted: [] });
    }
    const later = await connectV1(w, "bk1", { device: "tablet" });
    assert.deepEqual(later.welcome.blocks.blocked, ["bk2"]);
    // A repeat changes nothing and is still ok; no new frame.
    assert.equal((await phone.request({ op: "block", user: "bk2" })).op, "ok");
    await laptop.expectNone((f) => f.op === "blocks", 200);
    const self = await phone.request({ op: "block", user: "bk1" });
    assert.deepEqual([self.code, self.field], ["bad_field", "user"]);
    await Promise.all([phone.close(), laptop.close(), later.close()]);
  });

  test("the blocked sender is answered as usual and keeps it; the blocker sees nothing, unread unchanged", async () => {
    const bob = await connectV1(w, "bs1");
    const mal = await connectV1(w, "bs2");
    const legacyMal = await w.connect("bs2");
    await send(mal, "bs1", "before the block");
    await bob.msg();
    const unreadBefore = (await conversations("bs1")).find((c) => c.peer === "bs2").unread;
    await bob.request({ op: "block", user: "bs2" });

    const sent = await send(mal, "bs1", "while blocked");
    assert.equal(sent.op, "sent", "v1: sent, as for anyone");
    legacyMal.send({ fromUser: "bs2", toUser: "bs1", message: "legacy while blocked" });
    assert.equal(await legacyMal.next(), "ok", "legacy: ok, as for anyone");
    await bob.expectNone((f) => f.op === "msg", 300);

    // The sender's own log and history have both.
    const own = (await v1History("bs2")).map((m) => m.body.message);
    assert.ok(own.includes("while blocked") && own.includes("legacy while blocked"), JSON.stringify(own));
    const legacyOwn = await (await w.history("bs2")).json();
    assert.ok(legacyOwn.usr.some((m) => m.message === "while blocked"));
    // The blocker's have neither, once archived to D1 too.
    await eventually(async () => (await w.historyRows("id IS NOT NULL")).some((r) => r.body.includes("while blocked")));
    const theirs = (await v1History("bs1")).map((m) => m.body.message);
    assert.deepEqual(theirs, ["before the block"]);
    const legacyTheirs = await (await w.history("bs1")).json();
    assert.deepEqual(legacyTheirs.usr.map((m) => m.message), ["before the block"]);
    assert.equal((await conversations("bs1")).find((c) => c.peer === "bs2").unread, unreadBefore, "unread unchanged");
    assert.ok((await w.metrics()).dropped_blocked >= 2);
    await Promise.all([bob.close(), mal.close(), legacyMal.close()]);
  });

  test("receipts and typing are suppressed both ways", async () => {
    const bob = await connectV1(w, "rt1");
    const mal = await connectV1(w, "rt2");
    await send(bob, "rt2", "from bob");
    const toMal = await mal.msg();
    await send(mal, "rt1", "from mal");
    const toBob = await bob.msg();
    await bob.request({ op: "block", user: "rt2" });
    // Bob acks and reads mal's chat; mal typing to bob, bob typing to mal.
    bob.send({ op: "ack", up_to: toBob.seq });
    await bob.request({ op: "read", peer: "rt2", up_to: toBob.seq });
    mal.send({ op: "ack", up_to: toMal.seq });
    await mal.request({ op: "read", peer: "rt1", up_to: toMal.seq });
    mal.send({ op: "typing", to: "rt1", active: true });
    bob.send({ op: "typing", to: "rt2", active: true });
    await mal.expectNone((f) => f.op === "receipt" || f.op === "typing", 400);
    await bob.expectNone((f) => f.op === "receipt" || f.op === "typing", 100);
    await Promise.all([bob.close(), mal.close()]);
  });

  test("the blocker cannot send to whom they blocked: error blocked, on both protocols", async () => {
    const bob = await connectV1(w, "bb1");
    const legacyBob = await w.connect("bb1");
    const mal = await connectV1(w, "bb2");
    await bob.request({ op: "block", user: "bb2" });
    const refused = await send(bob, "bb2", "hi");
    assert.deepEqual([refused.op, refused.code, refused.retry], ["error", "blocked", false]);
    legacyBob.send({ fromUser: "bb1", toUser: "bb2", message: "hi" });
    assert.equal(await legacyBob.next(), "error blocked");
    await mal.expectNone((f) => f.op === "msg", 200);
    assert.equal((await v1History("bb1")).length, 0, "nothing stored");
    await Promise.all([bob.close(), legacyBob.close(), mal.close()]);
  });

  test("system and backend messages are never blocked", async () => {
    const bob = await connectV1(w, "sy1");
    await bob.request({ op: "block", user: "sy2" });
    assert.equal((await w.api("/api/sys-msg", { uid: "sy1", type: "notice" })).status, 200);
    assert.equal((await bob.msg()).kind, "sys");
    assert.equal((await w.api("/api/usr-msg", { fromUser: "sy2", toUser: "sy1", message: "from the backend" })).status, 200);
    assert.equal((await bob.msg()).body.message, "from the backend");
    await bob.close();
  });

  test("unblocking delivers nothing sent meanwhile; what follows arrives", async () => {
    const bob = await connectV1(w, "ub1");
    const mal = await connectV1(w, "ub2");
    await bob.request({ op: "block", user: "ub2" });
    await send(mal, "ub1", "meanwhile");
    await bob.request({ op: "unblock", user: "ub2" });
    assert.deepEqual((await bob.take((f) => f.op === "blocks" && f.lists.blocked.length === 0)).lists.blocked, []);
    await send(mal, "ub1", "after");
    assert.equal((await bob.msg()).body.message, "after");
    await bob.expectNone((f) => f.op === "msg", 200);
    const again = await connectV1(w, "ub1", { device: "fresh", since: 0 });
    const replayed = [];
    for (;;) {
      const f = await again.take((f) => f.op === "msg", 500).catch(() => null);
      if (!f) break;
      replayed.push(f.body.message);
    }
    assert.deepEqual(replayed, ["after"], "not in the log either");
    await Promise.all([bob.close(), mal.close(), again.close()]);
  });

  test("HTTP: GET, PUT, DELETE of blocks and mutes, with the client's token", async () => {
    const dev = await connectV1(w, "hb1");
    assert.equal((await w.fetch("/v1/blocks")).status, 401);
    assert.equal((await as("hb1", "/v1/blocks/hb2", { method: "PUT" })).status, 200);
    assert.deepEqual(await (await as("hb1", "/v1/blocks/hb2")).json(), { user: "hb2", blocked: true });
    assert.deepEqual((await dev.take((f) => f.op === "blocks")).lists.blocked, ["hb2"], "devices learn HTTP changes too");
    const until = Date.now() + 3_600_000;
    const put = await as("hb1", "/v1/mutes/hb3", { method: "PUT", body: JSON.stringify({ until }) });
    assert.deepEqual(await put.json(), { peer: "hb3", muted: true, until });
    assert.equal((await as("hb1", "/v1/mutes/hb4", { method: "PUT" })).status, 200);
    assert.deepEqual(await (await as("hb1", "/v1/blocks")).json(), {
      blocked: ["hb2"],
      muted: [{ peer: "hb3", until }, { peer: "hb4", until: null }],
    });
    assert.deepEqual(await (await as("hb1", "/v1/blocks/hb2", { method: "DELETE" })).json(), { user: "hb2", blocked: false });
    assert.deepEqual(await (await as("hb1", "/v1/mutes/hb4", { method: "DELETE" })).json(), { peer: "hb4", muted: false, until: null });
    // A mute that already ended is no mute.
    const past = await as("hb1", "/v1/mutes/hb5", { method: "PUT", body: JSON.stringify({ until: 1 }) });
    assert.deepEqual(await past.json(), { peer: "hb5", muted: false, until: null });
    // Bad input: a clear error, nothing changed.
    const bad = await as("hb1", "/v1/mutes/hb6", { method: "PUT", body: JSON.stringify({ until: "soon" }) });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).field, "until");
    assert.equal((await as("hb1", "/v1/blocks/a%20b", { method: "PUT" })).status, 400);
    assert.equal((await as("hb1", "/v1/blocks/hb2", { method: "POST" })).status, 404);
    assert.equal((await as("hb1", "/v1/blocks/hb1", { method: "PUT" })).status, 400, "not yourself");
    assert.deepEqual(await (await as("hb1", "/v1/blocks")).json(), { blocked: [], muted: [{ peer: "hb3", until }] });
    await dev.close();
  });

  test("the backend blocks for moderation with the API key", async () => {
    const bob = await connectV1(w, "mo1");
    const body = { user: "mo1", peer: "mo2", blocked: true };
    assert.equal((await w.api("/api/blocks", body, null)).status, 401);
    assert.equal((await w.api("/api/blocks", body, "wrong")).status, 401);
    const r = await w.api("/api/blocks", body);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { user: "mo1", peer: "mo2", blocked: true });
    assert.deepEqual((await bob.take((f) => f.op === "blocks")).lists.blocked, ["mo2"]);
    const bad = await w.api("/api/blocks", { user: "mo1", peer: "mo2" });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).field, "blocked");
    await bob.close();
  });

  test("BLOCKS_MAX: the next one is refused, said so, and counted", async () => {
    const bob = await connectV1(w, "mx1");
    for (const u of ["mx2", "mx3", "mx4"]) assert.equal((await bob.request({ op: "block", user: u })).op, "ok");
    const before = (await w.metrics()).refused_blocks ?? 0;
    const refused = await bob.request({ op: "mute", peer: "mx5" });
    assert.deepEqual([refused.op, refused.code], ["error", "blocks_full"]);
    const http = await as("mx1", "/v1/blocks/mx6", { method: "PUT" });
    assert.equal(http.status, 409);
    assert.match((await http.json()).error, /BLOCKS_MAX/);
    assert.equal((await w.metrics()).refused_blocks, before + 2);
    // Changing a listed peer still works.
    assert.equal((await bob.request({ op: "mute", peer: "mx2" })).op, "ok");
    await bob.close();
  });

  test("the lists survive a runtime restart and still hold messages back", async () => {
    const bob = await connectV1(w, "rs1");
    await bob.request({ op: "block", user: "rs2" });
    await bob.request({ op: "mute", peer: "rs3", until: Date.now() + 3_600_000 });
    await bob.close();
    await w.restart();
    const again = await connectV1(w, "rs1");
    assert.deepEqual(again.welcome.blocks.blocked, ["rs2"]);
    assert.equal(again.welcome.blocks.muted[0].peer, "rs3");
    const mal = await connectV1(w, "rs2");
    assert.equal((await send(mal, "rs1", "after the restart")).op, "sent");
    // A mute holds nothing back: it only stops pushes.
    const muted = await connectV1(w, "rs3");
    await send(muted, "rs1", "muted peer");
    assert.equal((await again.msg()).body.message, "muted peer");
    await again.expectNone((f) => f.op === "msg", 200);
    await Promise.all([again.close(), mal.close(), muted.close()]);
  });
});
