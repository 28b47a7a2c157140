// ChatClient: the public face of the SDK and the glue between its parts. It
// checks calls, loads and saves the client state (store), hands each server
// frame to the part that owns it, and keeps the public state and events.
//   connection.ts     socket lifecycle: token, ticket, URL, heartbeats, dead sockets, reconnects
//   receiver.ts       message processing in seq order, the cursor, acks after saving
//   sender.ts         the outbox over the socket: sends, replies, retries, frame limit
//   requests.ts       read / history / watch / settings / group requests
//   groups.ts         group answers: results, refusals, re-sent calls
//   watches.ts        presence watches: renewals, and again after reconnects
//   conversations.ts  the conversation list over HTTP
//   changes.ts        applying edits and deletes to messages (for the app)
// Everything platform-specific (WebSocket, fetch, timers, random) is injectable.

import type { BackoffOptions } from "./backoff.ts";
import { Connection, OPEN, type SocketConstructor, type TokenSource } from "./connection.ts";
import { fetchConversations, type ConversationQuery } from "./conversations.ts";
import { ChatError, fromErrorFrame } from "./errors.ts";
import { Emitter, type Listener } from "./events.ts";
import {
  GROUP_RE,
  ID_RE,
  groupId,
  isGroupAdds,
  isGroupChange,
  isSeq,
  parseFrame,
  toChange,
  toGroupItem,
  type BlockLists,
  type Body,
  type Change,
  type ConversationPage,
  type GroupChange,
  type GroupMessage,
  type GroupRead,
  type GroupTyping,
  type HistoryPage,
  type HistoryQuery,
  type Msg,
  type Presence,
  type PresenceUpdate,
  type Receipt,
  type Resync,
  type SendResult,
  type Settings,
  type Typing,
  type Unread,
  type Welcome,
  type GroupAdds,
} from "./frames.ts";
import {
  judge,
  parseChanged,
  parseCreated,
  parseHistory,
  parseInfo,
  parseRead,
  parseReadBy,
  type GroupChangeResult,
  type GroupCreated,
  type GroupHistoryPage,
  type GroupHistoryQuery,
  type GroupInfo,
  type GroupReadBy,
  type GroupSendResult,
  type GroupSentEvent,
} from "./groups.ts";
import { Receiver } from "./receiver.ts";
import { Requests, type Judge } from "./requests.ts";
import { Sender, type SentEvent } from "./sender.ts";
import { MemoryStore, Persister, type ClientStore, type OutboxEntry, type StoredState } from "./store.ts";
import { realTimers, type Timers } from "./timers.ts";
import { deferred, randomId, type Deferred } from "./util.ts";
import { Watches } from "./watches.ts";

export type State = "connecting" | "open" | "reconnecting" | "closed";

export interface ChatClientOptions {
  /** The /ws endpoint, e.g. `wss://chat.example.com/ws`. */
  url: string;
  /** A JWT, or a function returning one (called on every connect and reconnect). */
  token: TokenSource;
  /** Device id (1–64 of `[A-Za-z0-9_.@-]`); default: the stored one, else a random one, then stored. */
  device?: string;
  /** Resume from this seq on the first connect instead of the stored cursor. */
  since?: number;
  /** Persistence for the outbox, cursor, device and user. Default: a MemoryStore. */
  store?: ClientStore;
  /** WebSocket constructor. Default: globalThis.WebSocket. */
  WebSocket?: SocketConstructor;
  /** fetch, for conversations() and the socket tickets. Default: globalThis.fetch. */
  fetch?: typeof globalThis.fetch;
  /**
   * Trade the token for a one-time socket ticket before each connect (POST /v1/ws-ticket on the
   * url's host, the token in a header), so the token never appears in a socket URL. Default true.
   * A page on another origin than the chat host needs that POST allowed (CORS); false puts the
   * token in the socket URL, as before tickets.
   */
  socketTickets?: boolean;
  /** Reconnect and retry backoff (full jitter). Default { baseMs: 500, maxMs: 30000 }. */
  backoff?: BackoffOptions;
  /** A socket with no incoming frame this long after a heartbeat or request is closed and replaced. Default 10000. */
  deadAfterMs?: number;
  /** How long to wait for the welcome after creating a socket. Default 10000. */
  connectTimeoutMs?: number;
  /** Heartbeat period; the smaller of this and welcome.heartbeat_ms is used. */
  heartbeatMs?: number;
  /** Acks (and cursor saves) are batched over this window. Default 20. */
  ackDelayMs?: number;
  /** Injectable timers (tests). */
  timers?: Timers;
  /** Injectable randomness in [0, 1) for backoff jitter (tests). */
  random?: () => number;
}

