// Public entry point of edge-chat-client: the client, its error type, the
// stores and the protocol types.

export { ChatClient } from "./client.ts";
export type { ChatClientOptions, ChatEvents, SendOptions, State } from "./client.ts";
export { randomId } from "./util.ts";
export type { SocketConstructor, SocketLike, TokenSource } from "./connection.ts";
export type { ConversationQuery } from "./conversations.ts";
export type { SentEvent } from "./sender.ts";
export type { Timers } from "./timers.ts";
export { ChatError } from "./errors.ts";
export type { ClientErrorCode, ErrorCode, ServerErrorCode } from "./errors.ts";
export { LocalStorageStore, MemoryStore } from "./store.ts";
export type { ClientStore, OutboxEntry, StorageLike, StoredState } from "./store.ts";
export { backoffCeiling, backoffDelay } from "./backoff.ts";
export type { BackoffOptions } from "./backoff.ts";
export { SUBPROTOCOL } from "./frames.ts";
export type {
  BlockLists,
  Body,
  Conversation,
  ConversationPage,
  HistoryPage,
  HistoryQuery,
  Limits,
  Msg,
  Receipt,
  Resync,
  SendResult,
  Typing,
  Unread,
  Welcome,
} from "./frames.ts";
