// Who may add this user to groups. The sidebar's select shows the
// `group_adds` setting as the server says (welcome, `settings` events from
// any device) and changes it; a group created without some members, and an
// add the user refused, say so (the server never tells a block apart).
import { ChatError, isGroupAdds, type ChatClient } from "../client/src/index.ts";
import { describe, showError, ui } from "./ui.ts";

/** The setting, as the server last said. */
export function renderGroupAdds(chat: ChatClient) {
  ui.groupAdds.value = chat.settings.group_adds;
  ui.groupAdds.disabled = false;
}

/** The select changed: ask the server; the `settings` event confirms it. */
export async function changeGroupAdds(chat: ChatClient) {
  const who = ui.groupAdds.value;
  if (!isGroupAdds(who)) return;
  ui.groupAdds.disabled = true;
  try {
    await chat.setGroupAdds(who);
  } catch (e) {
    showError(`could not change who may add you to groups: ${describe(e)}`);
  } finally {
    renderGroupAdds(chat);
  }
}

/** Signed out: the select waits for the next user's welcome. */
export function disposeGroupAdds() {
  ui.groupAdds.value = "contacts";
  ui.groupAdds.disabled = true;
}

/** What the page says of members a new group left out. */
export function refusedText(refused: string[]): string {
  return `not added (they do not accept being added to groups by you): ${refused.join(", ")}`;
}

/** What the page says of a failed add. */
export function addErrorText(user: string, e: unknown): string {
  if (e instanceof ChatError && e.code === "add_refused") return `${user} does not accept being added to groups by you`;
  return `could not add ${user}: ${describe(e)}`;
}
