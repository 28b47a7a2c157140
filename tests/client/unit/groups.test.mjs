// Unit tests of the client SDK's groups (client/dist) against a fake
// WebSocket and a manual clock: group entries of the log as groupMessage /
// groupChange events (in seq order with chats, acked after their handlers),
// group sends through the outbox (cmid kept across reconnects, retries and
// reloads), the group requests and their answers, read counts and typing.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChatError, MemoryStore } from "../../../client/dist/index.js";
import { open, setup } from "../fake.mjs";

/** Drops the socket and welcomes the next one; returns it. */
async function reconnect(t, ws, over) {
  ws.drop();
  await t.clock.advance(1000);
  const next = t.S.last();
  assert.notEqual(next, ws);
  next.welcome(over);
  await t.clock.advance(0);
  return next;
}

/** A membership change entry of this user's log. */
function change(ws, seq, group, group_seq, change, user, extra = {}) {
  const body = { type: "group", change, user, by: "owner1", group, group_seq, id: `c${seq}`, time: "2026-01-01T00:00:00.000Z", ...extra };
  ws.push({ op: "msg", seq, kind: "group", peer: null, mid: body.id, body });
}

/** The `group` request frames the client sent, optionally of one call. */
const calls = (ws, call) => ws.frames("group").filter((f) => !call || f.call === call);

describe("group entries", () => {
  test("group messages and changes are their own events, in seq order with chats, acked after their handlers", async () => {
    const t = setup();
    const order = [];
    let release;
    t.chat.on("message", (m) => order.push(`message ${m.seq}`));
    t.chat.on("groupChange", (c) => order.push(`change ${c.seq}`));
    t.chat.on("groupMessage", async (m) => {
      order.push(`group ${m.seq}`);
      if (m.seq === 3) await new Promise((r) => (release = r));
    });
    const ws = await open(t);
    change(ws, 1, "g:team", 1, "created", "owner1", { members: ["u1", "u3"], by: "owner1" });
    ws.msg(2);
    ws.group(3, "g:team", 2, { fromUser: "u3", message: "hi all", extra: 7 });
    change(ws, 4, "g:team", 3, "added", "u4", { role: "member", by: null });
    await t.clock.advance(100);
    assert.deepEqual(order, ["change 1", "message 2", "group 3"], "seq 4 waits for the handler of seq 3");
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [2], "not acked past an unfinished handler");
    release();
    await t.clock.advance(100);
    assert.deepEqual(order, ["change 1", "message 2", "group 3", "change 4"]);
    assert.deepEqual(ws.frames("ack").map((f) => f.up_to), [2, 4]);
    assert.equal(t.r.messages.length, 0, "group entries are not `message` events (the recorder subscribed after open)");
    const [m] = t.r.groupMessages;
    assert.deepEqual(
      { ...m, body: undefined },
      { seq: 3, mid: "g3", group: "g:team", group_seq: 2, from: "u3", body: undefined },
    );
    assert.equal(m.body.message, "hi all");
    assert.equal(m.body.extra, 7);
    const [created, added] = t.r.groupChanges;
    assert.deepEqual([created.change, created.user, created.by, created.members, created.group_seq], ["created", "owner1", "owner1", ["u1", "u3"], 1]);
    assert.deepEqual([added.change, added.user, added.by, added.role, added.seq, added.mid], ["added", "u4", null, "member", 4, "c4"]);
    assert.equal(t.chat.cursor, 4);
    assert.deepEqual(t.r.errors, []);
  });

  test("a failing groupMessage handler: not acked, the socket is replaced and the entry delivered again", async () => {
    const t = setup({ backoff: { baseMs: 100 } });
    let fail = true;
    const seen = [];
    t.chat.on("groupMessage", (m) => {
      seen.push(m.seq);
      if (fail) throw new Error("render failed");
    });
    const ws = await open(t);
    ws.msg(1);
    ws.group(2, "g:x", 5);
    await t.clock.advance(20);
    assert.ok(!ws.frames("ack").some((f) => f.up_to >= 2), "2 is not acked");
    assert.equal(t.chat.cursor, 1);
    assert.equal(t.r.errors.find((e) => e.code === "handler_failed")?.seq, 2);
    fail = false;
    await t.clock.advance(100);
    const ws2 = t.S.last();
    assert.notEqual(ws2, ws);
    assert.equal(ws2.params.since, "1");
    ws2.welcome();
    ws2.group(2, "g:x", 5);
    await t.clock.advance(20);
    assert.deepEqual(seen, [2, 2]);
    assert.deepEqual(ws2.frames("ack").map((f) => f.up_to), [2]);
  });

  test("a group entry without group or group_seq is a protocol error and not delivered", async () => {
    const t = setup();
    const ws = await open(t);
    ws.push({ op: "msg", seq: 1, kind: "group", peer: null, mid: "x", body: { fromUser: "2", message: "no group" } });
    ws.push({ op: "msg", seq: 2, kind: "group", peer: null, mid: "y", body: { group: "g:x", fromUser: "2", message: "no seq" } });
    await t.clock.advance(100);
    assert.deepEqual(t.r.groupMessages, []);
    assert.deepEqual(t.r.errors.map((e) => e.code), ["protocol", "protocol"]);
  });
});

