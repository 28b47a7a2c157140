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

export type Unread = Omit<wire.UnreadFrame, "op">;

export type Typing = Omit<wire.TypingFrame, "op">;

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

export interface Conversation extends Omit<wire.ConversationItem, "last"> {
  last: Msg | null;
  [key: string]: unknown;
}

export type ConversationPage = wire.Page<Conversation>;

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
  if (v === undefined) return { hide_presence: false };
  if (!isObj(v) || typeof v.hide_presence !== "boolean") fail("bad settings", text);
  return { hide_presence: v.hide_presence };
}

/** Checks a `msg` object (a frame or a history item) and returns it without `op`; `ops`: edit and delete entries allowed. */
function toEntry(v: unknown, text: string, ops: boolean): Entry {
  if (!isObj(v) || !isSeq(v.seq) || typeof v.kind !== "string") fail("bad msg", text);
  if (!(v.peer === null || typeof v.peer === "string") || typeof v.mid !== "string" || !isObj(v.body)) fail("bad msg", text);
  if (v.kind === "edit" || v.kind === "delete") {
    // History pages and the conversation list hold messages in their current state, never ops.
    if (!ops || typeof v.body.target !== "string" || !isObj(v.body.body)) fail("bad msg", text);
  } else if (v.kind !== "in" && v.kind !== "out" && v.kind !== "sys") fail("bad msg", text);
  const { op: _op, ...rest } = v;
  return rest as unknown as Entry;
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
    case "typing":
      if (typeof v.from !== "string" || typeof v.active !== "boolean") fail("bad typing", text);
      return { op: "typing", from: v.from, active: v.active };
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
