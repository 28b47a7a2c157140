//! Edits and deletes (sans-IO): who may change a message, what its body
//! becomes, and the op entry that carries the change to every log that
//! holds the message.
//!
//! An op is an entry of its own (kinds `EditOut`/`EditIn`, `DeleteOut`/
//! `DeleteIn`, `DeleteMine`), with its own seq, so acks, resume and the
//! offline queue need nothing new. Its body names the message (`target`)
//! and carries the message's whole new body: the edited body, or a
//! tombstone. Every holder rewrites the message with that body (its log
//! entry, and its D1 row through the editor's archive pass), so history
//! always holds the current state; a delete "for me" changes only what its
//! user sees (`hidden` in their log).

use serde_json::{Map, Value};

use crate::message::{Kind, Refusal};
use crate::time::rfc3339;
use crate::user::UserId;

/// What a client asks of a message.
#[derive(Clone, Debug, PartialEq)]
pub enum EditOp {
    /// Replace the body (the new fields, as a `send` body).
    Edit(Map<String, Value>),
    /// Delete for everyone, or for the user alone.
    Delete { everyone: bool },
}

/// Why an op is refused; nothing is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditRefusal {
    /// No such message in the user's log.
    NotFound,
    /// An edit, or a delete for everyone, of someone else's message.
    NotYours,
    /// Past `EDIT_WINDOW_S`.
    TooLate,
    /// The message was deleted for everyone.
    Deleted,
    /// As a send is refused (rate, the peer's store).
    Send(Refusal),
}

impl From<Refusal> for EditRefusal {
    fn from(r: Refusal) -> EditRefusal {
        EditRefusal::Send(r)
    }
}

/// A message as the editor's log holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub mid: String,
    pub kind: Kind,
    pub peer: Option<UserId>,
    pub time_ms: u64,
    /// Its current body (already edited, or a tombstone).
    pub body: String,
}

/// An op decided: the entry for the editor's log, and whether the peer's
/// log gets it too.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub kind: Kind,
    pub peer: Option<UserId>,
    /// The op entry's body: `{"body":…,"for":…,"target":…}`.
    pub body: String,
    /// The message's new body (what every holder rewrites it with).
    pub rewrite: String,
    /// The peer's log holds the message too: deliver the op there first.
    pub to_peer: bool,
}

/// Fields of a body only the server sets: a client's edit cannot forge them.
const SERVER_FIELDS: [&str; 8] =
    ["fromUser", "toUser", "id", "time", "type", "edit_version", "edited_at", "deleted_at"];
/// What a tombstone keeps of its message.
const TOMBSTONE_KEEPS: [&str; 4] = ["fromUser", "toUser", "id", "time"];