describe("group sends", () => {
  test("groupSend goes out as a group send with a cmid and resolves with the group's answer", async () => {
    const t = setup();
    const ws = await open(t);
    const p = t.chat.groupSend("g:team", { message: "hello group", extra: 1 });
    await t.clock.advance(0);
    assert.equal(t.chat.pending, 1);
    const [f] = calls(ws);
    assert.deepEqual({ ...f, id: 0, cmid: "" }, { op: "group", id: 0, call: "send", group: "g:team", cmid: "", body: { message: "hello group", extra: 1 } });
    assert.equal(typeof f.cmid, "string");
    assert.ok(f.cmid.length > 0);
    ws.answer(f.id, 200, { id: "M1", group_seq: 4, duplicate: false });
    assert.deepEqual(await p, { group: "g:team", mid: "M1", group_seq: 4, duplicate: false });
    assert.equal(t.chat.pending, 0);
    assert.deepEqual(t.r.groupSent, [{ cmid: f.cmid, group: "g:team", mid: "M1", group_seq: 4, duplicate: false }]);
    assert.deepEqual(t.r.sent, [], "`sent` events are for chats");
  });

  test("an unanswered group send is re-sent with the same cmid after a reconnect and resolves once", async () => {
    const t = setup();
    let ws = await open(t);
    let resolved = 0;
    const p = t.chat.groupSend("g:team", "once").then((r) => (resolved++, r));
    await t.clock.advance(0);
    const [first] = calls(ws);
    ws = await reconnect(t, ws);
    const again = calls(ws);
    assert.equal(again.length, 1);
    assert.deepEqual({ ...again[0], id: 0 }, { ...first, id: 0 }, "same cmid, same body");
    ws.answer(again[0].id, 200, { id: "M", group_seq: 2, duplicate: true });
    ws.answer(again[0].id, 200, { id: "M", group_seq: 2, duplicate: true });
    assert.deepEqual(await p, { group: "g:team", mid: "M", group_seq: 2, duplicate: true });
    await t.clock.advance(100);
    assert.equal(resolved, 1);
    assert.equal(t.r.groupSent.length, 1);
  });

  test("503 and rate_limited are retried with the same cmid; a refusal rejects and the group's next message goes out", async () => {
    const t = setup({ backoff: { baseMs: 1000 } });
    const ws = await open(t);
    const p = t.chat.groupSend("g:team", "x");
    const q = t.chat.groupSend("g:team", "y");
    await t.clock.advance(0);
    assert.equal(calls(ws).length, 1, "one message of a group in flight");
    const f1 = calls(ws)[0];
    ws.answer(f1.id, 503, { error: "the group is temporarily unavailable; retry", code: "unavailable" });
    await t.clock.advance(499);
    assert.equal(calls(ws).length, 1, "waits 0.5 * 1000 ms");
    await t.clock.advance(1);
    const f2 = calls(ws)[1];
    assert.equal(f2.cmid, f1.cmid);
    ws.push({ op: "error", re: f2.id, code: "rate_limited", retry: true, retry_after_ms: 321 });
    await t.clock.advance(320);
    assert.equal(calls(ws).length, 2);
    await t.clock.advance(1);
    const f3 = calls(ws)[2];
    assert.equal(f3.cmid, f1.cmid);
    ws.answer(f3.id, 403, { error: "not a member of the group", code: "not_member" });
    await assert.rejects(p, (e) => e instanceof ChatError && e.code === "not_member" && e.status === 403 && e.retry === false && e.cmid === f1.cmid);
    await t.clock.advance(0);
    const f4 = calls(ws)[3];
    assert.equal(f4.body.message, "y");
    ws.answer(f4.id, 200, { id: "M", group_seq: 9, duplicate: false });
    assert.equal((await q).group_seq, 9);
    assert.equal(t.r.errors.length, 0, "the promises report it");
  });

  test("one message per group in flight; other groups and chats do not wait", async () => {
    const t = setup();
    const ws = await open(t);
    const a1 = t.chat.groupSend("g:a", "a1");
    const a2 = t.chat.groupSend("g:a", "a2");
    const b1 = t.chat.groupSend("g:b", "b1");
    const c = t.chat.send("ga", "a chat to the user ga");
    await t.clock.advance(0);
    assert.deepEqual(calls(ws).map((f) => f.body.message), ["a1", "b1"]);
    assert.deepEqual(ws.frames("send").map((f) => f.body.message), ["a chat to the user ga"], "the user ga is another lane");
    ws.answer(calls(ws)[0].id, 200, { id: "A1", group_seq: 1, duplicate: false });
    await t.clock.advance(0);
    assert.deepEqual(calls(ws).map((f) => f.body.message), ["a1", "b1", "a2"]);
    ws.answer(calls(ws)[1].id, 200, { id: "B1", group_seq: 1, duplicate: false });
    ws.answer(calls(ws)[2].id, 200, { id: "A2", group_seq: 2, duplicate: false });
    ws.push({ op: "sent", re: ws.frames("send")[0].id, mid: "C", seq: 1, duplicate: false });
    assert.deepEqual((await Promise.all([a1, a2, b1])).map((r) => r.mid), ["A1", "A2", "B1"]);
    assert.equal((await c).mid, "C");
  });

  test("group sends survive a reload with their cmid; the restored send is a groupSent event", async () => {
    const store = new MemoryStore();
    const t = setup({ store });
    void t.chat.groupSend("g:team", { message: "stored", x: 1 }, { cmid: "gc-1" });
    await t.clock.advance(0);
    assert.deepEqual(store.state.outbox, [{ op: "group", cmid: "gc-1", group: "g:team", body: { message: "stored", x: 1 } }]);
    const t2 = setup({ store });
    const ws = await open(t2);
    assert.equal(t2.chat.pending, 1);
    const [f] = calls(ws);
    assert.deepEqual([f.call, f.group, f.cmid, f.body], ["send", "g:team", "gc-1", { message: "stored", x: 1 }]);
    ws.answer(f.id, 200, { id: "M", group_seq: 3, duplicate: true });
    await t2.clock.advance(0);
    assert.deepEqual(t2.r.groupSent, [{ cmid: "gc-1", group: "g:team", mid: "M", group_seq: 3, duplicate: true }]);
    assert.deepEqual(store.state.outbox, []);
  });

  test("invalid group sends are refused locally", async () => {
    const t = setup();
    await assert.rejects(t.chat.groupSend("team", "x"), (e) => e.code === "bad_field" && e.field === "group");
    await assert.rejects(t.chat.groupSend("gUPPER", "x"), (e) => e.code === "bad_field" && e.field === "group");
    await assert.rejects(t.chat.groupSend("g:team", { message: "" }), (e) => e.code === "bad_field" && e.field === "body.message");
    await assert.rejects(t.chat.groupSend("g:team", "x".repeat(70000)), (e) => e.code === "too_large");
    assert.equal(t.chat.pending, 0);
  });
});