export interface ChatEvents {
  state: State;
  welcome: Welcome;
  resync: Resync;
  /** A chat (or system message) entry of the log. Edits and deletes are `change` events instead. */
  message: Msg;
  /** An edit or delete of a message (an entry of the log, processed and acked like a message). */
  change: Change;
  receipt: Receipt;
  unread: Unread;
  typing: Typing;
  /** The block and mute lists changed (on any device, or over HTTP). */
  blocks: BlockLists;
  /** A watched user's presence: the answer to a watch, then each change. */
  presence: PresenceUpdate;
  /** The user's settings changed (on any device, or over HTTP). */
  settings: Settings;
  sent: SentEvent;
  /** A message of a group this user is in (an entry of the log, processed and acked like a message; own sends too). */
  groupMessage: GroupMessage;
  /** A membership change of a group (created, added, removed, left, role_changed, handed_over): an entry of the log, like groupMessage. */
  groupChange: GroupChange;
  /** How many members read a group message this user sent ("read by `read` of `of`"), as it changes. */
  groupRead: GroupRead;
  /** A member started or stopped typing in a group. */
  groupTyping: GroupTyping;
  /** Every confirmed group send (including those restored after a reload). */
  groupSent: GroupSentEvent;
  error: ChatError;
}

export interface SendOptions {
  /** Client message id; default random. Re-using a pending one joins that send (or edit, or delete). */
  cmid?: string;
}

export interface DeleteOptions extends SendOptions {
  /** `everyone`: an own chat, for both sides (within limits.edit_window_s); `me`: any entry, for this user alone. */
  for: "everyone" | "me";
}

export class ChatClient {
  readonly #url: string;
  readonly #store: ClientStore;
  readonly #fetch: typeof globalThis.fetch | undefined;
  readonly #optDevice: string | undefined;
  readonly #optSince: number | undefined;

  readonly #events = new Emitter<ChatEvents>();
  readonly #conn: Connection;
  readonly #rx: Receiver;
  readonly #tx: Sender;
  readonly #req: Requests;
  readonly #watches: Watches;
  readonly #persister: Persister;
  readonly #loaded: Promise<void>;
  #isLoaded = false;

  #state: State = "closed";
  #user: string | null = null;
  #storedUser: string | null = null;
  #device: string | null = null;
  #everOpen = false;
  #blocks: BlockLists = { blocked: [], muted: [] };
  #settings: Settings = { hide_presence: false, group_adds: "contacts" };
  readonly #presence = new Map<string, Presence>();
  #first: Deferred<Welcome> | null = null;

