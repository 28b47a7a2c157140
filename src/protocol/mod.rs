//! The wire protocol: one frame type between wire text and the core.
//!
//! Each wire mode parses client text into its own frame type
//! ([`legacy::LegacyFrame`], [`v1::V1Frame`]) and has its own encoder for
//! what the server sends. Everything after parsing works on frames only: a
//! legacy chat and a v1 `send` become the same [`crate::message::Chat`] on
//! the same path to the recipient's log.

pub mod legacy;
pub mod v1;

use serde_json::Value;

use crate::message::Refusal;

/// A request's id, echoed as `re` in its reply (v1): a string or a number.
pub type RequestId = Value;

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
