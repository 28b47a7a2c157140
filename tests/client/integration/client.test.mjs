// Integration tests of the client SDK (client/dist) against the REAL worker
// (build/index.js in workerd via Miniflare, tests/harness.mjs), using the
// runtime's own global WebSocket and fetch: run under Node >= 22.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { ChatClient, MemoryStore, applyChange, isDeleted } from "../../../client/dist/index.js";
import { eventually, freePort, sleep, startWorker, token } from "../../harness.mjs";
import { record } from "../fake.mjs";

/**
 * A WebSocket around the global one whose incoming frames a test can
 * intercept: `hook(text, socket)` returning false swallows a frame. Also
 * records the URL, what was sent, what was received, and how it closed
 * (`closeCode`, `closedAt`, `closedByClient`).
 */
function tappedWebSocket(hook) {
  const sockets = [];
  class Tapped {
    constructor(url, protocols) {
      const ws = new WebSocket(url, protocols);
      this.ws = ws;
      this.url = new URL(url);
      this.sent = [];
      this.received = [];
      this.closeCode = null;
      this.closedAt = null;
      this.closedByClient = false;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      ws.onopen = (e) => this.onopen?.(e);
      ws.onmessage = (e) => {
        this.received.push(e.data);
        if (hook(e.data, this) === false) return;
        this.onmessage?.(e);
      };
      ws.onclose = (e) => {
        this.closeCode = e.code;
        this.closedAt = Date.now();
        this.onclose?.(e);
      };
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
      this.closedByClient = true;
      this.ws.close(code, reason);
    }
  }
  return { Tapped, sockets };
}

// Every client a test made is closed after it, pass or fail, so that no
// reconnect loop outlives its test (or keeps the process alive).
const made = [];
afterEach(() => Promise.all(made.splice(0).map((c) => c.chat.close())));

/** A client of `uid` that records what it gets. */
function client(w, uid, opts = {}) {
  const chat = new ChatClient({ url: w.wsUrl("/ws"), token: () => token(uid), backoff: { baseMs: 50, maxMs: 400 }, ...opts });
  const got = record(chat);
  chat.on("message", (m) => {
    got.messages.push(m);
  });
  const c = { chat, got, inbox: () => got.messages.filter((m) => m.kind === "in") };
  made.push(c);
  return c;
}

/** Checks seqs are strictly increasing by one (no gap, no repeat) and returns the message texts. */
function contiguous(messages) {
  for (let i = 1; i < messages.length; i++) assert.equal(messages[i].seq, messages[i - 1].seq + 1, `seq after ${messages[i - 1].seq}`);
  return messages.map((m) => m.body.message);
}

test("runs under Node >= 22 with the global WebSocket and fetch", () => {
  assert.ok(Number(process.versions.node.split(".")[0]) >= 22, `Node ${process.versions.node}`);
  assert.equal(typeof globalThis.WebSocket, "function");
  assert.equal(typeof globalThis.fetch, "function");
});

