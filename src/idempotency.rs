//! The backend API's `Idempotency-Key`, bound to the request it first came
//! with (sans-IO).
//!
//! A key names a call; a retry of that call (the same route, the same body)
//! stores nothing new and is answered as the first time. A key reused for a
//! different request is refused (422 `idempotency_key_reused`), never
//! answered with the first call's ids.
//!
//! Each item of a keyed call is remembered by the object that dedups it (the
//! recipient of a system message, the sender of a chat or an edit) in its
//! `sends` table, under a *bound key*: the item's key followed by a
//! fingerprint of the whole request. A lookup by the item's key finds the
//! row whatever fingerprint it holds, and [`replay`] decides. No new table
//! and no extra row: the row is the one the dedup already wrote.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Separates an item's key from the request's fingerprint in a bound key.
/// A control character: no item key (the key of a call, `#`, a number) holds
/// one after the prefix [`crate::api::backend_cmid`] gives it.
const SEPARATOR: char = '\u{1e}';

/// The fingerprint of a request: a hash of its route and its body in
/// canonical form (object keys sorted, no insignificant whitespace), so a
/// retry that re-encodes the same JSON is the same request. A body that is
/// not JSON (refused before any item is stored) is hashed as it is.
pub fn fingerprint(route: &str, body: &[u8]) -> String {
    let canonical = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let mut out = String::new();
            canonical_json(&v, &mut out);
            out
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let digest = Sha256::digest(format!("{route}\n{canonical}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `v` with every object's keys sorted (whatever order the JSON map
/// keeps them in).
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(x, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The key under which an item is remembered: its own key (see
/// [`crate::api::backend_cmid`]) bound to the request's fingerprint.
pub fn bind(item_key: &str, fingerprint: &str) -> String {
    format!("{item_key}{SEPARATOR}{fingerprint}")
}

/// The item's own key of a bound key (a key stored before keys were bound
/// is its own item key).
pub fn item_key(bound: &str) -> &str {
    bound.split_once(SEPARATOR).map_or(bound, |(k, _)| k)
}

/// The rows a lookup by `bound`'s item key must find, as a range of the
/// `sends` table's text key: the item key itself (a row from before keys
/// were bound), or any key from `low` (inclusive) to `high` (exclusive),
/// which are exactly the item key followed by the separator and anything.
pub fn lookup_range(bound: &str) -> (String, String, String) {
    let item = item_key(bound);
    let next = char::from_u32(SEPARATOR as u32 + 1).unwrap_or(SEPARATOR);
    (item.to_owned(), format!("{item}{SEPARATOR}"), format!("{item}{next}"))
}

/// What a keyed item is, given the bound key its object stored for the
/// same item key (`None`: nothing stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Never seen: store it.
    New,
    /// A retry of the same request: answer as the first time, store nothing.
    Same,
    /// The key was used for a different request: refuse, store nothing.
    Reused,
}

pub fn replay(stored: Option<&str>, requested: &str) -> Replay {
    match stored {
        None => Replay::New,
        Some(s) if s == requested => Replay::Same,
        // Stored before keys were bound: nothing to compare, so as before.
        Some(s) if !s.contains(SEPARATOR) => Replay::Same,
        Some(_) => Replay::Reused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_of_the_json_not_its_spelling() {
        let a = fingerprint("/api/sys-msg", br#"{"uid":"1","type":"x","n":{"b":1,"a":2}}"#);
        let b = fingerprint("/api/sys-msg", b"{ \"n\": {\"a\":2, \"b\":1}, \"type\":\"x\", \"uid\":\"1\" }");
        assert_eq!(a, b);
        assert_ne!(a, fingerprint("/api/sys-msg", br#"{"uid":"1","type":"y","n":{"b":1,"a":2}}"#));
        assert_ne!(a, fingerprint("/api/usr-msg", br#"{"uid":"1","type":"x","n":{"b":1,"a":2}}"#));
        assert_ne!(fingerprint("/r", b"[1,2]"), fingerprint("/r", b"[2,1]"), "order of items matters");
        assert_eq!(fingerprint("/r", b"not json").len(), 32);
    }

    #[test]
    fn a_bound_key_is_found_by_its_item_key_alone() {
        let key = crate::api::backend_cmid("k#1");
        let bound = bind(&key, "ab");
        assert_eq!(item_key(&bound), key);
        assert_eq!(item_key(&key), key, "an unbound key is its own item key");
        let (exact, low, high) = lookup_range(&bound);
        assert_eq!(exact, key);
        let within = |s: &str| s == exact || (s >= low.as_str() && s < high.as_str());
        assert!(within(&bound) && within(&bind(&key, "other")) && within(&key));
        // The key of item 10 starts with that of item 1, yet is another item.
        let ten = crate::api::backend_cmid("k#10");
        assert!(!within(&ten) && !within(&bind(&ten, "ab")));
    }

    #[test]
    fn a_key_reused_for_another_request_is_refused() {
        let first = bind("\u{1f}api:k#0", "f1");
        assert_eq!(replay(None, &first), Replay::New);
        assert_eq!(replay(Some(&first), &first), Replay::Same);
        assert_eq!(replay(Some(&first), &bind("\u{1f}api:k#0", "f2")), Replay::Reused);
        assert_eq!(replay(Some("\u{1f}api:k#0"), &first), Replay::Same, "a row from before keys were bound");
    }
}
