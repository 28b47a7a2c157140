// The demo chat page's entry point: wires the parts together. Signing in
// creates one user's session (the SDK client), conversation list,
// conversation view, typing indicators and presence, and routes the SDK's
// events and the page's controls to them; signing out tears them down.
// Everything the page shows comes from SDK events and reads; the parts keep
// only a view model (conversations, loaded message pages, pending sends).
import type { ChatError } from "../client/src/index.ts";
import { renderBanner, setConnection, showResynced } from "./banner.ts";
import { isBlocked, isMuted, renderPeerControls, toggle } from "./blocks.ts";
import { changeGroupAdds, disposeGroupAdds, renderGroupAdds } from "./consent.ts";
import { Conversations } from "./conversations.ts";
import { GroupsView } from "./groups.ts";
import { PresenceView } from "./presence.ts";
import { DevTokensDisabled, Session, USER_ID, fetchToken, forgetUser, rememberUser, savedUser } from "./session.ts";
import { ThreadView } from "./thread.ts";
import { Typing } from "./typing.ts";
import { describe, showError, ui } from "./ui.ts";

/** Everything that lives while one user is signed in. */
interface SignedIn {
  session: Session;
  list: Conversations;
  thread: ThreadView;
  typing: Typing;
  presence: PresenceView;
  groups: GroupsView;
  unsubscribe: Array<() => void>;
}

let current: SignedIn | null = null;

function signIn(user: string) {
  rememberUser(user);
  ui.login.hidden = true;
  ui.chat.hidden = false;
  ui.me.textContent = user;
  const session = new Session(user);
  const chat = session.chat;
  // The parts call each other back only after construction (on events).
  const typing: Typing = new Typing(chat, () => {
    typing.render(thread.open);
    list.render();
  });
  const list: Conversations = new Conversations(session, {
    open: () => thread.open,
    typing: (peer) => typing.isTyping(peer),
    muted: (peer) => isMuted(chat, peer),
    blocked: (peer) => isBlocked(chat, peer),
    select: (peer) => openConversation(peer),
    // A new browser (or a cleared one) learns the user's groups from the list.
    group: (item) => groups.fromList(item),
  });
  const thread: ThreadView = new ThreadView(session, list, typing);
  const presence = new PresenceView(chat);
  // Opening a group closes the 1:1 conversation (and the other way round, in openConversation).
  const groups = new GroupsView(session, () => {
    typing.leave(null);
    thread.show(null);
    presence.show(null);
    renderPeerControls(chat, null);
  });
  const reloadList = async () => {
    if (await list.load()) thread.listLoaded();
  };
  const unsubscribe = [
    chat.on("state", (s) => setConnection(s)),
    chat.on("welcome", (w) => {
      renderPeerControls(chat, thread.open);
      presence.renderSettings();
      renderGroupAdds(chat);
      if (w.limits.edit_window_s > 0) thread.editWindowMs = w.limits.edit_window_s * 1000;
      void reloadList();
    }),
    chat.on("blocks", () => {
      renderPeerControls(chat, thread.open);
      list.render();
    }),
    chat.on("resync", () => {
      showResynced();
      thread.resync();
      void reloadList();
    }),
    chat.on("message", (m) => {
      // A handler that throws makes the SDK redeliver the message forever:
      // a rendering bug must not stop the conversation.
      try {
        thread.onMessage(m);
      } catch (e) {
        console.error(e);
      }
    }),
    chat.on("change", (c) => {
      // As for messages: a handler that throws would get the change redelivered forever.
      try {
        thread.onChange(c);
        // No peer: the backend moderated a group message.
        if (c.peer === null) groups.onModerated(c);
      } catch (e) {
        console.error(e);
      }
    }),
    // Group entries: as for messages, a throwing handler would get them redelivered forever.
    chat.on("groupMessage", (m) => {
      try {
        groups.onMessage(m);
      } catch (e) {
        console.error(e);
      }
    }),
    chat.on("groupChange", (c) => {
      try {
        groups.onChange(c);
      } catch (e) {
        console.error(e);
      }
    }),
    chat.on("groupRead", (r) => groups.onRead(r)),
    chat.on("groupTyping", (t) => groups.onTyping(t)),
    chat.on("presence", (p) => presence.onPresence(p)),
    chat.on("settings", () => {
      presence.renderSettings();
      renderGroupAdds(chat);
    }),
    chat.on("sent", (e) => thread.onSent(e)),
    chat.on("receipt", (r) => {
      list.onReceipt(r);
      thread.renderIfOpen(r.peer);
    }),
    chat.on("unread", (u) => list.onUnread(u)),
    chat.on("typing", (t) => typing.onTyping(t)),
    chat.on("error", (e: ChatError) => {
      // The token provider failing is reported here (the SDK keeps retrying);
      // disabled dev tokens will not come back, so go back to the sign-in form.
      if (e.cause instanceof DevTokensDisabled) signOut(e.cause.message);
      // Transient errors are retried by the SDK; the banner shows the connection.
      else if (!e.retry) showError(describe(e));
      else console.warn(`chat: ${e.code}: ${e.message}`);
    }),
  ];
  current = { session, list, thread, typing, presence, groups, unsubscribe };
  setConnection("connecting");
  list.render();
  groups.render();
  thread.render();
  session.start();
}

