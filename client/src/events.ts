// A small typed event emitter: `on` returns an unsubscribe function, `emit`
// calls listeners in registration order, and `emitSerial` awaits each
// listener in turn (used for `message`, whose handlers gate the ack).

export type Listener<T> = (value: T) => unknown;

export class Emitter<Events> {
  #map = new Map<keyof Events, Set<Listener<never>>>();

  on<K extends keyof Events>(name: K, fn: Listener<Events[K]>): () => void {
    let set = this.#map.get(name);
    if (!set) this.#map.set(name, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => this.off(name, fn);
  }

  off<K extends keyof Events>(name: K, fn: Listener<Events[K]>): void {
    this.#map.get(name)?.delete(fn as Listener<never>);
  }

  listeners<K extends keyof Events>(name: K): Listener<Events[K]>[] {
    return [...(this.#map.get(name) ?? [])] as Listener<Events[K]>[];
  }

  /** Calls every listener; a throw (or rejection) is passed to `onFail` and the rest still run. */
  emit<K extends keyof Events>(name: K, value: Events[K], onFail: (e: unknown) => void): void {
    for (const fn of this.listeners(name)) {
      try {
        const r = fn(value) as { then?: unknown; catch?: (f: (e: unknown) => void) => unknown } | undefined;
        if (r && typeof r.then === "function" && typeof r.catch === "function") r.catch(onFail);
      } catch (e) {
        onFail(e);
      }
    }
  }

  /** Calls the listeners one after the other, awaiting each; the first throw or rejection stops and rejects. */
  async emitSerial<K extends keyof Events>(name: K, value: Events[K]): Promise<void> {
    for (const fn of this.listeners(name)) await fn(value);
  }
}