  constructor(opts: ChatClientOptions) {
    if (!opts || typeof opts.url !== "string") throw new TypeError("ChatClient: `url` is required");
    const u = new URL(opts.url);
    if (!/^(wss?|https?):$/.test(u.protocol)) throw new TypeError(`ChatClient: url must be ws: or wss:, got ${u.protocol}`);
    if (typeof opts.token !== "string" && typeof opts.token !== "function") throw new TypeError("ChatClient: `token` must be a string or a function");
    if (opts.device !== undefined && !ID_RE.test(opts.device)) throw new TypeError("ChatClient: `device` must be 1 to 64 of letters, digits, _ - . @");
    if (opts.since !== undefined && !isSeq(opts.since)) throw new TypeError("ChatClient: `since` must be a non-negative integer");
    this.#url = opts.url;
    this.#store = opts.store ?? new MemoryStore();
    this.#fetch = opts.fetch ?? (typeof globalThis.fetch === "function" ? globalThis.fetch.bind(globalThis) : undefined);
    this.#optDevice = opts.device;
    this.#optSince = opts.since;
    const timers = opts.timers ?? realTimers;
    const random = opts.random ?? Math.random;
    const backoff = { ...opts.backoff };
    const error = (e: ChatError): void => this.#error(e);
    const persist = (): Promise<boolean> => this.#persist();

    this.#conn = new Connection(
      {
        url: opts.url,
        token: opts.token,
        fetch: opts.socketTickets === false ? undefined : this.#fetch,
        WebSocket: opts.WebSocket ?? (globalThis as { WebSocket?: SocketConstructor }).WebSocket,
        timers,
        backoff,
        random,
        deadAfterMs: opts.deadAfterMs ?? 10_000,
        connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
        heartbeatMs: opts.heartbeatMs ?? Infinity,
      },
      {
        ready: () => this.#loaded,
        params: () => ({ device: this.#device ?? "", since: this.#rx.cursor }),
        onData: (data) => this.#onData(data),
        onDown: () => this.#setState(this.#everOpen ? "reconnecting" : "connecting"),
        onDetach: () => {
          this.#tx.disconnected();
          this.#req.disconnected();
        },
        onFatal: (e) => void this.#shutdown(e),
        onError: error,
      },
    );
    const link = this.#conn;
    this.#rx = new Receiver({
      link,
      timers,
      ackDelayMs: opts.ackDelayMs ?? 20,
      backoff,
      random,
      deliver: (e) => {
        if (e.kind === "group") {
          // parseFrame checked the body.
          const g = toGroupItem(e.body, e.mid, e.seq)!;
          return isGroupChange(g) ? this.#events.emitSerial("groupChange", g) : this.#events.emitSerial("groupMessage", g);
        }
        const c = toChange(e);
        return c ? this.#events.emitSerial("change", c) : this.#events.emitSerial("message", e as Msg);
      },
      resync: (r) => this.#emit("resync", r),
      error,
      persist,
      handlerFailed: (gen) => this.#conn.abandon(1000, "handler failed", gen),
      running: () => this.#conn.running,
    });
    this.#tx = new Sender({
      link,
      timers,
      backoff,
      random,
      persist,
      sent: (e) => this.#emit("sent", e),
      groupSent: (e) => this.#emit("groupSent", e),
      error,
    });
    this.#req = new Requests({ link, timers, backoff, random });
    this.#watches = new Watches({ timers, request: (f) => this.#request(f), error });
    this.#persister = new Persister(this.#store, () => this.#snapshot(), (e) =>
      this.#error(new ChatError("store", `saving client state failed: ${String(e)}`, { retry: true, cause: e })),
    );
    this.#loaded = this.#load();
  }

  // ---------------------------------------------------------------- public

  get state(): State {
    return this.#state;
  }
  /** User id from the last welcome (or the store), null before. */
  get user(): string | null {
    return this.#user ?? this.#storedUser;
  }
  get device(): string | null {
    return this.#device;
  }
  /** Last processed seq; null before the first welcome of a new device. */
  get cursor(): number | null {
    return this.#rx.cursor;
  }
  /** Sends, edits, deletes and group sends not confirmed yet. */
  get pending(): number {
    return this.#tx.outbox.size;
  }
  /** Resolves once the store was loaded (device, cursor, outbox known). */
  get ready(): Promise<void> {
    return this.#loaded;
  }

  on<K extends keyof ChatEvents>(name: K, fn: Listener<ChatEvents[K]>): () => void {
    return this.#events.on(name, fn);
  }
  off<K extends keyof ChatEvents>(name: K, fn: Listener<ChatEvents[K]>): void {
    this.#events.off(name, fn);
  }

  /** Starts connecting (and reconnecting, until close()). Resolves at the first welcome. */
  connect(): Promise<Welcome> {
    if (this.#conn.running && this.#first) return this.#first.promise;
    this.#everOpen = false;
    this.#first = deferred<Welcome>();
    this.#first.promise.catch(() => {}); // a caller that does not await must not get an unhandled rejection
    this.#conn.start();
    this.#setState("connecting");
    return this.#first.promise;
  }

  /**
   * Stops: the socket is closed (after saving the cursor and sending the last
   * ack), pending read/history calls reject with `closed`. Sends stay in the
   * outbox (and the store) and go out after the next connect().
   */
  close(): Promise<void> {
    return this.#shutdown(new ChatError("closed", "the client was closed"));
  }

  /** Sends a chat to `to`. Resolves with the server's `sent` once stored; survives reconnects. */
  async send(to: string, body: Body | string, opts: SendOptions = {}): Promise<SendResult> {
    if (typeof to !== "string" || !ID_RE.test(to)) throw new ChatError("bad_field", "`to` must be a user id (1 to 64 of letters, digits, _ - . @)", { field: "to" });
    const copy = checkBody(body);
    const cmid = checkCmid(opts.cmid);
    await this.#loaded;
    return this.#tx.queue({ cmid, to, body: copy }) as Promise<SendResult>;
  }

  /**
   * Replaces the body of the own chat `mid` with `body` (the whole new body).
   * Goes through the outbox like a send (survives reconnects and reloads,
   * applied once); resolves with the edit's own `{ mid, seq, duplicate }`.
   * Every device then gets a `change` event.
   */
  async edit(mid: string, body: Body | string, opts: SendOptions = {}): Promise<SendResult> {
    checkMid(mid);
    const copy = checkBody(body);
    const cmid = checkCmid(opts.cmid);
    await this.#loaded;
    return this.#tx.queue({ op: "edit", cmid, mid, body: copy }) as Promise<SendResult>;
  }

  /** Deletes the message `mid` for everyone or for this user (`opts.for`); as edit() otherwise. */
  async deleteMessage(mid: string, opts: DeleteOptions): Promise<SendResult> {
    checkMid(mid);
    const scope = opts?.for;
    if (scope !== "everyone" && scope !== "me") throw new ChatError("bad_field", '`for` must be "everyone" or "me"', { field: "for" });
    const cmid = checkCmid(opts.cmid);
    await this.#loaded;
    return this.#tx.queue({ op: "delete", cmid, mid, for: scope }) as Promise<SendResult>;
  }

  /** Marks the conversation with `peer` read up to `upTo` (a seq of your log). */
  async read(peer: string, upTo: number): Promise<void> {
    if (typeof peer !== "string" || !ID_RE.test(peer)) throw new ChatError("bad_field", "`peer` must be a user id", { field: "peer" });
    if (!isSeq(upTo)) throw new ChatError("bad_field", "`upTo` must be a non-negative integer", { field: "up_to" });
    await this.#request({ op: "read", peer, up_to: upTo });
  }

  /** One page of the log (over the socket): newest first with `before`, oldest first with `after`. */
  async history(q: HistoryQuery = {}): Promise<HistoryPage> {
    const frame: Record<string, unknown> = { op: "history" };
    if (q.peer !== undefined) frame.peer = q.peer;
    if (q.before !== undefined) frame.before = q.before;
    if (q.after !== undefined) frame.after = q.after;
    if (q.limit !== undefined) frame.limit = q.limit;
    const f = (await this.#request(frame)) as { items: Msg[]; next: number | null };
    return { items: f.items, next: f.next };
  }

  /** The conversation list with unread counts: GET /v1/conversations on the same host. */
  async conversations(q: ConversationQuery = {}): Promise<ConversationPage> {
    const f = this.#fetch;
    if (!f) throw new ChatError("network", "no fetch available; pass `fetch` in the options");
    const conn = this.#conn;
    return fetchConversations(f, this.#url, q, {
      current: async () => conn.lastToken ?? (await conn.token()),
      fresh: conn.refreshable ? () => conn.token() : null,
    });
  }

  /** The block and mute lists as the server last said (welcome or `blocks` frame). */
  get blocks(): BlockLists {
    return this.#blocks;
  }

  /** Blocks `user`: their chats never reach you, and they are not told. */
  async block(user: string): Promise<void> {
    await this.#request({ op: "block", user: checkId(user, "user") });
  }

  /** Unblocks `user`; what they sent meanwhile is not delivered. */
  async unblock(user: string): Promise<void> {
    await this.#request({ op: "unblock", user: checkId(user, "user") });
  }

  /** Mutes `peer` (no push for their messages) until `until` (ms since the epoch), or until unmuted. */
  async mute(peer: string, until?: number): Promise<void> {
    if (until !== undefined && !isSeq(until)) throw new ChatError("bad_field", "`until` must be a time in ms since the epoch", { field: "until" });
    await this.#request({ op: "mute", peer: checkId(peer, "peer"), ...(until === undefined ? {} : { until }) });
  }

  async unmute(peer: string): Promise<void> {
    await this.#request({ op: "unmute", peer: checkId(peer, "peer") });
  }

  /**
   * Watches `peer`'s presence while the returned function is not called:
   * a `presence` event now and on each change. The watch is renewed before
   * the server forgets it and sent again after every reconnect. Several
   * watches of one peer share one.
   */
  watch(peer: string): () => void {
    return this.#watches.add(checkId(peer, "peer"));
  }

  /** The last presence the server told of `user` (a `presence` event), or null. */
  presence(user: string): Presence | null {
    return this.#presence.get(user) ?? null;
  }

  /** The user's settings as the server last said (welcome or `settings` frame). */
  get settings(): Settings {
    return this.#settings;
  }

  /** Hides (or shows again) this user's presence from everyone: they see you offline, never seen. */
  async setHidePresence(hide: boolean): Promise<void> {
    if (typeof hide !== "boolean") throw new ChatError("bad_field", "`hide` must be a boolean", { field: "hide_presence" });
    await this.#request({ op: "settings", hide_presence: hide });
  }

  /**
   * Who may add this user to groups: `everyone`, `contacts` (users you sent
   * a 1:1 message to; the server's default) or `nobody`. Never a user you
   * blocked. An add the setting refuses fails with `add_refused`; a
   * createGroup() leaves such members out and names them in `refused`.
   */
  async setGroupAdds(who: GroupAdds): Promise<void> {
    if (!isGroupAdds(who)) throw new ChatError("bad_field", "`who` must be everyone, contacts or nobody", { field: "group_adds" });
    await this.#request({ op: "settings", group_adds: who });
  }

  /** Tells `to` whether you are typing. Fire-and-forget: false when not connected. */
  typing(to: string, active: boolean): boolean {
    if (!this.#conn.isOpen || typeof to !== "string" || !ID_RE.test(to)) return false;
    return this.#conn.send({ op: "typing", to, active: active === true });
  }

  // ---------------------------------------------------------------- groups

  /**
   * Creates a group owned by this user with `members` (user ids, not this
   * user). `opts.group` names it (`g:` and 1 to 32 of `[a-z0-9_-]`; taken:
   * `group_exists`); default a random id. Every member (this user too) gets
   * a `groupChange` of kind `created`.
   */
  async createGroup(members: string[], opts: { group?: string } = {}): Promise<GroupCreated> {
    if (!Array.isArray(members)) throw new ChatError("bad_field", "`members` must be an array of user ids", { field: "members" });
    const list = members.map((m) => checkId(m, "members"));
    const chosen = opts.group !== undefined;
    const group = chosen ? checkGroup(opts.group) : `g:${randomId().replaceAll("-", "").toLowerCase().slice(0, 20)}`;
    // A re-sent create of a random id that finds it taken found its own first attempt.
    // Who refused is not known then: the first attempt's answer was lost.
    const dup: GroupCreated = { group: groupId(group), group_seq: 1, refused: [], duplicate: true };
    return (await this.#groupCall("create", { group, members: list }, judge("create", parseCreated, chosen ? undefined : dup))) as GroupCreated;
  }

  /**
   * Sends a message to `group`. Goes through the outbox like send(): a cmid
   * (random unless given) kept across reconnects and reloads, so a re-send is
   * stored once (`duplicate: true`); one message per group in flight, so
   * they are stored in call order. Resolves once stored and queued for every
   * member: `{ group, mid, group_seq, duplicate }`.
   */
  async groupSend(group: string, body: Body | string, opts: SendOptions = {}): Promise<GroupSendResult> {
    checkGroup(group);
    const copy = checkBody(body);
    const cmid = checkCmid(opts.cmid);
    await this.#loaded;
    return this.#tx.queue({ op: "group", cmid, group, body: copy }) as Promise<GroupSendResult>;
  }

  /** Adds `user` to `group` (as `member` unless `role` is `admin`); owners and admins may. */
  async addMember(group: string, user: string, role?: "admin" | "member"): Promise<GroupChangeResult> {
    const fields: Record<string, unknown> = { group: checkGroup(group), user: checkId(user, "user") };
    if (role !== undefined) fields.role = checkRole(role);
    return this.#change("add", fields);
  }

  /** Removes `user` from `group` (owners and admins; never the owner). */
  async removeMember(group: string, user: string): Promise<GroupChangeResult> {
    return this.#change("remove", { group: checkGroup(group), user: checkId(user, "user") });
  }

  /** Leaves `group` (an owner hands over first: `owner_must_hand_over`). */
  async leaveGroup(group: string): Promise<GroupChangeResult> {
    return this.#change("leave", { group: checkGroup(group) });
  }

  /** Makes `user` an admin or a member of `group`. */
  async setRole(group: string, user: string, role: "admin" | "member"): Promise<GroupChangeResult> {
    return this.#change("set_role", { group: checkGroup(group), user: checkId(user, "user"), role: checkRole(role) });
  }

  /** Hands the ownership of `group` over to the member `user` (this user stays, as an admin). */
  async handOver(group: string, user: string): Promise<GroupChangeResult> {
    return this.#change("hand_over", { group: checkGroup(group), user: checkId(user, "user") });
  }

  /** The members of `group` (role, join, how far each read) and its newest group_seq. */
  async groupInfo(group: string): Promise<GroupInfo> {
    return (await this.#groupCall("info", { group: checkGroup(group) }, judge("info", parseInfo))) as GroupInfo;
  }

  /** One page of `group`'s history (from this user's join on), newest first: messages and changes. */
  async groupHistory(group: string, q: GroupHistoryQuery = {}): Promise<GroupHistoryPage> {
    const fields: Record<string, unknown> = { group: checkGroup(group) };
    if (q.before !== undefined) fields.before = checkSeq(q.before, "before");
    if (q.limit !== undefined) fields.limit = checkSeq(q.limit, "limit");
    return (await this.#groupCall("history", fields, judge("history", parseHistory))) as GroupHistoryPage;
  }

  /**
   * Marks `group` read up to `upTo` (a group_seq); resolves with how far
   * this user has read now (it never moves back). The senders of what it
   * covers get `groupRead` counts.
   */
  async markGroupRead(group: string, upTo: number): Promise<number> {
    const fields = { group: checkGroup(group), up_to: checkSeq(upTo, "up_to") };
    return (await this.#groupCall("read", fields, judge("read", parseRead))) as number;
  }

  /** "Read by N of M" for the entry at `groupSeq` of `group`. */
  async groupReadBy(group: string, groupSeq: number): Promise<GroupReadBy> {
    const fields = { group: checkGroup(group), seq: checkSeq(groupSeq, "seq") };
    return (await this.#groupCall("read_by", fields, judge("read_by", parseReadBy))) as GroupReadBy;
  }

  /** Tells the members of `group` online whether you are typing there. Fire-and-forget: false when not connected. */
  groupTyping(group: string, active: boolean): boolean {
    if (!this.#conn.isOpen || typeof group !== "string" || !GROUP_RE.test(group)) return false;
    // The answer (204) answers nothing in flight and is dropped.
    return this.#conn.send({ op: "group", id: this.#conn.nextId(), call: "typing", group, typing: active === true });
  }

  #change(call: string, fields: Record<string, unknown>): Promise<GroupChangeResult> {
    const dup: GroupChangeResult = { group_seq: null, duplicate: true };
    return this.#groupCall(call, fields, judge(call, parseChanged, dup)) as Promise<GroupChangeResult>;
  }

  #groupCall(call: string, fields: Record<string, unknown>, j: Judge): Promise<unknown> {
    return this.#request({ op: "group", call, ...fields }, j);
  }

  // ---------------------------------------------------------- frames in

  #onData(data: unknown): void {
    if (typeof data !== "string") {
      this.#error(new ChatError("protocol", "unexpected binary frame from the server"));
      return;
    }
    let f;
    try {
      f = parseFrame(data);
    } catch (e) {
      this.#error(new ChatError("protocol", String(e instanceof Error ? e.message : e), { cause: e }));
      return;
    }
    switch (f.op) {
      case "heartbeat":
      case "unknown":
        return;
      case "welcome":
        return this.#onWelcome(f);
      case "msg": {
        const { op: _op, ...m } = f;
        // A message with a peer: their conversation exists, a watch made before it can be kept now.
        if (m.peer !== null && m.kind !== "group") this.#watches.spoke(m.peer);
        return this.#rx.msg(m, this.#conn.socketGen);
      }
      case "sent":
        return this.#tx.onSent(f.re, { mid: f.mid, seq: f.seq, duplicate: f.duplicate });
      case "ok":
      case "history":
        return this.#req.answered(f.re, f);
      case "error":
        // A reply to a send or a request; one that answers nothing in flight
        // is for a socket long gone. Without `re`, it is about the connection.
        if (f.re !== undefined) {
          if (!this.#tx.onError(f.re, f)) this.#req.onError(f.re, f);
          return;
        }
        return this.#error(fromErrorFrame(f));
      case "unread":
        return this.#emit("unread", { peer: f.peer, count: f.count, read_up_to: f.read_up_to });
      case "receipt":
        return this.#emit("receipt", { peer: f.peer, type: f.type, up_to: f.up_to });
      case "typing":
        if (f.group !== undefined) return this.#emit("groupTyping", { group: f.group, from: f.from, active: f.active });
        return this.#emit("typing", { from: f.from, active: f.active });
      case "group_read":
        return this.#emit("groupRead", { group: f.group, group_seq: f.group_seq, read: f.read, of: f.of });
      case "group": {
        // A group send's answer (the outbox), else a group request's.
        const a = { status: f.status, body: f.body };
        if (!this.#tx.onGroupAnswer(f.re, a)) this.#req.answered(f.re, a);
        return;
      }
      case "blocks":
        this.#blocks = f.lists;
        return this.#emit("blocks", f.lists);
      case "presence": {
        const p = { user: f.user, online: f.online, last_seen: f.last_seen };
        this.#presence.set(p.user, { online: p.online, last_seen: p.last_seen });
        this.#emit("presence", p);
        if (f.re !== undefined) this.#req.answered(f.re, f); // the reply to a `watch`
        return;
      }
      case "settings":
        this.#settings = f.settings;
        return this.#emit("settings", f.settings);
    }
  }

  #onWelcome(w: Welcome): void {
    if (this.#storedUser !== null && this.#storedUser !== w.user) {
      void this.#shutdown(
        new ChatError("wrong_user", `the store holds the state of user ${this.#storedUser}, but the token is user ${w.user}; use one store (key) per user`),
      );
      return;
    }
    this.#user = w.user;
    this.#storedUser = w.user;
    this.#blocks = w.blocks;
    this.#settings = w.settings;
    this.#everOpen = true;
    if (typeof w.limits?.frame_bytes === "number" && w.limits.frame_bytes > 0) this.#tx.frameBytes = w.limits.frame_bytes;
    if (typeof w.limits?.watch_ttl_s === "number" && w.limits.watch_ttl_s > 0) this.#watches.ttlMs = w.limits.watch_ttl_s * 1000;
    // After a failed handler the backoff keeps growing until a message is processed.
    this.#conn.welcomed(w.heartbeat_ms, !this.#rx.poisoned);
    this.#rx.welcome(w, this.#conn.socketGen);
    this.#setState("open");
    this.#emit("welcome", w);
    this.#first?.resolve(w);
    this.#tx.pump();
    this.#req.pump();
    this.#watches.opened();
  }

  // ---------------------------------------------------------- plumbing

  #request(frame: Record<string, unknown>, j: Judge | null = null): Promise<unknown> {
    if (!this.#conn.running) return Promise.reject(new ChatError("closed", "the client is not connected: call connect() first"));
    return this.#req.request(frame, j);
  }

  async #shutdown(reason: ChatError): Promise<void> {
    const wasOpen = this.#conn.isOpen;
    if (reason.code !== "closed") this.#error(reason);
    const ws = this.#conn.stop();
    this.#rx.halt(this.#conn.gen); // frames received but not processed yet are dropped
    this.#tx.stop();
    this.#watches.stop();
    this.#req.rejectAll(reason);
    this.#first?.reject(reason);
    this.#first = null;
    this.#setState("closed");
    const upTo = await this.#rx.settle();
    if (!ws) return;
    if (wasOpen && upTo !== null && ws.readyState === OPEN) {
      try {
        ws.send(JSON.stringify({ op: "ack", up_to: upTo }));
      } catch {
        /* closing anyway */
      }
    }
    try {
      ws.close(1000, "client closed");
    } catch {
      /* already closing */
    }
  }

  #setState(s: State): void {
    if (this.#state === s) return;
    this.#state = s;
    this.#emit("state", s);
  }

  #emit<K extends keyof ChatEvents>(name: K, value: ChatEvents[K]): void {
    this.#events.emit(name, value, (e) => {
      if (name !== "error") this.#error(new ChatError("listener_failed", `a "${String(name)}" listener failed: ${String(e)}`, { cause: e }));
    });
  }

  #error(e: ChatError): void {
    this.#events.emit("error", e, () => {});
  }

  async #load(): Promise<void> {
    let s: StoredState | null = null;
    try {
      s = (await this.#store.load()) ?? null;
    } catch (e) {
      this.#error(new ChatError("store", `loading client state failed: ${String(e)}`, { cause: e }));
    }
    this.#storedUser = typeof s?.user === "string" ? s.user : null;
    const stored = typeof s?.device === "string" && ID_RE.test(s.device) ? s.device : undefined;
    this.#device = this.#optDevice ?? stored ?? randomId();
    this.#rx.cursor = this.#optSince ?? (isSeq(s?.cursor) ? s.cursor : null);
    for (const e of Array.isArray(s?.outbox) ? s.outbox : []) {
      const entry = toEntry(e);
      if (entry) this.#tx.outbox.add(entry);
    }
    this.#isLoaded = true;
    if (this.#device !== stored) await this.#persist();
  }

  /** Saves the state; resolves false when the save failed (the store error is emitted). */
  #persist(): Promise<boolean> {
    // Never save before the stored state was loaded: that would overwrite it with an empty one.
    if (!this.#isLoaded) return this.#loaded.then(() => this.#persister.save());
    return this.#persister.save();
  }

  #snapshot(): StoredState {
    return { user: this.#storedUser, device: this.#device ?? undefined, cursor: this.#rx.cursor, outbox: this.#tx.outbox.entries } as StoredState;
  }
}

