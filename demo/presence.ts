// Presence, both ways. The open conversation's peer is watched (the SDK
// renews the watch and sends it again after reconnects) and shown in the
// header as "online" or "last seen HH:MM"; nothing is shown for a peer
// never seen or hiding their presence (the server makes both look alike).
// The sidebar's checkbox hides this user's own presence; it shows the
// setting as the server says (welcome, `settings` events from any device).
import type { ChatClient, Presence, PresenceUpdate } from "../client/src/index.ts";
import { describe, showError, ui } from "./ui.ts";

const pad = (n: number) => String(n).padStart(2, "0");

/** "online", "last seen HH:MM" (with the date when not today), or "" when nothing may be shown. */
export function presenceText(p: Presence | null): string {
  if (!p) return "";
  if (p.online) return "online";
  if (p.last_seen === null) return "";
  const d = new Date(p.last_seen);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return d.toDateString() === new Date().toDateString() ? `last seen ${time}` : `last seen ${d.toLocaleDateString()} ${time}`;
}

export class PresenceView {
  #peer: string | null = null;
  #unwatch: (() => void) | null = null;

  constructor(private readonly chat: ChatClient) {}

  /** The conversation with `peer` (or none) is open: watch that peer alone. */
  show(peer: string | null) {
    if (peer !== this.#peer) {
      this.#unwatch?.();
      this.#unwatch = peer ? this.chat.watch(peer) : null;
      this.#peer = peer;
    }
    this.render();
  }

  onPresence(p: PresenceUpdate) {
    if (p.user === this.#peer) this.render();
  }

  render() {
    const p = this.#peer ? this.chat.presence(this.#peer) : null;
    const text = presenceText(p);
    ui.presence.textContent = text;
    ui.presence.dataset.state = p?.online ? "online" : text ? "seen" : "unknown";
    ui.presence.hidden = !text;
  }

  /** The own setting, as the server last said. */
  renderSettings() {
    ui.hidePresence.checked = this.chat.settings.hide_presence;
    ui.hidePresence.disabled = false;
  }

  /** The checkbox was toggled: ask the server; the `settings` event confirms it. */
  async toggleHidden() {
    const hide = ui.hidePresence.checked;
    ui.hidePresence.disabled = true;
    try {
      await this.chat.setHidePresence(hide);
    } catch (e) {
      showError(`could not change the presence setting: ${describe(e)}`);
      this.renderSettings();
    } finally {
      ui.hidePresence.disabled = false;
    }
  }

  /** Signed out: nothing watched, nothing shown; the checkbox waits for the next user's welcome. */
  dispose() {
    this.#unwatch?.();
    this.#unwatch = null;
    this.#peer = null;
    ui.presence.hidden = true;
    ui.hidePresence.checked = false;
    ui.hidePresence.disabled = true;
  }
}
