//! The HTTP API's error answers (sans-IO): a status, a stable `code` a
//! client can branch on, and the reason in words. Every 400 the entry
//! makes carries one (the group object's and the user object's refusals
//! carry their own codes, from the same vocabulary where they overlap).

use serde_json::{json, Map, Value};

use crate::internal::Outcome;

/// Seconds a 503 asks the client to wait (`Retry-After`): what fails here
/// (an object's store, a hop) is back within moments, and a client's own
/// backoff adds to it.
pub const RETRY_AFTER_S: u32 = 1;

/// A stable code of an error answer, documented in docs/openapi.yaml.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 400: the body is not JSON, or not the JSON value the route takes.
    BadJson,
    /// 400: a field, parameter or header is missing or invalid (`field`
    /// names it).
    BadField,
    /// 400: a role other than `admin` or `member`.
    InvalidRole,
    /// 400: `message` is missing or empty.
    EmptyMessage,
    /// 404: no such route.
    NoSuchRoute,
    /// 404: the group named in the path cannot exist (not a group id).
    NoSuchGroup,
    /// 404: the member named in the path cannot exist (not a user id).
    NoSuchMember,
    /// 404: the entry named in the path cannot exist (not a `group_seq`).
    NoSuchEntry,
    /// 413: the body is over `BODY_MAX_BYTES` (or `FRAME_MAX_BYTES`).
    BodyTooLarge,
    /// 413: the array holds more than `API_MAX_BATCH` items.
    BatchTooLarge,
    /// 422: the `Idempotency-Key` came before with a different request.
    IdempotencyKeyReused,
    /// 503: nothing (or not everything) was done; retry.
    Unavailable,
    /// 507: the recipient's offline queue is full.
    RecipientFull,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadJson => "bad_json",
            Code::BadField => "bad_field",
            Code::InvalidRole => "invalid_role",
            Code::EmptyMessage => "empty_message",
            Code::NoSuchRoute => "no_such_route",
            Code::NoSuchGroup => "no_such_group",
            Code::NoSuchMember => "no_such_member",
            Code::NoSuchEntry => "no_such_entry",
            Code::BodyTooLarge => "body_too_large",
            Code::BatchTooLarge => "batch_too_large",
            Code::IdempotencyKeyReused => "idempotency_key_reused",
            Code::Unavailable => "unavailable",
            Code::RecipientFull => "recipient_full",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Code::BadJson | Code::BadField | Code::InvalidRole | Code::EmptyMessage => 400,
            Code::NoSuchRoute | Code::NoSuchGroup | Code::NoSuchMember | Code::NoSuchEntry => 404,
            Code::BodyTooLarge | Code::BatchTooLarge => 413,
            Code::IdempotencyKeyReused => 422,
            Code::Unavailable => 503,
            Code::RecipientFull => 507,
        }
    }
}

/// An error answer: `{"error", "code"}`, with `field` when one is at fault
/// and `limit` for a 413.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub code: Code,
    pub message: String,
    pub field: Option<&'static str>,
    /// The limit a 413 went over (bytes, or items of a batch).
    pub limit: Option<usize>,
}

impl HttpError {
    pub fn new(code: Code, message: impl Into<String>) -> HttpError {
        HttpError { code, message: message.into(), field: None, limit: None }
    }

    /// A `bad_field` on `field`.
    pub fn field(field: &'static str, message: impl Into<String>) -> HttpError {
        HttpError { field: Some(field), ..HttpError::new(Code::BadField, message) }
    }

    /// A body over `max` bytes (`var` names the operator's limit).
    pub fn body_too_large(max: usize, var: &str) -> HttpError {
        let message = format!("request body over {max} bytes ({var})");
        HttpError { limit: Some(max), ..HttpError::new(Code::BodyTooLarge, message) }
    }

    /// An array body of more than `max` items.
    pub fn batch_too_large(max: usize) -> HttpError {
        let message = format!("at most {max} messages per call (API_MAX_BATCH)");
        HttpError { limit: Some(max), ..HttpError::new(Code::BatchTooLarge, message) }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The answer's body.
    pub fn to_json(&self) -> String {
        Value::Object(self.fields()).to_string()
    }

    /// The answer's fields, for answers that add their own (`id`, `ids`).
    pub fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("error".into(), self.message.clone().into());
        m.insert("code".into(), self.code.as_str().into());
        if let Some(f) = self.field {
            m.insert("field".into(), f.into());
        }
        if let Some(l) = self.limit {
            m.insert("limit".into(), l.into());
        }
        m
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code.as_str(), self.message)
    }
}

/// Why one item of a backend send was not stored, as the answer's
/// `errors` names it (`None`: stored): `recipient_full` helps only once they
/// connect; `unavailable` may be retried; `idempotency_key_reused` never.
pub fn send_item_error(outcome: Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Stored { .. } => None,
        Outcome::Full => Some(Code::RecipientFull.as_str()),
        Outcome::KeyReused => Some(Code::IdempotencyKeyReused.as_str()),
        Outcome::Done | Outcome::Bad | Outcome::NotFound | Outcome::Conflict | Outcome::Unavailable => {
            Some(Code::Unavailable.as_str())
        }
    }
}