describe("client SDK against the worker", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("two clients exchange messages, receipts, typing and unread counts", async () => {
    const a = client(w, "ca1");
    const b = client(w, "ca2");
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    assert.equal(a.chat.state, "open");
    assert.equal(a.chat.user, "ca1");
    const replies = [];
    for (let i = 0; i < 5; i++) replies.push(await a.chat.send("ca2", { message: `hi ${i}`, extra: i }));
    assert.ok(replies.every((r) => r.duplicate === false && typeof r.mid === "string"));
    const back = await b.chat.send("ca1", "hello back");
    await eventually(() => b.inbox().length === 5 && a.inbox().length === 1);
    assert.deepEqual(contiguous(b.got.messages).slice(0, 5), ["hi 0", "hi 1", "hi 2", "hi 3", "hi 4"]);
    assert.deepEqual(b.inbox().map((m) => [m.peer, m.body.extra, m.mid]), replies.map((r, i) => ["ca1", i, r.mid]));
    // A sees its own chats as "out" entries with the seqs of the sent replies.
    await eventually(() => a.got.messages.filter((m) => m.kind === "out").length === 5);
    assert.deepEqual(a.got.messages.filter((m) => m.kind === "out").map((m) => m.seq), replies.map((r) => r.seq));
    assert.equal(a.inbox()[0].mid, back.mid);
    // B's acks (sent by the SDK after its handler) give A delivered receipts.
    await eventually(() => a.got.receipts.some((r) => r.type === "delivered" && r.up_to === replies[4].seq));
    const lastIn = b.inbox()[4].seq;
    await b.chat.read("ca1", lastIn);
    await eventually(() => b.got.unread.some((u) => u.peer === "ca1" && u.count === 0 && u.read_up_to === lastIn));
    await eventually(() => a.got.receipts.some((r) => r.type === "read" && r.peer === "ca2" && r.up_to === replies[4].seq));
    assert.equal(a.chat.typing("ca2", true), true);
    await eventually(() => b.got.typing.some((t) => t.from === "ca1" && t.active === true));
    assert.deepEqual(a.got.errors, []);
    assert.deepEqual(b.got.errors, []);
    await Promise.all([a.chat.close(), b.chat.close()]);
    assert.equal(a.chat.state, "closed");
  });

  test("block, unblock, mute: the lists on every device, and a blocked peer's chats stay away", async () => {
    const a = client(w, "cb1");
    const a2 = client(w, "cb1", { device: "second" });
    const b = client(w, "cb2");
    await Promise.all([a.chat.connect(), a2.chat.connect(), b.chat.connect()]);
    assert.deepEqual(a.chat.blocks, { blocked: [], muted: [] });
    const seen = [];
    a2.chat.on("blocks", (l) => seen.push(l));
    await a.chat.block("cb2");
    await a.chat.mute("cb3", Date.now() + 60_000);
    await eventually(() => a2.chat.blocks.blocked.includes("cb2") && a2.chat.blocks.muted.length === 1);
    assert.ok(seen.length >= 2, "the other device got the blocks events");
    assert.deepEqual(a.chat.blocks.blocked, ["cb2"]);
    // The blocked peer's send resolves as usual; nothing reaches a.
    const r = await b.chat.send("cb1", "while blocked");
    assert.equal(r.duplicate, false);
    // a's own send to b is refused with a typed error.
    await assert.rejects(a.chat.send("cb2", "hi"), (e) => e.code === "blocked" && e.retry === false);
    await assert.rejects(a.chat.block("not an id"), (e) => e.code === "bad_field" && e.field === "user");
    await a.chat.unblock("cb2");
    await a.chat.unmute("cb3");
    await b.chat.send("cb1", "after");
    await eventually(() => a.inbox().length === 1);
    assert.deepEqual(a.inbox().map((m) => m.body.message), ["after"]);
    assert.deepEqual(a.chat.blocks, { blocked: [], muted: [] });
    await Promise.all([a.chat.close(), a2.chat.close(), b.chat.close()]);
  });

  test("history paging over the socket and the conversation list over HTTP", async () => {
    const a = client(w, "hp1");
    const b = client(w, "hp2");
    const c = client(w, "hp3");
    await Promise.all([a.chat.connect(), b.chat.connect(), c.chat.connect()]);
    const seqs = [];
    for (let i = 0; i < 23; i++) seqs.push((await a.chat.send("hp2", `page ${i}`)).seq);
    await c.chat.send("hp2", "from c");
    await eventually(() => b.inbox().length === 24);
    // Newest first, 10 at a time, following `next` to the end.
    const pages = [];
    let before;
    for (;;) {
      const page = await a.chat.history({ peer: "hp2", limit: 10, ...(before !== undefined ? { before } : {}) });
      pages.push(page.items);
      if (page.next === null) break;
      before = page.next;
    }
    assert.deepEqual(pages.map((p) => p.length), [10, 10, 3]);
    const all = pages.flat();
    assert.deepEqual(all.map((m) => m.seq), [...seqs].reverse());
    assert.ok(all.every((m) => m.kind === "out" && m.peer === "hp2" && m.op === undefined));
    // Oldest first with `after`.
    const first = await a.chat.history({ peer: "hp2", after: 0, limit: 2 });
    assert.deepEqual(first.items.map((m) => m.body.message), ["page 0", "page 1"]);

    const conv = await b.chat.conversations({ limit: 20 });
    const byPeer = Object.fromEntries(conv.items.map((i) => [i.peer, i]));
    assert.deepEqual(Object.keys(byPeer).sort(), ["hp1", "hp3"]);
    assert.equal(conv.items[0].peer, "hp3", "newest activity first");
    assert.equal(byPeer.hp1.unread, 23);
    assert.equal(byPeer.hp1.last.body.message, "page 22");
    const onePage = await b.chat.conversations({ limit: 1 });
    assert.equal(onePage.items.length, 1);
    const rest = await b.chat.conversations({ limit: 1, before: onePage.next });
    assert.equal(rest.items[0].peer, "hp1");
    await b.chat.read("hp1", b.inbox()[22].seq);
    assert.equal((await b.chat.conversations()).items.find((i) => i.peer === "hp1").unread, 0);
    await Promise.all([a.chat.close(), b.chat.close(), c.chat.close()]);
  });

  test("a send whose reply is lost is re-sent with the same cmid: duplicate:true, delivered once", async () => {
    let dropNextSent = true;
    const { Tapped, sockets } = tappedWebSocket((text, sock) => {
      if (dropNextSent && text !== "heartbeat" && JSON.parse(text).op === "sent") {
        dropNextSent = false;
        sock.close(4000, "test: lose the reply"); // the server stored it; the client never hears
        return false;
      }
    });
    const a = client(w, "dp1", { WebSocket: Tapped });
    const b = client(w, "dp2");
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    const r = await a.chat.send("dp2", "exactly once");
    assert.equal(r.duplicate, true);
    const sends = sockets.flatMap((s) => s.sent.filter((d) => d !== "heartbeat").map((d) => JSON.parse(d)).filter((f) => f.op === "send"));
    assert.equal(sends.length, 2);
    assert.equal(sends[0].cmid, sends[1].cmid);
    assert.ok(sockets.length >= 2, "it reconnected");
    assert.ok(a.got.states.includes("reconnecting"));
    await eventually(() => b.inbox().length === 1);
    await sleep(300);
    assert.deepEqual(b.inbox().map((m) => m.body.message), ["exactly once"]);
    assert.equal(a.got.messages.filter((m) => m.kind === "out").length, 1, "the sender's own copy once too");
    await Promise.all([a.chat.close(), b.chat.close()]);
  });

  test("a silent socket is detected by the heartbeat and replaced; nothing is lost", async () => {
    let deaf = null; // frames to this socket are swallowed
    const { Tapped, sockets } = tappedWebSocket((_text, sock) => (sock === deaf ? false : undefined));
    const a = client(w, "hb1");
    // deadAfterMs is generous: a loaded machine must not turn a slow answer into a "dead" socket.
    const b = client(w, "hb2", { WebSocket: Tapped, heartbeatMs: 200, deadAfterMs: 2000 });
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    // The server answers every heartbeat; answered heartbeats keep the socket.
    await eventually(() => sockets[0].received.filter((d) => d === "heartbeat").length >= 3, 15000);
    assert.equal(sockets.length, 1, "answered heartbeats keep the socket");
    assert.ok(!b.got.errors.some((e) => e.code === "dead_socket"));
    deaf = sockets[0];
    await a.chat.send("hb2", "while b is deaf");
    await eventually(() => b.got.errors.some((e) => e.code === "dead_socket"), 15000);
    assert.ok(sockets[0].closedByClient, "the client closed the silent socket");
    await eventually(() => b.inbox().length === 1 && b.chat.state === "open", 15000);
    assert.ok(sockets.length >= 2);
    assert.equal(b.inbox()[0].body.message, "while b is deaf");
    await Promise.all([a.chat.close(), b.chat.close()]);
  });

  test("an expired token (close 4001) is refreshed from the provider and the send goes through", async () => {
    const calls = [];
    let firstExp;
    const tok = () => {
      calls.push(Date.now());
      // The first token is accepted by the upgrade and expires 2 to 3 s later; fresh ones last an hour.
      const exp = Math.floor(Date.now() / 1000) + (calls.length === 1 ? 3 : 3600);
      firstExp ??= exp;
      return token("tk1", { exp });
    };
    const { Tapped, sockets } = tappedWebSocket(() => {});
    const a = client(w, "tk1", { token: tok, WebSocket: Tapped });
    const b = client(w, "tk2");
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    assert.equal(calls.length, 1);
    // The server closes the socket with 4001 once the token expired: its
    // object's alarm does at the expiry, or the next frame it handles if that
    // comes first (this send races the alarm; either way it must go through).
    await sleep(Math.max(0, firstExp * 1000 + 200 - Date.now()));
    assert.equal(sockets.length, 1);
    const r = await a.chat.send("tk2", "after expiry");
    assert.equal(typeof r.seq, "number");
    assert.equal(sockets[0].closeCode, 4001, "the first socket was closed with 4001");
    assert.equal(sockets[0].closedByClient, false, "by the server");
    assert.equal(calls.length, 2, "one fresh token");
    assert.ok(calls[1] >= sockets[0].closedAt, "asked for after the 4001 close");
    // Each socket opened with a one-time ticket of its own; no token in a URL.
    assert.notEqual(sockets[1].url.searchParams.get("ticket"), sockets[0].url.searchParams.get("ticket"));
    assert.deepEqual(sockets.map((s) => s.url.searchParams.has("token")), [false, false]);
    assert.ok(!a.got.errors.some((e) => e.code === "token_expired" || e.code === "connect_failed"), a.got.errors.map((e) => e.code).join());
    await eventually(() => b.inbox().length === 1);
    assert.equal(b.inbox()[0].body.message, "after expiry");
    await Promise.all([a.chat.close(), b.chat.close()]);
  });

  test("a reload keeps the outbox and the cursor (store round trip)", async () => {
    const storeA = new MemoryStore();
    const storeB = new MemoryStore();
    // Sends made while offline, then the "page" goes away before connecting.
    const a1 = client(w, "rl1", { store: storeA });
    void a1.chat.send("rl2", "queued 1");
    void a1.chat.send("rl2", "queued 2");
    await eventually(() => storeA.state?.outbox?.length === 2);
    await a1.chat.close();
    const b1 = client(w, "rl2", { store: storeB });
    await b1.chat.connect();
    // The reloaded sender sends its stored outbox with the same cmids.
    const cmids = storeA.state.outbox.map((e) => e.cmid);
    const a2 = client(w, "rl1", { store: storeA });
    await a2.chat.connect();
    await eventually(() => a2.got.sent.length === 2);
    assert.deepEqual(a2.got.sent.map((s) => s.cmid), cmids);
    assert.deepEqual(a2.got.sent.map((s) => s.duplicate), [false, false]);
    await eventually(() => storeA.state.outbox.length === 0);
    await eventually(() => b1.inbox().length === 2);
    await eventually(() => storeB.state?.cursor === b1.got.messages.at(-1).seq);
    await b1.chat.close();
    // Meanwhile more arrives; a reloaded receiver resumes after its stored cursor.
    await a2.chat.send("rl2", "while b reloads");
    const b2 = client(w, "rl2", { store: storeB });
    await b2.chat.connect();
    await eventually(() => b2.inbox().length === 1);
    await sleep(300);
    assert.deepEqual(b2.inbox().map((m) => m.body.message), ["while b reloads"]);
    assert.equal(b2.chat.device, b1.chat.device);
    assert.deepEqual(contiguous(b1.inbox()), ["queued 1", "queued 2"]);
    await Promise.all([a2.chat.close(), b2.chat.close()]);
  });
});