/** A stored outbox entry, checked and copied (only the fields that go out), or null. */
function toEntry(e: unknown): OutboxEntry | null {
  if (typeof e !== "object" || e === null) return null;
  const x = e as Record<string, unknown>;
  const body = typeof x.body === "object" && x.body !== null ? (x.body as Body) : null;
  if (typeof x.cmid !== "string") return null;
  if (x.op === undefined) return typeof x.to === "string" && body ? { cmid: x.cmid, to: x.to, body } : null;
  if (x.op === "group") return typeof x.group === "string" && GROUP_RE.test(x.group) && body ? { op: "group", cmid: x.cmid, group: x.group, body } : null;
  if (typeof x.mid !== "string") return null;
  if (x.op === "edit") return body ? { op: "edit", cmid: x.cmid, mid: x.mid, body } : null;
  if (x.op === "delete" && (x.for === "everyone" || x.for === "me")) return { op: "delete", cmid: x.cmid, mid: x.mid, for: x.for };
  return null;
}

/** A message body (a string is `{ message }`), checked and copied, or a `bad_field`. */
function checkBody(body: Body | string): Body {
  const b = typeof body === "string" ? { message: body } : body;
  if (typeof b !== "object" || b === null || Array.isArray(b)) throw new ChatError("bad_field", "body must be an object", { field: "body" });
  if (typeof b.message !== "string" || b.message === "") throw new ChatError("bad_field", "body.message must be a non-empty string", { field: "body.message" });
  try {
    return JSON.parse(JSON.stringify(b)) as Body;
  } catch (e) {
    throw new ChatError("bad_field", "body must be JSON-serializable", { field: "body", cause: e });
  }
}

