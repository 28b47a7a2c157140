// Sender: drives the outbox over the connection. Once the socket is open it
// sends every lane's oldest unconfirmed entry (a send, edit, delete or group
// send), matches `sent` replies, group answers and `error` frames to entries
// by request id,
// retries `retry: true` refusals with backoff (`rate_limited`: after
// retry_after_ms), and drops for good what the server refused or what is
// over the frame limit, rejecting the promises of the calls (entries
// restored from the store have none: an `error` event then). Every change
// of the outbox is saved.

import { retryDelay, type BackoffOptions } from "./backoff.ts";
import type { Link } from "./connection.ts";
import { ChatError, fromErrorFrame } from "./errors.ts";
import { DEFAULT_FRAME_BYTES, utf8Length, type ErrorFrame, type RequestId, type SendResult } from "./frames.ts";
import { groupError, parseSent, type GroupAnswer, type GroupSendResult, type GroupSentEvent } from "./groups.ts";
import { Outbox, frameOf, type OutboxItem, type OutboxResult } from "./outbox.ts";
import type { OutboxEntry } from "./store.ts";
import type { Timers } from "./timers.ts";
import { deferred } from "./util.ts";

/** Every confirmed send, including those restored after a reload (edits and deletes show as `change` events). */
export interface SentEvent extends SendResult {
  cmid: string;
  to: string;
}

export interface SenderDeps {
  link: Link;
  timers: Timers;
  backoff: BackoffOptions;
  random: () => number;
  /** Saves the client state (the outbox with it). */
  persist(): Promise<boolean>;
  sent(e: SentEvent): void;
  groupSent(e: GroupSentEvent): void;
  error(e: ChatError): void;
}

export class Sender {
  readonly outbox = new Outbox();
  /** The server's frame limit (the welcome's limits.frame_bytes). */
  frameBytes = DEFAULT_FRAME_BYTES;
  readonly #d: SenderDeps;

  constructor(deps: SenderDeps) {
    this.#d = deps;
  }

  /** Queues an entry (or joins the pending one with the same cmid); resolves with the server's reply. */
  async queue(entry: OutboxEntry): Promise<OutboxResult> {
    const { cmid } = entry;
    if (utf8Length(frameOf(entry, Number.MAX_SAFE_INTEGER)) > this.frameBytes) throw this.#tooLarge(cmid);
    const isNew = !this.outbox.find(cmid);
    const item = this.outbox.add(entry);
    const d = deferred<OutboxResult>();
    item.waiters.push(d);
    if (isNew) await this.#d.persist();
    this.pump();
    return d.promise;
  }

  /** Sends what may go now: each lane's oldest entry, if it is neither in flight nor waiting to retry. */
  pump(): void {
    const link = this.#d.link;
    if (!link.isOpen) return;
    for (const item of this.outbox.ready()) {
      const id = link.nextId();
      const { cmid } = item.entry;
      const text = frameOf(item.entry, id);
      // queue() checked the size, but not for entries restored from the store
      // or queued before a welcome lowered the limit; the server would answer
      // too_large without `re`, leaving the entry in flight for ever.
      if (utf8Length(text) > this.frameBytes) {
        this.#refused(item, this.#tooLarge(cmid));
        return this.pump(); // the next entry of that lane may go now
      }
      if (!link.sendText(text)) return;
      this.outbox.transmitted(item, id);
      link.armDead();
    }
  }

  /** A `sent` reply (ignored when it answers no entry in flight). */
  onSent(re: RequestId, r: SendResult): void {
    const item = this.outbox.answered(re);
    if (item) this.#confirmed(item, r);
  }

  /** A group's answer with `re`; false when it answers no entry in flight (a group request's, then). */
  onGroupAnswer(re: RequestId, a: GroupAnswer): boolean {
    const item = this.outbox.answered(re);
    if (!item) return false;
    const e = item.entry;
    const r = e.op === "group" && a.status >= 200 && a.status < 300 ? parseSent(e.group, a.body) : null;
    if (r) this.#confirmed(item, r);
    else this.#failed(item, r === null && a.status < 300 ? new ChatError("protocol", `unexpected answer to a group send: ${JSON.stringify(a)}`, { cmid: e.cmid }) : groupError(a, e.cmid));
    return true;
  }

  /** An `error` frame with `re`; false when it answers no entry in flight. */
  onError(re: RequestId, f: ErrorFrame): boolean {
    const item = this.outbox.answered(re);
    if (!item) return false;
    this.#failed(item, fromErrorFrame(f, item.entry.cmid), f.retry_after_ms);
    return true;
  }

  #confirmed(item: OutboxItem, r: OutboxResult): void {
    item.attempts = 0;
    this.outbox.remove(item);
    void this.#d.persist();
    for (const w of item.waiters.splice(0)) w.resolve(r);
    const e = item.entry;
    if (e.op === undefined) this.#d.sent({ cmid: e.cmid, to: e.to, ...(r as SendResult) });
    else if (e.op === "group") this.#d.groupSent({ cmid: e.cmid, ...(r as GroupSendResult) });
    this.pump();
  }

  /** A refusal: retried with backoff (same cmid) when `retry`, else the entry is dropped. */
  #failed(item: OutboxItem, err: ChatError, retryAfterMs?: number): void {
    if (err.retry) {
      const ms = retryDelay(retryAfterMs, item.attempts++, this.#d.backoff, this.#d.random);
      item.timer = this.#d.timers.setTimeout(() => {
        item.timer = null;
        this.pump();
      }, ms);
      return;
    }
    this.#refused(item, err);
    this.pump();
  }

  /** The socket is gone: nothing is in flight any more. */
  disconnected(): void {
    this.outbox.disconnected();
  }

  /** close(): pending retries stop (the entries stay, for the next connect()). */
  stop(): void {
    for (const item of this.outbox.items) {
      if (item.timer !== null) this.#d.timers.clearTimeout(item.timer);
      item.timer = null;
    }
  }

  /** Drops an entry for good: its promises reject, or (restored, nobody waits) an error event. */
  #refused(item: OutboxItem, err: ChatError): void {
    this.outbox.remove(item);
    void this.#d.persist();
    const waiters = item.waiters.splice(0);
    if (waiters.length === 0) this.#d.error(err); // restored after a reload: nobody else hears of it
    for (const w of waiters) w.reject(err);
  }

  #tooLarge(cmid: string): ChatError {
    return new ChatError("too_large", `the frame is over ${this.frameBytes} bytes`, { cmid });
  }
}
