//! Messages as stored and delivered: ids, kinds, conversation ids, and the
//! JSON body a recipient receives.
//!
//! The body is built once, when a message enters the system, and then moves
//! as an opaque string through the hop, the log, the socket and D1; nothing
//! downstream parses it again.

use serde_json::{Map, Value};

use crate::time::rfc3339;
use crate::user::UserId;

/// Where an entry of a user's log came from. The number is what logs and D1 store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A chat addressed to the log's owner.
    Received = 1,
    /// A chat the owner sent; kept so history (and later the owner's other devices) see it.
    Sent = 2,
    /// A system message from the backend.
    System = 3,
    /// The owner edited one of their chats (an op: see [`crate::edits`]).
    EditOut = 4,
    /// The peer edited one of their chats to the owner.
    EditIn = 5,
    /// The owner deleted one of their chats for everyone.
    DeleteOut = 6,
    /// The peer deleted one of their chats to the owner for everyone.
    DeleteIn = 7,
    /// The owner deleted an entry of their log for themself alone.
    DeleteMine = 8,
    /// An entry of a group the owner belongs to (a message or a membership
    /// change), fanned out by the group's object: see [`crate::group`].
    Group = 9,
}

impl Kind {
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Kind> {
        Some(match code {
            1 => Kind::Received,
            2 => Kind::Sent,
            3 => Kind::System,
            4 => Kind::EditOut,
            5 => Kind::EditIn,
            6 => Kind::DeleteOut,
            7 => Kind::DeleteIn,
            8 => Kind::DeleteMine,
            9 => Kind::Group,
            _ => return None,
        })
    }

    /// Whether the owner's sockets are owed this entry: the offline queue
    /// (and a legacy socket) holds chats and system messages only. Ops and
    /// group entries reach v1 devices through the log; a legacy front end
    /// would show them as chats.
    pub fn owed_to_owner(self) -> bool {
        matches!(self, Kind::Received | Kind::System)
    }

    /// Whether a push is made for this entry when no device of the owner
    /// took it: messages to the owner (chats, system messages, a group's).
    pub fn pushed(self) -> bool {
        matches!(self, Kind::Received | Kind::System | Kind::Group)
    }

    /// An edit or delete of another entry, rather than a message.
    pub fn is_op(self) -> bool {
        matches!(self, Kind::EditOut | Kind::EditIn | Kind::DeleteOut | Kind::DeleteIn | Kind::DeleteMine)
    }

    /// The same entry as the other side's log holds it.
    pub fn mirror(self) -> Kind {
        match self {
            Kind::Received => Kind::Sent,
            Kind::Sent => Kind::Received,
            Kind::EditOut => Kind::EditIn,
            Kind::EditIn => Kind::EditOut,
            Kind::DeleteOut => Kind::DeleteIn,
            Kind::DeleteIn => Kind::DeleteOut,
            other => other,
        }
    }
}

/// A new message id: 12 hex digits of milliseconds then 16 random hex digits.
/// Sorts roughly by time and needs no coordination between objects.
pub fn new_id(now_ms: u64, random: u64) -> String {
    format!("{:012x}{:016x}", now_ms & 0xffff_ffff_ffff, random)
}

