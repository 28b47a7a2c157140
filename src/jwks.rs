//! An identity provider's signing keys (sans-IO): the JWKS document read,
//! and when to fetch it.
//!
//! Keys are kept by `kid` for the life of the isolate. A token naming a
//! `kid` the set lacks (a rotation) fetches the document again, at most once
//! a minute, so a flood of made-up `kid`s costs the provider one request a
//! minute. A signature that fails with a known key (a key rotated under the
//! same `kid`) fetches it again too, within the same bound. When a fetch fails the keys already known keep working; a token
//! with an unknown one is refused, never held waiting. The signature itself
//! is checked by the platform (WebCrypto), with the key's JWK as given.

use serde_json::Value;

use crate::auth::{Alg, AuthError};

/// How often an unknown `kid` may fetch the document again, unless
/// `JWT_JWKS_REFETCH_S` says otherwise.
pub const REFETCH_MS: u64 = 60_000;
/// Most keys kept from one document (a provider publishes a handful).
pub const MAX_KEYS: usize = 32;

/// One usable key of the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub kid: String,
    pub alg: Alg,
    /// The key's JWK as the document gave it, for WebCrypto's `importKey`.
    pub jwk: String,
}

/// Reads a JWKS document: its RSA keys (RS256) and P-256 EC keys (ES256)
/// that have a `kid` and are for signatures; anything else is skipped.
/// `None`: not a JWKS document.
pub fn parse(body: &str) -> Option<Vec<Key>> {
    let doc: Value = serde_json::from_str(body).ok()?;
    let keys = doc.get("keys")?.as_array()?;
    let usable = keys.iter().filter_map(|k| {
        let kid = k.get("kid")?.as_str()?.to_owned();
        let field = |name: &str| k.get(name).and_then(Value::as_str);
        if field("use").is_some_and(|u| u != "sig") {
            return None;
        }
        let alg = match (field("kty")?, field("crv")) {
            ("RSA", _) if field("n").is_some() && field("e").is_some() => Alg::Rs256,
            ("EC", Some("P-256")) if field("x").is_some() && field("y").is_some() => Alg::Es256,
            _ => return None,
        };
        // A key that names another algorithm is not one for this.
        if field("alg").is_some_and(|a| Alg::parse(a) != Some(alg)) {
            return None;
        }
        Some(Key { kid, alg, jwk: k.to_string() })
    });
    Some(usable.take(MAX_KEYS).collect())
}

/// What to do with a token's `kid`.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    Found(&'a Key),
    /// Fetch the document ([`KeySet::fetching`], then [`KeySet::fetched`]) and look again.
    Fetch,
    /// Refuse the token.
    Unknown,
}

/// Where one token's check stands (see [`KeySet::next`]).
#[derive(Debug, Default)]
pub struct Attempt {
    /// The key its signature failed with, if it did.
    pub tried: Option<Key>,
    /// The document was fetched for it (once at most).
    pub fetched: bool,
}

/// What to do next for a token.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Check its signature with this key.
    Check(Key),
    /// Fetch the document ([`KeySet::fetching`], then [`KeySet::fetched`]
    /// if it came), set [`Attempt::fetched`], and ask again.
    Fetch,
    Refuse(AuthError),
}

/// The keys known, and when the document was last asked for.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    last_fetch: Option<u64>,
}

