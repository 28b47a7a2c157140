// Group conversations: the groups this user is in (learnt from the SDK's
// groupChange events and the server's conversation list, and kept in
// localStorage, since a reload resumes after them), and the open group: its members, its messages (history from the
// user's join on, merged by group_seq with what arrives live), membership
// changes as lines between them, own sends pending until the SDK confirms
// them, "read by N of M" on own messages (the SDK's groupRead events), a
// typing line, adding members and leaving.
import { editVersion, groupId, isDeleted, randomId } from "../client/src/index.ts";
import type { Change, GroupChange, GroupConversation, GroupMember, GroupMessage, GroupRead, GroupTyping } from "../client/src/index.ts";
import type { Session } from "./session.ts";
import { addErrorText, refusedText } from "./consent.ts";
import { describe, h, showError, ui } from "./ui.ts";

type Item = GroupMessage | GroupChange;

interface Pending {
  cmid: string;
  text: string;
  state: "sending" | "failed";
  error?: string;
}

interface Group {
  id: string;
  /** Entries by group_seq (history and live). */
  items: Map<number, Item>;
  pending: Pending[];
  /** "Read by N of M" of own messages, by group_seq. */
  reads: Map<number, { read: number; of: number }>;
  members: GroupMember[] | null;
  loaded: boolean;
  /** Newest group_seq this user marked read. */
  readUpTo: number;
  unread: number;
}

const SEND_TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 6000;

export class GroupsView {
  /** The open group, or null. */
  open: string | null = null;
  readonly #groups = new Map<string, Group>();
  readonly #typing = new Map<string, { group: string; timer: ReturnType<typeof setTimeout> }>();
  #typingSentAt = 0;

  constructor(
    private readonly session: Session,
    /** A group was opened from the list: the page closes the 1:1 conversation. */
    private readonly opened: (group: string) => void,
  ) {
    for (const id of this.#saved()) this.#group(id);
  }

  get #key() {
    return `demo.groups.${this.session.me}`;
  }

  #saved(): string[] {
    try {
      const v = JSON.parse(localStorage.getItem(this.#key) ?? "[]") as unknown;
      // Saved before group ids had their `g:` form: kept under the new one.
      return Array.isArray(v) ? v.filter((g): g is string => typeof g === "string").map(groupId) : [];
    } catch {
      return [];
    }
  }

  #save() {
    localStorage.setItem(this.#key, JSON.stringify([...this.#groups.keys()]));
  }

  #group(id: string): Group {
    let g = this.#groups.get(id);
    if (!g) {
      g = { id, items: new Map(), pending: [], reads: new Map(), members: null, loaded: false, readUpTo: 0, unread: 0 };
      this.#groups.set(id, g);
      this.#save();
    }
    return g;
  }

