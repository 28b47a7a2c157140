// Protocol v1 frame types (docs/protocol.md) and the parsing of server
// frames: every text frame is JSON with an `op`, except the text `heartbeat`.
// Parsing checks the fields the client relies on and keeps the rest as sent.

import type * as wire from "./wire.ts";

export const SUBPROTOCOL = "chat.v1";
export const HEARTBEAT = "heartbeat";
/** The server's frame limit when the welcome does not say otherwise. */
export const DEFAULT_FRAME_BYTES = 65_536;
/** User ids (and device ids): 1 to 64 of letters, digits, `_ - . @`. */
export const ID_RE = /^[A-Za-z0-9_.@-]{1,64}$/;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Body = { [key: string]: unknown };
export type RequestId = string | number;

// The server's frames as it sends them are generated from its Rust types
// (wire.ts); the types here are what parseFrame returns: a `msg` without its
// `op`, an `error` whose message may be missing, and frames of its own.

/** What the client may send, from the welcome. */
export type Limits = wire.WelcomeLimits;

export type Welcome = wire.WelcomeFrame;

/** A `resync` event: the welcome, plus the range that was not replayed. */
export interface Resync extends Welcome {
  gap: { after: number | null; upTo: number };
}

/** One entry of the user's log (a `msg` frame without its `op`): a message, or an edit or delete of one. */
export type Entry = Omit<wire.MsgFrame, "op">;

/** A message: a log entry of kind `in`, `out` or `sys` (`message` events, history pages, the conversation list). */
export type Msg = Entry & { kind: "in" | "out" | "sys" };

/**
 * An edit or delete of the message `target` (a `change` event): a log entry
 * of kind `edit` or `delete`. Apply it by replacing that message's body with
 * `body` (see applyChange).
 */
export interface Change {
  seq: number;
  kind: "edit" | "delete";
  /** The conversation's peer. */
  peer: string | null;
  /** The op's own id (what edit() / deleteMessage() resolved with). */
  mid: string;
  /** The id of the message changed. */
  target: string;
  /** The message's whole new body: edited (`edit_version`, `edited_at`), or a tombstone (`deleted_at`, no `message`). */
  body: Body;
  /** Deletes only: for everyone, or for this user alone. */
  for?: "everyone" | "me";
}

/** A user's presence as this user may see it (`online`, `last_seen` in ms since the epoch or null). */
export type Presence = wire.Presence;

/** A `presence` event: a watched user's presence. */
export interface PresenceUpdate extends Presence {
  user: string;
}

/** The user's settings (welcome, `settings` frames). */
export type Settings = wire.Settings;

export type Receipt = Omit<wire.ReceiptFrame, "op">;

/**
 * Group ids: `g:` and 1 to 32 of lowercase letters, digits, `_` and `-`
 * (no user id holds a `:`). The older form without the `:` (`gteam`) names
 * the same group: the server still takes it, and entries stored before the
 * change carry it.
 */
export const GROUP_RE = /^g:?[a-z0-9_-]{1,32}$/;

/** A group id in the form the server writes now (`gteam` → `g:team`); other strings unchanged. */
export function groupId(g: string): string {
  return GROUP_RE.test(g) && !g.startsWith("g:") ? `g:${g.slice(1)}` : g;
}

/** What a membership change did (a `groupChange` event's `change`). */
export type GroupChangeKind = "created" | "added" | "removed" | "left" | "role_changed" | "handed_over";

/** A member's role in a group. */
export type GroupRole = "owner" | "admin" | "member";

/**
 * A message of a group (a `groupMessage` event; a group history item of
 * kind `message`): `body` is the whole body as stored (`message`, `fromUser`,
 * `id`, `time`, `group`, `group_seq` and the sender's extras).
 */
export interface GroupMessage {
  /** The entry's seq in this user's log (null for a history item, which is the group's). */
  seq: number | null;
  /** The message's id (what groupSend() resolved with). */
  mid: string;
  group: string;
  /** Its position in the group: the same for every member. */
  group_seq: number;
  /** The sender (`body.fromUser`). */
  from: string;
  body: Body;
}

