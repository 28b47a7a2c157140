//! Group requests from outside bytes: an HTTP call under `/v1/groups` or
//! `/api/groups` (method, path and body from the input), the JSON request a
//! group's object reads, and a delivery a member's object reads.
//!
//! Invariants: nothing panics; an accepted HTTP call becomes a request with a
//! valid group that survives its own encoding; the object's request parser
//! and the delivery parser accept only what encodes back to the same value.
#![no_main]

#[path = "common.rs"]
mod common;

use edge_chat::group::calls::{self, Request};
use edge_chat::group::{Actor, GroupId};
use edge_chat::user::UserId;
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// `r` encoded parses back to the same request: the same JSON, numbers to
/// their last bits aside (serde_json may read a float it printed one ULP off,
/// as a message's own fields may carry).
fn survives_encoding(r: &Request) {
    let again = Request::parse(&r.encode()).expect("an encoded request parses");
    let json = |r: &Request| serde_json::from_str::<serde_json::Value>(&r.encode()).expect("requests encode as JSON");
    assert!(common::same_json(&json(&again), &json(r)), "{} != {}", again.encode(), r.encode());
}

fuzz_target!(|data: &[u8]| {
    let text = common::text(data);
    // `<method byte><path>\n<body>`.
    let (head, body) = text.split_once('\n').unwrap_or((&text, ""));
    let method = METHODS[head.bytes().next().map_or(0, |b| b as usize % METHODS.len())];
    let path = head.get(1..).unwrap_or("");
    let fresh = GroupId::parse("gfresh").expect("a group id");
    for by in [Actor::User(UserId::parse("fuzzer").expect("a user id")), Actor::Backend] {
        if let Ok(r) = calls::from_http(method, path, body, by, fresh.clone()) {
            assert!(GroupId::parse(r.group.as_str()).is_ok());
            survives_encoding(&r);
        }
    }
    if let Ok(r) = Request::parse(&text) {
        survives_encoding(&r);
    }
    let member = UserId::parse("m").expect("a user id");
    if let Ok(d) = calls::parse_delivery(&member, &text) {
        assert_eq!(calls::parse_delivery(&member, &calls::encode_delivery(&d)), Ok(d));
    }
});