impl KeySet {
    /// The key for `kid` and `alg` (a token without `kid` takes the only key
    /// of its algorithm, if there is just one).
    /// `refetch_ms`: how long after a fetch the next may start.
    pub fn lookup(&self, kid: Option<&str>, alg: Alg, now_ms: u64, refetch_ms: u64) -> Lookup<'_> {
        let mut of_alg = self.keys.iter().filter(|k| k.alg == alg);
        let found = match kid {
            Some(kid) => of_alg.find(|k| k.kid == kid),
            None => of_alg.next().filter(|_| self.keys.iter().filter(|k| k.alg == alg).count() == 1),
        };
        match found {
            Some(key) => Lookup::Found(key),
            None if self.may_fetch(now_ms, refetch_ms) => Lookup::Fetch,
            None => Lookup::Unknown,
        }
    }

    /// Whether the document may be fetched now: once per `refetch_ms`.
    fn may_fetch(&self, now_ms: u64, refetch_ms: u64) -> bool {
        self.last_fetch.is_none_or(|t| now_ms.saturating_sub(t) >= refetch_ms)
    }

    /// The next step of one token's check, `at` where it stands. A
    /// signature that fails with the key its `kid` names may be a key the
    /// provider rotated and kept the `kid` of: the document is fetched again
    /// then too, within the same once-per-interval bound as for an unknown
    /// `kid` (so forged signatures cost the provider no more), and the key
    /// it now has for the `kid` is tried if it is another. At most one fetch
    /// per token.
    pub fn next(&self, kid: Option<&str>, alg: Alg, at: &Attempt, now_ms: u64, refetch_ms: u64) -> Step {
        match (&at.tried, self.lookup(kid, alg, now_ms, refetch_ms)) {
            (None, Lookup::Found(key)) => Step::Check(key.clone()),
            (None, Lookup::Fetch) if !at.fetched => Step::Fetch,
            (None, _) => Step::Refuse(AuthError::UnknownKey),
            (Some(tried), Lookup::Found(key)) if at.fetched && key.jwk != tried.jwk => Step::Check(key.clone()),
            (Some(_), _) if !at.fetched && self.may_fetch(now_ms, refetch_ms) => Step::Fetch,
            (Some(_), _) => Step::Refuse(AuthError::BadSignature),
        }
    }

    /// A fetch starts: no other for a minute, whatever comes of it (tokens
    /// that arrive meanwhile with an unknown key are refused, not queued).
    pub fn fetching(&mut self, now_ms: u64) {
        self.last_fetch = Some(now_ms);
    }

    /// The document came: its keys replace the old ones (a key the provider
    /// dropped is no longer accepted). A failed fetch changes nothing: the
    /// known keys keep working.
    pub fn fetched(&mut self, keys: Vec<Key>) {
        self.keys = keys;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"keys":[
        {"kty":"RSA","kid":"r1","use":"sig","alg":"RS256","n":"AQAB","e":"AQAB"},
        {"kty":"EC","kid":"e1","crv":"P-256","x":"eA","y":"eQ"},
        {"kty":"EC","kid":"e2","crv":"P-384","x":"eA","y":"eQ"},
        {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
        {"kty":"RSA","kid":"ps","alg":"PS256","n":"AQAB","e":"AQAB"},
        {"kty":"oct","kid":"h","k":"c2VjcmV0"},
        {"kty":"RSA","n":"AQAB","e":"AQAB"}
    ]}"#;

    #[test]
    fn only_signature_keys_of_the_two_algorithms_are_kept() {
        let keys = parse(DOC).unwrap();
        let kept: Vec<(&str, Alg)> = keys.iter().map(|k| (k.kid.as_str(), k.alg)).collect();
        assert_eq!(kept, vec![("r1", Alg::Rs256), ("e1", Alg::Es256)]);
        assert_eq!(serde_json::from_str::<Value>(&keys[0].jwk).unwrap()["n"], "AQAB");
        assert_eq!(parse("not json"), None);
        assert_eq!(parse(r#"{"keys":{}}"#), None);
    }

    #[test]
    fn an_unknown_kid_fetches_at_most_once_a_minute_and_known_keys_outlive_a_failure() {
        let mut set = KeySet::default();
        assert_eq!(set.lookup(Some("r1"), Alg::Rs256, 0, REFETCH_MS), Lookup::Fetch, "nothing known yet");
        set.fetching(0);
        assert_eq!(set.lookup(Some("r1"), Alg::Rs256, 0, REFETCH_MS), Lookup::Unknown, "one fetch at a time");
        set.fetched(parse(DOC).unwrap());
        assert!(matches!(set.lookup(Some("r1"), Alg::Rs256, 1, REFETCH_MS), Lookup::Found(k) if k.kid == "r1"));
        assert_eq!(set.lookup(Some("r1"), Alg::Es256, 1, REFETCH_MS), Lookup::Unknown, "a kid of the other algorithm");
        assert_eq!(set.lookup(Some("new"), Alg::Rs256, 30_000, REFETCH_MS), Lookup::Unknown, "within the minute");
        assert_eq!(set.lookup(Some("new"), Alg::Rs256, 60_000, REFETCH_MS), Lookup::Fetch, "a rotation, a minute on");
        set.fetching(60_000); // and it fails: nothing else changes
        assert_eq!(set.lookup(Some("new"), Alg::Rs256, 61_000, REFETCH_MS), Lookup::Unknown);
        assert!(
            matches!(set.lookup(Some("e1"), Alg::Es256, 61_000, REFETCH_MS), Lookup::Found(_)),
            "known keys keep working"
        );
        assert!(
            matches!(set.lookup(None, Alg::Es256, 61_000, REFETCH_MS), Lookup::Found(k) if k.kid == "e1"),
            "the only one"
        );
        set.fetching(120_000);
        set.fetched(vec![]);
        assert_eq!(
            set.lookup(Some("r1"), Alg::Rs256, 120_001, REFETCH_MS),
            Lookup::Unknown,
            "a dropped key is refused"
        );
    }
    #[test]
    fn a_bad_signature_refetches_within_the_interval_and_tries_a_key_rotated_under_its_kid() {
        let doc = |n: &str| parse(&format!(r#"{{"keys":[{{"kty":"RSA","kid":"r1","n":"{n}","e":"AQAB"}}]}}"#)).unwrap();
        let n_of = |step: &Step| match step {
            Step::Check(key) => serde_json::from_str::<Value>(&key.jwk).unwrap()["n"].as_str().unwrap().to_owned(),
            other => panic!("not a check: {other:?}"),
        };
        let mut set = KeySet::default();
        let next = |set: &KeySet, at: &Attempt, now: u64| set.next(Some("r1"), Alg::Rs256, at, now, REFETCH_MS);
        // Nothing known: one fetch, then the key.
        let mut at = Attempt::default();
        assert_eq!(next(&set, &at, 0), Step::Fetch);
        set.fetching(0);
        set.fetched(doc("old"));
        at.fetched = true;
        let first = next(&set, &at, 0);
        assert_eq!(n_of(&first), "old");
        // Its signature fails: this token fetched already, and the key is the same: refused.
        at.tried = Some(set.keys[0].clone());
        assert_eq!(next(&set, &at, 0), Step::Refuse(AuthError::BadSignature));

        // A later token whose signature fails with the known key.
        let failed = |set: &KeySet| Attempt { tried: Some(set.keys[0].clone()), fetched: false };
        assert_eq!(next(&set, &failed(&set), 30_000), Step::Refuse(AuthError::BadSignature), "within the interval");
        let mut at = failed(&set);
        assert_eq!(next(&set, &at, 60_000), Step::Fetch, "an interval on: fetch again");
        set.fetching(60_000);
        at.fetched = true;
        // The provider still publishes the same key: the signature stays bad.
        set.fetched(doc("old"));
        assert_eq!(next(&set, &at, 60_000), Step::Refuse(AuthError::BadSignature));
        assert_eq!(next(&set, &failed(&set), 61_000), Step::Refuse(AuthError::BadSignature), "one fetch per interval");
        // A new key under the same kid: that one is tried, once.
        let mut at = failed(&set);
        assert_eq!(next(&set, &at, 120_000), Step::Fetch);
        set.fetching(120_000);
        set.fetched(doc("new"));
        at.fetched = true;
        let rotated = next(&set, &at, 120_000);
        assert_eq!(n_of(&rotated), "new");
        at.tried = Some(set.keys[0].clone());
        assert_eq!(next(&set, &at, 120_000), Step::Refuse(AuthError::BadSignature), "and no more");
        // A kid of another algorithm, or one dropped, is not tried.
        let at = Attempt { tried: Some(set.keys[0].clone()), fetched: true };
        assert_eq!(set.next(Some("r1"), Alg::Es256, &at, 120_000, REFETCH_MS), Step::Refuse(AuthError::BadSignature));
        set.fetched(vec![]);
        assert_eq!(next(&set, &at, 120_000), Step::Refuse(AuthError::BadSignature));
        // An unknown kid is refused as such, fetched once.
        let at = Attempt { tried: None, fetched: true };
        assert_eq!(next(&set, &at, 0), Step::Refuse(AuthError::UnknownKey));
    }
}
