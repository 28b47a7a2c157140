// The conversation view: the open conversation's messages, read from history
// a page at a time (the newest page first, older ones on scrolling up) and
// merged by seq with the messages that arrive live; own sends shown as
// pending bubbles until the SDK confirms their cmid (`sent`) or they fail
// (a click retries them); the ticks of own messages from the peer's receipts;
// edits and deletes (the SDK's `change` events replace a message's body:
// "edited", or "message deleted"), and the actions that make them; and
// marking what is on screen read.
import { applyChange, editVersion, isDeleted, isNewerBody, randomId } from "../client/src/index.ts";
import type { Change, Msg, SendResult, SentEvent } from "../client/src/index.ts";
import type { Conversations } from "./conversations.ts";
import type { Session } from "./session.ts";
import type { Typing } from "./typing.ts";
import { describe, h, messageText, showError, ui } from "./ui.ts";

/** A message typed here whose send has not been confirmed yet. */
interface Pending {
  /** The client message id: the SDK's `sent` event names it, and a retry with it is stored once whatever happened before. */
  cmid: string;
  peer: string;
  text: string;
  state: "sending" | "failed";
  error?: string;
}

/** The loaded part of one conversation. `next` is the cursor of older pages:
 * undefined before the first page is loaded, null once the start is reached. */
interface Thread {
  msgs: Map<number, Msg>;
  pending: Pending[];
  next: number | null | undefined;
  loading: boolean;
}

const PAGE = 30;

const TICKS: Record<string, [string, string]> = {
  sending: ["…", "Sending"],
  failed: ["!", "Not sent"],
  sent: ["✓", "Sent"],
  delivered: ["✓✓", "Delivered"],
  read: ["✓✓", "Read"],
};

export class ThreadView {
  /** The peer whose conversation is open, or null. */
  open: string | null = null;
  /** The own message being edited in the composer, or null. */
  editing: { peer: string; mid: string } | null = null;
  /** How long after sending a message may be edited or deleted for everyone (the welcome's limits). */
  editWindowMs = 24 * 3600 * 1000;
  readonly #threads = new Map<string, Thread>();
  /**
   * The newest change of each message (by target mid), kept for messages
   * not loaded yet: a history page read before the change reached the
   * server shows the older state, and applyChange never goes back.
   */
  readonly #changes = new Map<string, Change>();
  /**
   * How many times the SDK passed each seq to the `message` handler. Shown on
   * each bubble as `data-received` (0 for one only read from history) so a
   * test can tell a redelivered message, which the seq-keyed view would
   * otherwise hide; a redelivery is also logged as a warning.
   */
  readonly #received = new Map<number, number>();

  constructor(
    private readonly session: Session,
    private readonly list: Conversations,
    private readonly typing: Typing,
  ) {}