describe("edits, deletes and watches against the worker (default limits)", () => {
  let w;
  before(async () => (w = await startWorker()));
  after(() => w.close());

  test("edit and delete reach the peer and a device that was offline during them; history shows the current state", async () => {
    const storeB2 = new MemoryStore();
    const a = client(w, "ed1");
    const b = client(w, "ed2");
    const b2 = client(w, "ed2", { device: "tablet", store: storeB2 });
    await Promise.all([a.chat.connect(), b.chat.connect(), b2.chat.connect()]);
    const sent = await a.chat.send("ed2", { message: "original", extra: 7 });
    const other = await a.chat.send("ed2", "stays");
    await eventually(() => b.inbox().length === 2 && b2.inbox().length === 2);
    await eventually(() => storeB2.state?.cursor === b2.got.messages.at(-1).seq);
    await b2.chat.close(); // offline during the edit and the delete

    const e = await a.chat.edit(sent.mid, { message: "edited", extra: 8 });
    assert.equal(e.duplicate, false);
    assert.notEqual(e.mid, sent.mid, "the edit's own id");
    assert.ok(e.seq > other.seq);
    await eventually(() => b.got.changes.length === 1 && a.got.changes.length === 1);
    const [bc] = b.got.changes;
    assert.deepEqual([bc.kind, bc.peer, bc.target, bc.for], ["edit", "ed1", sent.mid, undefined]);
    assert.equal(bc.body.message, "edited");
    assert.equal(bc.body.extra, 8);
    assert.equal(bc.body.edit_version, 1);
    assert.ok(!isNaN(Date.parse(bc.body.edited_at)), bc.body.edited_at);
    assert.equal(bc.body.id, sent.mid, "the server's fields of the message are kept");
    // The editor's own log gets the op too, with the seq and mid of the reply.
    assert.deepEqual([a.got.changes[0].seq, a.got.changes[0].mid, a.got.changes[0].target], [e.seq, e.mid, sent.mid]);
    assert.ok(!b.got.messages.some((m) => m.kind === "edit" || m.kind === "delete"), "ops are no message events");

    const d = await a.chat.deleteMessage(sent.mid, { for: "everyone" });
    await eventually(() => b.got.changes.length === 2);
    const bd = b.got.changes[1];
    assert.deepEqual([bd.kind, bd.for, bd.target, bd.seq > bc.seq], ["delete", "everyone", sent.mid, true]);
    assert.ok(isDeleted(bd.body) && bd.body.message === undefined && bd.body.extra === undefined, JSON.stringify(bd.body));
    // b never read them: the delete lowers b's unread count (an unread event); the list keeps the order.
    await eventually(() => b.got.unread.some((u) => u.peer === "ed1" && u.count === 1));
    const [conv] = (await b.chat.conversations()).items;
    assert.deepEqual([conv.peer, conv.unread, conv.last.mid, conv.last.body.message], ["ed1", 1, other.mid, "stays"]);
    // applyChange on what b holds gives the tombstone.
    const shown = b.inbox().map((m) => b.got.changes.reduce(applyChange, m));
    assert.deepEqual(shown.map((m) => (isDeleted(m.body) ? "deleted" : m.body.message)), ["deleted", "stays"]);

    // The offline device resumes: both ops, in order, after what it processed; acked like messages.
    const b3 = client(w, "ed2", { device: "tablet", store: storeB2 });
    await b3.chat.connect();
    await eventually(() => b3.got.changes.length === 2);
    assert.deepEqual(b3.got.changes.map((c) => [c.kind, c.target, c.seq]), b.got.changes.map((c) => [c.kind, c.target, c.seq]));
    assert.deepEqual(b3.got.messages, [], "nothing else replayed");
    await eventually(() => storeB2.state.cursor === b3.got.changes[1].seq);

    // History holds the messages in their current state, never the ops.
    const page = await b.chat.history({ peer: "ed1" });
    assert.deepEqual(page.items.map((m) => m.kind), ["in", "in"]);
    const [stays, gone] = page.items;
    assert.equal(stays.body.message, "stays");
    assert.equal(gone.mid, sent.mid);
    assert.ok(isDeleted(gone.body) && gone.body.message === undefined);
    assert.equal(d.duplicate, false);
    assert.deepEqual(a.got.errors, []);
    assert.deepEqual(b.got.errors, []);
  });

  test("refusals are typed; a delete for me reaches only the user's own devices", async () => {
    const a = client(w, "er1");
    const b = client(w, "er2");
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    const m = await a.chat.send("er2", "hello");
    await eventually(() => b.inbox().length === 1);
    await assert.rejects(b.chat.edit(m.mid, "not mine"), (e) => e.code === "forbidden" && e.retry === false);
    await assert.rejects(b.chat.deleteMessage(m.mid, { for: "everyone" }), (e) => e.code === "forbidden");
    await assert.rejects(a.chat.edit("0".repeat(28), "nothing there"), (e) => e.code === "not_found");
    // For me: b hides a's message from b alone.
    const mine = await b.chat.deleteMessage(m.mid, { for: "me" });
    await eventually(() => b.got.changes.length === 1);
    assert.deepEqual([b.got.changes[0].kind, b.got.changes[0].for, b.got.changes[0].mid], ["delete", "me", mine.mid]);
    await sleep(300);
    assert.deepEqual(a.got.changes, [], "the sender sees nothing of it");
    assert.equal((await a.chat.history({ peer: "er2" })).items[0].body.message, "hello");
    assert.ok(isDeleted((await b.chat.history({ peer: "er1" })).items[0].body));
    // For everyone, then nothing more can change it; the list shows the tombstone as the last message.
    await a.chat.deleteMessage(m.mid, { for: "everyone" });
    const [last] = (await a.chat.conversations()).items.map((i) => i.last);
    assert.ok(last.mid === m.mid && last.kind === "out" && isDeleted(last.body), JSON.stringify(last));
    await assert.rejects(a.chat.edit(m.mid, "too late now"), (e) => e.code === "deleted");
    assert.equal(a.chat.pending, 0);
    assert.equal(b.chat.pending, 0);
  });

  test("an edit whose reply is lost is re-sent with the same cmid: duplicate:true, applied once", async () => {
    let dropNextSent = false;
    const { Tapped, sockets } = tappedWebSocket((text, sock) => {
      if (dropNextSent && text !== "heartbeat" && JSON.parse(text).op === "sent") {
        dropNextSent = false;
        sock.close(4000, "test: lose the reply");
        return false;
      }
    });
    const a = client(w, "el1", { WebSocket: Tapped });
    const b = client(w, "el2");
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    const m = await a.chat.send("el2", "v0");
    dropNextSent = true;
    const r = await a.chat.edit(m.mid, "v1");
    assert.equal(r.duplicate, true);
    const edits = sockets.flatMap((s) => s.sent.filter((d) => d !== "heartbeat").map((d) => JSON.parse(d)).filter((f) => f.op === "edit"));
    assert.equal(edits.length, 2);
    assert.equal(edits[0].cmid, edits[1].cmid);
    await eventually(() => b.got.changes.length === 1);
    await sleep(300);
    assert.equal(b.got.changes.length, 1, "one op entry");
    assert.equal(b.got.changes[0].mid, r.mid);
    assert.equal(b.got.changes[0].body.edit_version, 1, "applied once");
    // A cmid used again later joins the stored op too.
    const again = await a.chat.edit(m.mid, "v1", { cmid: edits[0].cmid });
    assert.deepEqual(again, { ...r, duplicate: true });
    await sleep(300);
    assert.equal(b.got.changes.length, 1);
  });
  test("a watch is sent again right after a reconnect; changes keep coming on the new socket", async () => {
    // Default WATCH_TTL_S (60): the SDK's next renewal would be 30 s away, so a watch on the new socket within seconds is the re-send.
    const { Tapped, sockets } = tappedWebSocket(() => {});
    const a = client(w, "rw1", { WebSocket: Tapped });
    await a.chat.connect();
    await a.chat.send("rw2", "are you there?"); // a conversation; rw2 was never online
    a.chat.watch("rw2");
    await eventually(() => a.got.presence.length === 1);
    assert.deepEqual(a.got.presence[0], { user: "rw2", online: false, last_seen: null });
    sockets[0].close(4000, "test: drop");
    await eventually(() => sockets.length === 2 && a.chat.state === "open");
    const frames = (sock, op) => sock.sent.concat(sock.received).filter((d) => d !== "heartbeat").map((d) => JSON.parse(d)).filter((f) => f.op === op);
    await eventually(() => frames(sockets[1], "watch").length === 1, 5000);
    await eventually(() => a.got.presence.length === 2);
    const b = client(w, "rw2");
    await b.chat.connect();
    await eventually(() => a.chat.presence("rw2")?.online === true, 5000);
    assert.ok(frames(sockets[1], "presence").some((f) => f.online && f.re === undefined), "a push on the new socket");
    assert.deepEqual(a.got.errors.filter((e) => e.code !== "connect_failed"), []);
  });
});