/// The answer to a backend send (`POST /api/sys-msg`, `/api/usr-msg`) of
/// which some item was not stored: its status and body. The code is the
/// one a retry must heed most: a reused key (no retry helps), else a full
/// queue if that is every failure, else `unavailable`. A call of one object
/// is answered in the shape of its 200 (`id`: `null`); an array call with
/// `ids` (`null` for those not stored) and each item's `errors`.
pub fn send_refused(outcomes: &[Outcome], ids: &[Option<&str>], is_array: bool) -> (u16, String) {
    let code = if outcomes.contains(&Outcome::KeyReused) {
        Code::IdempotencyKeyReused
    } else if outcomes.iter().all(|o| matches!(o, Outcome::Stored { .. } | Outcome::Full)) {
        Code::RecipientFull
    } else {
        Code::Unavailable
    };
    let message = match (code, is_array) {
        (Code::IdempotencyKeyReused, _) => KEY_REUSED,
        (Code::RecipientFull, false) => "the recipient's offline queue is full (QUEUE_MAX); nothing was stored",
        (Code::RecipientFull, true) => {
            "recipient's offline queue is full (QUEUE_MAX); those with a null id were not stored"
        }
        (_, false) => "the message could not be stored; retry",
        (_, true) => "some messages could not be stored; retry those with a null id",
    };
    let mut m = HttpError::new(code, message).fields();
    if is_array {
        let errors: Vec<Option<&str>> = outcomes.iter().map(|o| send_item_error(*o)).collect();
        m.insert("ids".into(), json!(ids));
        m.insert("errors".into(), json!(errors));
    } else {
        m.insert("id".into(), Value::Null);
    }
    (code.status(), Value::Object(m).to_string())
}

/// Why a call is refused 422 `idempotency_key_reused`.
pub const KEY_REUSED: &str =
    "this Idempotency-Key came with a different request; nothing was stored (use a new key for a new request)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_has_a_code_and_its_status() {
        let e = HttpError::field("limit", "limit: must be 1 to 200");
        assert_eq!(e.status(), 400);
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v, json!({"error": "limit: must be 1 to 200", "code": "bad_field", "field": "limit"}));
        let body: Value = serde_json::from_str(&HttpError::body_too_large(10, "BODY_MAX_BYTES").to_json()).unwrap();
        let batch: Value = serde_json::from_str(&HttpError::batch_too_large(3).to_json()).unwrap();
        assert_eq!((body["code"].as_str(), body["limit"].as_u64()), (Some("body_too_large"), Some(10)));
        assert_eq!((batch["code"].as_str(), batch["limit"].as_u64()), (Some("batch_too_large"), Some(3)));
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&body), keys(&batch), "one shape for both 413s");
        assert_eq!(Code::IdempotencyKeyReused.status(), 422);
    }

    #[test]
    fn a_refused_send_of_one_object_answers_in_the_shape_of_one() {
        let parse = |(status, body): (u16, String)| (status, serde_json::from_str::<Value>(&body).unwrap());
        let (status, one) = parse(send_refused(&[Outcome::Unavailable], &[None], false));
        assert_eq!(status, 503);
        assert_eq!(one, json!({"error": "the message could not be stored; retry", "code": "unavailable", "id": null}));
        let (status, one) = parse(send_refused(&[Outcome::Full], &[None], false));
        assert_eq!((status, one["code"].as_str(), one["id"].is_null()), (507, Some("recipient_full"), true));
        let stored = Outcome::Stored { pushed: true };
        let (status, many) = parse(send_refused(&[stored, Outcome::Full], &[Some("a"), None], true));
        assert_eq!(status, 507);
        assert_eq!(many["ids"], json!(["a", null]));
        assert_eq!(many["errors"], json!([null, "recipient_full"]));
        assert!(many.get("id").is_none());
        let (status, many) = parse(send_refused(&[Outcome::Full, Outcome::Unavailable], &[None, None], true));
        assert_eq!((status, many["code"].as_str()), (503, Some("unavailable")));
    }

    #[test]
    fn a_reused_key_outweighs_every_other_failure() {
        let outcomes = [Outcome::Unavailable, Outcome::KeyReused, Outcome::Full];
        let (status, body) = send_refused(&outcomes, &[None, None, None], true);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, v["code"].as_str()), (422, Some("idempotency_key_reused")));
        assert_eq!(v["errors"], json!(["unavailable", "idempotency_key_reused", "recipient_full"]));
        let (status, body) = send_refused(&[Outcome::KeyReused], &[None], false);
        assert_eq!(status, 422);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["id"], Value::Null);
    }
}
