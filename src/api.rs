//! The backend API's request bodies: parsing and validation (sans-IO).
//!
//! `POST /api/sys-msg` and `POST /api/usr-msg` take one JSON object or an
//! array of them. The whole body is validated before anything is delivered,
//! so a bad item changes nothing and its error names the item and field.

use serde_json::{Map, Value};

use crate::blocks::Change;
use crate::group::GroupId;
use crate::http_error::Code;
use crate::internal::BlockOp;
use crate::limits::MAX_BATCH;
use crate::message::{parse_chat, Chat, Refusal};
use crate::protocol::v1::SettingsChange;
use crate::user::UserId;

/// A system message for one user, delivered as the backend wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemMessage {
    pub uid: UserId,
    pub fields: Map<String, Value>,
}

/// What was wrong with a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyError {
    /// Position in an array body.
    pub index: Option<usize>,
    /// The field at fault, when one is.
    pub field: Option<&'static str>,
    pub problem: String,
    /// The array holds more items than one call may carry: a 413, where
    /// every other body error is a 400.
    pub too_many: bool,
    /// The 400's code: `bad_json` for the body (or an item) as a whole,
    /// `bad_field` or `empty_message` for a field.
    pub code: Code,
}

impl BodyError {
    fn whole(problem: impl Into<String>) -> BodyError {
        BodyError { index: None, field: None, problem: problem.into(), too_many: false, code: Code::BadJson }
    }

    fn item(index: Option<usize>, field: Option<&'static str>, problem: impl Into<String>) -> BodyError {
        let code = if field.is_some() { Code::BadField } else { Code::BadJson };
        BodyError { index, field, problem: problem.into(), too_many: false, code }
    }

    /// The JSON error document a 400 carries.
    pub fn to_json(&self) -> String {
        let mut msg = String::new();
        if let Some(i) = self.index {
            msg.push_str(&format!("item {i}: "));
        }
        if let Some(f) = self.field {
            msg.push_str(&format!("{f}: "));
        }
        msg.push_str(&self.problem);
        serde_json::json!({ "error": msg, "code": self.code.as_str(), "field": self.field, "index": self.index })
            .to_string()
    }
}

/// The items of a body that holds one object or an array of at most
/// `max_batch` objects; the count is checked before any item is.
fn items(body: &[u8], max_batch: usize) -> Result<(Vec<Value>, bool), BodyError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BodyError::whole(format!("body is not JSON: {e}")))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(BodyError::whole("array body is empty"));
            }
            let max_batch = max_batch.min(MAX_BATCH);
            if items.len() > max_batch {
                let problem = format!("at most {max_batch} messages per call (API_MAX_BATCH)");
                return Err(BodyError { too_many: true, ..BodyError::whole(problem) });
            }
            Ok((items, true))
        }
        v => Ok((vec![v], false)),
    }
}

fn at(is_array: bool, i: usize) -> Option<usize> {
    is_array.then_some(i)
}

/// What an `Idempotency-Key` header must be, as the 400 says it.
pub const IDEMPOTENCY_KEY_RULE: &str = "Idempotency-Key must be 1 to 128 characters, none a control character";

/// Whether an `Idempotency-Key` header is usable (an unusable one is
/// refused, never ignored: ignoring it would store a retry twice).
pub fn idempotency_key_ok(key: &str) -> bool {
    // No control character: [`crate::idempotency`] separates a key from its
    // request's fingerprint with one.
    !key.is_empty() && key.chars().count() <= 128 && !key.chars().any(char::is_control)
}

/// The client message id under which a backend call's item is remembered
/// by its sender's object. It starts with a control character, which no
/// v1 `cmid` may hold, so no client string can name a backend call.
pub fn backend_cmid(item_key: &str) -> String {
    format!("\u{1f}api:{item_key}")
}

/// Parses a `sys-msg` body: each object needs a valid `uid`.
pub fn parse_system(body: &[u8]) -> Result<Vec<SystemMessage>, BodyError> {
    parse_system_within(body, MAX_BATCH)
}

/// [`parse_system`] with the operator's batch limit.
pub fn parse_system_within(body: &[u8], max_batch: usize) -> Result<Vec<SystemMessage>, BodyError> {
    let (items, is_array) = items(body, max_batch)?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let Value::Object(fields) = v else {
                return Err(BodyError::item(at(is_array, i), None, "must be a JSON object"));
            };
            let uid = match fields.get("uid") {
                None => Err("is required".to_string()),
                Some(v) => UserId::from_json(v).map_err(|e| e.to_string()),
            }
            .map_err(|problem| BodyError::item(at(is_array, i), Some("uid"), problem))?;
            Ok(SystemMessage { uid, fields })
        })
        .collect()
}

