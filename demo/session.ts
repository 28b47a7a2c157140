// Signing in: the development tokens the worker mints for this page, the
// user remembered across reloads, and the SDK client of one signed-in user
// (a device id kept per user in localStorage, the SDK's state stored there too).
import { ChatClient, LocalStorageStore, randomId } from "../client/src/index.ts";
import { describe, showError } from "./ui.ts";

/** The user ids the server accepts. */
export const USER_ID = /^[A-Za-z0-9_.@-]{1,64}$/;

/** The server mints no development tokens: signing in cannot work until it is run with them. */
export class DevTokensDisabled extends Error {}

/** `GET /dev/token`: only answered by a worker run with DEV_TOKENS=1. */
export async function fetchToken(user: string): Promise<{ token: string; exp: number }> {
  const res = await fetch(`/dev/token?user=${encodeURIComponent(user)}`);
  if (res.status === 404) {
    throw new DevTokensDisabled(
      "Development tokens are disabled on this server: run it with the variable DEV_TOKENS=1 (npm run dev sets it).",
    );
  }
  if (!res.ok) throw new Error(`token request failed: ${res.status} ${await res.text()}`);
  return res.json();
}

/** A token source for the SDK that asks the server only when the cached token is about to expire. */
function tokenSource(user: string) {
  let cached: { token: string; exp: number } | null = null;
  return async () => {
    if (!cached || cached.exp * 1000 - Date.now() < 5 * 60_000) cached = await fetchToken(user);
    return cached.token;
  };
}

const SAVED_USER = "demo.user";

/** The user signed in before the page was (re)loaded, if any: a reload resumes them. */
export function savedUser(): string | null {
  const user = localStorage.getItem(SAVED_USER);
  return user && USER_ID.test(user) ? user : null;
}

export function rememberUser(user: string) {
  localStorage.setItem(SAVED_USER, user);
}

export function forgetUser() {
  localStorage.removeItem(SAVED_USER);
}

/** One signed-in user's SDK client; `closed` after sign-out, so late async work does nothing. */
export class Session {
  readonly chat: ChatClient;
  closed = false;

  constructor(readonly me: string) {
    const deviceKey = `demo.device.${me}`;
    const device = localStorage.getItem(deviceKey) ?? `web-${randomId().replaceAll("-", "").slice(0, 24)}`;
    localStorage.setItem(deviceKey, device);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.chat = new ChatClient({
      url: `${scheme}://${location.host}/ws`,
      token: tokenSource(me),
      device,
      store: new LocalStorageStore(`demo.${me}.`),
    });
  }

  start() {
    // Resolves at the first welcome; the SDK retries on its own until then.
    this.chat.connect().catch((e: unknown) => {
      if (!this.closed) showError(`could not connect: ${describe(e)}`);
    });
  }

  close() {
    this.closed = true;
    void this.chat.close();
  }
}