  #thread(peer: string): Thread {
    let t = this.#threads.get(peer);
    if (!t) {
      t = { msgs: new Map(), pending: [], next: undefined, loading: false };
      this.#threads.set(peer, t);
    }
    return t;
  }

  /** The conversation with `peer` is on screen: what arrives in it is read. */
  viewing(peer: string) {
    return this.open === peer && document.visibilityState === "visible";
  }

  /** Opens the conversation with `peer` (null: none, back to the list on narrow screens). */
  show(peer: string | null) {
    if (this.open !== peer) this.cancelEdit();
    this.open = peer;
    ui.chat.classList.toggle("open", peer !== null);
    this.list.render();
    this.render();
    if (!peer) return;
    this.list.get(peer);
    const t = this.#thread(peer);
    if (t.next === undefined) void this.loadOlder(peer);
    else {
      ui.messages.scrollTop = ui.messages.scrollHeight;
      if (this.viewing(peer)) this.markRead(peer);
    }
    ui.composerInput.focus();
  }

  // ------------------------------------------------------------ reads

  /** Loads the page of messages before the oldest one loaded (the newest page first). */
  async loadOlder(peer: string) {
    const t = this.#thread(peer);
    if (t.loading || t.next === null) return;
    const initial = t.next === undefined;
    t.loading = true;
    this.#renderHistoryTop();
    const box = ui.messages;
    const fromBottom = box.scrollHeight - box.scrollTop;
    try {
      const page = await this.session.chat.history({ peer, limit: PAGE, ...(t.next == null ? {} : { before: t.next }) });
      for (const m of page.items) this.#put(t, m);
      t.next = page.next;
    } catch (e) {
      showError(`could not load history: ${describe(e)}`);
    } finally {
      t.loading = false;
    }
    if (this.session.closed || this.open !== peer) return;
    this.render();
    // Keep what was on screen in place (or start at the newest message).
    box.scrollTop = initial ? box.scrollHeight : box.scrollHeight - fromBottom;
    if (this.viewing(peer)) this.markRead(peer);
  }

  /** Entries this device missed are gone from the server's log: reload what is shown from history instead of trusting the replay. */
  resync() {
    for (const [peer, t] of this.#threads) {
      t.msgs.clear();
      t.next = undefined;
      if (peer === this.open) void this.loadOlder(peer);
    }
  }

  /** The conversation list was (re)loaded from the server. */
  listLoaded() {
    if (!this.open) return;
    if (this.viewing(this.open)) this.markRead(this.open);
    this.render();
  }

  // ------------------------------------------------------------ events

  onMessage(m: Msg) {
    const n = (this.#received.get(m.seq) ?? 0) + 1;
    this.#received.set(m.seq, n);
    if (n > 1) console.warn(`demo: message seq ${m.seq} was delivered ${n} times`);
    if (m.kind === "sys" || m.peer == null) return; // system messages are not part of this demo
    const msg = m as Msg & { peer: string };
    const isNew = this.list.noteLast(msg);
    // Keyed by seq: a message already loaded from history is not added twice.
    // Own sends are confirmed by cmid in onSent, never by matching text here.
    const t = this.#threads.get(msg.peer);
    if (t) this.#put(t, msg);
    if (msg.kind === "in") {
      this.typing.clear(msg.peer);
      if (this.viewing(msg.peer)) this.markRead(msg.peer);
      else this.list.countUnread(msg, isNew);
    }
    this.list.render();
    this.renderIfOpen(msg.peer);
  }

  /** An edit or delete (from any device, or the peer): the message shows its new body. */
  onChange(c: Change) {
    const old = this.#changes.get(c.target);
    if (!old || isNewerBody(c.body, old.body)) this.#changes.set(c.target, c);
    if (c.peer === null) return;
    const t = this.#threads.get(c.peer);
    for (const m of t?.msgs.values() ?? []) if (m.mid === c.target) t!.msgs.set(m.seq, applyChange(m, c));
    if (this.editing?.mid === c.target && isDeleted(c.body)) this.cancelEdit();
    this.list.applyChange(c);
    this.renderIfOpen(c.peer);
  }

  /** Adds (or updates) a message, in the newest state known: its own, or a change that came first. */
  #put(t: Thread, m: Msg) {
    const c = this.#changes.get(m.mid);
    const next = c ? applyChange(m, c) : m;
    const old = t.msgs.get(m.seq);
    if (!old || isNewerBody(next.body, old.body)) t.msgs.set(m.seq, next);
  }

  /** The server stored an outbox entry: the pending bubble with its cmid becomes the stored message. */
  onSent(e: SentEvent) {
    this.#confirm(e.to, e.cmid, e);
  }

  #confirm(peer: string, cmid: string, r: SendResult) {
    const t = this.#threads.get(peer);
    const i = t ? t.pending.findIndex((p) => p.cmid === cmid) : -1;
    if (!t || i < 0) return; // not sent from this page (or already confirmed)
    const [p] = t.pending.splice(i, 1);
    if (!t.msgs.has(r.seq)) {
      const body = { fromUser: this.session.me, toUser: peer, message: p.text, time: new Date().toISOString() };
      t.msgs.set(r.seq, { seq: r.seq, kind: "out", peer, mid: r.mid, body });
    }
    const c = this.list.get(peer);
    if (!c.last || r.seq > c.last.seq) c.last = t.msgs.get(r.seq)!;
    this.list.render();
    this.renderIfOpen(peer);
  }

  // ----------------------------------------------------------- actions

  /** Marks everything received in the conversation as read, once. */
  markRead(peer: string) {
    const c = this.list.find(peer);
    if (!c) return;
    let lastIn = c.last?.kind === "in" ? c.last.seq : 0;
    for (const m of this.#threads.get(peer)?.msgs.values() ?? []) if (m.kind === "in" && m.seq > lastIn) lastIn = m.seq;
    if (lastIn <= c.readUpTo && c.unread === 0) return;
    const upTo = Math.max(lastIn, c.last?.seq ?? 0);
    c.readUpTo = Math.max(c.readUpTo, upTo);
    c.unread = 0;
    this.list.render();
    this.session.chat.read(peer, upTo).catch((e: unknown) => showError(`could not mark read: ${describe(e)}`));
  }

  /** Sends `text` to the open conversation's peer, shown pending until confirmed. */
  send(text: string) {
    const peer = this.open;
    if (!peer) return;
    const p: Pending = { cmid: randomId(), peer, text, state: "sending" };
    this.#thread(peer).pending.push(p);
    this.render();
    ui.messages.scrollTop = ui.messages.scrollHeight;
    void this.deliver(p);
  }

  /** Puts the own message `m` in the composer to edit it. */
  startEdit(m: Msg) {
    if (!this.open) return;
    this.editing = { peer: this.open, mid: m.mid };
    ui.editingText.textContent = typeof m.body.message === "string" ? m.body.message : "";
    ui.editing.hidden = false;
    ui.composerInput.value = typeof m.body.message === "string" ? m.body.message : "";
    ui.composerInput.focus();
  }

  cancelEdit() {
    if (!this.editing) return;
    this.editing = null;
    ui.editing.hidden = true;
    ui.composerInput.value = "";
  }

  /** The composer was submitted while editing: the edit goes through the SDK's outbox; the `change` event shows it. */
  async submitEdit(text: string) {
    const e = this.editing;
    if (!e) return;
    this.cancelEdit();
    try {
      await this.session.chat.edit(e.mid, { message: text });
    } catch (err) {
      showError(`could not edit: ${describe(err)}`);
    }
  }

  async remove(m: Msg, scope: "everyone" | "me") {
    try {
      await this.session.chat.deleteMessage(m.mid, { for: scope });
    } catch (err) {
      showError(`could not delete: ${describe(err)}`);
    }
  }

  /** Own chats may be edited and deleted for everyone within the edit window (the server decides; this hides what it would refuse). */
  #editable(m: Msg) {
    const sent = typeof m.body.time === "string" ? Date.parse(m.body.time) : NaN;
    return m.kind === "out" && !isDeleted(m.body) && !(Date.now() - sent > this.editWindowMs);
  }

  /** Hands `p` to the SDK (again, with the same cmid, for a retry). */
  async deliver(p: Pending) {
    p.state = "sending";
    p.error = undefined;
    this.renderIfOpen(p.peer);
    try {
      const r = await this.session.chat.send(p.peer, { message: p.text }, { cmid: p.cmid });
      this.#confirm(p.peer, p.cmid, r); // normally done already, by the `sent` event
    } catch (e) {
      p.state = "failed";
      p.error = describe(e);
      this.renderIfOpen(p.peer);
    }
  }

  // ------------------------------------------------------------ render

  renderIfOpen(peer: string) {
    if (this.open === peer) this.render();
  }

  render() {
    if (this.session.closed) return;
    const peer = this.open;
    ui.conversation.hidden = peer === null;
    // An open group (groups.ts) covers the placeholder too.
    ui.placeholder.hidden = peer !== null || !ui.groupView.hidden;
    this.typing.render(peer);
    if (peer === null) return;
    ui.peer.textContent = peer;
    this.#renderHistoryTop();
    const t = this.#thread(peer);
    const c = this.list.get(peer);
    const box = ui.messages;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const items = [...t.msgs.values()]
      .sort((a, b) => a.seq - b.seq)
      .map((m) => {
        const tick = m.kind !== "out" ? null : m.seq <= c.read ? "read" : m.seq <= c.delivered ? "delivered" : "sent";
        const deleted = isDeleted(m.body);
        const edited = !deleted && editVersion(m.body) > 0;
        const li = bubble(m.kind, messageText(m), timeOf(m), tick, {
          "data-seq": String(m.seq),
          "data-mid": m.mid,
          "data-received": String(this.#received.get(m.seq) ?? 0),
          "data-edited": edited ? "1" : "",
          "data-deleted": deleted ? "1" : "",
        });
        if (deleted) li.classList.add("deleted");
        if (edited) li.querySelector(".msg-meta")!.prepend(h("span", { class: "edited", "data-testid": "edited" }, "edited"));
        if (!deleted) li.append(this.#actions(m));
        return li;
      });
    for (const p of t.pending) {
      const li = bubble("out", p.text, "", p.state, { "data-pending": p.cmid });
      if (p.state === "failed") {
        const tick = li.querySelector<HTMLElement>(".tick")!;
        tick.title = `Not sent (${p.error}). Click to retry.`;
        tick.addEventListener("click", () => void this.deliver(p));
      }
      items.push(li);
    }
    ui.messageList.replaceChildren(...items);
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  /** Edit and delete for everyone (own chats, within the window), delete for me (any message). */
  #actions(m: Msg) {
    const box = h("span", { class: "msg-actions" });
    const action = (testid: string, label: string, run: () => void) => {
      const b = h("button", { class: "link", type: "button", "data-testid": testid }, label);
      b.addEventListener("click", run);
      box.append(b);
    };
    if (this.#editable(m)) {
      action("edit-msg", "Edit", () => this.startEdit(m));
      action("delete-everyone", "Delete for everyone", () => void this.remove(m, "everyone"));
    }
    action("delete-me", "Delete for me", () => void this.remove(m, "me"));
    return box;
  }

  #renderHistoryTop() {
    const t = this.open ? this.#threads.get(this.open) : undefined;
    ui.loadOlder.hidden = !t || t.next === null;
    ui.loadOlder.textContent = t?.loading ? "Loading…" : "Load older messages";
    ui.historyStart.hidden = !t || t.next !== null;
  }
}

function bubble(kind: string, body: string, time: string, tick: string | null, attrs: Record<string, string>) {
  const li = h("li", { class: `msg ${kind}`, "data-testid": "msg", "data-kind": kind, ...attrs });
  li.append(h("span", { class: "msg-text", "data-testid": "msg-text" }, body));
  const meta = h("span", { class: "msg-meta" }, time);
  if (tick) {
    const [mark, title] = TICKS[tick];
    meta.append(h("span", { class: "tick", "data-testid": "tick", "data-state": tick, title }, mark));
  }
  li.append(meta);
  return li;
}

function timeOf(m: Msg) {
  const d = typeof m.body.time === "string" ? new Date(m.body.time) : null;
  return d && !isNaN(d.getTime()) ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}