/// Parses a `usr-msg` body: each object is a chat, validated as one from a socket.
pub fn parse_user(body: &[u8]) -> Result<Vec<Chat>, BodyError> {
    parse_user_within(body, MAX_BATCH)
}

/// [`parse_user`] with the operator's batch limit.
pub fn parse_user_within(body: &[u8], max_batch: usize) -> Result<Vec<Chat>, BodyError> {
    let (items, is_array) = items(body, max_batch)?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            parse_chat(v).map_err(|r| {
                let (field, problem) = match r {
                    Refusal::BadFromUser => (Some("fromUser"), "must be a valid user id"),
                    Refusal::BadToUser => (Some("toUser"), "must be a valid user id"),
                    Refusal::EmptyMessage => (Some("message"), "must be a non-empty string"),
                    _ => (None, "must be a JSON object"),
                };
                let e = BodyError::item(at(is_array, i), field, problem);
                match r {
                    Refusal::EmptyMessage => BodyError { code: Code::EmptyMessage, ..e },
                    _ => e,
                }
            })
        })
        .collect()
}

/// The block and mute routes of a client, `GET /v1/blocks` and
/// `GET|PUT|DELETE /v1/blocks/<user>` or `/v1/mutes/<peer>`, as the request
/// to the user's object. `None`: no such route. A `PUT` of a mute may carry
/// `{"until": <ms since the epoch>}`; without it the mute lasts until
/// removed.
pub fn block_route(method: &str, path: &str, body: &[u8]) -> Option<Result<BlockOp, BodyError>> {
    if path == "/v1/blocks" {
        return (method == "GET").then_some(Ok(BlockOp::List));
    }
    let (rest, mute) = match (path.strip_prefix("/v1/blocks/"), path.strip_prefix("/v1/mutes/")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return None,
    };
    let field = if mute { "peer" } else { "user" };
    let name = crate::query::decode(rest.as_bytes());
    let peer = match UserId::parse(&name) {
        Ok(peer) => peer,
        // A group is muted by its id in either form (listed under `gteam`).
        Err(_) if mute && name.starts_with("g:") => match crate::group::GroupId::mute_peer(&name) {
            Some(peer) => peer,
            None => return Some(Err(BodyError::item(None, Some(field), "must be a user id or a group id"))),
        },
        Err(e) => return Some(Err(BodyError::item(None, Some(field), e.to_string()))),
    };
    Some(Ok(match (method, mute) {
        ("GET", mute) => BlockOp::Get { peer, mute },
        ("PUT", false) => BlockOp::Change(Change::Block(peer)),
        ("DELETE", false) => BlockOp::Change(Change::Unblock(peer)),
        ("PUT", true) => match mute_until(body) {
            Ok(until) => BlockOp::Change(Change::Mute(peer, until)),
            Err(e) => return Some(Err(e)),
        },
        ("DELETE", true) => BlockOp::Change(Change::Unmute(peer)),
        _ => return None,
    }))
}

/// The end of a mute from a `PUT` body: none, `{}`, or `{"until": ms|null}`.
fn mute_until(body: &[u8]) -> Result<Option<u64>, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let bad = || BodyError::item(None, Some("until"), "must be a time in ms since the epoch, or null");
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(f)) => match f.get("until") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(bad),
        },
        _ => Err(BodyError::whole("body must be a JSON object")),
    }
}

/// `POST /api/blocks` (moderation, with the API key):
/// `{"user": <who blocks>, "peer": <whom>, "blocked": true|false}`.
pub fn parse_block(body: &[u8]) -> Result<(UserId, Change), BodyError> {
    let Ok(Value::Object(f)) = serde_json::from_slice::<Value>(body) else {
        return Err(BodyError::whole("body must be a JSON object"));
    };
    let user = |k: &'static str| match f.get(k) {
        None => Err(BodyError::item(None, Some(k), "is required")),
        Some(v) => UserId::from_json(v).map_err(|e| BodyError::item(None, Some(k), e.to_string())),
    };
    let (owner, peer) = (user("user")?, user("peer")?);
    match f.get("blocked") {
        Some(Value::Bool(true)) => Ok((owner, Change::Block(peer))),
        Some(Value::Bool(false)) => Ok((owner, Change::Unblock(peer))),
        _ => Err(BodyError::item(None, Some("blocked"), "must be true or false")),
    }
}

