//! Backend API bodies (`/api/sys-msg`, `/api/usr-msg`: one object or an
//! array; `/api/blocks`), and the body of a mute (`PUT /v1/mutes/<peer>`).
//!
//! Invariants: nothing panics; an accepted body has 1 to `MAX_BATCH` items,
//! each with valid ids (and a non-empty message for chats) and its delivered
//! body is JSON; an error names an item inside the array and encodes to JSON;
//! a single object body and the same object as a one-item array are judged
//! alike (same items, or the same error at index 0); under a batch limit,
//! "too many" is reported exactly for arrays over it. A block names two
//! valid users; a mute's end is a number or none. A moderation edit names
//! a valid user and message id, and (an edit) a body with a message; a
//! delete never carries one. A settings body is a boolean or an error.
#![no_main]

#[path = "common.rs"]
mod common;

use edge_chat::api::{
    block_route, parse_block, parse_edit, parse_settings, parse_system, parse_system_within, parse_user,
    parse_user_within, BodyError,
};
use edge_chat::blocks::Change;
use edge_chat::internal::BlockOp;
use edge_chat::limits::MAX_BATCH;
use edge_chat::message::system_body;
use edge_chat::user::UserId;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn items_in(data: &[u8]) -> Option<usize> {
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Array(a)) => Some(a.len()),
        Ok(_) => Some(1),
        Err(_) => None,
    }
}

fn check_error(e: &BodyError, items: Option<usize>) {
    let v: Value = serde_json::from_str(&e.to_json()).expect("an error document is JSON");
    assert!(v["error"].is_string());
    if let (Some(i), Some(n)) = (e.index, items) {
        assert!(i < n);
    }
}

fuzz_target!(|data: &[u8]| {
    let items = items_in(data);
    let is_object = matches!(serde_json::from_slice::<Value>(data), Ok(Value::Object(_)));
    let wrapped = [b"[".as_slice(), data, b"]"].concat();

    match parse_system(data) {
        Ok(msgs) => {
            assert!(!msgs.is_empty() && msgs.len() <= MAX_BATCH);
            for m in &msgs {
                assert!(UserId::parse(m.uid.as_str()).is_ok());
                let body = system_body(m.fields.clone(), "00000000000000000000000000ab", 0);
                assert!(matches!(serde_json::from_str::<Value>(&body), Ok(Value::Object(_))));
            }
            if is_object {
                let again = parse_system(&wrapped).expect("the same object as an array");
                assert_eq!(again.len(), 1);
                assert_eq!(again[0].uid, msgs[0].uid);
            }
        }
        Err(e) => {
            check_error(&e, items);
            if is_object {
                let again = parse_system(&wrapped).expect_err("the same object as an array");
                assert_eq!((again.index, again.field), (Some(0), e.field));
            }
        }
    }

    match parse_user(data) {
        Ok(chats) => {
            assert!(!chats.is_empty() && chats.len() <= MAX_BATCH);
            for c in &chats {
                assert!(UserId::parse(c.from.as_str()).is_ok() && UserId::parse(c.to.as_str()).is_ok());
                assert!(matches!(c.fields.get("message"), Some(Value::String(m)) if !m.is_empty()));
            }
            if is_object {
                let again = parse_user(&wrapped).expect("the same object as an array");
                assert_eq!((again.len(), &again[0].from, &again[0].to), (1, &chats[0].from, &chats[0].to));
            }
        }
        Err(e) => {
            check_error(&e, items);
            if is_object {
                let again = parse_user(&wrapped).expect_err("the same object as an array");
                assert_eq!((again.index, again.field), (Some(0), e.field));
            }
        }
    }

    // Under an operator limit of 2, "too many" means exactly: an array of
    // more than 2 items, whatever the items hold.
    for e in [parse_system_within(data, 2).err(), parse_user_within(data, 2).err()].into_iter().flatten() {
        let is_long_array = matches!(serde_json::from_slice::<Value>(data), Ok(Value::Array(a)) if a.len() > 2);
        assert_eq!(e.too_many, is_long_array);
    }

    match parse_block(data) {
        Ok((owner, change)) => {
            assert!(UserId::parse(owner.as_str()).is_ok() && UserId::parse(change.peer().as_str()).is_ok());
            assert!(matches!(change, Change::Block(_) | Change::Unblock(_)));
        }
        Err(e) => check_error(&e, None),
    }
    match block_route("PUT", "/v1/mutes/peer", data) {
        Some(Ok(BlockOp::Change(Change::Mute(peer, until)))) => {
            assert_eq!(peer.as_str(), "peer");
            if until.is_some() {
                assert!(matches!(serde_json::from_slice::<Value>(data), Ok(Value::Object(f)) if f["until"].is_u64()));
            }
        }
        Some(Err(e)) => check_error(&e, None),
        other => panic!("a mute route is a mute or an error: {other:?}"),
    }
    for delete in [false, true] {
        match parse_edit(data, delete) {
            Ok(e) => {
                assert!(UserId::parse(e.uid.as_str()).is_ok() && edge_chat::message::is_id(&e.mid));
                match delete {
                    true => assert!(e.body.is_empty()),
                    false => {
                        let body: Value = serde_json::from_str(&e.body).expect("an edit's body is JSON");
                        assert!(matches!(body.get("message"), Some(Value::String(m)) if !m.is_empty()));
                    }
                }
            }
            Err(e) => check_error(&e, None),
        }
    }
    if let Err(e) = parse_settings(data) {
        check_error(&e, None);
    }
});