describe("group requests", () => {
  test("create, info, membership calls, reads and history: their frames and results", async () => {
    const t = setup();
    const ws = await open(t);
    const answerLast = async (status, body) => {
      await t.clock.advance(0);
      const f = calls(ws).at(-1);
      ws.answer(f.id, status, body);
      return f;
    };
    const made = t.chat.createGroup(["u2", "u3"], { group: "g:team" });
    const cf = await answerLast(201, { group: "g:team", group_seq: 1 });
    assert.deepEqual({ ...cf, id: 0 }, { op: "group", id: 0, call: "create", group: "g:team", members: ["u2", "u3"] });
    assert.deepEqual(await made, { group: "g:team", group_seq: 1, refused: [], duplicate: false });

    const random = t.chat.createGroup([]);
    const rf = await answerLast(201, { group: "ignored", group_seq: 1 });
    assert.match(rf.group, /^g:[a-z0-9_-]{1,32}$/, "the client picks a random id, in the g: form");
    assert.equal((await random).group, "ignored", "the server's answer says which");

    const info = t.chat.groupInfo("g:team");
    await answerLast(200, { group: "g:team", head: 7, members: [{ user: "u1", role: "owner", joined: 1, read: 7 }, { user: "u2", role: "member", joined: 1, read: 3 }] });
    assert.deepEqual(await info, { group: "g:team", head: 7, members: [{ user: "u1", role: "owner", joined: 1, read: 7 }, { user: "u2", role: "member", joined: 1, read: 3 }] });

    const expectCall = async (p, frame, result) => {
      const f = await answerLast(200, result);
      assert.deepEqual({ ...f, id: 0 }, { op: "group", id: 0, ...frame });
      return p;
    };
    assert.deepEqual(await expectCall(t.chat.addMember("g:team", "u4"), { call: "add", group: "g:team", user: "u4" }, { group_seq: 8 }), { group_seq: 8, duplicate: false });
    assert.deepEqual((await expectCall(t.chat.addMember("g:team", "u5", "admin"), { call: "add", group: "g:team", user: "u5", role: "admin" }, { group_seq: 9 })).group_seq, 9);
    assert.equal((await expectCall(t.chat.removeMember("g:team", "u4"), { call: "remove", group: "g:team", user: "u4" }, { group_seq: 10 })).group_seq, 10);
    assert.equal((await expectCall(t.chat.setRole("g:team", "u2", "admin"), { call: "set_role", group: "g:team", user: "u2", role: "admin" }, { group_seq: 11 })).group_seq, 11);
    assert.equal((await expectCall(t.chat.handOver("g:team", "u2"), { call: "hand_over", group: "g:team", user: "u2" }, { group_seq: 12 })).group_seq, 12);
    assert.equal((await expectCall(t.chat.leaveGroup("g:team"), { call: "leave", group: "g:team" }, { group_seq: 13 })).group_seq, 13);
    assert.equal(await expectCall(t.chat.markGroupRead("g:team", 6), { call: "read", group: "g:team", up_to: 6 }, { read: 6 }), 6);
    assert.deepEqual(await expectCall(t.chat.groupReadBy("g:team", 4), { call: "read_by", group: "g:team", seq: 4 }, { group_seq: 4, read: 1, of: 2 }), { group_seq: 4, read: 1, of: 2 });

    const page = await expectCall(t.chat.groupHistory("g:team", { before: 3, limit: 2 }), { call: "history", group: "g:team", before: 3, limit: 2 }, {
      items: [
        { group_seq: 2, kind: "message", mid: "M2", body: { group: "g:team", group_seq: 2, fromUser: "u2", message: "hi", id: "M2", time: "t" } },
        { group_seq: 1, kind: "change", mid: "C1", body: { type: "group", change: "created", user: "u1", by: "u1", members: ["u2"], group: "g:team", group_seq: 1, id: "C1", time: "t" } },
      ],
      next: 1,
    });
    assert.equal(page.next, 1);
    assert.deepEqual(page.items.map((i) => [i.seq, i.mid, i.group_seq, i.from ?? i.change]), [[null, "M2", 2, "u2"], [null, "C1", 1, "created"]]);
    assert.equal(page.items[0].body.message, "hi");
    assert.deepEqual(t.r.errors, []);
  });

  test("refusals reject with the group's code and status; 503 is retried", async () => {
    const t = setup({ backoff: { baseMs: 1000 } });
    const ws = await open(t);
    const p = t.chat.addMember("g:team", "u9");
    await t.clock.advance(0);
    ws.answer(calls(ws)[0].id, 503, { error: "the group is temporarily unavailable; retry", code: "unavailable" });
    await t.clock.advance(500);
    const [, again] = calls(ws);
    assert.deepEqual({ ...again, id: 0 }, { ...calls(ws)[0], id: 0 });
    ws.answer(again.id, 403, { error: "only owners and admins may add members", code: "not_allowed" });
    await assert.rejects(p, (e) => e instanceof ChatError && e.code === "not_allowed" && e.status === 403 && /only owners/.test(e.message));
    const full = t.chat.createGroup(["a", "b"], { group: "g:big" });
    await t.clock.advance(0);
    ws.answer(calls(ws).at(-1).id, 409, { error: "more than GROUP_MAX_MEMBERS", code: "group_full" });
    await assert.rejects(full, (e) => e.code === "group_full" && e.status === 409);
    const bad = t.chat.groupInfo("g:team");
    await t.clock.advance(0);
    ws.answer(calls(ws).at(-1).id, 400, { error: "group" });
    await assert.rejects(bad, (e) => e.code === "bad_field" && e.status === 400);
    const owner = t.chat.leaveGroup("g:team");
    await t.clock.advance(0);
    ws.answer(calls(ws).at(-1).id, 409, { error: "the owner must hand over first", code: "owner_must_hand_over" });
    await assert.rejects(owner, (e) => e.code === "owner_must_hand_over");
  });

  test("a membership call re-sent after a reconnect that finds its change made resolves as a duplicate; the first attempt's refusal rejects", async () => {
    const t = setup();
    let ws = await open(t);
    const first = t.chat.addMember("g:team", "u2");
    await t.clock.advance(0);
    ws.answer(calls(ws)[0].id, 409, { error: "already a member", code: "already_member" });
    await assert.rejects(first, (e) => e.code === "already_member", "sent once: someone else's doing");

    const p = t.chat.addMember("g:team", "u3");
    const leave = t.chat.leaveGroup("g:other");
    await t.clock.advance(0);
    assert.equal(calls(ws).length, 3);
    ws = await reconnect(t, ws); // their answers are lost
    const [add, left] = calls(ws);
    assert.deepEqual([add.call, add.user, left.call], ["add", "u3", "leave"]);
    ws.answer(add.id, 409, { error: "already a member", code: "already_member" });
    ws.answer(left.id, 403, { error: "not a member", code: "not_member" });
    assert.deepEqual(await p, { group_seq: null, duplicate: true });
    assert.deepEqual(await leave, { group_seq: null, duplicate: true });
  });

  test("a re-sent create of a random id that finds it taken resolves as a duplicate; a chosen id rejects with group_exists", async () => {
    const t = setup();
    let ws = await open(t);
    const p = t.chat.createGroup(["u2"]);
    const chosen = t.chat.createGroup(["u2"], { group: "g:mine" });
    await t.clock.advance(0);
    const [f] = calls(ws);
    ws = await reconnect(t, ws);
    const [again, mine] = calls(ws);
    assert.equal(again.group, f.group, "the same id again");
    ws.answer(again.id, 409, { error: "the group exists", code: "group_exists" });
    ws.answer(mine.id, 409, { error: "the group exists", code: "group_exists" });
    assert.deepEqual(await p, { group: f.group, group_seq: 1, refused: [], duplicate: true });
    await assert.rejects(chosen, (e) => e.code === "group_exists");
  });

  test("group requests need a started client and valid arguments", async () => {
    const t = setup();
    await assert.rejects(t.chat.groupInfo("g:team"), (e) => e.code === "closed");
    await assert.rejects(t.chat.createGroup(["ok", "not ok"]), (e) => e.code === "bad_field" && e.field === "members");
    await assert.rejects(t.chat.createGroup([], { group: "Team" }), (e) => e.code === "bad_field" && e.field === "group");
    await assert.rejects(t.chat.addMember("g:team", "u2", "owner"), (e) => e.code === "bad_field" && e.field === "role");
    await assert.rejects(t.chat.markGroupRead("g:team", -1), (e) => e.code === "bad_field" && e.field === "up_to");
    await assert.rejects(t.chat.groupReadBy("nope", 1), (e) => e.code === "bad_field" && e.field === "group");
  });
});

