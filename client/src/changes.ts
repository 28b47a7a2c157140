// Edits and deletes as an app applies them: a `change` event carries the
// message's whole new body, so applying one is replacing a body. Bodies are
// ordered (a tombstone is final, else the higher edit_version wins), so a
// change applied twice, late, or to a message that a history page already
// shows in a newer state changes nothing.

import type { Body, Change, Msg } from "./frames.ts";

/** Whether a message body is a tombstone (deleted for everyone, or for this user). */
export function isDeleted(body: Body): boolean {
  return typeof body.deleted_at === "string";
}

/** How many times a message body was edited (0: never). */
export function editVersion(body: Body): number {
  return typeof body.edit_version === "number" ? body.edit_version : 0;
}

/** Whether body `a` is a newer state of a message than `b`. */
export function isNewerBody(a: Body, b: Body): boolean {
  if (isDeleted(b)) return false;
  return isDeleted(a) || editVersion(a) > editVersion(b);
}

/**
 * `m` with the change applied: a copy with the new body if `c` targets it
 * and is newer than what `m` shows; else `m` itself.
 */
export function applyChange<M extends Pick<Msg, "mid" | "body">>(m: M, c: Change): M {
  if (m.mid !== c.target || !isNewerBody(c.body, m.body)) return m;
  return { ...m, body: c.body };
}
