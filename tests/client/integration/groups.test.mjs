// Integration tests of the client SDK's groups (client/dist) against the REAL
// worker (build/index.js in workerd via Miniflare, tests/harness.mjs), with
// the runtime's own WebSocket: run under Node >= 22.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ChatClient, MemoryStore } from "../../../client/dist/index.js";
import { eventually, sleep, startWorker, token } from "../../harness.mjs";
import { record } from "../fake.mjs";

// Every client a test made is closed after it, pass or fail.
const made = [];
afterEach(() => Promise.all(made.splice(0).map((c) => c.chat.close())));

/** A client of `uid` that records what it gets; `WebSocket` optional. */
function client(w, uid, opts = {}) {
  const chat = new ChatClient({ url: w.wsUrl("/ws"), token: () => token(uid), backoff: { baseMs: 50, maxMs: 400 }, ...opts });
  const c = { chat, got: record(chat) };
  made.push(c);
  return c;
}

/** What a client got of `group`, in order: messages by text, changes as `change:user`. */
function told(c, group) {
  const items = [...c.got.groupMessages, ...c.got.groupChanges].filter((i) => i.group === group).sort((a, b) => a.seq - b.seq);
  return items.map((i) => (i.change ? `${i.change}:${i.user}` : i.body.message));
}

/** A WebSocket around the global one; `hook(text, socket)` returning false swallows an incoming frame. */
function tappedWebSocket(hook) {
  const sockets = [];
  class Tapped {
    constructor(url, protocols) {
      const ws = new WebSocket(url, protocols);
      this.ws = ws;
      this.sent = [];
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      ws.onopen = (e) => this.onopen?.(e);
      ws.onmessage = (e) => {
        if (hook(e.data, this) === false) return;
        this.onmessage?.(e);
      };
      ws.onclose = (e) => this.onclose?.(e);
      ws.onerror = (e) => this.onerror?.(e);
      sockets.push(this);
    }
    get readyState() {
      return this.ws.readyState;
    }
    send(data) {
      this.sent.push(data);
      this.ws.send(data);
    }
    close(code, reason) {
      this.ws.close(code, reason);
    }
  }
  return { Tapped, sockets };
}

