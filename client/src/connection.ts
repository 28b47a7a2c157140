// Connection: the socket lifecycle. One socket at a time to the /ws endpoint:
// fetches a token for every attempt (a provider is asked again each time),
// trades it for a one-time socket ticket (POST /v1/ws-ticket, the token in a
// header, so it never appears in a URL: request logs keep URLs), builds the
// URL (ticket, device, since = the cursor), heartbeats once
// welcomed, closes a socket that stays silent (no welcome, or no frame after
// a heartbeat or request) and reconnects with full-jitter backoff; a 4001
// close (token expired) reconnects at once with a fresh token. What frames
// mean is not its business: they go to the hooks.

import { backoffDelay, type BackoffOptions } from "./backoff.ts";
import { ChatError } from "./errors.ts";
import { HEARTBEAT, SUBPROTOCOL } from "./frames.ts";
import { Slot, type Timers } from "./timers.ts";

export type TokenSource = string | (() => string | Promise<string>);

/** The part of the WebSocket API the client uses (browser and Node ≥ 22 globals fit). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onopen: ((ev: any) => any) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((ev: any) => any) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((ev: any) => any) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((ev: any) => any) | null;
}
export type SocketConstructor = new (url: string, protocols?: string | string[]) => SocketLike;

/** WebSocket.OPEN */
export const OPEN = 1;

/** What the parts that send frames need from the connection. */
export interface Link {
  /** The current socket got its welcome: frames may be sent. */
  readonly isOpen: boolean;
  /** Sends a text frame; false when there is no open socket (or sending threw). */
  sendText(text: string): boolean;
  send(frame: Record<string, unknown>): boolean;
  /** A reply is expected: a socket that stays silent for deadAfterMs is replaced. */
  armDead(): void;
  /** A request id, unique across sends and requests. */
  nextId(): number;
}

export interface ConnectionOptions {
  url: string;
  token: TokenSource;
  /** For socket tickets; without one the token goes in the socket URL. */
  fetch: typeof globalThis.fetch | undefined;
  WebSocket: SocketConstructor | undefined;
  timers: Timers;
  backoff: BackoffOptions;
  random: () => number;
  deadAfterMs: number;
  connectTimeoutMs: number;
  /** Upper bound of the heartbeat period (the welcome's heartbeat_ms may be smaller). */
  heartbeatMs: number;
}

export interface ConnectionHooks {
  /** Awaited before each attempt (the stored state is loaded). */
  ready(): Promise<void>;
  /** Device and cursor for the socket URL. */
  params(): { device: string; since: number | null };
  /** An incoming frame of the current socket. */
  onData(data: unknown): void;
  /** The socket is gone while running; another attempt is scheduled. */
  onDown(): void;
  /** The current socket was let go: nothing is in flight on it any more. */
  onDetach(): void;
  /** Nothing can fix this (4001 with a fixed token): the client should stop. */
  onFatal(e: ChatError): void;
  onError(e: ChatError): void;
}

export class Connection implements Link {
  readonly #o: ConnectionOptions;
  readonly #h: ConnectionHooks;
  readonly #timers: Record<"reconnect" | "heartbeat" | "dead", Slot>;
  #running = false;
  /** Generation of the newest attempt; a stale attempt sees a newer one and stops. */
  #gen = 0;
  #ws: SocketLike | null = null;
  /** Generation of the attempt that made #ws. */
  #wsGen = 0;
  #welcomed = false;
  /** Failed attempts in a row (backoff). */
  #attempt = 0;
  #nextId = 0;
  #lastToken: string | null = null;

  constructor(opts: ConnectionOptions, hooks: ConnectionHooks) {
    this.#o = opts;
    this.#h = hooks;
    const t = opts.timers;
    this.#timers = { reconnect: new Slot(t), heartbeat: new Slot(t), dead: new Slot(t) };
  }

  /** Between start() and stop(). */
  get running(): boolean {
    return this.#running;
  }
  /** Generation of the newest attempt. */
  get gen(): number {
    return this.#gen;
  }
  /** Generation of the current (or last) socket. */
  get socketGen(): number {
    return this.#wsGen;
  }
  get isOpen(): boolean {
    return this.#welcomed;
  }
  /** The token of the last attempt, if any. */
  get lastToken(): string | null {
    return this.#lastToken;
  }
  /** Whether a new token can be had (a provider, not a fixed string). */
  get refreshable(): boolean {
    return typeof this.#o.token === "function";
  }

