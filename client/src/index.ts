// Public entry point of edge-chat-client: the client, its error type, the
// stores and the protocol types.

export { ChatClient } from "./client.ts";
export type { ChatClientOptions, ChatEvents, DeleteOptions, SendOptions, State } from "./client.ts";
export { applyChange, editVersion, isDeleted, isNewerBody } from "./changes.ts";
export { randomId } from "./util.ts";
export type { SocketConstructor, SocketLike, TokenSource } from "./connection.ts";
export type { ConversationQuery } from "./conversations.ts";
export type { SentEvent } from "./sender.ts";
export type {
  GroupChangeResult,
  GroupCreated,
  GroupHistoryPage,
  GroupHistoryQuery,
  GroupInfo,
  GroupMember,
  GroupReadBy,
  GroupSendResult,
  GroupSentEvent,
} from "./groups.ts";
export type { Timers } from "./timers.ts";
export { ChatError } from "./errors.ts";
export type { ClientErrorCode, ErrorCode, ServerErrorCode } from "./errors.ts";
export { LocalStorageStore, MemoryStore } from "./store.ts";
export type { ClientStore, DeleteEntry, EditEntry, GroupSendEntry, OutboxEntry, SendEntry, StorageLike, StoredState } from "./store.ts";
export { backoffCeiling, backoffDelay } from "./backoff.ts";
export type { BackoffOptions } from "./backoff.ts";
export { GROUP_RE, SUBPROTOCOL, groupId, isGroupAdds, isGroupChange } from "./frames.ts";
export type {
  BlockLists,
  Body,
  Change,
  Conversation,
  ConversationPage,
  GroupConversation,
  HistoryPage,
  HistoryQuery,
  Entry,
  GroupAdds,
  GroupChange,
  GroupChangeKind,
  GroupMessage,
  GroupRead,
  GroupRole,
  GroupTyping,
  Limits,
  Msg,
  Presence,
  PresenceUpdate,
  Receipt,
  Resync,
  SendResult,
  Settings,
  Typing,
  Unread,
  Welcome,
} from "./frames.ts";
