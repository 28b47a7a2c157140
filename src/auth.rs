//! Authentication: client JWTs (HS256) and the backend API key.
//!
//! Pure functions of (credential, secret, clock) so every refusal rule is
//! tested natively; the Worker entry only extracts the credential and maps
//! [`AuthError`] to a 401.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::user::UserId;

type HmacSha256 = Hmac<Sha256>;

/// Why a credential was refused. Shown to the client, so it names the rule
/// broken but never echoes the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    /// `alg` other than HS256, `none` included.
    Algorithm,
    BadSignature,
    NoExpiry,
    Expired,
    NotYetValid,
    BadSubject,
    BadApiKey,
}

impl AuthError {
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "missing token",
            AuthError::Malformed => "malformed token",
            AuthError::Algorithm => "token algorithm must be HS256",
            AuthError::BadSignature => "bad token signature",
            AuthError::NoExpiry => "token has no exp claim",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::BadSubject => "token sub is not a valid user id",
            AuthError::BadApiKey => "missing or wrong API key",
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for AuthError {}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
}

/// A verified client token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub user: UserId,
    /// Expiry, seconds since the epoch; a v1 socket is closed when it passes.
    pub exp: u64,
}

/// Verifies an HS256 JWT and returns the user it speaks for.
/// `now` is seconds since the epoch.
pub fn verify_jwt(token: &str, secret: &[u8], now: u64) -> Result<Verified, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed);
    };
    let header: Header = decode_json(h)?;
    // Checked before the signature: an `alg: none` token must never reach a
    // code path that treats its empty signature as something to compare.
    if header.alg != "HS256" {
        return Err(AuthError::Algorithm);
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| AuthError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| AuthError::BadSignature)?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&sig).map_err(|_| AuthError::BadSignature)?;

    let claims: Claims = decode_json(p)?;
    let exp = claims.exp.ok_or(AuthError::NoExpiry)?;
    let exp = exp.as_f64().ok_or(AuthError::Malformed)?;
    if (now as f64) >= exp {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = claims.nbf {
        if (now as f64) < nbf.as_f64().ok_or(AuthError::Malformed)? {
            return Err(AuthError::NotYetValid);
        }
    }
    let user = match claims.sub {
        Some(serde_json::Value::String(sub)) => UserId::parse(&sub).map_err(|_| AuthError::BadSubject)?,
        _ => return Err(AuthError::BadSubject),
    };
    Ok(Verified { user, exp: exp as u64 })
}

/// Signs an HS256 JWT for `sub` expiring at `exp` (seconds). Used by tests,
/// benchmarks and local tooling; the service itself only verifies.
pub fn sign_jwt(sub: &str, exp: u64, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::json!({ "sub": sub, "exp": exp }).to_string());
    let mut token = format!("{header}.{payload}");
    // HMAC accepts keys of any length, so this cannot fail.
    if let Ok(mut mac) = HmacSha256::new_from_slice(secret) {
        mac.update(token.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        token.push('.');
        token.push_str(&sig);
    }
    token
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}

/// Checks a backend `Authorization` header value against the API key.
/// Both sides are hashed first so the comparison takes the same time whatever
/// the length or content of the guess.
pub fn verify_api_key(authorization: Option<&str>, api_key: &str) -> Result<(), AuthError> {
    let given = authorization.and_then(|h| h.strip_prefix("Bearer ")).ok_or(AuthError::BadApiKey)?;
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(api_key.as_bytes());
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    if diff == 0 {
        Ok(())
    } else {
        Err(AuthError::BadApiKey)
    }
}

/// The bearer token of a client request: `?token=` first (browsers cannot set
/// headers on a WebSocket), then `Authorization: Bearer`.
pub fn client_token<'a>(query_token: Option<&'a str>, authorization: Option<&'a str>) -> Result<&'a str, AuthError> {
    query_token
        .filter(|t| !t.is_empty())
        .or_else(|| authorization.and_then(|h| h.strip_prefix("Bearer ")))
        .ok_or(AuthError::Missing)
}

/// Whether a WebSocket upgrade from `origin` may proceed under
/// `ALLOWED_ORIGINS` (comma-separated origins, `*` or empty for any).
/// Browsers always send `Origin`, so this stops other sites' pages from
/// opening sockets with a user's token; apps and servers send none, and a
/// token is what authenticates them.
pub fn origin_allowed(allowed: &str, origin: Option<&str>) -> bool {
    let mut list = allowed.split(',').map(str::trim).filter(|o| !o.is_empty()).peekable();
    if list.peek().is_none() {
        return true;
    }
    match origin {
        None => true,
        Some(origin) => list.any(|o| o == "*" || o.eq_ignore_ascii_case(origin.trim_end_matches('/'))),
    }
}