/// The answer to `POST /api/blocks`: `user` is whose list changed, `peer`
/// whom it names, `blocked` the block as it now is, read from the user's
/// object's answer (shaped for a client's own route, where `user` is the
/// peer). `None`: that answer is not one.
pub fn moderation_block_answer(user: &UserId, peer: &UserId, object_answer: &str) -> Option<String> {
    let v: Value = serde_json::from_str(object_answer).ok()?;
    let blocked = v.get("blocked")?.as_bool()?;
    Some(serde_json::json!({ "user": user.as_str(), "peer": peer.as_str(), "blocked": blocked }).to_string())
}

/// `PUT /v1/settings`: `{"hide_presence"?: true|false, "group_adds"?:
/// "everyone"|"contacts"|"nobody"}`, at least one of them.
pub fn parse_settings(body: &[u8]) -> Result<SettingsChange, BodyError> {
    let Ok(Value::Object(f)) = serde_json::from_slice::<Value>(body) else {
        return Err(BodyError::whole("body must be a JSON object"));
    };
    SettingsChange::of(&f).map_err(|field| {
        let problem = match field {
            "group_adds" => "must be everyone, contacts or nobody",
            _ => "must be true or false (one of hide_presence, group_adds is required)",
        };
        BodyError::item(None, Some(field), problem)
    })
}

/// A moderation edit or delete (with the API key): `{"user": <sender>,
/// "mid": <their chat>, "body": {…}}` (`body` for an edit only).
#[derive(Clone, Debug, PartialEq)]
pub struct ModerationEdit {
    pub uid: UserId,
    pub mid: String,
    /// The new body of an edit, as JSON text.
    pub body: String,
}

/// `POST /api/edit` (`delete`: false) and `POST /api/delete`.
pub fn parse_edit(body: &[u8], delete: bool) -> Result<ModerationEdit, BodyError> {
    let Ok(Value::Object(f)) = serde_json::from_slice::<Value>(body) else {
        return Err(BodyError::whole("body must be a JSON object"));
    };
    let uid = match f.get("user") {
        None => return Err(BodyError::item(None, Some("user"), "is required")),
        Some(v) => UserId::from_json(v).map_err(|e| BodyError::item(None, Some("user"), e.to_string()))?,
    };
    let mid = match f.get("mid") {
        Some(Value::String(m)) if crate::message::is_id(m) => m.clone(),
        _ => return Err(BodyError::item(None, Some("mid"), "must be a message id")),
    };
    if delete {
        return Ok(ModerationEdit { uid, mid, body: String::new() });
    }
    match f.get("body") {
        Some(b @ Value::Object(o)) if o.get("message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()) => {
            Ok(ModerationEdit { uid, mid, body: b.to_string() })
        }
        _ => Err(BodyError::item(None, Some("body"), "must be an object with a non-empty string `message`")),
    }
}

/// A moderation edit or delete of a group message (with the API key):
/// `{"group", "mid", "user"?: <its sender>, "body": {…}}` (`body` for an
/// edit only).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupModeration {
    pub group: GroupId,
    pub mid: String,
    /// When named, the message must be this user's.
    pub sender: Option<UserId>,
    /// The new fields of an edit; `None` for a delete.
    pub fields: Option<Map<String, Value>>,
}

