//! The legacy wire mode: what the campus music app's front end already speaks.
//!
//! Client text is `heartbeat` or a chat object
//! `{"fromUser":1,"toUser":2,"message":"…"}`; the server answers `ok` or a
//! short error string, and delivers each message as its JSON body.

use super::Reply;
use crate::message::{parse_chat, Chat, Refusal};

/// A legacy client frame.
#[derive(Debug, PartialEq)]
pub enum LegacyFrame {
    /// Normally answered by the runtime without waking the object.
    Heartbeat,
    /// A chat object, answered `ok` or an error string.
    Chat(Chat),
}

pub const HEARTBEAT: &str = "heartbeat";

/// Parses one client text frame of at most `max_bytes` (`FRAME_MAX_BYTES`);
/// the size is checked before anything else.
pub fn parse(text: &str, max_bytes: usize) -> Result<LegacyFrame, Refusal> {
    if text.len() > max_bytes {
        return Err(Refusal::TooLarge);
    }
    if text == HEARTBEAT {
        return Ok(LegacyFrame::Heartbeat);
    }
    let value = serde_json::from_str(text).map_err(|_| Refusal::Format)?;
    parse_chat(value).map(LegacyFrame::Chat)
}

/// The text a legacy client gets for a reply.
pub fn encode<'a>(reply: &Reply<'a>) -> &'a str {
    match reply {
        Reply::Heartbeat => HEARTBEAT,
        Reply::Stored => "ok",
        Reply::Refused(r) => refusal_text(*r),
        Reply::Deliver(body) => body,
    }
}

fn refusal_text(r: Refusal) -> &'static str {
    match r {
        Refusal::TooLarge => "error size",
        Refusal::Format => "error format",
        Refusal::BadFromUser => "error fromUser",
        Refusal::BadToUser => "error toUser",
        Refusal::EmptyMessage => "error message",
        Refusal::NotYou => "error forbidden",
        Refusal::Unavailable => "error unavailable",
        Refusal::RateLimited { .. } => "error rate",
        Refusal::RecipientFull => "error full",
        Refusal::Blocked => "error blocked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;

    #[test]
    fn heartbeat() {
        assert_eq!(parse("heartbeat", MAX), Ok(LegacyFrame::Heartbeat));
        assert_eq!(encode(&Reply::Heartbeat), "heartbeat");
    }

    #[test]
    fn a_chat_with_numeric_or_string_ids() {
        let Ok(LegacyFrame::Chat(c)) = parse(r#"{"fromUser":1,"toUser":"2","message":"hi","x":true}"#, MAX) else {
            panic!("not a chat")
        };
        assert_eq!((c.from.as_str(), c.to.as_str()), ("1", "2"));
        assert_eq!(c.fields["x"], serde_json::json!(true));
    }

    #[test]
    fn each_bad_frame_has_its_error() {
        let cases = [
            ("hello", "error format"),
            ("[1,2]", "error format"),
            (r#"{"toUser":2,"message":"m"}"#, "error fromUser"),
            (r#"{"fromUser":"a b","toUser":2,"message":"m"}"#, "error fromUser"),
            (r#"{"fromUser":1,"message":"m"}"#, "error toUser"),
            (r#"{"fromUser":1,"toUser":{},"message":"m"}"#, "error toUser"),
            (r#"{"fromUser":1,"toUser":2,"message":""}"#, "error message"),
            (r#"{"fromUser":1,"toUser":2,"message":5}"#, "error message"),
            (r#"{"fromUser":1,"toUser":2}"#, "error message"),
        ];
        for (text, want) in cases {
            let got = parse(text, MAX).map(|_| ()).map_err(|r| encode(&Reply::Refused(r)));
            assert_eq!(got, Err(want), "{text}");
        }
    }

    #[test]
    fn size_limit_is_checked_before_parsing() {
        let big = format!(r#"{{"fromUser":1,"toUser":2,"message":"{}"}}"#, "x".repeat(MAX));
        assert_eq!(parse(&big, MAX), Err(Refusal::TooLarge));
        let edge = format!(r#"{{"fromUser":1,"toUser":2,"message":"{}"}}"#, "x".repeat(MAX - 40));
        assert!(edge.len() <= MAX);
        assert!(parse(&edge, MAX).is_ok());
    }
}
