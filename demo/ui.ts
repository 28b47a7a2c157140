// The page's fixed elements (looked up once by id) and the small helpers
// every part of the page uses: creating elements, the error toast, the text
// of an error, and how a message (edited, or deleted) reads as text.
import { isDeleted, type Msg } from "../client/src/index.ts";

const el = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

export const ui = {
  banner: el("banner"),
  login: el("login"),
  loginForm: el<HTMLFormElement>("login-form"),
  loginUser: el<HTMLInputElement>("login-user"),
  loginError: el("login-error"),
  chat: el("chat"),
  me: el("me"),
  logout: el("logout"),
  hidePresence: el<HTMLInputElement>("hide-presence"),
  groupAdds: el<HTMLSelectElement>("group-adds"),
  newConv: el<HTMLFormElement>("new-conv"),
  newPeer: el<HTMLInputElement>("new-peer"),
  conversations: el("conversations"),
  noConversations: el("no-conversations"),
  conversation: el("conversation"),
  placeholder: el("placeholder"),
  back: el("back"),
  peer: el("peer"),
  presence: el("presence"),
  typing: el("typing"),
  mute: el<HTMLButtonElement>("mute"),
  block: el<HTMLButtonElement>("block"),
  messages: el("messages"),
  loadOlder: el("load-older"),
  historyStart: el("history-start"),
  messageList: el("message-list"),
  editing: el("editing"),
  editingText: el("editing-text"),
  cancelEdit: el("cancel-edit"),
  composer: el<HTMLFormElement>("composer"),
  composerInput: el<HTMLInputElement>("composer-input"),
  newGroup: el<HTMLFormElement>("new-group"),
  newGroupMembers: el<HTMLInputElement>("new-group-members"),
  groups: el("groups"),
  groupView: el("group-view"),
  groupBack: el("group-back"),
  groupName: el("group-name"),
  groupMembers: el("group-members"),
  groupTyping: el("group-typing"),
  addMember: el<HTMLFormElement>("add-member"),
  addMemberUser: el<HTMLInputElement>("add-member-user"),
  leaveGroup: el<HTMLButtonElement>("leave-group"),
  groupMessages: el("group-messages"),
  groupMessageList: el("group-message-list"),
  groupComposer: el<HTMLFormElement>("group-composer"),
  groupComposerInput: el<HTMLInputElement>("group-composer-input"),
  error: el("error"),
};

/** An element with these attributes (empty values left out) and text. */
export function h(tag: string, attrs: Record<string, string> = {}, content?: string) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v) e.setAttribute(k, v);
  if (content !== undefined) e.textContent = content;
  return e;
}

export function describe(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (e && typeof e === "object" && "message" in e) return String((e as { message: unknown }).message);
  return String(e);
}

let errorTimer: ReturnType<typeof setTimeout> | undefined;

/** Shows `message` in the toast for a few seconds. */
export function showError(message: string) {
  ui.error.textContent = message;
  ui.error.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => (ui.error.hidden = true), 6000);
}

/** The text a message shows: its `message`, "message deleted" for a tombstone, or the whole body. */
export function messageText(m: Msg) {
  if (isDeleted(m.body)) return "message deleted";
  return typeof m.body.message === "string" ? m.body.message : JSON.stringify(m.body);
}
