// Timers: the injectable setTimeout/clearTimeout pair (a manual clock in the
// unit tests), and Slot, one named one-shot timer, so that each part of the
// client keeps a small record of its timers instead of handles and flags.

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
};

/** One timer that is either armed or not. */
export class Slot {
  readonly #t: Timers;
  #handle: unknown = null;
  #armed = false;

  constructor(timers: Timers) {
    this.#t = timers;
  }

  get armed(): boolean {
    return this.#armed;
  }

  /** Arms the timer (replacing a pending one); it is disarmed before `fn` runs, so `fn` may arm it again. */
  set(ms: number, fn: () => void): void {
    this.clear();
    this.#armed = true;
    this.#handle = this.#t.setTimeout(() => {
      this.#armed = false;
      this.#handle = null;
      fn();
    }, ms);
  }

  clear(): void {
    if (!this.#armed) return;
    this.#armed = false;
    this.#t.clearTimeout(this.#handle);
    this.#handle = null;
  }
}
