// The server's chat.v1 frames, generated from the Rust types of src/protocol/v1.rs
// by `cargo test` (src/protocol/v1/wire_ts.rs): do not edit. Regenerate with
// `UPDATE_FRAMES=1 cargo test --lib wire_ts`.

/** `{"op":"welcome",…}`: the first frame of a v1 connection. */
export type WelcomeFrame = {
  device: string;
  /** Newest seq of the user's log. */
  head: number;
  /** How often the client sends `heartbeat`. */
  heartbeat_ms: number;
  limits: WelcomeLimits;
  op: "welcome";
  /** False: entries this device asked for are gone from the log (read them with history). */
  recovered: boolean;
  /** Entries after this seq follow. */
  since: number;
  user: string;
  /** The protocol version. */
  v: number;
  /**
   * The user's block and mute lists (a `blocks` frame follows each
   * change). Last but one: the keys before it keep their old bytes.
   */
  blocks: BlockLists;
  /** The user's settings (a `settings` frame follows each change). */
  settings: Settings;
};

/** What a client may send, in a welcome. */
export type WelcomeLimits = {
  cmid_chars: number;
  frame_bytes: number;
  history_page: number;
  queue_max: number;
  queue_ttl_s: number;
  read_burst: number;
  reads_per_second: number;
  send_burst: number;
  sends_per_second: number;
  /** How long after a send it may be edited or deleted for everyone. */
  edit_window_s: number;
  /** How long a `watch` lasts: renew it before then. */
  watch_ttl_s: number;
};

/** `{"op":"msg",…}`: one log entry. */
export type MsgFrame = {
  op: "msg";
  seq: number;
  kind: EntryKind;
  /** The other user; null for system messages. */
  peer: string | null;
  mid: string;
  body: { [key: string]: unknown };
};

/** What a log entry is, as a `msg` frame says it. */
export type EntryKind = "in" | "out" | "sys" | "edit" | "delete" | "group";

/** `{"op":"sent",…}`: a send is stored in the recipient's and the sender's log. */
export type SentFrame = {
  /** The `cmid` was stored before: this is the first send's result. */
  duplicate: boolean;
  mid: string;
  op: "sent";
  re: string | number;
  seq: number;
};

/** `{"op":"ok","re":…}`: a request without a result succeeded. */
export type OkFrame = {
  op: "ok";
  re: string | number;
};

/** `{"op":"unread",…}`: a conversation's unread count and read cursor changed. */
export type UnreadFrame = {
  count: number;
  op: "unread";
  peer: string;
  read_up_to: number;
};

/**
 * `{"op":"receipt",…}`: `peer` has received or read this user's messages
 * up to `up_to`.
 */
export type ReceiptFrame = {
  op: "receipt";
  peer: string;
  type: ReceiptKind;
  /** A seq of this user's log. */
  up_to: number;
};

/** Which receipt a peer sent. */
export type ReceiptKind = "delivered" | "read";

/**
 * `{"op":"typing",…}`: `from` started or stopped typing to this user, or
 * in the group `group`.
 */
export type TypingFrame = {
  active: boolean;
  from: string;
  /** The group it is in (absent: typing to this user). */
  group?: string;
  op: "typing";
};

/**
 * `{"op":"group_read",…}`: how many of the group's members (other than
 * its sender) read the message at `group_seq`, sent to its sender as the
 * count changes.
 */
export type GroupReadFrame = {
  op: "group_read";
  group: string;
  group_seq: number;
  read: number;
  of: number;
};

/**
 * `{"op":"group","re":…}`: a group's object's answer to a `group` request,
 * as its HTTP API gives it: `status` (2xx: done; a `send` answered 200 is
 * stored and queued for every member) and the JSON `body`.
 */
export type GroupFrame = {
  body: { [key: string]: unknown } | null;
  op: "group";
  re: string | number;
  status: number;
};

/** `{"op":"blocks",…}`: the user's lists changed (on any device). */
export type BlocksFrame = {
  lists: BlockLists;
  op: "blocks";
};

/**
 * The user's block and mute lists, as the welcome and `GET /v1/blocks`
 * carry them.
 */
export type BlockLists = {
  /** Users whose chats never reach this user (they are not told). */
  blocked: Array<string>;
  /** Peers whose messages start no push. */
  muted: Array<Muted>;
};

/** A muted peer. */
export type Muted = {
  peer: string;
  /** When the mute ends (ms since the epoch); null: when unmuted. */
  until: number | null;
};

/** `{"op":"settings",…}`: the user's settings changed (on any device). */
export type SettingsFrame = {
  op: "settings";
  settings: Settings;
};

/** A user's settings. */
export type Settings = {
  /** Others see this user offline and never seen. */
  hide_presence: boolean;
  /**
   * Who may add this user to a group: `everyone`, `contacts` (users they
   * sent a 1:1 message to; the default) or `nobody`. Never someone they
   * blocked.
   */
  group_adds: "everyone" | "contacts" | "nobody";
};

/**
 * `{"op":"presence",…}`: a watched user's presence, in reply to `watch`
 * (with `re`) and on each change while the watch lives.
 */
export type PresenceFrame = {
  last_seen: number | null;
  online: boolean;
  op: "presence";
  /** The `id` of the `watch` this answers. */
  re?: string | number;
  user: string;
};

/** A user's presence as another user may see it. */
export type Presence = {
  /**
   * When the user was last online (ms since the epoch, rounded down to
   * the minute); null: never, or not shown.
   */
  last_seen: number | null;
  /** At least one socket open (or closed less than `PRESENCE_GRACE_S` ago). */
  online: boolean;
};

/** `{"op":"history","re":…}`: a page of the user's log, as `msg` frames. */
export type HistoryFrame = {
  op: "history";
  re: string | number;
  items: Array<MsgFrame>;
  /** The cursor that continues the page (`before` or `after`); null at the end. */
  next: number | null;
};

/** `{"op":"error",…}`: the reply to a refused frame. */
export type ErrorFrame = {
  /** One of the codes of `docs/protocol.md`; clients must accept others. */
  code: string;
  /** The missing or invalid field of a `bad_field`. */
  field?: string;
  message: string;
  op: "error";
  /** The `id` of the refused frame, when it had one. */
  re?: string | number;
  /** Whether sending the same frame again can succeed. */
  retry: boolean;
  retry_after_ms?: number;
};

/** A page of an HTTP listing: `{"items":[…],"next":…}`. */
export type Page<T> = {
  items: Array<T>;
  /** The cursor of the next page; null at the end. */
  next: number | null;
};

/** One conversation of `GET /v1/conversations`. */
export type ConversationItem = {
  /** The other user; for a group, the group's id (as `group`). */
  peer: string;
  /**
   * Set for a group's conversation: its id. `read_up_to` and the
   * `last` entry's `body.group_seq` are then group_seqs, and the peer
   * fields are 0.
   */
  group?: string;
  /** The newest seq of this user's log that the peer has received. */
  peer_delivered: number;
  /** The newest seq of this user's log that the peer has read. */
  peer_read: number;
  read_up_to: number;
  unread: number;
  /** The conversation's newest message, in its current state. */
  last: MsgFrame;
  /** The peer's presence, as they let this user see it. */
  presence: Presence;
};
