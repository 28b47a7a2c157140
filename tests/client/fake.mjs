// Test doubles for the client SDK's unit tests: a manual clock (the client's
// timers are injected) and a scripted fake WebSocket whose "server side" the
// test drives (open, welcome, push frames, drop).
import { ChatClient } from "../../client/dist/index.js";

/** Lets pending promise callbacks run (several rounds, for chained awaits). */
export async function flush(rounds = 10) {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

export class FakeClock {
  now = 0;
  #timers = new Map();
  #id = 0;
  setTimeout = (fn, ms) => {
    const id = ++this.#id;
    this.#timers.set(id, { at: this.now + Math.max(0, ms ?? 0), fn, id });
    return id;
  };
  clearTimeout = (id) => {
    this.#timers.delete(id);
  };
  /** Delays of the timers now pending, relative to now. */
  pending() {
    return [...this.#timers.values()].map((t) => t.at - this.now);
  }
  /** Moves time forward by `ms`, running due timers in order (and promise callbacks in between). */
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      await flush();
      let next = null;
      for (const t of this.#timers.values()) if (t.at <= end && (!next || t.at < next.at || (t.at === next.at && t.id < next.id))) next = t;
      if (!next) break;
      this.#timers.delete(next.id);
      this.now = next.at;
      next.fn();
    }
    this.now = end;
    await flush();
  }
}

export function fakeSockets({ user = "u1", heartbeat_ms = 30000 } = {}) {
  const sockets = [];
  class FakeSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSED = 3;
    readyState = 0;
    sent = [];
    closedWith = null;
    onopen = null;
    onmessage = null;
    onclose = null;
    onerror = null;
    constructor(url, protocols) {
      this.url = new URL(url);
      this.protocols = protocols;
      sockets.push(this);
    }
    get params() {
      return Object.fromEntries(this.url.searchParams);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
      this.sent.push(data);
    }
    close(code, reason) {
      if (this.readyState === 3) return;
      this.closedWith = { code, reason };
      this.readyState = 3;
      queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? "" }));
    }
    // ---- server side
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    welcome(over = {}) {
      if (this.readyState === 0) this.open();
      const since = this.url.searchParams.has("since") ? Number(this.url.searchParams.get("since")) : 0;
      this.push({
        op: "welcome", v: 1, user, device: this.url.searchParams.get("device"), head: since, since, recovered: true, heartbeat_ms,
        limits: { frame_bytes: 65536, history_page: 200, cmid_chars: 64, sends_per_second: 20, send_burst: 60, edit_window_s: 86400, watch_ttl_s: 60 },
        settings: { hide_presence: false, group_adds: "contacts" },
        ...over,
      });
    }
    push(frame) {
      this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }
    msg(seq, over = {}) {
      this.push({ op: "msg", seq, kind: "in", peer: "2", mid: `m${seq}`, body: { fromUser: "2", toUser: user, message: `hello ${seq}` }, ...over });
    }
    /** An op entry: `kind` edit or delete of message `target`, whose new body is `body`. */
    op(seq, kind, target, body, over = {}) {
      const scope = kind === "delete" ? { for: "everyone" } : {};
      this.push({ op: "msg", seq, kind, peer: "2", mid: `op${seq}`, body: { target, body, ...scope }, ...over });
    }
    /** A group entry of this user's log: a message of `group` (or, with `body.type: "group"`, a membership change). */
    group(seq, group, group_seq, body = {}, over = {}) {
      const b = { group, group_seq, fromUser: "2", message: `group hello ${group_seq}`, id: `g${seq}`, time: "2026-01-01T00:00:00.000Z", ...body };
      this.push({ op: "msg", seq, kind: "group", peer: null, mid: b.id, body: b, ...over });
    }
    /** A group's answer to the request (or group send) with id `re`. */
    answer(re, status, body = null) {
      this.push({ op: "group", re, status, body });
    }
    /** Closes from the server side (or the network) with `code`. */
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code, reason: "" });
    }
    /** Parsed JSON frames this socket sent (heartbeats excluded), optionally of one op. */
    frames(op) {
      return this.sent.filter((d) => d !== "heartbeat").map((d) => JSON.parse(d)).filter((f) => !op || f.op === op);
    }
    heartbeats() {
      return this.sent.filter((d) => d === "heartbeat").length;
    }
  }
  return { FakeSocket, sockets, last: () => sockets.at(-1) };
}

/** Records every event of a client. */
export function record(chat) {
  const r = {
    states: [], errors: [], messages: [], sent: [], resyncs: [], welcomes: [], receipts: [], unread: [], typing: [], changes: [], presence: [], settings: [],
    groupMessages: [], groupChanges: [], groupReads: [], groupTyping: [], groupSent: [],
  };
  chat.on("state", (s) => r.states.push(s));
  chat.on("error", (e) => r.errors.push(e));
  chat.on("sent", (s) => r.sent.push(s));
  chat.on("resync", (w) => r.resyncs.push(w));
  chat.on("welcome", (w) => r.welcomes.push(w));
  chat.on("receipt", (x) => r.receipts.push(x));
  chat.on("unread", (x) => r.unread.push(x));
  chat.on("typing", (x) => r.typing.push(x));
  chat.on("change", (x) => r.changes.push(x));
  chat.on("presence", (x) => r.presence.push(x));
  chat.on("settings", (x) => r.settings.push(x));
  chat.on("groupMessage", (x) => r.groupMessages.push(x));
  chat.on("groupChange", (x) => r.groupChanges.push(x));
  chat.on("groupRead", (x) => r.groupReads.push(x));
  chat.on("groupTyping", (x) => r.groupTyping.push(x));
  chat.on("groupSent", (x) => r.groupSent.push(x));
  return r;
}

/**
 * A fetch that answers `POST /v1/ws-ticket` with the ticket `tk:<token>`
 * (recording the token in `tickets`) and hands any other request to `inner`.
 */
export function ticketFetch(inner, tickets = []) {
  return async (url, init) => {
    if (new URL(url).pathname !== "/v1/ws-ticket") return inner(url, init);
    const token = init.headers.authorization.replace(/^Bearer /, "");
    tickets.push(token);
    return Response.json({ ticket: `tk:${token}`, expires_in: 30 });
  };
}

/** A client on a fake socket and a manual clock, with its events recorded. */
export function setup(opts = {}, fake = {}) {
  const clock = new FakeClock();
  const S = fakeSockets(fake);
  const tickets = [];
  const noFetch = async (url) => {
    throw new Error(`no fetch in this test: ${url}`);
  };
  const chat = new ChatClient({
    url: "ws://chat.test/ws",
    token: "tok",
    WebSocket: S.FakeSocket,
    timers: clock,
    random: () => 0.5,
    device: "dev1",
    ...opts,
    // Socket tickets are answered here (unless `fake.tickets` is false);
    // `opts.fetch` gets every other request.
    fetch: fake.tickets === false ? opts.fetch : ticketFetch(opts.fetch ?? noFetch, tickets),
  });
  const r = record(chat);
  return { chat, clock, S, r, tickets };
}

/** Connects and welcomes; returns the socket. */
export async function open(t, over) {
  const p = t.chat.connect();
  await t.clock.advance(0);
  const ws = t.S.last();
  ws.welcome(over);
  await p;
  await t.clock.advance(0);
  return ws;
}