/// Whether a socket's token has expired at `now_ms` (`exp` in seconds).
/// `exp` 0 is a socket accepted before sockets carried their expiry: it is
/// not closed for it.
pub fn token_expired(exp: u64, now_ms: u64) -> bool {
    exp != 0 && now_ms / 1000 >= exp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_only_when_configured_and_only_for_browsers() {
        let list = "https://app.example, http://localhost:5173";
        assert!(origin_allowed("", Some("https://evil.example")));
        assert!(origin_allowed(list, Some("https://app.example")));
        assert!(origin_allowed(list, Some("HTTP://LOCALHOST:5173")));
        assert!(!origin_allowed(list, Some("https://evil.example")));
        assert!(!origin_allowed(list, Some("https://app.example.evil")));
        assert!(!origin_allowed(list, Some("null")));
        assert!(origin_allowed(list, None), "no Origin: not a browser");
        assert!(origin_allowed("*", Some("https://any.example")));
    }

    const SECRET: &[u8] = b"dev-secret";
    const NOW: u64 = 1_800_000_000;

    fn forge(header: &str, payload: &str, secret: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let p = URL_SAFE_NO_PAD.encode(payload);
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_signed_token_names_its_user() {
        let t = sign_jwt("42", NOW + 60, SECRET);
        let v = verify_jwt(&t, SECRET, NOW).unwrap();
        assert_eq!((v.user.as_str(), v.exp), ("42", NOW + 60));
    }

    #[test]
    fn expiry_is_required_and_enforced() {
        assert_eq!(verify_jwt(&sign_jwt("42", NOW, SECRET), SECRET, NOW), Err(AuthError::Expired));
        let no_exp = forge(r#"{"alg":"HS256"}"#, r#"{"sub":"42"}"#, SECRET);
        assert_eq!(verify_jwt(&no_exp, SECRET, NOW), Err(AuthError::NoExpiry));
        let early =
            forge(r#"{"alg":"HS256"}"#, &format!(r#"{{"sub":"42","exp":{},"nbf":{}}}"#, NOW + 60, NOW + 30), SECRET);
        assert_eq!(verify_jwt(&early, SECRET, NOW), Err(AuthError::NotYetValid));
    }

    #[test]
    fn wrong_secret_or_tampered_payload_fails() {
        let t = sign_jwt("42", NOW + 60, b"other");
        assert_eq!(verify_jwt(&t, SECRET, NOW), Err(AuthError::BadSignature));
        let good = sign_jwt("42", NOW + 60, SECRET);
        let mut parts: Vec<&str> = good.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"43","exp":{}}}"#, NOW + 60));
        parts[1] = &evil;
        assert_eq!(verify_jwt(&parts.join("."), SECRET, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn other_algorithms_are_refused() {
        let payload = format!(r#"{{"sub":"42","exp":{}}}"#, NOW + 60);
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(&payload));
        assert_eq!(verify_jwt(&none, SECRET, NOW), Err(AuthError::Algorithm));
        let hs512 = forge(r#"{"alg":"HS512"}"#, &payload, SECRET);
        assert_eq!(verify_jwt(&hs512, SECRET, NOW), Err(AuthError::Algorithm));
    }

    #[test]
    fn garbage_and_bad_subjects() {
        for t in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(verify_jwt(t, SECRET, NOW), Err(AuthError::Malformed), "{t:?}");
        }
        let numeric_sub = forge(r#"{"alg":"HS256"}"#, &format!(r#"{{"sub":42,"exp":{}}}"#, NOW + 60), SECRET);
        assert_eq!(verify_jwt(&numeric_sub, SECRET, NOW), Err(AuthError::BadSubject));
        assert_eq!(verify_jwt(&sign_jwt("a b", NOW + 60, SECRET), SECRET, NOW), Err(AuthError::BadSubject));
    }

    #[test]
    fn api_key() {
        assert!(verify_api_key(Some("Bearer k1"), "k1").is_ok());
        assert_eq!(verify_api_key(Some("Bearer k2"), "k1"), Err(AuthError::BadApiKey));
        assert_eq!(verify_api_key(Some("k1"), "k1"), Err(AuthError::BadApiKey));
        assert_eq!(verify_api_key(None, "k1"), Err(AuthError::BadApiKey));
    }

    #[test]
    fn token_from_query_or_header() {
        assert_eq!(client_token(Some("q"), Some("Bearer h")), Ok("q"));
        assert_eq!(client_token(None, Some("Bearer h")), Ok("h"));
        assert_eq!(client_token(Some(""), None), Err(AuthError::Missing));
        assert_eq!(client_token(None, Some("Basic x")), Err(AuthError::Missing));
    }
}
