// Persistence: what the client keeps across page reloads (outbox of
// unconfirmed sends, edits, deletes and group sends; cursor = last processed seq; device
// id; user), the ClientStore hook that holds it, a memory store, a
// localStorage store, and the Persister that serializes and coalesces saves.

/** A send the server has not confirmed yet. Re-sent with the same cmid until it is. */
export interface SendEntry {
  op?: undefined;
  cmid: string;
  to: string;
  body: Record<string, unknown>;
}

/** An edit of the message `mid` (the whole new body), not confirmed yet. */
export interface EditEntry {
  op: "edit";
  cmid: string;
  mid: string;
  body: Record<string, unknown>;
}

/** A delete of the message `mid`, not confirmed yet. */
export interface DeleteEntry {
  op: "delete";
  cmid: string;
  mid: string;
  for: "everyone" | "me";
}

/** A message to the group `group`, not confirmed yet. Re-sent with the same cmid until it is. */
export interface GroupSendEntry {
  op: "group";
  cmid: string;
  group: string;
  body: Record<string, unknown>;
}

/** What the outbox holds: sends, edits, deletes and group sends (one cmid namespace). */
export type OutboxEntry = SendEntry | EditEntry | DeleteEntry | GroupSendEntry;

export interface StoredState {
  /** The user this state belongs to (from the last welcome). */
  user?: string | null;
  device?: string;
  /** Last processed seq. */
  cursor?: number | null;
  outbox?: OutboxEntry[];
}

/** Where the client keeps its state. Both methods may be sync or async. */
export interface ClientStore {
  load(): StoredState | null | undefined | Promise<StoredState | null | undefined>;
  save(state: StoredState): void | Promise<void>;
}

const copy = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** Keeps the state in memory (a copy, as a real store would). Survives reconnects, not reloads. */
export class MemoryStore implements ClientStore {
  state: StoredState | null;
  constructor(initial: StoredState | null = null) {
    this.state = initial ? copy(initial) : null;
  }
  load(): StoredState | null {
    return this.state ? copy(this.state) : null;
  }
  save(state: StoredState): void {
    this.state = copy(state);
  }
}

/** The part of the Web Storage API this store needs. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

function defaultStorage(): StorageLike | null {
  try {
    const s = (globalThis as { localStorage?: StorageLike }).localStorage;
    if (!s) return null;
    // Some browsers (private modes, disabled storage) expose it but throw on use.
    const probe = "__edge_chat_probe__";
    s.setItem(probe, "1");
    (s as StorageLike & { removeItem?(k: string): void }).removeItem?.(probe);
    return s;
  } catch {
    return null;
  }
}

/**
 * One JSON value under `key` in localStorage (or the given storage). Falls
 * back to memory when no storage is usable; `persistent` says which. Use one
 * key per user (e.g. `"edge-chat:" + userId`).
 */
export class LocalStorageStore implements ClientStore {
  readonly key: string;
  readonly persistent: boolean;
  #storage: StorageLike | null;
  #memory = new MemoryStore();

  /** Whether localStorage exists and works in this environment. */
  static available(): boolean {
    return defaultStorage() !== null;
  }

  constructor(key = "edge-chat", storage?: StorageLike | null) {
    this.key = key;
    this.#storage = storage === undefined ? defaultStorage() : storage;
    this.persistent = this.#storage !== null;
  }

  load(): StoredState | null {
    if (!this.#storage) return this.#memory.load();
    const text = this.#storage.getItem(this.key);
    if (text === null) return null;
    try {
      const v = JSON.parse(text) as unknown;
      return typeof v === "object" && v !== null ? (v as StoredState) : null;
    } catch {
      return null; // a corrupt value is treated as no state rather than blocking the client
    }
  }

  save(state: StoredState): void {
    if (!this.#storage) return this.#memory.save(state);
    this.#storage.setItem(this.key, JSON.stringify(state));
  }
}

/**
 * Serializes saves to a store: at most one save runs; calls made while one
 * runs share the next one, which snapshots the state when it starts. The
 * promise of a call resolves once a save that began after the call is done:
 * true if it succeeded, false if it failed (after `onError` got the error),
 * so that nothing relying on the saved state (an ack) goes out unsaved.
 */
export class Persister {
  #store: ClientStore;
  #snapshot: () => StoredState;
  #onError: (e: unknown) => void;
  #current: Promise<boolean> | null = null;
  #next: Promise<boolean> | null = null;

  constructor(store: ClientStore, snapshot: () => StoredState, onError: (e: unknown) => void) {
    this.#store = store;
    this.#snapshot = snapshot;
    this.#onError = onError;
  }

  save(): Promise<boolean> {
    if (this.#next) return this.#next;
    if (!this.#current) return this.#start();
    this.#next = this.#current.then(() => this.#start());
    return this.#next;
  }

  #start(): Promise<boolean> {
    this.#next = null;
    const p = this.#run();
    this.#current = p;
    void p.then(() => {
      if (this.#current === p) this.#current = null;
    });
    return p;
  }

  async #run(): Promise<boolean> {
    try {
      await this.#store.save(this.#snapshot());
      return true;
    } catch (e) {
      this.#onError(e);
      return false;
    }
  }
}