/**
 * A membership change of a group (a `groupChange` event; a group history
 * item of kind `change`): `user` is the member it is about, `by` who did it
 * (null: the backend). `members` on `created` (the members besides the
 * owner), `role` on `added` and `role_changed`, `from` (the old owner) on
 * `handed_over`.
 */
export interface GroupChange {
  seq: number | null;
  mid: string;
  group: string;
  group_seq: number;
  change: GroupChangeKind | (string & {});
  user: string;
  by: string | null;
  members?: string[];
  role?: GroupRole;
  from?: string;
  body: Body;
}

/** A `groupRead` event: the message at `group_seq` that this user sent to `group` is read by `read` of `of` other members. */
export type GroupRead = Omit<wire.GroupReadFrame, "op">;

/** A `groupTyping` event: `from` started or stopped typing in `group`. */
export interface GroupTyping {
  group: string;
  from: string;
  active: boolean;
}

export type Unread = Omit<wire.UnreadFrame, "op">;

/** A `typing` event: `from` started or stopped typing to this user (group typing is a `groupTyping` event). */
export type Typing = Omit<wire.TypingFrame, "op" | "group">;

export type SendResult = Omit<wire.SentFrame, "op" | "re">;

/** The user's block and mute lists (welcome, `blocks` frames). */
export type BlockLists = wire.BlockLists;

export type HistoryPage = wire.Page<Msg>;

export interface HistoryQuery {
  peer?: string;
  before?: number;
  after?: number;
  limit?: number;
}

/** A 1:1 conversation of the list (a group's is a GroupConversation: check `group`). */
export interface Conversation extends Omit<wire.ConversationItem, "last" | "group"> {
  group?: undefined;
  last: Msg | null;
  [key: string]: unknown;
}

/**
 * A group's conversation of the list: `peer` and `group` are the group's id,
 * `read_up_to` a group_seq (this user's read cursor), `unread` the others'
 * messages past it, `last` its newest entry as the group events give it.
 */
export interface GroupConversation extends Omit<wire.ConversationItem, "last" | "group"> {
  group: string;
  last: GroupMessage | GroupChange | null;
  [key: string]: unknown;
}

export type ConversationPage = wire.Page<Conversation | GroupConversation>;

export interface ErrorFrame extends Omit<wire.ErrorFrame, "message"> {
  message?: string;
}

export type ServerFrame =
  | { op: "heartbeat" }
  | Welcome
  | wire.MsgFrame
  | wire.SentFrame
  | wire.OkFrame
  | (Omit<wire.HistoryFrame, "items"> & { items: Msg[] })
  | wire.UnreadFrame
  | wire.ReceiptFrame
  | wire.TypingFrame
  | wire.GroupReadFrame
  | wire.GroupFrame
  | wire.BlocksFrame
  | wire.PresenceFrame
  | wire.SettingsFrame
  | ErrorFrame
  | { op: "unknown"; frame: { op: string; [key: string]: unknown } };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
/** A seq (or count): a non-negative safe integer. */
export const isSeq = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isId = (v: unknown): v is RequestId => typeof v === "string" || typeof v === "number";

/** Thrown by parseFrame for a frame that does not match the protocol. */
export class FrameError extends Error {
  override name = "FrameError";
}

function fail(what: string, text: string): never {
  throw new FrameError(`${what}: ${text.length > 200 ? text.slice(0, 200) + "…" : text}`);
}

/** Checks block lists (a welcome's `blocks`, a `blocks` frame's `lists`); absent: empty (an older server). */
function toLists(v: unknown, text: string): BlockLists {
  if (v === undefined) return { blocked: [], muted: [] };
  if (!isObj(v) || !Array.isArray(v.blocked) || !Array.isArray(v.muted)) fail("bad block lists", text);
  if (!v.blocked.every((u) => typeof u === "string")) fail("bad block lists", text);
  for (const m of v.muted) {
    if (!isObj(m) || typeof m.peer !== "string" || !(m.until === null || isSeq(m.until))) fail("bad block lists", text);
  }
  return v as unknown as BlockLists;
}

