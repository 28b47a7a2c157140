// Exponential backoff with full jitter: the delay before retry number
// `attempt` (0-based) is uniformly random in [0, min(maxMs, baseMs * 2^attempt)).
// Used for reconnects and for retrying `retry: true` errors.

export interface BackoffOptions {
  /** Ceiling of the first delay (attempt 0). Default 500 ms. */
  baseMs?: number;
  /** Largest ceiling. Default 30 000 ms. */
  maxMs?: number;
}

export const DEFAULT_BACKOFF = { baseMs: 500, maxMs: 30_000 } as const;

/** The ceiling for `attempt`: min(maxMs, baseMs * 2^attempt). */
export function backoffCeiling(attempt: number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? DEFAULT_BACKOFF.baseMs;
  const max = opts.maxMs ?? DEFAULT_BACKOFF.maxMs;
  // 2^attempt overflows to Infinity for huge attempts; min() keeps it finite.
  return Math.min(max, base * 2 ** Math.max(0, attempt));
}

/** A delay for `attempt`: random() * ceiling, `random` returning [0, 1). */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeiling(attempt, opts));
}

/**
 * How long to wait before sending a refused request again: the server's
 * `retry_after_ms` when it named one, else the backoff for `attempt`.
 */
export function retryDelay(retryAfterMs: unknown, attempt: number, opts?: BackoffOptions, random?: () => number): number {
  return typeof retryAfterMs === "number" ? retryAfterMs : backoffDelay(attempt, opts, random);
}
