//! Log lines: one JSON object per line, so Workers Logs (and any log drain)
//! indexes every field without parsing prose.
//!
//! Every line names its `event` (a fixed name, never text from a request) and
//! the `request_id` of the unit of work that logged it: one per Worker
//! request (the `cf-ray` when there is one), per object request, socket
//! message or alarm, and per detached task. Lines never carry a message body,
//! a token or a user id in clear: a user is written as a keyed hash
//! ([`user_tag`]), stable for one key, so one user's lines can be followed
//! without the logs naming them; an error's text is [`scrub`]bed of quoted
//! values and URL queries, where bodies and ids would appear.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// The unit of work a line belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId(pub u64);

impl RequestId {
    /// The id in a `cf-ray` header (`8f1e2d3c4b5a6978-LHR`): its hex part,
    /// so a line can be found by the ray the dashboard shows.
    pub fn from_ray(ray: &str) -> Option<RequestId> {
        let hex = ray.split('-').next()?;
        (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten().map(RequestId)
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A log line under construction: the JSON text itself, so writing one
/// costs no map of values.
#[derive(Clone, Debug)]
pub struct Line {
    text: String,
    level: Level,
}

impl Line {
    pub fn new(level: Level, event: &'static str, request: RequestId) -> Line {
        let mut line = Line { text: String::with_capacity(128), level };
        line.text.push('{');
        line.field("level", level.name()).field("event", event).field("request_id", &request.to_string())
    }

    pub fn error(event: &'static str, request: RequestId) -> Line {
        Line::new(Level::Error, event, request)
    }

    pub fn level(&self) -> Level {
        self.level
    }

    fn key(&mut self, key: &str) {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        self.text.push_str(&Value::from(key).to_string());
        self.text.push(':');
    }

    fn field(mut self, key: &str, value: &str) -> Line {
        self.key(key);
        self.text.push_str(&Value::from(value).to_string());
        self
    }

    pub fn num(mut self, key: &'static str, value: u64) -> Line {
        self.key(key);
        self.text.push_str(&value.to_string());
        self
    }

    /// A fixed word (a kind, a route): never text from a request.
    pub fn word(self, key: &'static str, value: &'static str) -> Line {
        self.field(key, value)
    }

    /// An error's text, scrubbed.
    pub fn err(self, error: &dyn std::fmt::Display) -> Line {
        self.field("error", &scrub(&error.to_string()))
    }

    /// A user, as its keyed hash.
    pub fn user(self, key: &'static str, user: &str, log_key: &[u8]) -> Line {
        self.field(key, &user_tag(user, log_key))
    }

    pub fn render(&self) -> String {
        let mut text = self.text.clone();
        text.push('}');
        text
    }
}

/// Longest error text kept in a line.
const ERROR_MAX: usize = 300;

/// An error's text without what could carry a body, an id or a token:
/// quoted values (serde and the runtime quote what they could not take)
/// become `"…"`, a URL's query is cut, and the text is capped.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(ERROR_MAX));
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                out.push(c);
                out.push('…');
                // Skip to the matching quote; an unclosed one hides the rest.
                if chars.by_ref().any(|d| d == c) {
                    out.push(c);
                }
            }
            '?' => {
                out.push_str("?…");
                for d in chars.by_ref() {
                    if d.is_whitespace() {
                        out.push(d);
                        break;
                    }
                }
            }
            c => out.push(c),
        }
        if out.len() >= ERROR_MAX {
            out.push('…');
            break;
        }
    }
    out
}

/// A user's keyed hash: the first 8 bytes of HMAC-SHA256(key, user), hex.
/// Without the key one cannot tell whose it is, or test a guess.
pub fn user_tag(user: &str, key: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(user.as_bytes());
    mac.finalize().into_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of [`user_tag`]: `LOG_KEY` when the operator set one, otherwise
/// derived from the API key (so hashes change when either does, and the
/// API key itself never signs anything a log reader sees).
pub fn log_key(log_key: Option<&str>, api_key: &str) -> Vec<u8> {
    match log_key.filter(|k| !k.is_empty()) {
        Some(k) => k.as_bytes().to_vec(),
        None => {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()) else {
                return Vec::new();
            };
            mac.update(b"edge-chat log key");
            mac.finalize().into_bytes().to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_with_event_and_request_id() {
        let line = Line::error("history_write_failed", RequestId(0xab)).num("shard", 1).word("route", "deliver");
        let text = line.render();
        assert!(!text.contains('\n'));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event"], "history_write_failed");
        assert_eq!(v["request_id"], "00000000000000ab");
        assert_eq!(v["level"], "error");
        assert_eq!(v["shard"], 1);
        let ray = RequestId::from_ray("8f1e2d3c4b5a6978-LHR").unwrap();
        assert_eq!(ray.to_string(), "8f1e2d3c4b5a6978");
        assert_eq!(RequestId::from_ray("not-a-ray"), None);
        assert_eq!(RequestId::from_ray("8f1e2d3c4b5a697"), None);
    }

    #[test]
    fn scrub_hides_quoted_values_and_queries() {
        assert_eq!(
            scrub(r#"invalid type: string "hello alice", expected u64"#),
            r#"invalid type: string "…", expected u64"#
        );
        assert_eq!(scrub("fetch https://user/deliver?to=alice&from=bob failed"), "fetch https://user/deliver?… failed");
        assert_eq!(scrub("no such table: history_3"), "no such table: history_3");
        assert_eq!(scrub("unclosed 'secret token"), "unclosed '…");
        assert!(scrub(&"x".repeat(5000)).chars().count() <= ERROR_MAX + 1);
    }

    #[test]
    fn users_are_keyed_hashes() {
        let key = log_key(None, "api-key");
        let a = user_tag("alice", &key);
        assert_eq!(a.len(), 16);
        assert_eq!(a, user_tag("alice", &key));
        assert_ne!(a, user_tag("bob", &key));
        assert_ne!(a, user_tag("alice", &log_key(None, "other-key")));
        assert_ne!(a, user_tag("alice", &log_key(Some("set"), "api-key")));
        let line = Line::error("x", RequestId(1)).user("user", "alice", &key).render();
        assert!(!line.contains("alice"));
    }
}