function signOut(reason?: string) {
  if (current) {
    current.typing.dispose();
    current.presence.dispose();
    disposeGroupAdds();
    current.groups.dispose();
    current.thread.cancelEdit();
    for (const off of current.unsubscribe) off();
    current.session.close();
    current = null;
  }
  forgetUser();
  setConnection(null);
  ui.chat.hidden = true;
  ui.login.hidden = false;
  ui.loginError.hidden = !reason;
  ui.loginError.textContent = reason ?? "";
  ui.loginUser.focus();
}

function openConversation(peer: string | null) {
  if (peer !== null) current?.groups.show(null);
  current?.typing.leave(peer);
  current?.thread.show(peer);
  current?.presence.show(peer);
  if (current) renderPeerControls(current.session.chat, peer);
}

// ------------------------------------------------------------- controls

ui.loginForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const user = ui.loginUser.value.trim();
  if (!USER_ID.test(user)) return;
  const button = ui.loginForm.querySelector("button")!;
  button.disabled = true;
  ui.loginError.hidden = true;
  try {
    await fetchToken(user); // a clear message now rather than a failing socket later
    signIn(user);
  } catch (err) {
    ui.loginError.textContent = describe(err);
    ui.loginError.hidden = false;
  } finally {
    button.disabled = false;
  }
});

ui.logout.addEventListener("click", () => signOut());

ui.newConv.addEventListener("submit", (e) => {
  e.preventDefault();
  const peer = ui.newPeer.value.trim();
  if (!current || !USER_ID.test(peer) || peer === current.session.me) return;
  ui.newPeer.value = "";
  openConversation(peer);
});

ui.back.addEventListener("click", () => openConversation(null));

ui.newGroup.addEventListener("submit", (e) => {
  e.preventDefault();
  if (!current) return;
  const me = current.session.me;
  const members = [...new Set(ui.newGroupMembers.value.split(",").map((m) => m.trim()))].filter((m) => USER_ID.test(m) && m !== me);
  ui.newGroupMembers.value = "";
  void current.groups.create(members);
});
ui.groupBack.addEventListener("click", () => {
  current?.groups.show(null);
  openConversation(null);
});
ui.addMember.addEventListener("submit", (e) => {
  e.preventDefault();
  const user = ui.addMemberUser.value.trim();
  if (!current || !USER_ID.test(user)) return;
  ui.addMemberUser.value = "";
  void current.groups.addMember(user);
});
ui.leaveGroup.addEventListener("click", () => void current?.groups.leave());
ui.groupComposer.addEventListener("submit", (e) => {
  e.preventDefault();
  const value = ui.groupComposerInput.value.trim();
  if (!value || !current) return;
  ui.groupComposerInput.value = "";
  current.groups.stopTyping();
  current.groups.send(value);
});
ui.groupComposerInput.addEventListener("input", () => {
  if (!current) return;
  if (ui.groupComposerInput.value) current.groups.typed();
  else current.groups.stopTyping();
});

for (const [button, what] of [
  [ui.block, "block"],
  [ui.mute, "mute"],
] as const) {
  button.addEventListener("click", () => {
    const peer = current?.thread.open;
    if (current && peer) void toggle(current.session.chat, peer, what);
  });
}

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  const value = ui.composerInput.value.trim();
  if (!value || !current) return;
  if (current.thread.editing) return void current.thread.submitEdit(value);
  ui.composerInput.value = "";
  current.typing.stop();
  current.thread.send(value);
});

ui.cancelEdit.addEventListener("click", () => current?.thread.cancelEdit());
ui.composerInput.addEventListener("keydown", (e) => {
  if (e.key === "Escape") current?.thread.cancelEdit();
});
ui.hidePresence.addEventListener("change", () => void current?.presence.toggleHidden());
ui.groupAdds.addEventListener("change", () => {
  if (current) void changeGroupAdds(current.session.chat);
});

ui.composerInput.addEventListener("input", () => {
  if (!current || current.thread.editing) return; // editing is not typing a new message
  const peer = current.thread.open;
  if (ui.composerInput.value && peer) current.typing.typed(peer);
  else current.typing.stop();
});

ui.loadOlder.addEventListener("click", () => {
  const peer = current?.thread.open;
  if (peer) void current!.thread.loadOlder(peer);
});
ui.messages.addEventListener("scroll", () => {
  const peer = current?.thread.open;
  if (peer && ui.messages.scrollTop < 60) void current!.thread.loadOlder(peer);
});

document.addEventListener("visibilitychange", () => {
  const thread = current?.thread;
  if (thread?.open && thread.viewing(thread.open)) thread.markRead(thread.open);
  current?.groups.visible();
});
addEventListener("online", renderBanner);
addEventListener("offline", renderBanner);

// A reload resumes the signed-in user (device id and SDK state are in localStorage).
const saved = savedUser();
if (saved) signIn(saved);
else signOut();
