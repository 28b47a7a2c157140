// The conversation list: one entry per peer (the last message, the unread
// count, how far this user read, how far the peer received and read this
// user's chats), merged from the server's list at each welcome, kept current
// by the SDK's events, and rendered newest first. Edits and deletes change a
// last message's text, never the order.
import { applyChange, isNewerBody, type Change, type GroupConversation, type Msg, type Receipt, type Unread } from "../client/src/index.ts";
import type { Session } from "./session.ts";
import { describe, h, messageText, showError, ui } from "./ui.ts";

/** One conversation as the list shows it. Seqs are of this user's log. */
export interface Conv {
  peer: string;
  unread: number;
  readUpTo: number;
  /** Own chats up to these seqs were delivered to / read by the peer. */
  delivered: number;
  read: number;
  last: Msg | null;
}

/** What the list needs from the rest of the page. */
export interface ListHooks {
  /** The peer whose conversation is open, if any (its entry is highlighted). */
  open(): string | null;
  /** Whether the peer is typing (shown instead of the last message). */
  typing(peer: string): boolean;
  /** Whether the peer is muted (a muted bell) and blocked (a mark). */
  muted(peer: string): boolean;
  blocked(peer: string): boolean;
  /** An entry was clicked. */
  select(peer: string): void;
  /** A group's entry of the server's list (the groups view shows groups). */
  group(item: GroupConversation): void;
}

/** The sort key of a conversation without messages yet (just opened): above all others. */
const NO_LAST = Number.MAX_SAFE_INTEGER;

/** Newest last message first; conversations without one on top, in the order they were added. */
export function newestFirst(a: Conv, b: Conv): number {
  return (b.last?.seq ?? NO_LAST) - (a.last?.seq ?? NO_LAST);
}

export class Conversations {
  readonly #convs = new Map<string, Conv>();

  constructor(
    private readonly session: Session,
    private readonly hooks: ListHooks,
  ) {}

  /** The entry of `peer`, added if there is none. */
  get(peer: string): Conv {
    let c = this.#convs.get(peer);
    if (!c) {
      c = { peer, unread: 0, readUpTo: 0, delivered: 0, read: 0, last: null };
      this.#convs.set(peer, c);
    }
    return c;
  }

  find(peer: string): Conv | undefined {
    return this.#convs.get(peer);
  }

  /** Merges the server's list in; false if it could not be read or the user signed out meanwhile. */
  async load(): Promise<boolean> {
    let page;
    try {
      page = await this.session.chat.conversations({ limit: 50 });
    } catch (e) {
      showError(`could not load conversations: ${describe(e)}`);
      return false;
    }
    if (this.session.closed) return false;
    for (const item of page.items) {
      if (item.group !== undefined) {
        this.hooks.group(item);
        continue;
      }
      const c = this.get(item.peer);
      const serverNewer = !c.last || (item.last && item.last.seq >= c.last.seq);
      // A message that arrived while the list was being read is newer than
      // the server's answer: keep the count that includes it.
      c.unread = serverNewer ? item.unread : Math.max(c.unread, item.unread);
      // The same message may already show a newer state (a change that came after the list was read).
      if (serverNewer && item.last && !(c.last?.mid === item.last.mid && isNewerBody(c.last.body, item.last.body))) c.last = item.last;
      c.readUpTo = Math.max(c.readUpTo, item.read_up_to ?? 0);
      c.delivered = Math.max(c.delivered, item.peer_delivered ?? 0, item.peer_read ?? 0);
      c.read = Math.max(c.read, item.peer_read ?? 0);
    }
    this.render();
    return true;
  }

  /** Records `m` as its conversation's last message if it is newer; true if it was. */
  noteLast(m: Msg & { peer: string }): boolean {
    const c = this.get(m.peer);
    const isNew = !c.last || m.seq > c.last.seq;
    if (isNew) c.last = m;
    return isNew;
  }

  /** A received message that was not seen (the conversation is not on screen) counts as unread. */
  countUnread(m: Msg & { peer: string }, isNew: boolean) {
    const c = this.get(m.peer);
    if (isNew && m.seq > c.readUpTo) c.unread += 1;
  }

  /** An edit or delete of the last message shows in the preview. */
  applyChange(ch: Change) {
    const c = ch.peer === null ? undefined : this.#convs.get(ch.peer);
    if (c?.last) c.last = applyChange(c.last, ch);
    this.render();
  }

  onReceipt(r: Receipt) {
    const c = this.get(r.peer);
    c.delivered = Math.max(c.delivered, r.up_to);
    if (r.type === "read") c.read = Math.max(c.read, r.up_to);
  }

  onUnread(u: Unread) {
    const c = this.get(u.peer);
    c.unread = u.count;
    c.readUpTo = Math.max(c.readUpTo, u.read_up_to);
    this.render();
  }

  render() {
    if (this.session.closed) return;
    const open = this.hooks.open();
    const convs = [...this.#convs.values()].sort(newestFirst);
    ui.noConversations.hidden = convs.length > 0;
    ui.conversations.replaceChildren(
      ...convs.map((c) => {
        const li = h("li", { "data-testid": "conv", "data-peer": c.peer, class: c.peer === open ? "active" : "" });
        li.append(h("span", { class: "conv-peer", "data-testid": "conv-peer" }, c.peer));
        if (this.hooks.muted(c.peer)) li.append(h("span", { class: "muted-bell", "data-testid": "muted-bell", title: "muted" }, "🔕"));
        if (this.hooks.blocked(c.peer)) li.append(h("span", { class: "blocked-mark", "data-testid": "blocked-mark" }, "blocked"));
        if (c.unread > 0) li.append(h("span", { class: "badge", "data-testid": "unread-badge" }, String(c.unread)));
        const preview = this.hooks.typing(c.peer)
          ? "typing…"
          : c.last
            ? `${c.last.kind === "out" ? "You: " : ""}${messageText(c.last)}`
            : "";
        li.append(h("span", { class: "conv-last", "data-testid": "conv-last" }, preview));
        li.addEventListener("click", () => this.hooks.select(c.peer));
        return li;
      }),
    );
  }
}
