// Groups: the results of the `group` requests (create, members, roles,
// reads, history, sends) and what a group's answer means. A group answers
// `{"op":"group","re":…,"status":…,"body":…}` as its HTTP API would: 2xx is
// done, anything else a refusal with `body.code` (503: try again). The
// requests themselves go through requests.ts (sends: the outbox), so they
// wait for the socket and are sent again after a reconnect.

import { ChatError } from "./errors.ts";
import { groupId, isGroupChange, toGroupItem, type GroupChange, type GroupMessage, type GroupRole } from "./frames.ts";

/** What groupSend() resolves with: the message's id (`mid` of the `groupMessage` every member gets) and its position in the group. */
export interface GroupSendResult {
  group: string;
  mid: string;
  group_seq: number;
  /** The cmid was stored before: this is the first send's result. */
  duplicate: boolean;
}

/** Every confirmed group send (including those restored after a reload, whose groupSend() promise is gone). */
export interface GroupSentEvent extends GroupSendResult {
  cmid: string;
}

/** What createGroup() resolves with (`group_seq` is the `created` entry's, the group's first). */
export interface GroupCreated {
  group: string;
  group_seq: number;
  /**
   * Members left out: they do not accept being added by you (their
   * `group_adds` setting, or a block: the server does not say which).
   */
  refused: string[];
  /** True when the answer to the first attempt was lost and a re-sent one found the group already made. */
  duplicate: boolean;
}

/**
 * What a membership call (addMember, removeMember, leaveGroup, setRole,
 * handOver) resolves with: the change's group_seq, or null with `duplicate`
 * when the answer to the first attempt was lost and a re-sent one found the
 * change already made.
 */
export interface GroupChangeResult {
  group_seq: number | null;
  duplicate: boolean;
}

export interface GroupMember {
  user: string;
  role: GroupRole;
  /** The group_seq of the entry that made them a member. */
  joined: number;
  /** How far they read (a group_seq). */
  read: number;
}

/** What groupInfo() resolves with: the members and the group's newest group_seq. */
export interface GroupInfo {
  group: string;
  head: number;
  members: GroupMember[];
}

/** "Read by `read` of `of`": how many members other than its sender read the entry at `group_seq`. */
export interface GroupReadBy {
  group_seq: number;
  read: number;
  of: number;
}

export interface GroupHistoryQuery {
  /** Entries before this group_seq (the `next` of the previous page). */
  before?: number;
  /** At most this many (the server caps it at 200; default 50). */
  limit?: number;
}

/** A page of a group's history, newest first, from the user's join on (items have `seq: null`). */
export interface GroupHistoryPage {
  items: Array<GroupMessage | GroupChange>;
  next: number | null;
}

/** A group's answer as it arrives (`wire.GroupFrame` without `op` and `re`). */
export interface GroupAnswer {
  status: number;
  body: { [key: string]: unknown } | null;
}

/** How a request's reply is judged: the value to resolve with, or an error (retried when `retry`). */
export type Verdict = { value: unknown } | { error: ChatError };

/**
 * The refusal a re-sent call gets when the first attempt was applied but its
 * answer was lost (a reconnect in between): the change is already made.
 * hand_over has none (the old owner is an admin then: not_allowed, as for
 * anyone else); create only when the client chose the group id at random.
 */
const ALREADY_DONE: Record<string, string> = {
  create: "group_exists",
  add: "already_member",
  remove: "no_such_member",
  leave: "not_member",
  set_role: "unchanged",
};

/** A group's refusal as a ChatError: `code` from the body (else from the status), `status`, `retry` for 503. */
export function groupError(a: GroupAnswer, cmid?: string): ChatError {
  const b = a.body ?? {};
  const code =
    typeof b.code === "string"
      ? b.code
      : a.status === 503
        ? "unavailable"
        : a.status === 400
          ? "bad_field"
          : a.status === 403
            ? "forbidden"
            : a.status === 404
              ? "not_found"
              : "http";
  const text = typeof b.error === "string" ? b.error : `status ${a.status}`;
  return new ChatError(code, `${code}: ${text}`, { status: a.status, retry: a.status === 503 || a.status === 429, ...(cmid === undefined ? {} : { cmid }) });
}