describe("presence and short edit windows against the worker", () => {
  let w;
  // Offline 1 s after the last socket closes; watches last 2 s (the SDK renews every 1 s); edits within 2 s.
  before(async () => (w = await startWorker({ bindings: { PRESENCE_GRACE_S: "1", WATCH_TTL_S: "2", EDIT_WINDOW_S: "2" } })));
  after(() => w.close());

  test("watch: online, offline with last_seen once the peer's sockets are gone, online again; renewed past the ttl", async () => {
    const { Tapped, sockets } = tappedWebSocket(() => {});
    const a = client(w, "pw1", { WebSocket: Tapped });
    const b = client(w, "pw2");
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    await b.chat.send("pw1", "hi"); // presence is shown within a conversation
    await eventually(() => a.inbox().length === 1);
    const unwatch = a.chat.watch("pw2");
    await eventually(() => a.got.presence.length >= 1);
    assert.deepEqual(a.got.presence[0], { user: "pw2", online: true, last_seen: a.got.presence[0].last_seen });
    assert.equal(typeof a.got.presence[0].last_seen, "number");
    // Past several ttls: only the SDK's renewals keep the server pushing.
    await sleep(5000);
    const watches = () => a.got.presence.length;
    const before = watches();
    assert.ok(before >= 4, `renewal answers: ${before}`);
    const closedAt = Date.now();
    await b.chat.close();
    const off = await eventually(() => a.got.presence.find((p, i) => i >= before - 1 && p.online === false), 8000);
    assert.equal(off.user, "pw2");
    assert.equal(off.last_seen % 60000, 0, "rounded to the minute");
    assert.ok(off.last_seen <= closedAt && off.last_seen > closedAt - 120000, `last_seen ${off.last_seen}`);
    assert.deepEqual(a.chat.presence("pw2"), { online: false, last_seen: off.last_seen });
    // Pushed (no `re`) while the watch lived: it would have lapsed 2 s after the first watch without the renewals.
    const pushes = sockets.flatMap((s) => s.received).filter((d) => d !== "heartbeat").map((d) => JSON.parse(d)).filter((f) => f.op === "presence" && f.re === undefined);
    assert.ok(pushes.some((f) => f.user === "pw2" && f.online === false), JSON.stringify(pushes));
    const c = (await a.chat.conversations()).items.find((i) => i.peer === "pw2");
    assert.deepEqual(c.presence, { online: false, last_seen: off.last_seen });
    const b2 = client(w, "pw2");
    await b2.chat.connect();
    await eventually(() => a.chat.presence("pw2")?.online === true, 5000);
    unwatch();
    assert.deepEqual(a.got.errors, []);
  });

  test("hide_presence: settings on every device, the peer sees offline and never seen", async () => {
    const a = client(w, "ph1");
    const b = client(w, "ph2");
    const b2 = client(w, "ph2", { device: "other" });
    await Promise.all([a.chat.connect(), b.chat.connect(), b2.chat.connect()]);
    assert.deepEqual(b.chat.settings, { hide_presence: false, group_adds: "everyone" });
    await b.chat.send("ph1", "hi");
    a.chat.watch("ph2");
    await eventually(() => a.chat.presence("ph2")?.online === true);
    await b.chat.setHidePresence(true);
    await eventually(() => b2.got.settings.length === 1 && b.chat.settings.hide_presence === true);
    assert.deepEqual(b2.chat.settings, { hide_presence: true, group_adds: "everyone" });
    await eventually(() => a.chat.presence("ph2")?.online === false);
    assert.deepEqual(a.chat.presence("ph2"), { online: false, last_seen: null });
    assert.deepEqual((await a.chat.conversations()).items[0].presence, { online: false, last_seen: null });
    // A new connection's welcome carries it.
    const b3 = client(w, "ph2", { device: "third" });
    assert.deepEqual((await b3.chat.connect()).settings, { hide_presence: true, group_adds: "everyone" });
    await b.chat.setHidePresence(false);
    await eventually(() => a.chat.presence("ph2")?.online === true);
  });

  test("an edit after the edit window is refused with too_late; a delete for me still works", async () => {
    const a = client(w, "tl1");
    const b = client(w, "tl2");
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    const m = await a.chat.send("tl2", "soon frozen");
    await a.chat.edit(m.mid, "in time");
    await sleep(3200);
    await assert.rejects(a.chat.edit(m.mid, "late"), (e) => e.code === "too_late" && e.retry === false);
    await assert.rejects(a.chat.deleteMessage(m.mid, { for: "everyone" }), (e) => e.code === "too_late");
    await a.chat.deleteMessage(m.mid, { for: "me" });
    await eventually(() => a.got.changes.some((c) => c.for === "me"));
  });
});

