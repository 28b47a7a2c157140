//! Legacy client frames: `heartbeat` or a chat object.
//!
//! Invariants: the parser never panics; an accepted chat has valid ids and a
//! non-empty message; re-encoding an accepted chat's fields parses to the same
//! chat; the body delivered for it is JSON without a forged `type`; every
//! refusal has its `error …` text; a frame is too large exactly when it is
//! over the limit.
#![no_main]

#[path = "common.rs"]
mod common;

use edge_chat::limits::FRAME_CEILING;
use edge_chat::message::chat_body;
use edge_chat::message::Refusal;
use edge_chat::protocol::legacy::{self, LegacyFrame};
use edge_chat::protocol::Reply;
use edge_chat::user::UserId;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A frame limit below the fuzzer's input length, so both sides of it are reached.
const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let text = common::text(data);
    let parsed = legacy::parse(&text, LIMIT);
    assert_eq!(parsed == Err(Refusal::TooLarge), text.len() > LIMIT);
    match parsed {
        Ok(LegacyFrame::Heartbeat) => assert_eq!(text, legacy::HEARTBEAT),
        Ok(LegacyFrame::Chat(chat)) => {
            assert!(UserId::parse(chat.from.as_str()).is_ok() && UserId::parse(chat.to.as_str()).is_ok());
            assert!(matches!(chat.fields.get("message"), Some(Value::String(m)) if !m.is_empty()));
            // parse → encode → parse
            let encoded = Value::Object(chat.fields.clone()).to_string();
            let Ok(LegacyFrame::Chat(again)) = legacy::parse(&encoded, FRAME_CEILING) else {
                panic!("re-encoded chat refused: {encoded}")
            };
            assert_eq!((&again.from, &again.to), (&chat.from, &chat.to));
            assert!(common::same_json(&Value::Object(again.fields), &Value::Object(chat.fields.clone())));
            // What the recipient gets.
            let body = chat_body(&chat.from, &chat.to, chat.fields, "00000000000000000000000000ab", 1_800_000_000_000);
            let Ok(Value::Object(b)) = serde_json::from_str::<Value>(&body) else { panic!("body is not an object") };
            assert!(!b.contains_key("type"), "a chat must not carry a system message's type");
            assert_eq!(UserId::from_json(&b["fromUser"]).as_ref(), Ok(&chat.from));
            assert_eq!(UserId::from_json(&b["toUser"]).as_ref(), Ok(&chat.to));
        }
        Err(r) => assert!(legacy::encode(&Reply::Refused(r)).starts_with("error ")),
    }
});
