//! The wire protocol: one frame type between wire text and the core.
//!
//! Each wire mode ([`legacy`], [`v1`]) parses client text into a [`Frame`]
//! and has its own encoder for what the server sends. Everything after
//! parsing works on frames only: a legacy chat and a v1 `send` take the same
//! path to the recipient's log.

pub mod legacy;
pub mod v1;

use serde_json::{Map, Value};

use crate::user::UserId;

/// A request's id, echoed as `re` in its reply (v1): a string or a number.
pub type RequestId = Value;

/// A client frame, whatever mode it arrived in.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Heartbeat,
    /// Legacy: a chat object, answered `ok` or an error string.
    Chat(Chat),
    /// v1: a chat with a client message id that makes retries idempotent.
    Send {
        id: RequestId,
        to: UserId,
        cmid: String,
        body: Map<String, Value>,
    },
    /// v1: this device processed the log up to `up_to`.
    Ack {
        up_to: u64,
    },
    /// v1: the user read the conversation with `peer` up to `up_to`.
    Read {
        id: RequestId,
        peer: UserId,
        up_to: u64,
    },
    /// v1: a page of the user's log from D1.
    History {
        id: RequestId,
        peer: Option<UserId>,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    },
    /// v1: typing started or stopped; never stored.
    Typing {
        to: UserId,
        active: bool,
    },
}

/// A chat to deliver. `fields` is the client's whole object, extras included.
#[derive(Debug, PartialEq)]
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
}

/// What the server sends on a socket.
#[derive(Debug, PartialEq)]
pub enum Reply<'a> {
    Heartbeat,
    /// The chat was durably stored in the recipient's log.
    Stored,
    Refused(Refusal),
    /// A message body (already JSON) for the socket's owner.
    Deliver(&'a str),
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