/** The cmid option, or a random one. */
function checkCmid(cmid: unknown): string {
  if (cmid === undefined) return randomId();
  if (typeof cmid !== "string" || cmid.length < 1 || cmid.length > 64) throw new ChatError("bad_field", "cmid must be 1 to 64 characters", { field: "cmid" });
  return cmid;
}

/** A message id argument (the `mid` of a Msg). */
function checkMid(mid: unknown): void {
  if (typeof mid !== "string" || !ID_RE.test(mid)) throw new ChatError("bad_field", "`mid` must be a message id", { field: "mid" });
}

/** A user id argument, or a `bad_field` naming it. */
function checkId(v: unknown, field: string): string {
  if (typeof v !== "string" || !ID_RE.test(v)) throw new ChatError("bad_field", `\`${field}\` must be a user id (1 to 64 of letters, digits, _ - . @)`, { field });
  return v;
}

/** A group id argument, or a `bad_field` naming it. */
function checkGroup(v: unknown): string {
  if (typeof v !== "string" || !GROUP_RE.test(v)) throw new ChatError("bad_field", "`group` must be a group id (g: and 1 to 32 of a-z, 0-9, _ and -)", { field: "group" });
  return v;
}

function checkRole(v: unknown): "admin" | "member" {
  if (v !== "admin" && v !== "member") throw new ChatError("bad_field", '`role` must be "admin" or "member"', { field: "role" });
  return v;
}

function checkSeq(v: unknown, field: string): number {
  if (!isSeq(v)) throw new ChatError("bad_field", `\`${field}\` must be a non-negative integer`, { field });
  return v;
}