/** Settings (a welcome's, a `settings` frame's); absent: the defaults (an older server). */
function toSettings(v: unknown, text: string): Settings {
  if (v === undefined) return { hide_presence: false, group_adds: "contacts" };
  if (!isObj(v) || typeof v.hide_presence !== "boolean") fail("bad settings", text);
  // An older server has no group_adds: its groups took anyone.
  const adds = v.group_adds === undefined ? "everyone" : v.group_adds;
  if (!isGroupAdds(adds)) fail("bad settings", text);
  return { hide_presence: v.hide_presence, group_adds: adds };
}

/** Who may add a user to groups (Settings.group_adds). */
export type GroupAdds = Settings["group_adds"];

/** Whether `v` is a group_adds setting. */
export function isGroupAdds(v: unknown): v is GroupAdds {
  return v === "everyone" || v === "contacts" || v === "nobody";
}

/** Checks a `msg` object (a frame or a history item) and returns it without `op`; `ops`: edit and delete entries allowed. */
function toEntry(v: unknown, text: string, ops: boolean): Entry {
  if (!isObj(v) || !isSeq(v.seq) || typeof v.kind !== "string") fail("bad msg", text);
  if (!(v.peer === null || typeof v.peer === "string") || typeof v.mid !== "string" || !isObj(v.body)) fail("bad msg", text);
  if (v.kind === "edit" || v.kind === "delete") {
    // History pages and the conversation list hold messages in their current state, never ops.
    if (!ops || typeof v.body.target !== "string" || !isObj(v.body.body)) fail("bad msg", text);
  } else if (v.kind === "group") {
    // Only `msg` frames carry group entries (the user's history pages and list never do).
    if (!ops || toGroupItem(v.body, v.mid, null) === null) fail("bad msg", text);
  } else if (v.kind !== "in" && v.kind !== "out" && v.kind !== "sys") fail("bad msg", text);
  const { op: _op, ...rest } = v;
  return rest as unknown as Entry;
}

/** Checks a group conversation's last entry (a `msg` of kind `group`) and returns it as the group events give it. */
export function toGroupLast(v: unknown, text = JSON.stringify(v)): GroupMessage | GroupChange {
  const e = toEntry(v, text, true);
  const item = e.kind === "group" ? toGroupItem(e.body, e.mid, e.seq) : null;
  return item ?? fail("bad group entry", text);
}

/** Checks a message (a history item, a conversation's last) and returns it without `op`. */
export function toMsg(v: unknown, text = JSON.stringify(v)): Msg {
  return toEntry(v, text, false) as Msg;
}

/** An entry of kind edit or delete as a Change. */
export function toChange(e: Entry): Change | null {
  if (e.kind !== "edit" && e.kind !== "delete") return null;
  const b = e.body as { target: string; body: Body; for?: unknown };
  const c: Change = { seq: e.seq, kind: e.kind, peer: e.peer, mid: e.mid, target: b.target, body: b.body };
  if (b.for === "everyone" || b.for === "me") c.for = b.for;
  return c;
}

/**
 * A group entry's body as a GroupMessage or GroupChange (`seq`: the user
 * log's, or null for a group history item), or null when it is neither.
 */
export function toGroupItem(body: unknown, mid: string, seq: number | null): GroupMessage | GroupChange | null {
  if (!isObj(body) || typeof body.group !== "string" || !isSeq(body.group_seq)) return null;
  const base = { seq, mid, group: groupId(body.group), group_seq: body.group_seq };
  if (body.type === "group") {
    if (typeof body.change !== "string" || typeof body.user !== "string" || !(body.by === undefined || body.by === null || typeof body.by === "string")) return null;
    const c: GroupChange = { ...base, change: body.change, user: body.user, by: body.by ?? null, body };
    if (Array.isArray(body.members) && body.members.every((m) => typeof m === "string")) c.members = body.members as string[];
    if (body.role === "owner" || body.role === "admin" || body.role === "member") c.role = body.role;
    if (typeof body.from === "string") c.from = body.from;
    return c;
  }
  if (typeof body.fromUser !== "string") return null;
  return { ...base, from: body.fromUser, body } satisfies GroupMessage;
}

/** Whether a group item is a membership change. */
export function isGroupChange(i: GroupMessage | GroupChange): i is GroupChange {
  return "change" in i;
}

