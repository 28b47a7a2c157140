// The outbox: sends, edits, deletes and group sends the server has not
// confirmed yet, in call order, with the promises waiting for them. Pure
// bookkeeping; the client decides when to transmit. One entry per lane is in
// flight at a time: a lane is a peer for sends (a group for group sends), so
// a conversation's messages are stored in the order they were sent, and the
// target message for edits and deletes, so the last edit called is the one
// that stays, even across retries and reconnects. Each entry keeps its cmid
// for life, so a re-send after a drop is recognised by the server
// (`duplicate: true`) instead of stored (or applied) twice.

import type { SendResult, RequestId } from "./frames.ts";
import type { GroupSendResult } from "./groups.ts";
import type { OutboxEntry } from "./store.ts";

/** The lane of an entry: its peer, its target message (`:` is in no user id), or its group (`#`: in no id either). */
export function laneOf(e: OutboxEntry): string {
  if (e.op === undefined) return e.to;
  if (e.op === "group") return `#${e.group}`;
  return `:${e.mid}`;
}

/** The frame that transmits an entry with request id `id`. */
export function frameOf(e: OutboxEntry, id: RequestId): string {
  switch (e.op) {
    case undefined:
      return JSON.stringify({ op: "send", id, to: e.to, cmid: e.cmid, body: e.body });
    case "edit":
      return JSON.stringify({ op: "edit", id, mid: e.mid, cmid: e.cmid, body: e.body });
    case "delete":
      return JSON.stringify({ op: "delete", id, mid: e.mid, for: e.for, cmid: e.cmid });
    case "group":
      return JSON.stringify({ op: "group", id, call: "send", group: e.group, cmid: e.cmid, body: e.body });
  }
}

/** What confirms an entry: a `sent` reply (sends, edits, deletes) or a group's answer (group sends). */
export type OutboxResult = SendResult | GroupSendResult;

export interface Waiter {
  resolve(r: OutboxResult): void;
  reject(e: unknown): void;
}

export interface OutboxItem {
  readonly entry: OutboxEntry;
  /** Promises of send() calls for this cmid (none for entries restored from the store). */
  readonly waiters: Waiter[];
  /** The request id of the transmission awaiting a reply, or null. */
  inflight: RequestId | null;
  /** A pending retry timer (after a `retry: true` error), or null. */
  timer: unknown;
  /** How many `retry: true` errors this entry got in a row. */
  attempts: number;
}

export class Outbox {
  #items: OutboxItem[] = [];
  #byId = new Map<RequestId, OutboxItem>();

  get size(): number {
    return this.#items.length;
  }

  /** The entries to persist, in order. */
  get entries(): OutboxEntry[] {
    return this.#items.map((i) => i.entry);
  }

  get items(): readonly OutboxItem[] {
    return this.#items;
  }

  find(cmid: string): OutboxItem | undefined {
    return this.#items.find((i) => i.entry.cmid === cmid);
  }

  /** Appends an entry (or returns the pending one with the same cmid). */
  add(entry: OutboxEntry): OutboxItem {
    const old = this.find(entry.cmid);
    if (old) return old;
    const item: OutboxItem = { entry, waiters: [], inflight: null, timer: null, attempts: 0 };
    this.#items.push(item);
    return item;
  }

  /**
   * The entries that may be transmitted now: for every lane, its oldest
   * entry, if that one is neither awaiting a reply nor waiting to retry.
   */
  ready(): OutboxItem[] {
    const seen = new Set<string>();
    const out: OutboxItem[] = [];
    for (const item of this.#items) {
      const lane = laneOf(item.entry);
      if (seen.has(lane)) continue;
      seen.add(lane);
      if (item.inflight === null && item.timer === null) out.push(item);
    }
    return out;
  }

  transmitted(item: OutboxItem, id: RequestId): void {
    item.inflight = id;
    this.#byId.set(id, item);
  }

  /** The entry a reply with `re` answers; it is no longer in flight. */
  answered(re: RequestId): OutboxItem | undefined {
    const item = this.#byId.get(re);
    if (!item) return undefined;
    this.#byId.delete(re);
    item.inflight = null;
    return item;
  }

  remove(item: OutboxItem): void {
    const i = this.#items.indexOf(item);
    if (i >= 0) this.#items.splice(i, 1);
    if (item.inflight !== null) this.#byId.delete(item.inflight);
    item.inflight = null;
  }

  /** The socket is gone: nothing is in flight any more (replies to old ids can't come). */
  disconnected(): void {
    this.#byId.clear();
    for (const item of this.#items) item.inflight = null;
  }
}
