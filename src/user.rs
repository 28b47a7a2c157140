//! User ids: what a valid one is, and how one is written on the legacy wire.
//!
//! The same rule applies wherever an id enters the system (token `sub`,
//! chat frame, backend API body), so a bad id is refused at the door and the
//! rest of the code can treat a [`UserId`] as safe to put in URLs and SQL
//! bindings without escaping.

use std::fmt;

/// Longest id accepted, in bytes (ids are ASCII).
pub const MAX_LEN: usize = 64;

/// Largest integer a JavaScript number holds exactly; longer digit ids stay strings.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A validated user id: 1 to 64 of `[A-Za-z0-9_.@-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(String);

/// Why a value is not a user id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidUserId {
    Empty,
    TooLong,
    BadCharacter,
    /// A JSON value that is neither a string nor a non-negative integer.
    NotAnId,
}

impl fmt::Display for InvalidUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidUserId::Empty => "user id is empty",
            InvalidUserId::TooLong => "user id is longer than 64 characters",
            InvalidUserId::BadCharacter => "user id may only hold letters, digits, _ - . @",
            InvalidUserId::NotAnId => "user id must be a string or a non-negative integer",
        })
    }
}

impl std::error::Error for InvalidUserId {}

impl UserId {
    pub fn parse(s: &str) -> Result<UserId, InvalidUserId> {
        if s.is_empty() {
            return Err(InvalidUserId::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(InvalidUserId::TooLong);
        }
        let ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
        if !ok {
            return Err(InvalidUserId::BadCharacter);
        }
        Ok(UserId(s.to_owned()))
    }

    /// Accepts the two shapes legacy clients send: `"42"` or `42`.
    pub fn from_json(v: &serde_json::Value) -> Result<UserId, InvalidUserId> {
        match v {
            serde_json::Value::String(s) => UserId::parse(s),
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(n) => UserId::parse(&n.to_string()),
                None => Err(InvalidUserId::NotAnId),
            },
            _ => Err(InvalidUserId::NotAnId),
        }
    }

    /// The id as the legacy front end expects it: digit ids as JSON numbers
    /// (it compares them with `===` against numbers), anything else as a string.
    /// Digits with a leading zero or beyond 2^53 stay strings so that no id
    /// changes on its way through JavaScript.
    pub fn to_json(&self) -> serde_json::Value {
        let s = self.0.as_str();
        let canonical_digits = s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        if canonical_digits {
            if let Ok(n) = s.parse::<u64>() {
                if n <= MAX_SAFE_INTEGER {
                    return serde_json::Value::from(n);
                }
            }
        }
        serde_json::Value::from(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["1", "alice", "a.b-c_d@e", &"x".repeat(64)] {
            assert!(UserId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(UserId::parse(""), Err(InvalidUserId::Empty));
        assert_eq!(UserId::parse(&"x".repeat(65)), Err(InvalidUserId::TooLong));
        for bad in ["a b", "a/b", "a:b", "a|b", "é", "a\u{0}", "a?b", "a%20"] {
            assert_eq!(UserId::parse(bad), Err(InvalidUserId::BadCharacter), "{bad:?}");
        }
    }

    #[test]
    fn json_ids_in_both_legacy_shapes() {
        assert_eq!(UserId::from_json(&json!(42)).unwrap().as_str(), "42");
        assert_eq!(UserId::from_json(&json!("42")).unwrap().as_str(), "42");
        assert_eq!(UserId::from_json(&json!(-1)), Err(InvalidUserId::NotAnId));
        assert_eq!(UserId::from_json(&json!(1.5)), Err(InvalidUserId::NotAnId));
        assert_eq!(UserId::from_json(&json!(null)), Err(InvalidUserId::NotAnId));
        assert_eq!(UserId::from_json(&json!([1])), Err(InvalidUserId::NotAnId));
    }

    #[test]
    fn digit_ids_go_out_as_numbers() {
        assert_eq!(UserId::parse("42").unwrap().to_json(), json!(42));
        assert_eq!(UserId::parse("0").unwrap().to_json(), json!(0));
        assert_eq!(UserId::parse("007").unwrap().to_json(), json!("007"));
        assert_eq!(UserId::parse("9007199254740992").unwrap().to_json(), json!("9007199254740992"));
        assert_eq!(UserId::parse("9007199254740991").unwrap().to_json(), json!(9007199254740991u64));
        assert_eq!(UserId::parse("bob").unwrap().to_json(), json!("bob"));
    }
}