describe("client SDK groups against the worker", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("create, send, every member gets each message once in order, read by N of M, typing, info, history, membership", async () => {
    const [a, b, c] = [client(w, "sa1"), client(w, "sb1"), client(w, "sc1")];
    await Promise.all([a.chat.connect(), b.chat.connect(), c.chat.connect()]);
    const g = await a.chat.createGroup(["sb1", "sc1"]);
    assert.match(g.group, /^g:[a-z0-9_-]{1,32}$/);
    assert.deepEqual([g.group_seq, g.duplicate], [1, false]);
    const group = g.group;
    const sent = [];
    for (let i = 0; i < 3; i++) sent.push(await a.chat.groupSend(group, { message: `m${i}`, extra: i }));
    assert.deepEqual(sent.map((s) => [s.group, s.group_seq, s.duplicate]), [[group, 2, false], [group, 3, false], [group, 4, false]]);
    const want = ["created:sa1", "m0", "m1", "m2"];
    for (const m of [a, b, c]) await eventually(() => told(m, group).length >= want.length, 10_000);
    await sleep(200);
    for (const m of [a, b, c]) assert.deepEqual(told(m, group), want, m.chat.user);
    const got = b.got.groupMessages.filter((m) => m.group === group);
    assert.deepEqual(got.map((m) => [m.mid, m.group_seq, m.from, m.body.extra]), sent.map((s, i) => [s.mid, s.group_seq, "sa1", i]));
    assert.deepEqual(b.got.groupChanges[0].members, ["sb1", "sc1"]);
    assert.deepEqual(a.got.groupSent.map((s) => s.mid), sent.map((s) => s.mid));
    assert.equal(b.got.messages.length, 0, "group entries are not chats");

    // Read by N of M: b reads up to the newest; a hears "read by 1 of 2", then 2 of 2.
    assert.equal(await b.chat.markGroupRead(group, 4), 4);
    await eventually(() => a.got.groupReads.some((r) => r.group === group && r.group_seq === 4 && r.read === 1 && r.of === 2), 10_000);
    assert.deepEqual(await a.chat.groupReadBy(group, 4), { group_seq: 4, read: 1, of: 2 });
    await c.chat.markGroupRead(group, 4);
    await eventually(() => a.got.groupReads.some((r) => r.group_seq === 4 && r.read === 2 && r.of === 2), 10_000);

    // Typing reaches the others, as a group typing event only.
    assert.equal(b.chat.groupTyping(group, true), true);
    await eventually(() => a.got.groupTyping.some((t) => t.group === group && t.from === "sb1" && t.active), 10_000);
    assert.deepEqual(a.got.typing, []);

    const info = await c.chat.groupInfo(group);
    assert.equal(info.head, 4);
    assert.deepEqual(info.members.map((m) => [m.user, m.role]).sort(), [["sa1", "owner"], ["sb1", "member"], ["sc1", "member"]]);
    const page = await c.chat.groupHistory(group, { limit: 3 });
    assert.deepEqual(page.items.map((i) => i.group_seq), [4, 3, 2]);
    assert.equal(page.items[0].body.message, "m2");
    const rest = await c.chat.groupHistory(group, { before: page.next });
    assert.deepEqual(rest.items.map((i) => i.change), ["created"]);
    assert.equal(rest.next, null);

    // Membership: add d as admin, remove c, make b an admin, hand over to b and leave (an admin may not set roles).
    const d = client(w, "sd1");
    await d.chat.connect();
    assert.equal((await a.chat.addMember(group, "sd1", "admin")).group_seq, 5);
    assert.equal((await a.chat.removeMember(group, "sc1")).group_seq, 6);
    await assert.rejects(d.chat.setRole(group, "sb1", "admin"), (e) => e.code === "not_allowed" && e.status === 403);
    await a.chat.setRole(group, "sb1", "admin");
    await assert.rejects(a.chat.leaveGroup(group), (e) => e.code === "owner_must_hand_over" && e.status === 409);
    await a.chat.handOver(group, "sb1");
    await a.chat.leaveGroup(group);
    await d.chat.groupSend(group, "after a left");
    await eventually(() => told(b, group).includes("after a left"), 10_000);
    assert.deepEqual(told(b, group).slice(4), ["added:sd1", "removed:sc1", "role_changed:sb1", "handed_over:sb1", "left:sa1", "after a left"]);
    assert.deepEqual(told(d, group), ["added:sd1", "removed:sc1", "role_changed:sb1", "handed_over:sb1", "left:sa1", "after a left"]);
    await sleep(200);
    assert.deepEqual(told(c, group).slice(4), ["added:sd1", "removed:sc1"], "nothing after c was removed");
    assert.ok(!told(a, group).includes("after a left"));
    await assert.rejects(c.chat.groupSend(group, "let me in"), (e) => e.code === "not_member" && e.status === 403);
    await assert.rejects(c.chat.groupInfo(group), (e) => e.code === "not_member");
    await assert.rejects(a.chat.createGroup([], { group }), (e) => e.code === "group_exists");
    // Every group entry was processed and acked: the cursors are saved past them.
    for (const m of [a, b, c, d]) {
      const last = [...m.got.groupMessages, ...m.got.groupChanges].reduce((n, i) => Math.max(n, i.seq), 0);
      assert.ok(m.chat.cursor >= last, `${m.chat.user}: cursor ${m.chat.cursor} >= ${last}`);
    }
    for (const m of [a, b, c, d]) assert.deepEqual(m.got.errors, [], m.chat.user);
  });

  test("a group send whose answer is lost is re-sent with the same cmid: duplicate, stored once for every member", async () => {
    let dropNext = true;
    const { Tapped, sockets } = tappedWebSocket((text, sock) => {
      if (!dropNext || text === "heartbeat") return;
      const f = JSON.parse(text);
      if (f.op === "group" && f.body && typeof f.body.id === "string") {
        dropNext = false;
        sock.close(4000, "test: lose the answer"); // the group stored it; the client never hears
        return false;
      }
    });
    const a = client(w, "sa2", { WebSocket: Tapped });
    const b = client(w, "sb2");
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    const { group } = await a.chat.createGroup(["sb2"], { group: "glost" });
    const r = await a.chat.groupSend(group, "exactly once");
    assert.equal(r.duplicate, true, "the second transmission found the first stored");
    const sends = sockets.flatMap((s) => s.sent.map((d) => JSON.parse(d)).filter((f) => f.op === "group" && f.call === "send"));
    assert.equal(sends.length, 2);
    assert.equal(sends[0].cmid, sends[1].cmid);
    assert.ok(sockets.length >= 2, "it reconnected");
    await a.chat.groupSend(group, "next");
    await eventually(() => told(b, group).includes("next"), 10_000);
    await sleep(300);
    assert.deepEqual(told(b, group), ["created:sa2", "exactly once", "next"]);
    assert.deepEqual(told(a, group), ["created:sa2", "exactly once", "next"]);
  });

  test("a group send made while offline survives a reload and goes out once with its cmid", async () => {
    const store = new MemoryStore();
    const a = client(w, "sa3");
    const b = client(w, "sb3");
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    const { group } = await a.chat.createGroup(["sb3"]);
    // A second page of a's, never connected: its group send waits in the store.
    const offline = client(w, "sa3", { store });
    void offline.chat.groupSend(group, "queued offline", { cmid: "offline-1" });
    await eventually(() => store.state?.outbox?.length === 1);
    await offline.chat.close();
    const reloaded = client(w, "sa3", { store });
    await reloaded.chat.connect();
    await eventually(() => reloaded.got.groupSent.length === 1, 10_000);
    assert.deepEqual([reloaded.got.groupSent[0].cmid, reloaded.got.groupSent[0].duplicate], ["offline-1", false]);
    assert.deepEqual(store.state.outbox, []);
    await eventually(() => told(b, group).includes("queued offline"), 10_000);
    assert.deepEqual(told(b, group), ["created:sa3", "queued offline"]);
  });
});
