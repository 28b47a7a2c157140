// Watches: the peers whose presence the app shows. The server keeps a watch
// for limits.watch_ttl_s and pushes `presence` frames while it lives; this
// renews each held watch at half that, and sends every one again at each
// welcome (a new socket: changes while away were missed, a watch may have
// lapsed). `watch` requests go through Requests, so one in flight at a
// reconnect is re-sent there rather than here. The server keeps a watch only
// once the two users have a conversation: one answered "never seen" is sent
// again at the first message between them (spoke()), not at the renewal.

import type { ChatError } from "./errors.ts";
import { Slot, type Timers } from "./timers.ts";

export interface WatchesDeps {
  timers: Timers;
  /** Sends a request (once the socket is open, again after a reconnect); resolves with the reply. */
  request(frame: Record<string, unknown>): Promise<unknown>;
  error(e: ChatError): void;
}

interface Watched {
  /** How many watch() handles hold it. */
  count: number;
  /** The next renewal. */
  renew: Slot;
  /** A `watch` request is out (queued, in flight, or waiting to retry). */
  inflight: boolean;
  /** The last answer was "never seen" (the server may not have kept the watch). */
  unseen: boolean;
  /** A message with the peer came while a watch was out. */
  spokeInflight: boolean;
  /** Sent again after a message already (once per watch held). */
  rewatched: boolean;
}

/** An answer that may mean the server did not keep the watch: no conversation yet (or a hidden presence). */
function isUnseen(reply: unknown): boolean {
  const p = reply as { online?: unknown; last_seen?: unknown } | null;
  return p?.online === false && p.last_seen === null;
}

export class Watches {
  /** How long a watch lasts on the server (the welcome's limits.watch_ttl_s). */
  ttlMs = 60_000;
  readonly #d: WatchesDeps;
  readonly #peers = new Map<string, Watched>();

  constructor(deps: WatchesDeps) {
    this.#d = deps;
  }

  /** The peers watched now. */
  get peers(): string[] {
    return [...this.#peers.keys()];
  }

  /** Holds a watch of `peer` (sent now if it is new); returns the function that lets it go. */
  add(peer: string): () => void {
    let w = this.#peers.get(peer);
    if (!w) {
      w = { count: 0, renew: new Slot(this.#d.timers), inflight: false, unseen: false, spokeInflight: false, rewatched: false };
      this.#peers.set(peer, w);
      this.#send(peer, w);
    }
    w.count++;
    const held = w;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--held.count > 0) return;
      held.renew.clear();
      if (this.#peers.get(peer) === held) this.#peers.delete(peer);
    };
  }

  /** A welcome: every watch is sent again now. */
  opened(): void {
    for (const [peer, w] of this.#peers) if (!w.inflight) this.#send(peer, w);
  }

  /**
   * A message between this user and `peer` (either way): a watch answered
   * "never seen" may have been made before their conversation existed, and
   * the server keeps none then; it is sent again now (once), so presence
   * shows without waiting for the renewal.
   */
  spoke(peer: string): void {
    const w = this.#peers.get(peer);
    if (!w || w.rewatched) return;
    if (w.inflight) w.spokeInflight = true;
    else if (w.unseen) this.#rewatch(peer, w);
  }

  #rewatch(peer: string, w: Watched): void {
    w.rewatched = true;
    this.#send(peer, w);
  }

  /** close(): no renewals until the next welcome. */
  stop(): void {
    for (const w of this.#peers.values()) w.renew.clear();
  }

  #send(peer: string, w: Watched): void {
    w.renew.clear();
    w.inflight = true;
    this.#d.request({ op: "watch", peer }).then(
      (reply) => {
        w.inflight = false;
        w.unseen = isUnseen(reply);
        const spoke = w.spokeInflight;
        w.spokeInflight = false;
        if (this.#peers.get(peer) !== w) return; // let go: it just lapses
        // The answer may predate the message that made the conversation.
        if (spoke && w.unseen && !w.rewatched) return this.#rewatch(peer, w);
        // Renewed well before the server forgets it.
        w.renew.set(this.ttlMs / 2, () => this.#send(peer, w));
      },
      (e: ChatError) => {
        w.inflight = false;
        // `closed`: close() was called or the client was not started; the next welcome sends it.
        if (e.code !== "closed") this.#d.error(e);
      },
    );
  }
}
