// Groups against the real runtime: a group's object stores each message
// once and fans it out to every member's log, exactly once and in
// group_seq order, across runtime restarts, membership changes and
// retried sends; non-members can neither send nor read; the size cap holds.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { callJson, connectV1, eventually, sleep, startWorker, token } from "../harness.mjs";

/** A group call as `uid` (HTTP, `/v1/groups…`); resolves with status and JSON. */
const call = (w, uid, method, path, body) => callJson(w, uid, method, `/v1/groups${path}`, body);

/** The same through the backend API. */
const api = (w, method, path, body) => callJson(w, null, method, `/api/groups${path}`, body);

/** A v1 device that collects its group entries in log order and acks them. */
async function member(w, uid, since = 0) {
  const c = await connectV1(w, uid, { device: "d", since });
  const m = { uid, c, entries: [], seqs: [] };
  const pump = async () => {
    for (;;) {
      let f;
      try {
        f = await c.msg(500);
      } catch {
        // Nothing for a while: go on waiting while the socket is open.
        if (c.ws.readyState > 1) return;
        continue;
      }
      m.seqs.push(f.seq);
      if (f.kind === "group") m.entries.push(f.body);
      c.send({ op: "ack", up_to: f.seq });
    }
  };
  m.done = pump();
  return m;
}

/** What a member's entries of `group` say, in order: messages by text, changes by name. */
const told = (m, group) =>
  m.entries.filter((b) => b.group === wire(group)).map((b) => (b.type === "group" ? `${b.change}:${b.user}` : b.message));

const seqsOf = (m, group) => m.entries.filter((b) => b.group === wire(group)).map((b) => b.group_seq);

/** A group id as the server writes it (`gteam` → `g:team`): these tests name groups in the older form, which it still takes. */
const wire = (g) => (g.startsWith("g:") ? g : `g:${g.slice(1)}`);

