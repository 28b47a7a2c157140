// The banner at the top of the page: the connection state while it is not
// open (connecting, reconnecting, offline), and for a few seconds after a
// resync a notice that conversations were reloaded. Hidden when signed out.
import type { State } from "../client/src/index.ts";
import { ui } from "./ui.ts";

const RESYNC_NOTICE_MS = 6000;

/** The SDK's connection state, or null while nobody is signed in. */
let connection: State | null = null;
let resyncUntil = 0;

export function setConnection(state: State | null) {
  connection = state;
  if (state === null) resyncUntil = 0;
  renderBanner();
}

/** Entries this device missed were gone from the server's log: say so for a while. */
export function showResynced() {
  resyncUntil = Date.now() + RESYNC_NOTICE_MS;
  setTimeout(renderBanner, RESYNC_NOTICE_MS + 100);
  renderBanner();
}

export function renderBanner() {
  let state = "open";
  let text = "";
  if (connection !== null) {
    if (!navigator.onLine) [state, text] = ["offline", "You are offline. Messages will be sent once the connection is back."];
    else if (connection === "connecting") [state, text] = ["connecting", "Connecting…"];
    else if (connection === "reconnecting") [state, text] = ["reconnecting", "Connection lost. Reconnecting…"];
    else if (connection === "closed") [state, text] = ["offline", "Disconnected."];
    else if (resyncUntil > Date.now()) [state, text] = ["resync", "Some messages were missed while away: conversations were reloaded."];
  }
  ui.banner.dataset.state = state;
  ui.banner.textContent = text;
  ui.banner.hidden = state === "open";
}