describe("client SDK across a runtime restart", () => {
  let w;
  before(async () => (w = await startWorker({ port: await freePort() })));
  after(() => w.close());

  test("killing the runtime mid-stream: every message delivered once, in order, every send confirmed", async () => {
    // A connect attempt that reaches the runtime while it restarts can hang
    // without an answer: the connect timeout (no welcome) gives up on it.
    const a = client(w, "kr1", { connectTimeoutMs: 2000 });
    const b = client(w, "kr2", { connectTimeoutMs: 2000 });
    await Promise.all([a.chat.connect(), b.chat.connect()]);
    const N = 60;
    const texts = Array.from({ length: N }, (_, i) => `msg ${i}`);
    const sends = texts.map((t) => a.chat.send("kr2", t));
    await eventually(() => b.inbox().length >= 10, 10000, 5);
    assert.ok(b.inbox().length < N, "the restart happens mid-stream");
    const url = w.url;
    await w.restart();
    assert.equal(w.url, url, "same port after the restart");
    const results = await Promise.all(sends);
    assert.equal(results.length, N);
    await eventually(() => b.inbox().length >= N, 20000);
    await sleep(500);
    assert.deepEqual(contiguous(b.got.messages), texts, "exactly once, in order, no gap");
    assert.deepEqual(b.inbox().map((m) => m.mid), results.map((r) => r.mid));
    assert.ok(a.got.states.includes("reconnecting") && b.got.states.includes("reconnecting"));
    assert.equal(a.chat.pending, 0);
    // Seqs of the sender's own log are distinct: nothing was stored twice.
    assert.equal(new Set(results.map((r) => r.seq)).size, N);
    await Promise.all([a.chat.close(), b.chat.close()]);
  });
});