  start(): void {
    this.#running = true;
    this.#attempt = 0;
    void this.#connect();
  }

  /** Stops for good: no more attempts; returns the socket (detached, not closed) so that the caller can say goodbye. */
  stop(): SocketLike | null {
    const ws = this.#ws;
    this.#running = false;
    this.#gen++;
    this.#timers.reconnect.clear();
    this.#detach();
    return ws;
  }

  /** The welcome arrived: heartbeats start; `resetBackoff` ends the run of failed attempts. */
  welcomed(serverHeartbeatMs: number, resetBackoff: boolean): void {
    this.#welcomed = true;
    if (resetBackoff) this.#attempt = 0;
    this.#startHeartbeat(Math.min(serverHeartbeatMs, this.#o.heartbeatMs));
  }

  /** Gives up the current socket (if it is of generation `upToGen` or older) and reconnects with backoff. */
  abandon(code: number, reason: string, upToGen = Infinity): void {
    const ws = this.#ws;
    if (!ws || this.#wsGen > upToGen) return;
    this.#detach();
    try {
      ws.close(code, reason);
    } catch {
      /* already closing */
    }
    if (!this.#running) return;
    this.#h.onDown();
    this.#schedule();
  }

  async token(): Promise<string> {
    const src = this.#o.token;
    const t = typeof src === "function" ? await src() : src;
    if (typeof t !== "string" || t === "") throw new ChatError("token_failed", "the token provider returned no token", { retry: true });
    this.#lastToken = t;
    return t;
  }

  sendText(text: string): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  send(frame: Record<string, unknown>): boolean {
    return this.sendText(JSON.stringify(frame));
  }

  /** Expects a frame within `ms` (kept if already armed); any incoming frame disarms it. */
  armDead(ms = this.#o.deadAfterMs): void {
    if (this.#timers.dead.armed || !this.#ws) return;
    this.#timers.dead.set(ms, () => {
      if (!this.#ws) return;
      const what = this.#welcomed ? "no frame from the server" : "no welcome";
      this.#h.onError(new ChatError("dead_socket", `${what} within ${ms} ms; reconnecting`, { retry: true }));
      this.abandon(4000, "dead socket");
    });
  }

  nextId(): number {
    return ++this.#nextId;
  }

  // ---------------------------------------------------------------- internals

  async #connect(): Promise<void> {
    const gen = ++this.#gen;
    this.#timers.reconnect.clear();
    await this.#h.ready();
    if (!this.#current(gen)) return;
    let token: string;
    try {
      token = await this.token();
    } catch (e) {
      if (!this.#current(gen)) return;
      this.#h.onError(e instanceof ChatError ? e : new ChatError("token_failed", `the token provider failed: ${String(e)}`, { retry: true, cause: e }));
      this.#schedule();
      return;
    }
    if (!this.#current(gen)) return;
    let ticket: string | null;
    try {
      ticket = await this.#ticket(token);
    } catch (e) {
      if (!this.#current(gen)) return;
      this.#h.onError(e instanceof ChatError ? e : new ChatError("network", `POST /v1/ws-ticket failed: ${String(e)}`, { retry: true, cause: e }));
      this.#schedule();
      return;
    }
    if (!this.#current(gen)) return;
    const WS = this.#o.WebSocket;
    let ws: SocketLike;
    try {
      if (!WS) throw new Error("no WebSocket available; pass `WebSocket` in the options");
      ws = new WS(this.#socketUrl(ticket === null ? { token } : { ticket }), SUBPROTOCOL);
    } catch (e) {
      this.#h.onError(new ChatError("connect_failed", `cannot open the socket: ${String(e)}`, { retry: true, cause: e }));
      this.#schedule();
      return;
    }
    this.#ws = ws;
    this.#wsGen = gen;
    this.#welcomed = false;
    ws.onmessage = (ev: { data: unknown }) => {
      if (this.#ws !== ws) return;
      this.#timers.dead.clear();
      this.#h.onData(ev.data);
    };
    ws.onclose = (ev: { code?: number; reason?: string }) => {
      if (this.#ws === ws) this.#onClose(ev?.code ?? 1006, ev?.reason ?? "");
    };
    ws.onerror = () => {}; // a close event follows
    ws.onopen = () => {};
    this.armDead(this.#o.connectTimeoutMs);
  }

  #current(gen: number): boolean {
    return this.#running && gen === this.#gen;
  }

  /**
   * A one-time socket ticket for `token` (valid 30 s, for one upgrade).
   * null: no fetch to ask with, or a server from before tickets (404): the
   * token goes in the URL as it used to.
   */
  async #ticket(token: string): Promise<string | null> {
    const f = this.#o.fetch;
    if (!f) return null;
    const u = new URL(this.#o.url);
    u.protocol = u.protocol === "wss:" || u.protocol === "https:" ? "https:" : "http:";
    u.pathname = "/v1/ws-ticket";
    u.search = "";
    u.hash = "";
    let res: Response;
    try {
      res = await f(u.toString(), { method: "POST", headers: { authorization: `Bearer ${token}` } });
    } catch (e) {
      throw new ChatError("network", `POST ${u.pathname} failed: ${String(e)}`, { retry: true, cause: e });
    }
    if (res.status === 404) return null;
    let body: { ticket?: unknown; error?: unknown } = {};
    try {
      body = (await res.json()) as typeof body;
    } catch {
      /* the status says enough */
    }
    if (!res.ok) {
      const why = typeof body.error === "string" ? ` ${body.error}` : "";
      // A refused token is retried too: a provider may hand a good one next time.
      throw new ChatError("http", `POST ${u.pathname}: ${res.status}${why}`, { status: res.status, retry: true });
    }
    if (typeof body.ticket !== "string" || body.ticket === "") throw new ChatError("protocol", "ws-ticket: no ticket in the answer", { retry: true });
    return body.ticket;
  }

  #socketUrl(auth: { token: string } | { ticket: string }): string {
    const u = new URL(this.#o.url);
    if (u.protocol === "http:") u.protocol = "ws:";
    if (u.protocol === "https:") u.protocol = "wss:";
    const { device, since } = this.#h.params();
    u.searchParams.delete("token");
    u.searchParams.delete("ticket");
    if ("ticket" in auth) u.searchParams.set("ticket", auth.ticket);
    else u.searchParams.set("token", auth.token);
    u.searchParams.set("device", device);
    if (since !== null) u.searchParams.set("since", String(since));
    else u.searchParams.delete("since");
    return u.toString();
  }

  #onClose(code: number, reason: string): void {
    const wasOpen = this.#welcomed;
    this.#detach();
    if (!this.#running) return;
    if (code === 4001) {
      if (!this.refreshable) {
        this.#h.onFatal(new ChatError("token_expired", "the token expired (close 4001) and is a fixed string: pass a token provider to refresh it"));
        return;
      }
      this.#h.onDown();
      this.#schedule(0); // the provider is asked for a fresh token right away
      return;
    }
    if (!wasOpen) {
      this.#h.onError(new ChatError("connect_failed", `the socket closed before welcome (code ${code}${reason ? ", " + reason : ""}; a refused token or device looks like this too)`, { retry: true }));
    }
    this.#h.onDown();
    this.#schedule();
  }

  /** Forgets the current socket: its timers stop, nothing is in flight any more. */
  #detach(): void {
    const ws = this.#ws;
    this.#ws = null;
    this.#welcomed = false;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this.#timers.heartbeat.clear();
    this.#timers.dead.clear();
    this.#h.onDetach();
  }

  #schedule(delay?: number): void {
    if (!this.#running) return;
    const ms = delay ?? backoffDelay(this.#attempt++, this.#o.backoff, this.#o.random);
    this.#timers.reconnect.set(ms, () => void this.#connect());
  }

  #startHeartbeat(ms: number): void {
    const tick = (): void => {
      if (!this.#ws || !this.#welcomed) return;
      if (this.sendText(HEARTBEAT)) this.armDead();
      this.#timers.heartbeat.set(ms, tick);
    };
    this.#timers.heartbeat.set(ms, tick);
  }
}
