// The conversation header's block button and mute bell. What they show comes
// from the SDK's lists (the welcome and `blocks` events), never from the
// click alone: a change made on another device or over HTTP shows the same.
import type { ChatClient } from "../client/src/index.ts";
import { describe, showError, ui } from "./ui.ts";

/** Whether `peer` is muted now. */
export function isMuted(chat: ChatClient, peer: string) {
  return chat.blocks.muted.some((m) => m.peer === peer && (m.until === null || m.until > Date.now()));
}

export function isBlocked(chat: ChatClient, peer: string) {
  return chat.blocks.blocked.includes(peer);
}

/** Shows the header controls for the open conversation (`peer`), or hides them. */
export function renderPeerControls(chat: ChatClient, peer: string | null) {
  ui.block.hidden = ui.mute.hidden = peer === null;
  if (peer === null) return;
  const blocked = isBlocked(chat, peer);
  ui.block.textContent = blocked ? "Unblock" : "Block";
  ui.block.dataset.state = blocked ? "blocked" : "open";
  const muted = isMuted(chat, peer);
  ui.mute.textContent = muted ? "🔕 Muted" : "🔔 Mute";
  ui.mute.title = muted ? "Muted: no notifications. Click to unmute" : "Mute notifications";
  ui.mute.dataset.state = muted ? "muted" : "on";
}

/** Toggles a block (`what` = "block") or a mute of `peer`; the lists event re-renders. */
export async function toggle(chat: ChatClient, peer: string, what: "block" | "mute") {
  try {
    if (what === "block") await (isBlocked(chat, peer) ? chat.unblock(peer) : chat.block(peer));
    else await (isMuted(chat, peer) ? chat.unmute(peer) : chat.mute(peer));
  } catch (e) {
    showError(`could not ${what}: ${describe(e)}`);
  }
}
