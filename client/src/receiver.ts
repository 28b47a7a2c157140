// Receiver: log entry processing and acks. Runs the `message` handlers (the
// `change` handlers for edits and deletes) strictly one entry after the
// other, in arrival order; drops what was processed already (replays after a
// reconnect); keeps the cursor (the last processed seq, which never moves
// back) and follows the welcome (a new device starts at its `since`;
// `recovered: false` beyond the cursor is a resync). Acks are batched and
// cumulative, and go out only once the cursor they cover is saved: the
// server never knows more than the store.

import { backoffDelay, type BackoffOptions } from "./backoff.ts";
import type { Link } from "./connection.ts";
import { ChatError } from "./errors.ts";
import type { Entry, Resync, Welcome } from "./frames.ts";
import { Slot, type Timers } from "./timers.ts";

export interface ReceiverDeps {
  link: Link;
  timers: Timers;
  /** Acks (and cursor saves) are batched over this window. */
  ackDelayMs: number;
  /** Backoff of the save-and-ack retry after a failed save. */
  backoff: BackoffOptions;
  random: () => number;
  /** Runs the `message` or `change` handlers, in turn; rejects if one of them failed. */
  deliver(m: Entry): Promise<void>;
  resync(r: Resync): void;
  error(e: ChatError): void;
  /** Saves the client state; resolves false if that failed. */
  persist(): Promise<boolean>;
  /** A handler failed on a message of the socket of generation `gen`: replace that socket. */
  handlerFailed(gen: number): void;
  /** Whether the client runs (no retries after close()). */
  running(): boolean;
}

export class Receiver {
  /** Last processed seq; null before the first welcome of a new device. */
  cursor: number | null = null;
  readonly #d: ReceiverDeps;
  readonly #ack: Slot;
  /** Processing: one job after the other, in arrival order. */
  #chain: Promise<void> = Promise.resolve();
  /** Frames of sockets with a generation up to this one are dropped unprocessed. */
  #haltGen = 0;
  /** The last handler call failed (the reconnect keeps backing off until one succeeds). */
  #poisoned = false;
  /** Highest seq acked on the current socket. */
  #acked = -1;
  /** Failed saves in a row. */
  #saveFailures = 0;

  constructor(deps: ReceiverDeps) {
    this.#d = deps;
    this.#ack = new Slot(deps.timers);
  }

  get poisoned(): boolean {
    return this.#poisoned;
  }

  /** A welcome on the socket of generation `gen`: nothing is acked on it yet; the cursor follows it in order. */
  welcome(w: Welcome, gen: number): void {
    this.#acked = -1;
    this.#enqueue(() => this.#applyWelcome(w, gen));
  }

  /** A `msg` frame of the socket of generation `gen`. */
  msg(m: Entry, gen: number): void {
    this.#enqueue(() => this.#process(m, gen));
  }

  /** Frames of sockets up to generation `gen` that are not processed yet are dropped. */
  halt(gen: number): void {
    this.#haltGen = Math.max(this.#haltGen, gen);
  }

  /**
   * For close(): stops batching, saves, and returns the cursor for a last
   * ack, or null (nothing new to ack, or the save failed).
   */
  async settle(): Promise<number | null> {
    this.#ack.clear();
    const c = this.cursor;
    const saved = await this.#d.persist();
    return saved && c !== null && c > this.#acked ? c : null;
  }

  #enqueue(job: () => Promise<void>): void {
    this.#chain = this.#chain.then(job).catch((e: unknown) => {
      this.#d.error(new ChatError("protocol", `internal error while processing: ${String(e)}`, { cause: e }));
    });
  }

  async #applyWelcome(w: Welcome, gen: number): Promise<void> {
    if (gen <= this.#haltGen) return;
    const prev = this.cursor;
    // Never backwards: messages of the previous socket processed after the
    // reconnect URL was built may already be past the welcome's since.
    if (prev === null || (!w.recovered && w.since > prev)) {
      this.cursor = w.since;
      if (!w.recovered) this.#d.resync({ ...w, gap: { after: prev, upTo: w.since } });
    }
    // Saved (with the user) but not acked: the next processed message acks cumulatively.
    await this.#d.persist();
  }

  /** One `msg`, in order: skip what was processed, run the handlers, then move the cursor. */
  async #process(m: Entry, gen: number): Promise<void> {
    if (gen <= this.#haltGen) return;
    const c = this.cursor;
    if (c !== null && m.seq <= c) return; // replayed after a reconnect: already processed
    if (c !== null && m.seq !== c + 1) {
      this.#d.error(new ChatError("protocol", `gap in the log: expected seq ${c + 1}, got ${m.seq}`, { seq: m.seq }));
    }
    try {
      await this.#d.deliver(m);
    } catch (e) {
      // Not processed: later frames of this socket are dropped and the socket
      // replaced, so the server replays from the cursor (this seq again).
      this.halt(gen);
      this.#poisoned = true;
      this.#d.error(new ChatError("handler_failed", `the message handler failed for seq ${m.seq}; it will be delivered again: ${String(e)}`, { seq: m.seq, cause: e, retry: true }));
      this.#d.handlerFailed(gen);
      return;
    }
    this.cursor = m.seq;
    this.#poisoned = false;
    this.#scheduleAck(this.#d.ackDelayMs);
  }

  #scheduleAck(ms: number): void {
    if (!this.#ack.armed) this.#ack.set(ms, () => void this.#flushAck());
  }

  /** Saves the cursor first, then acks it. */
  async #flushAck(): Promise<void> {
    const c = this.cursor;
    if (!(await this.#d.persist())) {
      // Not saved (the store error was emitted): no ack now; save and ack again later.
      if (this.#d.running()) this.#scheduleAck(backoffDelay(this.#saveFailures++, this.#d.backoff, this.#d.random));
      return;
    }
    this.#saveFailures = 0;
    if (c === null || !this.#d.link.isOpen || c <= this.#acked) return;
    if (this.#d.link.send({ op: "ack", up_to: c })) this.#acked = c;
  }
}