describe("group reads and typing", () => {
  test("group_read frames are groupRead events; group typing is a groupTyping event, never a typing one", async () => {
    const t = setup();
    const ws = await open(t);
    ws.push({ op: "group_read", group: "g:team", group_seq: 4, read: 1, of: 2 });
    ws.push({ op: "typing", from: "u2", group: "g:team", active: true });
    ws.push({ op: "typing", from: "u2", active: true });
    await t.clock.advance(0);
    assert.deepEqual(t.r.groupReads, [{ group: "g:team", group_seq: 4, read: 1, of: 2 }]);
    assert.deepEqual(t.r.groupTyping, [{ group: "g:team", from: "u2", active: true }]);
    assert.deepEqual(t.r.typing, [{ from: "u2", active: true }]);
    assert.deepEqual(t.r.errors, []);
  });

  test("groupTyping() sends a typing call only when open; its answer is dropped quietly", async () => {
    const t = setup();
    assert.equal(t.chat.groupTyping("g:team", true), false);
    const ws = await open(t);
    assert.equal(t.chat.groupTyping("g:team", true), true);
    assert.equal(t.chat.groupTyping("not a group", true), false);
    const [f] = calls(ws);
    assert.deepEqual({ ...f, id: 0 }, { op: "group", id: 0, call: "typing", group: "g:team", typing: true });
    ws.answer(f.id, 204, null);
    await t.clock.advance(0);
    assert.deepEqual(t.r.errors, []);
  });
});