describe("groups", () => {
  let w;
  before(async () => {
    w = await startWorker();
  });
  after(() => w.close());

  test("every member gets every message once, in group_seq order; sent means stored", async () => {
    const [a, b, c] = [await member(w, "ga1"), await member(w, "gb1"), await member(w, "gc1")];
    const made = await call(w, "ga1", "POST", "", { group: "gteam1", members: ["gb1", "gc1"] });
    assert.equal(made.status, 201);
    assert.deepEqual(made.body, { group: "g:team1", group_seq: 1 });
    for (let i = 0; i < 5; i++) {
      const sent = await call(w, "ga1", "POST", "/gteam1/messages", { message: `m${i}`, extra: i });
      assert.equal(sent.status, 200);
      assert.equal(sent.body.group_seq, i + 2);
      assert.equal(sent.body.duplicate, false);
    }
    const want = ["created:ga1", "m0", "m1", "m2", "m3", "m4"];
    for (const m of [a, b, c]) {
      await eventually(() => told(m, "gteam1").length >= want.length, 10_000);
      await sleep(100);
      assert.deepEqual(told(m, "gteam1"), want, m.uid);
      assert.deepEqual(seqsOf(m, "gteam1"), [1, 2, 3, 4, 5, 6], m.uid);
    }
    const msg = b.entries.find((e) => e.message === "m3");
    assert.equal(msg.fromUser, "ga1");
    assert.equal(msg.extra, 3);
    assert.match(msg.id, /^[0-9a-f]{28}$/);
    // The group's history: newest first, paged.
    const res = await w.fetch("/v1/history?group=gteam1&limit=4", { headers: { authorization: `Bearer ${token("gc1")}` } });
    const page = await res.json();
    assert.deepEqual(page.items.map((i) => i.group_seq), [6, 5, 4, 3]);
    assert.equal(page.next, 3);
    assert.equal(page.items[0].body.message, "m4");
    for (const m of [a, b, c]) m.c.close();
  });

  test("a retried send (same cmid) is stored once", async () => {
    const b = await member(w, "gb2");
    assert.equal((await call(w, "ga2", "POST", "", { group: "gdup", members: ["gb2"] })).status, 201);
    const one = await call(w, "ga2", "POST", "/gdup/messages", { message: "once", cmid: "c-1" });
    const two = await call(w, "ga2", "POST", "/gdup/messages", { message: "once", cmid: "c-1" });
    assert.equal(two.status, 200);
    assert.equal(two.body.duplicate, true);
    assert.equal(two.body.id, one.body.id);
    assert.equal(two.body.group_seq, one.body.group_seq);
    await call(w, "ga2", "POST", "/gdup/messages", { message: "after" });
    await eventually(() => told(b, "gdup").includes("after"), 10_000);
    assert.deepEqual(told(b, "gdup"), ["created:ga2", "once", "after"]);
    b.c.close();
  });

  test("membership boundaries: a removed member gets nothing after, a new one nothing before", async () => {
    const [b, c, d] = [await member(w, "gb3"), await member(w, "gc3"), await member(w, "gd3")];
    assert.equal((await call(w, "ga3", "POST", "", { group: "gmem", members: ["gb3", "gc3"] })).status, 201);
    await call(w, "ga3", "POST", "/gmem/messages", { message: "one" });
    assert.equal((await call(w, "ga3", "POST", "/gmem/members", { user: "gd3" })).status, 200);
    await call(w, "ga3", "POST", "/gmem/messages", { message: "two" });
    assert.equal((await call(w, "ga3", "DELETE", "/gmem/members/gb3")).status, 200);
    await call(w, "ga3", "POST", "/gmem/messages", { message: "three" });
    assert.equal((await call(w, "gc3", "DELETE", "/gmem/members/gc3")).status, 200, "anyone may leave");
    await call(w, "ga3", "POST", "/gmem/messages", { message: "four" });
    await eventually(() => told(d, "gmem").includes("four"), 10_000);
    await sleep(200);
    assert.deepEqual(told(b, "gmem"), ["created:ga3", "one", "added:gd3", "two", "removed:gb3"]);
    assert.deepEqual(told(c, "gmem"), ["created:ga3", "one", "added:gd3", "two", "removed:gb3", "three", "left:gc3"]);
    assert.deepEqual(told(d, "gmem"), ["added:gd3", "two", "removed:gb3", "three", "left:gc3", "four"]);
    // History from the join on, and none for a former member.
    const page = await (await w.fetch("/v1/history?group=gmem", { headers: { authorization: `Bearer ${token("gd3")}` } })).json();
    assert.deepEqual(page.items.map((i) => i.group_seq).reverse(), [3, 4, 5, 6, 7, 8]);
    const former = await w.fetch("/v1/history?group=gmem", { headers: { authorization: `Bearer ${token("gb3")}` } });
    assert.equal(former.status, 403);
    assert.equal((await call(w, "gb3", "POST", "/gmem/messages", { message: "sneak" })).status, 403);
    // Only admins add or remove; the owner leaves only after handing over.
    assert.equal((await call(w, "gd3", "POST", "/gmem/members", { user: "gx3" })).body.code, "not_allowed");
    assert.equal((await call(w, "gd3", "DELETE", "/gmem/members/ga3")).status, 403);
    const owner = await call(w, "ga3", "DELETE", "/gmem/members/ga3");
    assert.equal(owner.status, 409);
    assert.equal(owner.body.code, "owner_must_hand_over");
    assert.equal((await call(w, "ga3", "PUT", "/gmem/owner", { user: "gd3" })).status, 200);
    assert.equal((await call(w, "ga3", "DELETE", "/gmem/members/ga3")).status, 200);
    const info = await call(w, "gd3", "GET", "/gmem");
    assert.deepEqual(info.body.members.map((m) => [m.user, m.role]), [["gd3", "owner"]]);
    for (const m of [b, c, d]) m.c.close();
  });

  test("a non-member can neither send nor read, and bad input changes nothing", async () => {
    assert.equal((await call(w, "ga4", "POST", "", { group: "gpriv", members: ["gb4"] })).status, 201);
    const send = await call(w, "ge4", "POST", "/gpriv/messages", { message: "hi" });
    assert.equal(send.status, 403);
    assert.equal(send.body.code, "not_member");
    assert.equal((await call(w, "ge4", "GET", "/gpriv")).status, 403);
    assert.equal((await w.fetch("/v1/history?group=gpriv", { headers: { authorization: `Bearer ${token("ge4")}` } })).status, 403);
    assert.equal((await call(w, "ge4", "GET", "/gnone")).status, 404);
    assert.equal((await call(w, "ga4", "POST", "/gpriv/messages", { message: "" })).status, 400);
    assert.equal((await call(w, "ga4", "POST", "", { group: "gpriv", members: [] })).body.code, "group_exists");
    assert.equal((await call(w, "ga4", "POST", "", { group: "NOT A GROUP" })).status, 400);
    const res = await w.fetch("/v1/groups", { method: "POST", body: "{}" });
    assert.equal(res.status, 401);
    assert.equal((await call(w, "ga4", "GET", "/gpriv")).body.head, 1, "nothing was stored");
  });

  test("read by N of M, and typing reaches the members online", async () => {
    const [a, b] = [await member(w, "ga5"), await member(w, "gb5")];
    assert.equal((await call(w, "ga5", "POST", "", { group: "gread", members: ["gb5", "gc5"] })).status, 201);
    const sent = await call(w, "ga5", "POST", "/gread/messages", { message: "read me" });
    const seq = sent.body.group_seq;
    assert.deepEqual((await call(w, "ga5", "GET", `/gread/messages/${seq}/read`)).body, { group_seq: seq, read: 0, of: 2 });
    assert.deepEqual((await call(w, "gb5", "POST", "/gread/read", { up_to: seq })).body, { read: seq });
    assert.deepEqual((await call(w, "ga5", "GET", `/gread/messages/${seq}/read`)).body, { group_seq: seq, read: 1, of: 2 });
    assert.equal((await call(w, "gb5", "POST", "/gread/typing", { typing: true })).status, 204);
    const typing = await a.c.take((f) => f.op === "typing");
    assert.deepEqual(typing, { op: "typing", from: "gb5", group: "g:read", active: true });
    await b.c.expectNone((f) => f.op === "typing");
    a.c.close();
    b.c.close();
  });

  test("the backend creates groups, adds and removes members, and posts as a user", async () => {
    const b = await member(w, "gb6");
    assert.equal((await api(w, "POST", "", { group: "gapi", owner: "ga6", members: [] })).status, 201);
    assert.equal((await api(w, "POST", "/gapi/members", { user: "gb6" })).status, 200);
    const post = await api(w, "POST", "/gapi/messages", { fromUser: "ga6", message: "from the backend" });
    assert.equal(post.status, 200);
    assert.equal((await api(w, "DELETE", "/gapi/members/gb6")).status, 200);
    await eventually(() => told(b, "gapi").includes("removed:gb6"), 10_000);
    assert.deepEqual(told(b, "gapi"), ["added:gb6", "from the backend", "removed:gb6"]);
    const removed = b.entries.find((e) => e.change === "removed");
    assert.equal(removed.by, null, "the backend did it");
    assert.equal((await w.fetch("/api/groups", { method: "POST", body: "{}" })).status, 401);
    b.c.close();
  });

  test("over the v1 socket: create, send (200: stored for every member), read counts to the sender", async () => {
    const [a, b] = [await member(w, "ga8"), await member(w, "gb8")];
    const made = await a.c.request({ op: "group", call: "create", members: ["gb8", "gc8"] });
    assert.equal(made.status, 201);
    const group = made.body.group;
    assert.match(group, /^g:[0-9a-f]{16}$/);
    const sent = await a.c.request({ op: "group", call: "send", group, cmid: "v1-1", body: { message: "over v1" } });
    assert.deepEqual([sent.op, sent.status, sent.body.group_seq, sent.body.duplicate], ["group", 200, 2, false]);
    const again = await a.c.request({ op: "group", call: "send", group, cmid: "v1-1", body: { message: "over v1" } });
    assert.deepEqual([again.body.id, again.body.duplicate], [sent.body.id, true]);
    await eventually(() => told(b, group).includes("over v1"), 10_000);
    assert.deepEqual(told(b, group), ["created:ga8", "over v1"]);
    const read = await b.c.request({ op: "group", call: "read", group, up_to: 2 });
    assert.deepEqual(read.body, { read: 2 });
    const tick = await a.c.take((f) => f.op === "group_read");
    assert.deepEqual(tick, { op: "group_read", group, group_seq: 2, read: 1, of: 2 });
    const e = await connectV1(w, "ge8", { device: "d" });
    const refused = await e.request({ op: "group", call: "send", group, cmid: "x", body: { message: "let me in" } });
    assert.deepEqual([refused.status, refused.body.code], [403, "not_member"]);
    assert.equal((await e.request({ op: "group", call: "nope" })).status, 400);
    const page = await a.c.request({ op: "group", call: "history", group, limit: 10 });
    assert.deepEqual(page.body.items.map((i) => i.group_seq), [2, 1]);
    e.close();
    a.c.close();
    b.c.close();
  });

  test("the conversation list shows groups beside chats, with unread counts and the last message", async () => {
    const b = await member(w, "gb9");
    assert.equal((await call(w, "ga9", "POST", "", { group: "glist", members: ["gb9"] })).status, 201);
    await w.api("/api/usr-msg", { fromUser: "gc9", toUser: "gb9", message: "a chat" });
    for (const m of ["g1", "g2", "g3"]) await call(w, "ga9", "POST", "/glist/messages", { message: m });
    await call(w, "gb9", "POST", "/glist/messages", { message: "mine" });
    await eventually(() => told(b, "glist").includes("mine"), 10_000);
    const list = async () => (await (await w.fetch("/v1/conversations", { headers: { authorization: `Bearer ${token("gb9")}` } })).json()).items;
    let items = await list();
    assert.deepEqual(items.map((i) => [i.peer, i.group ?? null]), [["g:list", "g:list"], ["gc9", null]]);
    const g = items[0];
    assert.equal(g.unread, 3, "the others' messages; not the created notice, not one's own");
    assert.equal(g.last.kind, "group");
    assert.equal(g.last.body.message, "mine");
    assert.equal(g.last.peer, null);
    // A read over HTTP moves the member's own cursor.
    const read = await call(w, "gb9", "POST", "/glist/read", { up_to: 3 });
    assert.deepEqual(read, { status: 200, body: { read: 3 } });
    items = await list();
    assert.deepEqual([items[0].unread, items[0].read_up_to], [1, 3]);
    // And over the socket.
    const r = await b.c.request({ op: "group", call: "read", group: "glist", up_to: 5 });
    assert.equal(r.status, 200);
    items = await list();
    assert.deepEqual([items[0].unread, items[0].read_up_to], [0, 5]);
    b.c.close();
  });

  test("legacy sockets get no group messages", async () => {
    const legacy = await w.connect("gb7");
    assert.equal((await call(w, "ga7", "POST", "", { group: "glegacy", members: ["gb7"] })).status, 201);
    await call(w, "ga7", "POST", "/glegacy/messages", { message: "not for legacy" });
    await legacy.expectSilence(500);
    const hist = await (await w.history("gb7")).json();
    assert.deepEqual([hist.sys, hist.usr], [[], []]);
    // The v1 device of the same user has them.
    const m = await member(w, "gb7");
    await eventually(() => told(m, "glegacy").includes("not for legacy"), 10_000);
    m.c.close();
    legacy.close();
  });
});