/** Parses one server text frame. Unknown ops are returned as `unknown` (forward compatible). */
export function parseFrame(text: string): ServerFrame {
  if (text === HEARTBEAT) return { op: "heartbeat" };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    fail("not JSON", text);
  }
  if (!isObj(v) || typeof v.op !== "string") fail("no op", text);
  switch (v.op) {
    case "welcome":
      if (typeof v.user !== "string" || !isSeq(v.head) || !isSeq(v.since) || typeof v.recovered !== "boolean") fail("bad welcome", text);
      return {
        ...(v as unknown as Welcome),
        heartbeat_ms: typeof v.heartbeat_ms === "number" && v.heartbeat_ms > 0 ? v.heartbeat_ms : 30_000,
        limits: (isObj(v.limits) ? v.limits : {}) as unknown as Limits,
        blocks: toLists(v.blocks, text),
        settings: toSettings(v.settings, text),
      };
    case "msg":
      return { op: "msg", ...toEntry(v, text, true) };
    case "sent":
      if (!isId(v.re) || typeof v.mid !== "string" || !isSeq(v.seq)) fail("bad sent", text);
      return { op: "sent", re: v.re, mid: v.mid, seq: v.seq, duplicate: v.duplicate === true };
    case "ok":
      if (!isId(v.re)) fail("bad ok", text);
      return { op: "ok", re: v.re };
    case "history": {
      if (!isId(v.re) || !Array.isArray(v.items)) fail("bad history", text);
      const next = isSeq(v.next) ? v.next : null;
      return { op: "history", re: v.re, items: v.items.map((i) => toMsg(i, text)), next };
    }
    case "unread":
      if (typeof v.peer !== "string" || !isSeq(v.count) || !isSeq(v.read_up_to)) fail("bad unread", text);
      return { op: "unread", peer: v.peer, count: v.count, read_up_to: v.read_up_to };
    case "receipt":
      if (typeof v.peer !== "string" || (v.type !== "delivered" && v.type !== "read") || !isSeq(v.up_to)) fail("bad receipt", text);
      return { op: "receipt", peer: v.peer, type: v.type, up_to: v.up_to };
    case "typing": {
      if (typeof v.from !== "string" || typeof v.active !== "boolean" || !(v.group === undefined || typeof v.group === "string")) fail("bad typing", text);
      const t: wire.TypingFrame = { op: "typing", from: v.from, active: v.active };
      if (typeof v.group === "string") t.group = groupId(v.group);
      return t;
    }
    case "group_read":
      if (typeof v.group !== "string" || !isSeq(v.group_seq) || !isSeq(v.read) || !isSeq(v.of)) fail("bad group_read", text);
      return { op: "group_read", group: groupId(v.group), group_seq: v.group_seq, read: v.read, of: v.of };
    case "group":
      if (!isId(v.re) || !isSeq(v.status) || !(v.body === undefined || v.body === null || isObj(v.body))) fail("bad group", text);
      return { op: "group", re: v.re, status: v.status, body: (v.body ?? null) as wire.GroupFrame["body"] };
    case "blocks":
      return { op: "blocks", lists: toLists(v.lists, text) };
    case "presence": {
      if (typeof v.user !== "string" || typeof v.online !== "boolean" || !(v.last_seen === null || isSeq(v.last_seen))) fail("bad presence", text);
      const p: wire.PresenceFrame = { op: "presence", user: v.user, online: v.online, last_seen: v.last_seen };
      if (isId(v.re)) p.re = v.re;
      return p;
    }
    case "settings":
      return { op: "settings", settings: toSettings(v.settings ?? null, text) };
    case "error": {
      if (typeof v.code !== "string") fail("bad error", text);
      const e: ErrorFrame = { op: "error", code: v.code, retry: v.retry === true };
      if (isId(v.re)) e.re = v.re;
      if (typeof v.message === "string") e.message = v.message;
      if (typeof v.field === "string") e.field = v.field;
      if (typeof v.retry_after_ms === "number") e.retry_after_ms = v.retry_after_ms;
      return e;
    }
    default:
      return { op: "unknown", frame: v as { op: string } };
  }
}

/** UTF-8 length of a string (what the server's frame limit counts). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
