// Typing indicators, both ways. Ours goes to the open conversation's peer at
// most every few seconds while keys are pressed, and is stopped after a few
// idle seconds, on sending, or on leaving the conversation. The peers' are
// shown (in the conversation header and the list) until they stop, a message
// from them arrives, or a few seconds pass without news.
import type { ChatClient, Typing as TypingEvent } from "../client/src/index.ts";
import { ui } from "./ui.ts";

const SEND_EVERY_MS = 3000;
const IDLE_MS = 4000;
const SHOWN_MS = 6000;

export class Typing {
  /** Peers shown typing, each with the timer that hides them. */
  readonly #peers = new Map<string, ReturnType<typeof setTimeout>>();
  /** The peer told we are typing, and when last. */
  #to: string | null = null;
  #sentAt = 0;
  #idle: ReturnType<typeof setTimeout> | undefined;

  /** `changed` is called whenever a peer starts or stops being shown typing. */
  constructor(
    private readonly chat: ChatClient,
    private readonly changed: () => void,
  ) {}

  isTyping(peer: string) {
    return this.#peers.has(peer);
  }

  /** A keystroke in the composer of the conversation with `peer`: tells them, at most every few seconds. */
  typed(peer: string) {
    const now = Date.now();
    if (this.#to !== peer || now - this.#sentAt > SEND_EVERY_MS) {
      this.#to = peer;
      this.#sentAt = now;
      this.chat.typing(peer, true); // best effort: dropped (false) while not connected
    }
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => this.stop(), IDLE_MS);
  }

  /** Tells the peer we stopped typing (if we said we were). */
  stop() {
    clearTimeout(this.#idle);
    if (this.#to) this.chat.typing(this.#to, false);
    this.#to = null;
    this.#sentAt = 0;
  }

  /** The conversation with `peer` (or none) is opened: stop typing to anyone else. */
  leave(peer: string | null) {
    if (this.#to && this.#to !== peer) this.stop();
  }

  onTyping(t: TypingEvent) {
    this.clear(t.from);
    if (t.active) this.#peers.set(t.from, setTimeout(() => this.clear(t.from), SHOWN_MS));
    this.changed();
  }

  /** `peer` is no longer shown typing (say, their message arrived). */
  clear(peer: string) {
    const timer = this.#peers.get(peer);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.#peers.delete(peer);
    this.changed();
  }

  /** Shows whether the peer of the open conversation is typing. */
  render(open: string | null) {
    const active = open !== null && this.isTyping(open);
    ui.typing.hidden = !active;
    ui.typing.textContent = active ? `${open} is typing…` : "";
  }

  dispose() {
    this.stop();
    for (const t of this.#peers.values()) clearTimeout(t);
    this.#peers.clear();
  }
}