fn object(body: &str) -> Map<String, Value> {
    match serde_json::from_str(body) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Whether a message body is a tombstone.
pub fn is_deleted(body: &str) -> bool {
    object(body).contains_key("deleted_at")
}

/// Decides `op` on `target` (`None`: not in the log) for `owner` at `now`.
/// `backend`: a moderation call, which no time window holds.
pub fn decide(
    owner: &UserId,
    target: Option<Target>,
    op: EditOp,
    now: u64,
    window_ms: u64,
    backend: bool,
) -> Result<Decided, EditRefusal> {
    let target = target.ok_or(EditRefusal::NotFound)?;
    let current = object(&target.body);
    let everyone = !matches!(op, EditOp::Delete { everyone: false });
    let own = target.kind == Kind::Sent || (target.kind == Kind::Received && target.peer.as_ref() == Some(owner));
    if everyone && !own {
        return Err(EditRefusal::NotYours);
    }
    if current.contains_key("deleted_at") {
        return Err(EditRefusal::Deleted);
    }
    if everyone && !backend && now.saturating_sub(target.time_ms) > window_ms {
        return Err(EditRefusal::TooLate);
    }
    let (kind, rewrite, scope) = match op {
        EditOp::Edit(fields) => (Kind::EditOut, edited(current, fields, now), None),
        EditOp::Delete { everyone } => {
            let scope = if everyone { "everyone" } else { "me" };
            (if everyone { Kind::DeleteOut } else { Kind::DeleteMine }, tombstone(current, now), Some(scope))
        }
    };
    let mut body = Map::new();
    body.insert("target".into(), Value::from(target.mid.as_str()));
    body.insert("body".into(), rewrite.clone());
    if let Some(scope) = scope {
        body.insert("for".into(), Value::from(scope));
    }
    let to_peer = everyone && target.peer.as_ref().is_some_and(|p| p != owner);
    Ok(Decided {
        kind,
        peer: target.peer,
        body: Value::Object(body).to_string(),
        rewrite: rewrite.to_string(),
        to_peer,
    })
}

/// The new body of an edited message: the client's fields, with the
/// server's fields of the original and the next `edit_version`.
fn edited(current: Map<String, Value>, mut fields: Map<String, Value>, now: u64) -> Value {
    for k in SERVER_FIELDS {
        fields.remove(k);
    }
    for k in ["fromUser", "toUser", "id", "time"] {
        if let Some(v) = current.get(k) {
            fields.insert(k.into(), v.clone());
        }
    }
    let version = current.get("edit_version").and_then(Value::as_u64).unwrap_or(0) + 1;
    fields.insert("edit_version".into(), Value::from(version));
    fields.insert("edited_at".into(), Value::from(rfc3339(now)));
    Value::Object(fields)
}

/// A deleted message: who, when and which, and no content.
fn tombstone(mut current: Map<String, Value>, now: u64) -> Value {
    current.retain(|k, _| TOMBSTONE_KEEPS.contains(&k.as_str()));
    current.insert("deleted_at".into(), Value::from(rfc3339(now)));
    Value::Object(current)
}

/// What a group message keeps through an edit or a delete besides a
/// chat's server fields: its group and place in the group's log (clients
/// and unread counts find it by them).
const GROUP_KEEPS: [&str; 2] = ["group", "group_seq"];

/// A backend edit or delete (for everyone) of a group message whose
/// current body is `current`: the op entry's body (as a chat's op:
/// `{"target","body","for"?}`) and the message's new body.
pub fn group_op(target: &str, current: &str, op: EditOp, now: u64) -> Result<(String, String), EditRefusal> {
    let current = object(current);
    if current.contains_key("deleted_at") {
        return Err(EditRefusal::Deleted);
    }
    let keep: Vec<(String, Value)> =
        GROUP_KEEPS.iter().filter_map(|k| current.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect();
    let (mut rewrite, scope) = match op {
        EditOp::Edit(fields) => (edited(current, fields, now), None),
        EditOp::Delete { .. } => (tombstone(current, now), Some("everyone")),
    };
    if let Value::Object(m) = &mut rewrite {
        m.extend(keep);
    }
    let mut body = Map::new();
    body.insert("target".into(), Value::from(target));
    body.insert("body".into(), rewrite.clone());
    if let Some(scope) = scope {
        body.insert("for".into(), Value::from(scope));
    }
    Ok((Value::Object(body).to_string(), rewrite.to_string()))
}

/// The target and new body an op entry carries (`None`: not an op body,
/// which only a damaged row could be).
pub fn rewrite_of(op_body: &str) -> Option<(String, String)> {
    let o = object(op_body);
    let target = o.get("target")?.as_str()?.to_owned();
    let body = o.get("body").filter(|b| b.is_object())?.to_string();
    Some((target, body))
}

/// A history row's body as its user sees it after a delete "for me".
pub fn hidden_body(body: &str, deleted_at_ms: u64) -> String {
    tombstone(object(body), deleted_at_ms).to_string()
}

/// An edit's op body as the user who deleted its message for themself
/// (at `deleted_at_ms`) sees it: the body it carries is their tombstone, so
/// a client that applies it keeps the message deleted (a delete for me wins
/// over later edits on the deleter's side). `target` is kept.
pub fn hidden_edit(op_body: &str, deleted_at_ms: u64) -> String {
    let mut op = object(op_body);
    let message = op.get("body").and_then(Value::as_object).cloned().unwrap_or_default();
    op.insert("body".into(), tombstone(message, deleted_at_ms));
    Value::Object(op).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn target(kind: Kind, peer: &str, body: Value, time_ms: u64) -> Option<Target> {
        Some(Target { mid: "m1".into(), kind, peer: Some(uid(peer)), time_ms, body: body.to_string() })
    }

    fn sent(body: Value, time_ms: u64) -> Option<Target> {
        target(Kind::Sent, "2", body, time_ms)
    }

    fn chat() -> Value {
        json!({"fromUser": 1, "toUser": 2, "message": "hi", "song": 7, "id": "m1", "time": "t0"})
    }

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn an_edit_keeps_the_server_fields_and_counts_versions() {
        let op = EditOp::Edit(fields(json!({"message": "hello", "id": "forged", "edit_version": 99, "type": "x"})));
        let d = decide(&uid("1"), sent(chat(), 0), op, 1000, 5000, false).unwrap();
        let body: Value = serde_json::from_str(&d.rewrite).unwrap();
        assert_eq!(
            body,
            json!({"fromUser": 1, "toUser": 2, "message": "hello", "id": "m1", "time": "t0",
                   "edit_version": 1, "edited_at": "1970-01-01T00:00:01.000Z"})
        );
        assert_eq!((d.kind, d.to_peer), (Kind::EditOut, true));
        assert_eq!(rewrite_of(&d.body), Some(("m1".into(), d.rewrite.clone())));
        let again = decide(&uid("1"), sent(body, 0), EditOp::Edit(fields(json!({"message": "x"}))), 2000, 5000, false);
        assert_eq!(serde_json::from_str::<Value>(&again.unwrap().rewrite).unwrap()["edit_version"], json!(2));
    }

    #[test]
    fn a_delete_leaves_a_tombstone_and_nothing_follows_it() {
        let d = decide(&uid("1"), sent(chat(), 0), EditOp::Delete { everyone: true }, 1000, 5000, false).unwrap();
        let tomb: Value = serde_json::from_str(&d.rewrite).unwrap();
        assert_eq!(
            tomb,
            json!({"fromUser": 1, "toUser": 2, "id": "m1", "time": "t0", "deleted_at": "1970-01-01T00:00:01.000Z"})
        );
        assert!(is_deleted(&d.rewrite));
        let op = EditOp::Edit(fields(json!({"message": "back"})));
        assert_eq!(decide(&uid("1"), sent(tomb.clone(), 0), op, 1000, 5000, false), Err(EditRefusal::Deleted));
        let op = EditOp::Delete { everyone: true };
        assert_eq!(decide(&uid("1"), sent(tomb, 0), op, 1000, 5000, false), Err(EditRefusal::Deleted));
    }

    #[test]
    fn only_the_sender_within_the_window_unless_the_backend() {
        let theirs = target(Kind::Received, "2", chat(), 0);
        let edit = || EditOp::Edit(fields(json!({"message": "x"})));
        assert_eq!(decide(&uid("1"), theirs.clone(), edit(), 0, 5000, false), Err(EditRefusal::NotYours));
        let d = decide(&uid("1"), theirs, EditOp::Delete { everyone: false }, 0, 5000, false).unwrap();
        assert_eq!((d.kind, d.to_peer), (Kind::DeleteMine, false), "for me: any entry, only this log");
        assert_eq!(decide(&uid("1"), sent(chat(), 0), edit(), 5001, 5000, false), Err(EditRefusal::TooLate));
        assert!(decide(&uid("1"), sent(chat(), 0), edit(), 5001, 5000, true).is_ok(), "moderation has no window");
        assert_eq!(decide(&uid("1"), None, edit(), 0, 5000, false), Err(EditRefusal::NotFound));
    }

    #[test]
    fn a_group_message_keeps_its_group_and_place_through_an_edit_and_a_delete() {
        let msg = json!({"fromUser": "a", "group": "gx", "group_seq": 4, "message": "hi", "id": "m1", "time": "t0"});
        let edit = EditOp::Edit(fields(json!({"message": "fixed", "group": "gforged", "group_seq": 1})));
        let (op, body) = group_op("m1", &msg.to_string(), edit, 1000).unwrap();
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({"fromUser": "a", "group": "gx", "group_seq": 4, "message": "fixed", "id": "m1", "time": "t0",
                   "edit_version": 1, "edited_at": "1970-01-01T00:00:01.000Z"})
        );
        assert_eq!(rewrite_of(&op), Some(("m1".into(), body.to_string())));
        let (op, tomb) = group_op("m1", &body.to_string(), EditOp::Delete { everyone: true }, 2000).unwrap();
        let tomb: Value = serde_json::from_str(&tomb).unwrap();
        assert_eq!(
            tomb,
            json!({"fromUser": "a", "group": "gx", "group_seq": 4, "id": "m1", "time": "t0",
                   "deleted_at": "1970-01-01T00:00:02.000Z"})
        );
        assert_eq!(serde_json::from_str::<Value>(&op).unwrap()["for"], "everyone");
        let again = group_op("m1", &tomb.to_string(), EditOp::Delete { everyone: true }, 3000);
        assert_eq!(again, Err(EditRefusal::Deleted));
    }

    #[test]
    fn an_edit_seen_by_who_deleted_the_message_for_themself_carries_their_tombstone() {
        let d =
            decide(&uid("1"), sent(chat(), 0), EditOp::Edit(fields(json!({"message": "revived"}))), 1000, 5000, false);
        let seen: Value = serde_json::from_str(&hidden_edit(&d.unwrap().body, 500)).unwrap();
        assert_eq!(
            seen,
            json!({"target": "m1", "body": {"fromUser": 1, "toUser": 2, "id": "m1", "time": "t0",
                   "deleted_at": "1970-01-01T00:00:00.500Z"}})
        );
        let (_, body) = rewrite_of(&seen.to_string()).unwrap();
        assert!(is_deleted(&body), "still an op body, whose message is deleted");
    }

    #[test]
    fn an_own_chat_to_oneself_stays_in_one_log() {
        let own = target(Kind::Received, "1", chat(), 0);
        let d = decide(&uid("1"), own, EditOp::Delete { everyone: true }, 0, 5000, false).unwrap();
        assert_eq!((d.kind, d.to_peer), (Kind::DeleteOut, false));
    }
}