  #forget(id: string) {
    this.#groups.delete(id);
    this.#save();
    if (this.open === id) this.show(null);
    this.render();
  }

  // ------------------------------------------------------------ actions

  /** Creates a group with `members` and opens it. */
  async create(members: string[]) {
    try {
      const { group, refused } = await this.session.chat.createGroup(members);
      if (refused.length > 0) showError(refusedText(refused));
      this.#group(group);
      this.opened(group);
      this.show(group);
    } catch (e) {
      showError(`could not create the group: ${describe(e)}`);
    }
  }

  /** Opens `group` (null: none): loads its members and history the first time. */
  show(group: string | null) {
    this.open = group;
    ui.groupView.hidden = group === null;
    if (group === null) {
      this.render();
      return;
    }
    ui.placeholder.hidden = true;
    ui.conversation.hidden = true;
    ui.chat.classList.add("open");
    const g = this.#group(group);
    this.render();
    if (!g.loaded) void this.#load(g);
    else this.#markRead(g);
    ui.groupComposerInput.focus();
  }

  async #load(g: Group) {
    try {
      const [info, page] = await Promise.all([this.session.chat.groupInfo(g.id), this.session.chat.groupHistory(g.id, { limit: 50 })]);
      g.members = info.members;
      for (const i of page.items) if (!g.items.has(i.group_seq)) g.items.set(i.group_seq, i);
      g.loaded = true;
      await Promise.all(
        this.#own(g)
          .filter((m) => !g.reads.has(m.group_seq))
          .map((m) => this.#fetchReads(g, m.group_seq)),
      );
    } catch (e) {
      if ((e as { code?: string }).code === "not_member") return this.#forget(g.id);
      showError(`could not load the group: ${describe(e)}`);
    }
    if (this.session.closed) return;
    // Marked read first, so the list's unread badge goes with this render.
    this.#markRead(g);
    this.render();
  }

  async #fetchReads(g: Group, seq: number) {
    try {
      const r = await this.session.chat.groupReadBy(g.id, seq);
      const old = g.reads.get(seq);
      if (!old || r.read >= old.read) g.reads.set(seq, { read: r.read, of: r.of });
    } catch (e) {
      console.warn(`demo: read count of ${g.id}#${seq}: ${describe(e)}`);
    }
  }

  #own(g: Group): GroupMessage[] {
    return [...g.items.values()].filter((i): i is GroupMessage => !("change" in i) && i.from === this.session.me);
  }

  async #refreshMembers(g: Group) {
    try {
      g.members = (await this.session.chat.groupInfo(g.id)).members;
    } catch {
      /* shown as it was */
    }
    this.render();
  }

  /** Sends `text` to the open group, shown pending until the SDK confirms it. */
  send(text: string) {
    const group = this.open;
    if (!group) return;
    const g = this.#group(group);
    const p: Pending = { cmid: randomId(), text, state: "sending" };
    g.pending.push(p);
    this.render();
    ui.groupMessages.scrollTop = ui.groupMessages.scrollHeight;
    void this.#deliver(g, p);
  }

  async #deliver(g: Group, p: Pending) {
    p.state = "sending";
    this.render();
    try {
      // The same cmid on a retry: stored once whatever happened before.
      const r = await this.session.chat.groupSend(g.id, { message: p.text }, { cmid: p.cmid });
      g.pending = g.pending.filter((x) => x !== p);
      if (!g.items.has(r.group_seq)) {
        const body = { message: p.text, fromUser: this.session.me, group: g.id, group_seq: r.group_seq, id: r.mid, time: new Date().toISOString() };
        g.items.set(r.group_seq, { seq: null, mid: r.mid, group: g.id, group_seq: r.group_seq, from: this.session.me, body });
      }
      await this.#fetchReads(g, r.group_seq);
    } catch (e) {
      p.state = "failed";
      p.error = describe(e);
    }
    this.render();
  }

  async addMember(user: string) {
    const group = this.open;
    if (!group) return;
    try {
      await this.session.chat.addMember(group, user);
    } catch (e) {
      showError(addErrorText(user, e));
    }
  }

  async leave() {
    const group = this.open;
    if (!group) return;
    try {
      await this.session.chat.leaveGroup(group);
      this.#forget(group);
    } catch (e) {
      showError(`could not leave: ${describe(e)}`);
    }
  }

  /** A keystroke in the group composer: tells the group, at most every few seconds. */
  typed() {
    const now = Date.now();
    if (!this.open || now - this.#typingSentAt < SEND_TYPING_EVERY_MS) return;
    this.#typingSentAt = now;
    this.session.chat.groupTyping(this.open, true);
  }

  stopTyping() {
    if (this.open && this.#typingSentAt) this.session.chat.groupTyping(this.open, false);
    this.#typingSentAt = 0;
  }

  #markRead(g: Group) {
    if (this.open !== g.id || document.visibilityState !== "visible") return;
    const newest = Math.max(0, ...g.items.keys());
    if (newest <= g.readUpTo) return;
    g.readUpTo = newest;
    g.unread = 0;
    this.session.chat.markGroupRead(g.id, newest).catch((e: unknown) => showError(`could not mark read: ${describe(e)}`));
  }

  /** The page became visible again. */
  visible() {
    if (this.open) this.#markRead(this.#group(this.open));
  }

  // ------------------------------------------------------------ events

  onMessage(m: GroupMessage) {
    const g = this.#group(m.group);
    g.items.set(m.group_seq, m);
    this.#clearTyping(m.from);
    if (m.from !== this.session.me && m.group_seq > g.readUpTo) {
      if (this.open === m.group) this.#markRead(g);
      else g.unread += 1;
    }
    this.render();
  }

  onChange(c: GroupChange) {
    const me = this.session.me;
    if ((c.change === "removed" || c.change === "left") && c.user === me) return this.#forget(c.group);
    const g = this.#group(c.group);
    g.items.set(c.group_seq, c);
    if (g.loaded) void this.#refreshMembers(g);
    this.render();
  }

  /**
   * A group's entry of the server's conversation list: shown (a new browser
   * knows the user's groups only from there), with its unread count and
   * newest entry. A group the user left ends with that change: not shown.
   */
  fromList(c: GroupConversation) {
    const last = c.last;
    if (last && "change" in last && (last.change === "removed" || last.change === "left") && last.user === this.session.me) {
      if (this.#groups.has(c.group)) this.#forget(c.group);
      return;
    }
    const g = this.#group(c.group);
    // As in the 1:1 list: a message that arrived while the list was read is newer than the answer.
    const serverNewer = !last || last.group_seq >= Math.max(0, ...g.items.keys());
    g.unread = serverNewer ? c.unread : Math.max(g.unread, c.unread);
    g.readUpTo = Math.max(g.readUpTo, c.read_up_to);
    if (last && !g.items.has(last.group_seq)) g.items.set(last.group_seq, last);
    if (this.open === g.id) this.#markRead(g);
    this.render();
  }

  /** The backend edited or deleted a group message (a change with no peer): its bubble shows the new body. */
  onModerated(c: Change) {
    const { group, group_seq } = c.body as { group?: unknown; group_seq?: unknown };
    if (typeof group !== "string" || typeof group_seq !== "number") return;
    const g = this.#groups.get(group);
    const item = g?.items.get(group_seq);
    // Not loaded yet: the group's history will show the current state.
    if (!g || !item || "change" in item || item.mid !== c.target) return;
    g.items.set(group_seq, { ...item, body: c.body });
    this.render();
  }

  onRead(r: GroupRead) {
    const g = this.#groups.get(r.group);
    if (!g) return;
    const old = g.reads.get(r.group_seq);
    if (!old || r.read >= old.read) g.reads.set(r.group_seq, { read: r.read, of: r.of });
    // Earlier own messages are read at least as far.
    for (const [seq, c] of g.reads) if (seq < r.group_seq && c.read < r.read) g.reads.set(seq, { read: Math.min(r.read, c.of), of: c.of });
    this.render();
  }

  onTyping(t: GroupTyping) {
    this.#clearTyping(t.from);
    if (t.active) this.#typing.set(t.from, { group: t.group, timer: setTimeout(() => this.#clearTyping(t.from), TYPING_SHOWN_MS) });
    this.render();
  }

  #clearTyping(user: string) {
    const t = this.#typing.get(user);
    if (!t) return;
    clearTimeout(t.timer);
    this.#typing.delete(user);
    this.render();
  }

  dispose() {
    this.stopTyping();
    for (const t of this.#typing.values()) clearTimeout(t.timer);
    this.#typing.clear();
  }

  // ------------------------------------------------------------ render

  render() {
    if (this.session.closed) return;
    ui.groups.replaceChildren(
      ...[...this.#groups.values()].map((g) => {
        const li = h("li", { "data-testid": "group", "data-group": g.id, class: g.id === this.open ? "active" : "" });
        li.append(h("span", { class: "conv-peer", "data-testid": "group-id" }, `# ${g.id}`));
        if (g.unread > 0) li.append(h("span", { class: "badge", "data-testid": "group-unread" }, String(g.unread)));
        const last = [...g.items.values()].sort((a, b) => b.group_seq - a.group_seq)[0];
        li.append(h("span", { class: "conv-last", "data-testid": "group-last" }, last ? lineOf(last, this.session.me) : ""));
        li.addEventListener("click", () => {
          this.opened(g.id);
          this.show(g.id);
        });
        return li;
      }),
    );
    const g = this.open ? this.#groups.get(this.open) : undefined;
    if (!g) return;
    ui.groupName.textContent = `# ${g.id}`;
    ui.groupMembers.textContent = g.members ? g.members.map((m) => (m.role === "member" ? m.user : `${m.user} (${m.role})`)).join(", ") : "";
    const typing = [...this.#typing].filter(([, t]) => t.group === g.id).map(([u]) => u);
    ui.groupTyping.hidden = typing.length === 0;
    ui.groupTyping.textContent = typing.length ? `${typing.join(", ")} ${typing.length > 1 ? "are" : "is"} typing…` : "";
    const box = ui.groupMessages;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const items = [...g.items.values()]
      .sort((a, b) => a.group_seq - b.group_seq)
      .map((i) => {
        if ("change" in i) {
          return h("li", { class: "msg change", "data-testid": "group-change", "data-group-seq": String(i.group_seq) }, lineOf(i, this.session.me));
        }
        const mine = i.from === this.session.me;
        const deleted = isDeleted(i.body);
        const li = h("li", { class: `msg ${mine ? "out" : "in"}${deleted ? " deleted" : ""}`, "data-testid": "group-msg", "data-group-seq": String(i.group_seq), "data-from": i.from, "data-deleted": deleted ? "1" : "" });
        if (!mine) li.append(h("span", { class: "msg-from", "data-testid": "msg-from" }, i.from));
        const text = deleted ? "message deleted" : typeof i.body.message === "string" ? i.body.message : JSON.stringify(i.body);
        li.append(h("span", { class: "msg-text", "data-testid": "msg-text" }, text));
        const meta = h("span", { class: "msg-meta" }, timeOf(i.body.time));
        if (!deleted && editVersion(i.body) > 0) meta.prepend(h("span", { class: "edited", "data-testid": "edited" }, "edited"));
        const r = g.reads.get(i.group_seq);
        if (mine && r) {
          const all = r.of > 0 && r.read >= r.of;
          const tick = h("span", { class: "tick", "data-testid": "read-by", "data-state": all ? "read" : "sent", "data-read": String(r.read), "data-of": String(r.of), title: `Read by ${r.read} of ${r.of}` }, all ? "✓✓" : "✓");
          tick.append(h("span", { class: "read-count" }, `read by ${r.read} of ${r.of}`));
          meta.append(tick);
        }
        li.append(meta);
        return li;
      });
    for (const p of g.pending) {
      const li = h("li", { class: "msg out", "data-testid": "group-msg", "data-pending": p.cmid });
      li.append(h("span", { class: "msg-text", "data-testid": "msg-text" }, p.text));
      const tick = h("span", { class: "tick", "data-testid": "read-by", "data-state": p.state, title: p.state === "failed" ? `Not sent (${p.error}). Click to retry.` : "Sending" }, p.state === "failed" ? "!" : "…");
      if (p.state === "failed") tick.addEventListener("click", () => void this.#deliver(g, p));
      const meta = h("span", { class: "msg-meta" });
      meta.append(tick);
      li.append(meta);
      items.push(li);
    }
    ui.groupMessageList.replaceChildren(...items);
    if (atBottom) box.scrollTop = box.scrollHeight;
  }
}

/** A group entry as one line of text (the list's preview, a change's line). */
function lineOf(i: Item, me: string): string {
  if (!("change" in i)) return `${i.from === me ? "You" : i.from}: ${typeof i.body.message === "string" ? i.body.message : ""}`;
  const by = i.by && i.by !== i.user ? ` (by ${i.by})` : "";
  switch (i.change) {
    case "created":
      return `${i.user} created the group with ${(i.members ?? []).join(", ") || "nobody yet"}`;
    case "added":
      return `${i.user} was added${by}`;
    case "removed":
      return `${i.user} was removed${by}`;
    case "left":
      return `${i.user} left`;
    case "role_changed":
      return `${i.user} is now ${i.role ?? "?"}${by}`;
    case "handed_over":
      return `${i.user} owns the group now${i.from ? ` (from ${i.from})` : ""}`;
    default:
      return `${i.user}: ${i.change}`;
  }
}

function timeOf(t: unknown) {
  const d = typeof t === "string" ? new Date(t) : null;
  return d && !isNaN(d.getTime()) ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}
