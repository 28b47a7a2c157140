// The conversation list with unread counts and the peers' presence, over
// HTTP: GET /v1/conversations on the host of the /ws URL with the bearer
// token; a 401 is retried once with a fresh token when there is a provider.
// A group's item carries its newest entry as a GroupMessage or GroupChange.

import { ChatError } from "./errors.ts";
import { groupId, isSeq, toGroupLast, toMsg, type ConversationPage } from "./frames.ts";

export interface ConversationQuery {
  limit?: number;
  before?: number;
}

export interface TokenAccess {
  /** The token in use (or a new one if there is none yet). */
  current(): Promise<string>;
  /** A new token from the provider; null with a fixed token. */
  fresh: (() => Promise<string>) | null;
}

export async function fetchConversations(
  fetchFn: typeof globalThis.fetch,
  wsUrl: string,
  q: ConversationQuery,
  token: TokenAccess,
): Promise<ConversationPage> {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" || u.protocol === "https:" ? "https:" : "http:";
  u.pathname = "/v1/conversations";
  u.search = "";
  u.hash = "";
  if (q.limit !== undefined) u.searchParams.set("limit", String(q.limit));
  if (q.before !== undefined) u.searchParams.set("before", String(q.before));
  const get = async (t: string): Promise<Response> => {
    try {
      return await fetchFn(u.toString(), { headers: { authorization: `Bearer ${t}` } });
    } catch (e) {
      throw new ChatError("network", `GET ${u.pathname} failed: ${String(e)}`, { retry: true, cause: e });
    }
  };
  let res = await get(await token.current());
  if (res.status === 401 && token.fresh) res = await get(await token.fresh());
  if (!res.ok) {
    let text = "";
    try {
      text = await res.text();
    } catch {
      /* the status says enough */
    }
    throw new ChatError("http", `GET ${u.pathname}: ${res.status} ${text}`.trim(), { status: res.status, retry: res.status >= 500 || res.status === 429 });
  }
  const v = (await res.json()) as { items?: unknown; next?: unknown };
  if (!Array.isArray(v.items)) throw new ChatError("protocol", "conversations: no items array");
  const items = v.items.map((i) => {
    const c = { ...(i as Record<string, unknown>) };
    // A group's item carries a group entry, which is no message of a 1:1 conversation.
    if (c.last != null) c.last = typeof c.group === "string" ? toGroupLast(c.last) : toMsg(c.last);
    // An older server names groups without the `g:` namespace: the SDK hands out one form.
    if (typeof c.group === "string") c.group = c.peer = groupId(c.group);
    if (c.presence == null) c.presence = { online: false, last_seen: null }; // an older server: as a user never seen
    return c;
  }) as ConversationPage["items"];
  return { items, next: isSeq(v.next) ? v.next : null };
}
