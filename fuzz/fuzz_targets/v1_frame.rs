//! `chat.v1` client frames (edits, deletes, watches, settings and group
//! requests included).
//!
//! Invariants: the parser never panics; accepted frames obey the protocol's
//! field rules; encoding an accepted frame as a client would and parsing it
//! again gives the same frame; a refusal encodes to an `error` frame that
//! echoes the request id and names the field; a frame is too large exactly
//! when it is over the limit.
#![no_main]

#[path = "common.rs"]
mod common;

use edge_chat::blocks::Change;
use edge_chat::edits::EditOp;
use edge_chat::group::{calls, GroupId};
use edge_chat::limits::FRAME_CEILING;
use edge_chat::protocol::v1::V1Frame;
use edge_chat::protocol::v1::{self, MAX_CMID};
use edge_chat::user::UserId;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// The frame as a client would send it.
fn encode(f: &V1Frame) -> String {
    let v = match f {
        V1Frame::Heartbeat => return "heartbeat".into(),
        V1Frame::Send { id, to, cmid, body } => {
            json!({ "op": "send", "id": id, "to": to.as_str(), "cmid": cmid, "body": body })
        }
        V1Frame::Ack { up_to } => json!({ "op": "ack", "up_to": up_to }),
        V1Frame::Read { id, peer, up_to } => json!({ "op": "read", "id": id, "peer": peer.as_str(), "up_to": up_to }),
        V1Frame::History { id, peer, before, after, limit } => json!({
            "op": "history", "id": id, "peer": peer.as_ref().map(UserId::as_str),
            "before": before, "after": after, "limit": limit,
        }),
        V1Frame::Typing { to, active } => json!({ "op": "typing", "to": to.as_str(), "active": active }),
        V1Frame::Blocks { id, change } => match change {
            Change::Block(u) => json!({ "op": "block", "id": id, "user": u.as_str() }),
            Change::Unblock(u) => json!({ "op": "unblock", "id": id, "user": u.as_str() }),
            Change::Mute(p, until) => json!({ "op": "mute", "id": id, "peer": p.as_str(), "until": until }),
            Change::Unmute(p) => json!({ "op": "unmute", "id": id, "peer": p.as_str() }),
        },
        V1Frame::Edit { id, mid, cmid, op } => match op {
            EditOp::Edit(body) => json!({ "op": "edit", "id": id, "mid": mid, "cmid": cmid, "body": body }),
            EditOp::Delete { everyone } => json!({
                "op": "delete", "id": id, "mid": mid, "cmid": cmid, "for": if *everyone { "everyone" } else { "me" },
            }),
        },
        V1Frame::Watch { id, peer } => json!({ "op": "watch", "id": id, "peer": peer.as_str() }),
        V1Frame::Settings { id, change } => {
            let mut f = json!({ "op": "settings", "id": id });
            if let Some(h) = change.hide_presence {
                f["hide_presence"] = json!(h);
            }
            if let Some(a) = change.group_adds {
                f["group_adds"] = json!(a.as_str());
            }
            f
        }
        V1Frame::Group { id, fields } => {
            let mut f = fields.clone();
            f.insert("id".into(), id.clone());
            Value::Object(f)
        }
    };
    v.to_string()
}

fn check(f: &V1Frame) {
    let id_ok = |id: &Value| id.is_string() || id.is_number();
    match f {
        V1Frame::Send { id, cmid, body, .. } => {
            assert!(id_ok(id));
            assert!(!cmid.is_empty() && cmid.len() <= MAX_CMID);
            assert!(matches!(body.get("message"), Some(Value::String(m)) if !m.is_empty()));
        }
        V1Frame::Read { id, .. } => assert!(id_ok(id)),
        V1Frame::History { id, limit, .. } => assert!(id_ok(id) && *limit != Some(0)),
        V1Frame::Blocks { id, .. } | V1Frame::Watch { id, .. } | V1Frame::Settings { id, .. } => assert!(id_ok(id)),
        V1Frame::Group { id, fields } => {
            assert!(id_ok(id));
            // The group request it makes: a valid group, a user for the asker,
            // and a request that survives its own encoding.
            let by = UserId::parse("fuzzer").expect("a user id");
            let fresh = GroupId::parse("gfresh").expect("a group id");
            if let Ok(r) = calls::from_frame(fields, &by, fresh) {
                assert_eq!(calls::Request::parse(&r.encode()).as_ref(), Ok(&r));
            }
        }
        V1Frame::Edit { id, mid, cmid, op } => {
            assert!(id_ok(id) && edge_chat::message::is_id(mid));
            assert!(!cmid.is_empty() && cmid.len() <= MAX_CMID);
            if let EditOp::Edit(body) = op {
                assert!(matches!(body.get("message"), Some(Value::String(m)) if !m.is_empty()));
            }
        }
        _ => {}
    }
}

/// A frame limit below the fuzzer's input length, so both sides of it are reached.
const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let text = common::text(data);
    let parsed = v1::parse(&text, LIMIT);
    assert_eq!(matches!(&parsed, Err(r) if r.error == v1::V1Error::TooLarge), text.len() > LIMIT);
    match parsed {
        Ok(frame) => {
            check(&frame);
            let encoded = encode(&frame);
            let again = v1::parse(&encoded, FRAME_CEILING)
                .unwrap_or_else(|e| panic!("re-encoded frame refused: {e:?} {encoded}"));
            let (a, b) = (serde_json::from_str::<Value>(&encode(&again)), serde_json::from_str::<Value>(&encoded));
            match (a, b) {
                (Ok(a), Ok(b)) => assert!(common::same_json(&a, &b), "{a} != {b}"),
                _ => assert_eq!(again, frame),
            }
        }
        Err(refused) => {
            let e: Value =
                serde_json::from_str(&v1::error(refused.re.as_ref(), refused.error)).expect("error frame is JSON");
            assert_eq!(e["op"], "error");
            assert_eq!(e["code"], refused.error.code());
            assert_eq!(e["retry"], refused.error.retry());
            if let Some(re) = &refused.re {
                assert!(common::same_json(&e["re"], re));
            }
            if let v1::V1Error::BadField(field) = refused.error {
                assert_eq!(e["field"], field);
            }
        }
    }
});
