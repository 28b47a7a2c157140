// Requests: `read`, `history`, `group` … over the socket. A request waits
// until the socket is open, is sent again after a reconnect until it is
// answered, and retries `retry: true` refusals with backoff (`rate_limited`:
// after retry_after_ms); other refusals reject its promise. A request may
// bring a judge of its reply (a group's answer carries its own status): it
// decides between resolving and an error, retried the same way.

import { retryDelay, type BackoffOptions } from "./backoff.ts";
import type { Link } from "./connection.ts";
import { fromErrorFrame, type ChatError } from "./errors.ts";
import type { ErrorFrame, RequestId } from "./frames.ts";
import type { Timers } from "./timers.ts";
import { deferred } from "./util.ts";

interface Req {
  frame: Record<string, unknown>;
  resolve(f: unknown): void;
  reject(e: unknown): void;
  /** The id of the transmission awaiting a reply, or null. */
  id: RequestId | null;
  /** A pending retry timer, or null. */
  timer: unknown;
  attempts: number;
  /** How many times it was transmitted. */
  sends: number;
  judge: Judge | null;
}

/** Decides what a reply means, knowing how often the request was transmitted. */
export type Judge = (reply: unknown, sends: number) => { value: unknown } | { error: ChatError };

export interface RequestsDeps {
  link: Link;
  timers: Timers;
  backoff: BackoffOptions;
  random: () => number;
}

export class Requests {
  readonly #d: RequestsDeps;
  readonly #reqs = new Set<Req>();
  readonly #byId = new Map<RequestId, Req>();

  constructor(deps: RequestsDeps) {
    this.#d = deps;
  }

  /** Sends `frame` (with an id) once the socket is open; resolves with the reply frame (or what `judge` makes of it). */
  request(frame: Record<string, unknown>, judge: Judge | null = null): Promise<unknown> {
    const d = deferred<unknown>();
    const req: Req = {
      frame,
      resolve: (v) => {
        this.#reqs.delete(req);
        d.resolve(v);
      },
      reject: (e) => {
        this.#reqs.delete(req);
        d.reject(e);
      },
      id: null,
      timer: null,
      attempts: 0,
      sends: 0,
      judge,
    };
    this.#reqs.add(req);
    this.pump();
    return d.promise;
  }

  /** Sends every request that is neither awaiting a reply nor waiting to retry. */
  pump(): void {
    const link = this.#d.link;
    if (!link.isOpen) return;
    for (const r of this.#reqs) {
      if (r.id !== null || r.timer !== null) continue;
      const id = link.nextId();
      if (!link.send({ ...r.frame, id })) return;
      r.id = id;
      r.sends++;
      this.#byId.set(id, r);
      link.armDead();
    }
  }

  /** A reply (`ok`, `history`, `group`…) to request `re`. */
  answered(re: RequestId, f: unknown): void {
    const r = this.#byId.get(re);
    if (!r) return;
    this.#byId.delete(re);
    if (!r.judge) return r.resolve(f);
    const v = r.judge(f, r.sends);
    if ("value" in v) return r.resolve(v.value);
    r.id = null;
    this.#failed(r, v.error, v.error.retryAfterMs);
  }

  /** An `error` frame with `re`; false when it answers no request in flight. */
  onError(re: RequestId, f: ErrorFrame): boolean {
    const r = this.#byId.get(re);
    if (!r) return false;
    this.#byId.delete(re);
    r.id = null;
    this.#failed(r, fromErrorFrame(f), f.retry_after_ms);
    return true;
  }

  /** A refusal: rejects, or (`retry`) sends again after a backoff. */
  #failed(r: Req, err: ChatError, retryAfterMs: number | undefined): void {
    if (!err.retry) return r.reject(err);
    const ms = retryDelay(retryAfterMs, r.attempts++, this.#d.backoff, this.#d.random);
    r.timer = this.#d.timers.setTimeout(() => {
      r.timer = null;
      this.pump();
    }, ms);
  }

  /** The socket is gone: requests in flight are sent again on the next one. */
  disconnected(): void {
    this.#byId.clear();
    for (const r of this.#reqs) r.id = null;
  }

  /** close(): every pending request rejects with `reason`. */
  rejectAll(reason: unknown): void {
    for (const r of [...this.#reqs]) {
      if (r.timer !== null) this.#d.timers.clearTimeout(r.timer);
      r.reject(reason);
    }
    this.#reqs.clear();
  }
}