/// `POST /api/edit` (`delete`: false) and `POST /api/delete` naming a
/// `group`; `None` when the body names none (a chat's: [`parse_edit`]).
pub fn parse_group_edit(body: &[u8], delete: bool) -> Option<Result<GroupModeration, BodyError>> {
    let Ok(Value::Object(f)) = serde_json::from_slice::<Value>(body) else { return None };
    let group = f.get("group").filter(|g| !g.is_null())?;
    Some((|| {
        let group = group
            .as_str()
            .and_then(|g| GroupId::parse(g).ok())
            .ok_or_else(|| BodyError::item(None, Some("group"), "must be a group id"))?;
        let sender = match f.get("user") {
            None | Some(Value::Null) => None,
            Some(v) => Some(UserId::from_json(v).map_err(|e| BodyError::item(None, Some("user"), e.to_string()))?),
        };
        let mid = match f.get("mid") {
            Some(Value::String(m)) if crate::message::is_id(m) => m.clone(),
            _ => return Err(BodyError::item(None, Some("mid"), "must be a message id")),
        };
        if delete {
            return Ok(GroupModeration { group, mid, sender, fields: None });
        }
        match f.get("body") {
            Some(Value::Object(o)) if o.get("message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()) => {
                Ok(GroupModeration { group, mid, sender, fields: Some(o.clone()) })
            }
            _ => Err(BodyError::item(None, Some("body"), "must be an object with a non-empty string `message`")),
        }
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moderation_call_naming_a_group_is_a_group_messages() {
        assert_eq!(parse_group_edit(br#"{"user":"1","mid":"0123456789abcdef0123456789ab"}"#, true), None, "a chat's");
        let d = parse_group_edit(br#"{"group":"gx","mid":"0123456789abcdef0123456789ab"}"#, true).unwrap().unwrap();
        assert_eq!(
            (d.group.as_str(), d.mid.as_str(), d.sender, d.fields),
            ("gx", "0123456789abcdef0123456789ab", None, None)
        );
        let e = parse_group_edit(
            br#"{"group":"gx","mid":"0123456789abcdef0123456789ab","user":7,"body":{"message":"x"}}"#,
            false,
        );
        let e = e.unwrap().unwrap();
        assert_eq!((e.sender.unwrap().as_str(), e.fields.unwrap()["message"].as_str()), ("7", Some("x")));
        let bad = |b: &[u8], delete| parse_group_edit(b, delete).unwrap().unwrap_err().field;
        assert_eq!(bad(br#"{"group":"nope","mid":"0123456789abcdef0123456789ab"}"#, true), Some("group"));
        assert_eq!(bad(br#"{"group":"gx"}"#, true), Some("mid"));
        assert_eq!(bad(br#"{"group":"gx","mid":"0123456789abcdef0123456789ab","body":{}}"#, false), Some("body"));
    }

    #[test]
    fn idempotency_keys_are_bounded_and_live_apart_from_client_ids() {
        assert!(idempotency_key_ok("k") && idempotency_key_ok(&"é".repeat(128)));
        assert!(!idempotency_key_ok("") && !idempotency_key_ok(&"k".repeat(129)));
        assert!(!idempotency_key_ok("k\u{1e}x") && !idempotency_key_ok("k\tx"));
        assert!(backend_cmid("k#0").starts_with(char::is_control));
    }

    #[test]
    fn one_object_or_an_array() {
        assert_eq!(parse_system(br#"{"uid":1,"type":"like"}"#).unwrap().len(), 1);
        let many = parse_system(br#"[{"uid":"1"},{"uid":"2","song":3}]"#).unwrap();
        assert_eq!(many[1].uid.as_str(), "2");
        assert_eq!(many[1].fields["song"], serde_json::json!(3));
    }

    #[test]
    fn the_error_names_item_and_field() {
        let e = parse_system(br#"[{"uid":"1"},{"type":"x"}]"#).unwrap_err();
        assert_eq!((e.index, e.field), (Some(1), Some("uid")));
        assert!(e.to_json().contains("item 1: uid: is required"), "{}", e.to_json());
        let e = parse_user(br#"{"fromUser":1,"toUser":"a b","message":"m"}"#).unwrap_err();
        assert_eq!((e.index, e.field), (None, Some("toUser")));
        let e = parse_user(br#"[{"fromUser":1,"toUser":2,"message":""}]"#).unwrap_err();
        assert_eq!((e.index, e.field), (Some(0), Some("message")));
    }

    #[test]
    fn every_body_error_has_a_code() {
        let code = |e: BodyError| serde_json::from_str::<Value>(&e.to_json()).unwrap()["code"].clone();
        assert_eq!(code(parse_system(b"{").unwrap_err()), "bad_json");
        assert_eq!(code(parse_system(b"[7]").unwrap_err()), "bad_json");
        assert_eq!(code(parse_block(b"[]").unwrap_err()), "bad_json");
        assert_eq!(code(parse_system(br#"{"uid":"a b"}"#).unwrap_err()), "bad_field");
        assert_eq!(code(parse_user(br#"{"fromUser":1,"toUser":2,"message":""}"#).unwrap_err()), "empty_message");
        assert_eq!(code(parse_user(br#"{"fromUser":1,"toUser":2}"#).unwrap_err()), "empty_message");
        assert_eq!(code(parse_settings(br#"{"hide_presence":1}"#).unwrap_err()), "bad_field");
    }

    #[test]
    fn whole_body_errors() {
        assert!(parse_system(b"{").unwrap_err().problem.starts_with("body is not JSON"));
        assert_eq!(parse_system(b"[]").unwrap_err().problem, "array body is empty");
        assert_eq!(parse_system(b"7").unwrap_err().problem, "must be a JSON object");
        let big = format!("[{}]", vec![r#"{"uid":"1"}"#; MAX_BATCH + 1].join(","));
        assert!(parse_system(big.as_bytes()).unwrap_err().too_many);
    }

    #[test]
    fn the_batch_limit_is_checked_before_the_items() {
        let e = parse_user_within(br#"[{"fromUser":1},{"fromUser":2},{"fromUser":3}]"#, 2).unwrap_err();
        assert!(e.too_many, "three bad items over a limit of two: too many, not a bad item");
        assert_eq!(e.problem, "at most 2 messages per call (API_MAX_BATCH)");
        assert!(!parse_user(br#"[{"fromUser":1}]"#).unwrap_err().too_many);
        assert_eq!(parse_system_within(br#"[{"uid":1},{"uid":2}]"#, 2).unwrap().len(), 2);
    }

    #[test]
    fn block_routes_become_requests_to_the_users_object() {
        let u = |s: &str| UserId::parse(s).unwrap();
        assert_eq!(block_route("GET", "/v1/blocks", b""), Some(Ok(BlockOp::List)));
        assert_eq!(block_route("PUT", "/v1/blocks", b""), None);
        assert_eq!(block_route("PUT", "/v1/blocks/a%40b", b""), Some(Ok(BlockOp::Change(Change::Block(u("a@b"))))));
        assert_eq!(block_route("DELETE", "/v1/blocks/x", b""), Some(Ok(BlockOp::Change(Change::Unblock(u("x"))))));
        assert_eq!(block_route("GET", "/v1/mutes/x", b""), Some(Ok(BlockOp::Get { peer: u("x"), mute: true })));
        assert_eq!(block_route("PUT", "/v1/mutes/x", b"{}"), Some(Ok(BlockOp::Change(Change::Mute(u("x"), None)))));
        assert_eq!(
            block_route("PUT", "/v1/mutes/x", br#"{"until":5}"#),
            Some(Ok(BlockOp::Change(Change::Mute(u("x"), Some(5)))))
        );
        assert_eq!(block_route("POST", "/v1/mutes/x", b""), None);
        let bad = block_route("PUT", "/v1/mutes/x", br#"{"until":"soon"}"#).unwrap().unwrap_err();
        assert_eq!(bad.field, Some("until"));
        let bad = block_route("GET", "/v1/blocks/a%20b", b"").unwrap().unwrap_err();
        assert_eq!(bad.field, Some("user"));
    }

    #[test]
    fn a_moderation_block_names_both_users() {
        let (owner, change) = parse_block(br#"{"user":"a","peer":"b","blocked":true}"#).unwrap();
        assert_eq!((owner.as_str(), change), ("a", Change::Block(UserId::parse("b").unwrap())));
        assert_eq!(parse_block(br#"{"user":"a","peer":"b"}"#).unwrap_err().field, Some("blocked"));
        assert_eq!(parse_block(br#"{"user":"a","blocked":false}"#).unwrap_err().field, Some("peer"));
    }

    #[test]
    fn a_moderation_block_answers_with_the_user_whose_list_changed() {
        let (a, b) = (UserId::parse("a").unwrap(), UserId::parse("b").unwrap());
        let answer = moderation_block_answer(&a, &b, r#"{"user":"b","blocked":true}"#).unwrap();
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v, serde_json::json!({"user": "a", "peer": "b", "blocked": true}));
        assert_eq!(moderation_block_answer(&a, &b, "oops"), None);
    }

    #[test]
    fn moderation_edits_and_settings_bodies() {
        let mid = crate::message::new_id(1, 2);
        let e = parse_edit(format!(r#"{{"user":"a","mid":"{mid}","body":{{"message":"x"}}}}"#).as_bytes(), false);
        assert_eq!(e.unwrap().body, r#"{"message":"x"}"#);
        let e = parse_edit(format!(r#"{{"user":"a","mid":"{mid}"}}"#).as_bytes(), false).unwrap_err();
        assert_eq!(e.field, Some("body"));
        assert!(parse_edit(format!(r#"{{"user":"a","mid":"{mid}"}}"#).as_bytes(), true).is_ok());
        assert_eq!(parse_edit(br#"{"user":"a","mid":"nope"}"#, true).unwrap_err().field, Some("mid"));
        assert_eq!(parse_edit(br#"{"mid":"x"}"#, true).unwrap_err().field, Some("user"));
        assert_eq!(parse_settings(br#"{"hide_presence":true}"#).unwrap().hide_presence, Some(true));
        let adds = parse_settings(br#"{"group_adds":"everyone"}"#).unwrap();
        assert_eq!(adds, SettingsChange { hide_presence: None, group_adds: Some(crate::consent::GroupAdds::Everyone) });
        assert_eq!(parse_settings(br#"{"group_adds":"all"}"#).unwrap_err().field, Some("group_adds"));
        assert_eq!(parse_settings(br#"{}"#).unwrap_err().field, Some("hide_presence"));
        assert_eq!(parse_settings(br#"{"hide_presence":1}"#).unwrap_err().field, Some("hide_presence"));
    }
}
