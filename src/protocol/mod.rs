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

/// The answer to a binary frame, which neither mode accepts: each mode's own
/// error, so a v1 client can parse it (`error` `bad_frame`).
pub fn binary_refusal(v1: bool) -> String {
    if v1 {
        v1::error(None, v1::V1Error::BadFrame)
    } else {
        legacy::encode(&Reply::Refused(Refusal::Format)).to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_binary_frame_is_refused_in_the_sockets_own_mode() {
        assert_eq!(super::binary_refusal(false), "error format");
        let v1: serde_json::Value = serde_json::from_str(&super::binary_refusal(true)).unwrap();
        assert_eq!((v1["op"].as_str(), v1["code"].as_str()), (Some("error"), Some("bad_frame")));
    }
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