const is2xx = (a: GroupAnswer): boolean => a.status >= 200 && a.status < 300;
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isSeq = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/**
 * The judge of a `group` request `call`: 2xx bodies go through `parse`
 * (null: not what the protocol says, a `protocol` error); refusals become
 * ChatErrors, except the "already done" refusal of a re-sent call (one
 * transmitted more than once) when `dup` is given: that resolves with `dup`.
 */
export function judge(call: string, parse: (body: Record<string, unknown>) => unknown, dup?: unknown): (reply: unknown, sends: number) => Verdict {
  return (reply, sends) => {
    const a = reply as GroupAnswer;
    if (is2xx(a)) {
      const v = parse(a.body ?? {});
      if (v === null) return { error: new ChatError("protocol", `unexpected answer to the group call ${call}: ${JSON.stringify(a.body)}`) };
      return { value: v };
    }
    if (dup !== undefined && sends > 1 && a.body?.code === ALREADY_DONE[call]) return { value: dup };
    return { error: groupError(a) };
  };
}

// ------------------------------------------------------- answer bodies

export function parseCreated(b: Record<string, unknown>): GroupCreated | null {
  if (typeof b.group !== "string" || !isSeq(b.group_seq)) return null;
  const group = groupId(b.group);
  // An older server has no `refused`: it left nobody out.
  const refused = b.refused === undefined ? [] : b.refused;
  if (!Array.isArray(refused) || !refused.every((u) => typeof u === "string")) return null;
  return { group, group_seq: b.group_seq, refused: refused as string[], duplicate: false };
}

export function parseChanged(b: Record<string, unknown>): GroupChangeResult | null {
  return isSeq(b.group_seq) ? { group_seq: b.group_seq, duplicate: false } : null;
}

export function parseInfo(b: Record<string, unknown>): GroupInfo | null {
  if (typeof b.group !== "string" || !isSeq(b.head) || !Array.isArray(b.members)) return null;
  const members: GroupMember[] = [];
  for (const m of b.members) {
    if (!isObj(m) || typeof m.user !== "string" || typeof m.role !== "string" || !isSeq(m.joined) || !isSeq(m.read)) return null;
    members.push({ user: m.user, role: m.role as GroupRole, joined: m.joined, read: m.read });
  }
  return { group: groupId(b.group), head: b.head, members };
}

export function parseReadBy(b: Record<string, unknown>): GroupReadBy | null {
  return isSeq(b.group_seq) && isSeq(b.read) && isSeq(b.of) ? { group_seq: b.group_seq, read: b.read, of: b.of } : null;
}

export function parseRead(b: Record<string, unknown>): number | null {
  return isSeq(b.read) ? b.read : null;
}

export function parseHistory(b: Record<string, unknown>): GroupHistoryPage | null {
  if (!Array.isArray(b.items)) return null;
  const items: Array<GroupMessage | GroupChange> = [];
  for (const i of b.items) {
    if (!isObj(i) || typeof i.mid !== "string") return null;
    const item = toGroupItem(i.body, i.mid, null);
    if (!item || (i.kind === "change") !== isGroupChange(item)) return null;
    items.push(item);
  }
  return { items, next: isSeq(b.next) ? b.next : null };
}

/** A group send's 2xx answer body as its result, or null. */
export function parseSent(group: string, b: Record<string, unknown> | null): GroupSendResult | null {
  if (!b || typeof b.id !== "string" || !isSeq(b.group_seq)) return null;
  return { group: groupId(group), mid: b.id, group_seq: b.group_seq, duplicate: b.duplicate === true };
}
