// ChatError: the one error type of the SDK. Server refusals (`error` frames)
// keep their protocol code, `retry` flag and `field`; failures found on the
// client side (closed, token, handler, HTTP, store…) get their own codes.

/** Codes the server sends in `error` frames (docs/protocol.md). */
export type ServerErrorCode =
  | "too_large"
  | "bad_frame"
  | "unknown_op"
  | "bad_field"
  | "forbidden" // also: an edit, or a delete for everyone, of someone else's message
  | "unavailable"
  | "rate_limited"
  | "recipient_full"
  | "blocked" // a send to a user you blocked
  | "blocks_full" // the block and mute lists are at BLOCKS_MAX
  | "not_found" // edit/delete: no message with this mid in the user's log
  | "too_late" // edit/delete for everyone: past limits.edit_window_s
  | "deleted"; // edit/delete: the message was deleted for everyone

/** Codes the client itself produces. */
export type ClientErrorCode =
  | "closed" // close() was called while the request was pending
  | "token_expired" // close 4001 with a fixed string token: nothing to refresh
  | "token_failed" // the token provider threw or returned no string
  | "handler_failed" // a `message` handler threw or rejected: not acked, redelivered
  | "listener_failed" // another event listener threw (reported, otherwise ignored)
  | "dead_socket" // no frame within deadAfterMs after a heartbeat or request
  | "connect_failed" // the WebSocket could not be created or closed before welcome
  | "http" // conversations() or the socket ticket: non-2xx answer (`status` set)
  | "network" // conversations() or the socket ticket: fetch failed
  | "protocol" // the server sent something this client does not understand
  | "wrong_user" // the store holds another user's state
  | "store"; // the store's load/save failed

export type ErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

export interface ChatErrorInit {
  retry?: boolean;
  field?: string;
  status?: number;
  retryAfterMs?: number;
  cmid?: string;
  seq?: number;
  cause?: unknown;
}

export class ChatError extends Error {
  /** Protocol error code (`bad_field`, `rate_limited`, …) or a client code (`closed`, `http`, …). */
  readonly code: ErrorCode;
  /** True when the condition is transient; the client retries such failures on its own. */
  readonly retry: boolean;
  /** For `bad_field`: the field the server (or the client's own check) refused. */
  readonly field?: string;
  /** For `http`: the HTTP status. */
  readonly status?: number;
  /** For `rate_limited`: how long the server asked to wait. */
  readonly retryAfterMs?: number;
  /** The client message id of the send, edit or delete this error is about, if any. */
  readonly cmid?: string;
  /** The seq of the message this error is about (`handler_failed`). */
  readonly seq?: number;

  constructor(code: ErrorCode, message: string, init: ChatErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "ChatError";
    this.code = code;
    this.retry = init.retry ?? false;
    if (init.field !== undefined) this.field = init.field;
    if (init.status !== undefined) this.status = init.status;
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs;
    if (init.cmid !== undefined) this.cmid = init.cmid;
    if (init.seq !== undefined) this.seq = init.seq;
  }
}

/** A ChatError from a server `error` frame. */
export function fromErrorFrame(f: { code: string; message?: string; retry?: boolean; field?: string; retry_after_ms?: number }, cmid?: string): ChatError {
  const init: ChatErrorInit = { retry: f.retry === true };
  if (typeof f.field === "string") init.field = f.field;
  if (typeof f.retry_after_ms === "number") init.retryAfterMs = f.retry_after_ms;
  if (cmid !== undefined) init.cmid = cmid;
  const what = f.field ? `${f.code} (${f.field})` : f.code;
  return new ChatError(f.code, f.message ? `${what}: ${f.message}` : what, init);
}