describe("groups across restarts and at the cap", () => {
  test("a runtime restart in the middle of a fan-out loses and duplicates nothing", async () => {
    const w = await startWorker();
    try {
      const names = ["gr1", "gr2", "gr3", "gr4"];
      assert.equal((await call(w, "gr0", "POST", "", { group: "grestart", members: names })).status, 201);
      const sent = [];
      for (let i = 0; i < 30; i++) {
        sent.push(`r${i}`);
        const r = await call(w, "gr0", "POST", "/grestart/messages", { message: `r${i}`, cmid: `k${i}` });
        assert.equal(r.status, 200);
        // Restart while deliveries are in flight (answers lost, some applied).
        if (i === 14) await w.restart();
      }
      // A send retried after the restart is still stored once.
      const again = await call(w, "gr0", "POST", "/grestart/messages", { message: "r29", cmid: "k29" });
      assert.equal(again.body.duplicate, true);
      const members = await Promise.all(names.map((n) => member(w, n)));
      for (const m of members) {
        await eventually(() => told(m, "grestart").length >= 31, 20_000);
      }
      await sleep(300);
      for (const m of members) {
        assert.deepEqual(told(m, "grestart"), ["created:gr0", ...sent], m.uid);
        assert.deepEqual(seqsOf(m, "grestart"), Array.from({ length: 31 }, (_, i) => i + 1), m.uid);
        m.c.close();
      }
    } finally {
      await w.close();
    }
  });

  test("GROUP_MAX_MEMBERS is refused with a clear error", async () => {
    const w = await startWorker({ bindings: { GROUP_MAX_MEMBERS: "3" } });
    try {
      const big = await call(w, "gm0", "POST", "", { group: "gbig", members: ["gm1", "gm2", "gm3"] });
      assert.equal(big.status, 409);
      assert.equal(big.body.code, "group_full");
      assert.match(big.body.error, /GROUP_MAX_MEMBERS/);
      assert.equal((await call(w, "gm0", "POST", "", { group: "gbig", members: ["gm1", "gm2"] })).status, 201);
      const add = await call(w, "gm0", "POST", "/gbig/members", { user: "gm3" });
      assert.equal(add.status, 409);
      assert.equal(add.body.code, "group_full");
      assert.equal((await call(w, "gm0", "GET", "/gbig")).body.members.length, 3);
    } finally {
      await w.close();
    }
  });
});