describe("the conversation list with groups", () => {
  test("a group's item carries its newest entry as a group event gives it, beside the 1:1 items", async () => {
    const chat = { op: "msg", seq: 3, kind: "in", peer: "2", mid: "m3", body: { message: "hi" } };
    const body = { group: "gteam", group_seq: 2, fromUser: "2", message: "hello group", id: "g5", time: "2026-01-01T00:00:00.000Z" };
    const entry = { op: "msg", seq: 5, kind: "group", peer: null, mid: "g5", body };
    const none = { online: false, last_seen: null };
    const items = [
      { peer: "gteam", group: "gteam", unread: 1, read_up_to: 0, peer_delivered: 0, peer_read: 0, last: entry, presence: none },
      { peer: "2", unread: 1, read_up_to: 0, peer_delivered: 0, peer_read: 0, last: chat, presence: none },
    ];
    const t = setup({ fetch: async () => Response.json({ items, next: null }) });
    const page = await t.chat.conversations();
    assert.deepEqual(page.items[0].last, { seq: 5, mid: "g5", group: "g:team", group_seq: 2, from: "2", body });
    // An older server's form of the id is handed out in the g: namespace.
    assert.deepEqual([page.items[0].group, page.items[0].peer], ["g:team", "g:team"]);
    assert.deepEqual(page.items[1].last, { seq: 3, kind: "in", peer: "2", mid: "m3", body: { message: "hi" } });
    // A group item whose entry is not a group entry is refused, as any bad frame.
    const bad = setup({ fetch: async () => Response.json({ items: [{ ...items[0], last: chat }], next: null }) });
    await assert.rejects(bad.chat.conversations(), /bad group entry/);
  });
});