/// The id of a message that may be sent more than once (a v1 `send` with a
/// client message id, a backend call with an idempotency key): the same
/// inputs always give the same id, so the recipient can tell a retry from a
/// new message. Same shape as [`new_id`].
pub fn derived_id(scope: &str, sender: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{scope}\n{sender}\n{key}").as_bytes());
    digest[..14].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` could be an id made by [`new_id`] or [`derived_id`]: it travels in hop URLs unescaped.
pub fn is_id(s: &str) -> bool {
    s.len() == 28 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The conversation an entry of `owner`'s log belongs to: one per pair of
/// users (the same id in both users' logs) and one system channel per user.
/// `|` and `:` cannot occur in user ids, so these never collide.
pub fn conversation_id(owner: &UserId, peer: Option<&UserId>) -> String {
    match peer {
        Some(peer) => {
            let (a, b) = if owner <= peer { (owner, peer) } else { (peer, owner) };
            format!("u:{a}|{b}")
        }
        None => format!("s:{owner}"),
    }
}

/// The frame a chat's recipient gets: the sender's fields (extras carried),
/// with `fromUser`/`toUser` in legacy id form and the server's `id` and `time`.
pub fn chat_body(from: &UserId, to: &UserId, mut fields: Map<String, Value>, id: &str, time_ms: u64) -> String {
    // The front end treats any object with `type` as a system message, so a
    // client must not be able to forge one through a chat; nor an edit or a
    // tombstone (`crate::edits`), whose fields only the server sets.
    for k in ["type", "edit_version", "edited_at", "deleted_at"] {
        fields.remove(k);
    }
    fields.insert("fromUser".into(), from.to_json());
    fields.insert("toUser".into(), to.to_json());
    fields.insert("id".into(), Value::from(id));
    fields.insert("time".into(), Value::from(rfc3339(time_ms)));
    Value::Object(fields).to_string()
}

/// A system message is delivered as the backend wrote it; `id` and `time`
/// are added only when absent.
pub fn system_body(mut fields: Map<String, Value>, id: &str, time_ms: u64) -> String {
    fields.entry("id").or_insert_with(|| Value::from(id));
    fields.entry("time").or_insert_with(|| Value::from(rfc3339(time_ms)));
    Value::Object(fields).to_string()
}

/// A chat to deliver. `fields` is the client's whole object, extras included.
#[derive(Clone, Debug, PartialEq)]
pub struct Chat {
    pub from: UserId,
    pub to: UserId,
    pub fields: Map<String, Value>,
}

/// Why the server refused a client frame or could not complete it. The
/// socket stays open after any of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    TooLarge,
    /// Not JSON, not an object, a binary frame, or a field of the wrong type.
    Format,
    BadFromUser,
    BadToUser,
    EmptyMessage,
    /// `fromUser` is a valid id but not the authenticated user.
    NotYou,
    /// The recipient's store could not be reached or did not confirm; nothing
    /// was stored, so the client may send again.
    Unavailable,
    /// The user sends faster than the rate allows, or has too many sends in
    /// flight; nothing was stored.
    RateLimited {
        retry_after_ms: u64,
    },
    /// The recipient's offline queue is at `QUEUE_MAX`; nothing was stored,
    /// and sending again helps only once they connect.
    RecipientFull,
    /// The sender blocked the recipient: unblock them first.
    Blocked,
}

/// Validates a chat object, wherever it came from (socket or backend API).
pub fn parse_chat(value: Value) -> Result<Chat, Refusal> {
    let Value::Object(fields) = value else {
        return Err(Refusal::Format);
    };
    let from = fields.get("fromUser").ok_or(Refusal::BadFromUser)?;
    let from = UserId::from_json(from).map_err(|_| Refusal::BadFromUser)?;
    let to = fields.get("toUser").ok_or(Refusal::BadToUser)?;
    let to = UserId::from_json(to).map_err(|_| Refusal::BadToUser)?;
    match fields.get("message") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err(Refusal::EmptyMessage),
    }
    Ok(Chat { from, to, fields })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn ids_are_fixed_width_hex() {
        let id = new_id(1_800_000_000_000, 0xdead_beef);
        assert!(is_id(&id), "{id}");
        assert!(new_id(1, u64::MAX) < new_id(2, 0));
        assert!(!is_id("../x"));
    }

    #[test]
    fn derived_ids_are_stable_and_scoped() {
        let a = derived_id("send", "1", "c1");
        assert!(is_id(&a));
        assert_eq!(a, derived_id("send", "1", "c1"));
        assert_ne!(a, derived_id("send", "2", "c1"));
        assert_ne!(a, derived_id("api", "1", "c1"));
    }

    #[test]
    fn one_conversation_id_per_pair() {
        let (a, b) = (uid("1"), uid("2"));
        assert_eq!(conversation_id(&a, Some(&b)), conversation_id(&b, Some(&a)));
        assert_ne!(conversation_id(&a, None), conversation_id(&b, None));
    }

    #[test]
    fn chat_body_carries_extras_and_drops_type() {
        let fields = json!({"fromUser": "1", "toUser": 2, "message": "hi", "song": 7, "type": "sys", "deleted_at": "x", "edit_version": 9});
        let body = chat_body(&uid("1"), &uid("2"), fields.as_object().unwrap().clone(), "abc", 0);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"fromUser": 1, "toUser": 2, "message": "hi", "song": 7, "id": "abc", "time": "1970-01-01T00:00:00.000Z"})
        );
    }

    #[test]
    fn system_body_keeps_given_fields() {
        let fields = json!({"uid": "1", "type": "like", "time": "then"});
        let v: Value = serde_json::from_str(&system_body(fields.as_object().unwrap().clone(), "abc", 0)).unwrap();
        assert_eq!(v, json!({"uid": "1", "type": "like", "time": "then", "id": "abc"}));
    }
}
