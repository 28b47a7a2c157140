//! Authentication: client JWTs (HS256 with `JWT_SECRET`; RS256 and ES256
//! from an identity provider, whose keys [`crate::jwks`] keeps) and the
//! backend API key.
//!
//! Pure functions of (credential, secret, clock) so every refusal rule is
//! tested natively; the Worker entry only extracts the credential, checks an
//! RS256/ES256 signature with WebCrypto, and maps [`AuthError`] to a 401.

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
    /// `alg` other than HS256, RS256 or ES256, `none` included (or RS256 and
    /// ES256 without an identity provider configured).
    Algorithm,
    /// No key of the identity provider has the token's `kid` (or the keys
    /// could not be fetched).
    UnknownKey,
    /// `iss` or `aud` is not the configured `JWT_ISSUER` or `JWT_AUDIENCE`.
    Issuer,
    Audience,
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
            AuthError::Algorithm => "token algorithm must be HS256 (or RS256, ES256 with JWT_JWKS_URL)",
            AuthError::UnknownKey => "token signed with an unknown key (kid)",
            AuthError::Issuer => "token iss is not JWT_ISSUER",
            AuthError::Audience => "token aud does not name JWT_AUDIENCE",
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
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    iss: Option<serde_json::Value>,
    aud: Option<serde_json::Value>,
}

/// The signature algorithms a client token may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// HMAC-SHA256 with `JWT_SECRET`.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, an identity provider's key.
    Rs256,
    /// ECDSA P-256 with SHA-256, an identity provider's key.
    Es256,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "HS256" => Some(Alg::Hs256),
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

/// A token taken apart, its signature not checked yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwt<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    pub signed: &'a str,
    pub signature: Vec<u8>,
    payload: &'a str,
}

/// Takes a token apart. An `alg` outside [`Alg`] is refused here, before any
/// signature is looked at: an `alg: none` token never reaches a code path
/// that could treat its empty signature as something to compare.
pub fn decode(token: &str) -> Result<Jwt<'_>, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed);
    };
    let header: Header = decode_json(h)?;
    let alg = Alg::parse(&header.alg).ok_or(AuthError::Algorithm)?;
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| AuthError::Malformed)?;
    Ok(Jwt { alg, kid: header.kid, signed: &token[..h.len() + 1 + p.len()], signature, payload: p })
}

/// The latest expiry a token is taken at (2100-01-01T00:00:00Z): a later
/// `exp` is clamped to it. Everything the platform keeps it in holds this, in
/// s and in ms (a JS number, a `Date`, a Durable Object alarm, which the
/// runtime refuses past 2189), so a far-future token is bounded the same way
/// on every route, the socket's alarm included.
pub const MAX_EXP_S: u64 = 4_102_444_800;

/// What an identity provider's tokens must also say (`JWT_ISSUER`,
/// `JWT_AUDIENCE`; unset: not checked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// The claims of a token whose signature was checked: expiry, not-before,
/// the subject, and what `expected` asks of `iss` and `aud`.
pub fn claims(jwt: &Jwt, expected: &Expected, now: u64) -> Result<Verified, AuthError> {
    let claims: Claims = decode_json(jwt.payload)?;
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
    if let Some(issuer) = &expected.issuer {
        if claims.iss.as_ref().and_then(|v| v.as_str()) != Some(issuer.as_str()) {
            return Err(AuthError::Issuer);
        }
    }
    if let Some(audience) = &expected.audience {
        // `aud` is one string or an array of them.
        let names = |v: &serde_json::Value| match v {
            serde_json::Value::String(a) => a == audience,
            serde_json::Value::Array(all) => all.iter().any(|a| a.as_str() == Some(audience.as_str())),
            _ => false,
        };
        if !claims.aud.as_ref().is_some_and(names) {
            return Err(AuthError::Audience);
        }
    }
    let user = match claims.sub {
        Some(serde_json::Value::String(sub)) => UserId::parse(&sub).map_err(|_| AuthError::BadSubject)?,
        _ => return Err(AuthError::BadSubject),
    };
    Ok(Verified { user, exp: exp.min(MAX_EXP_S as f64) as u64 })
}

/// A verified client token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub user: UserId,
    /// Expiry, seconds since the epoch (at most [`MAX_EXP_S`]); a socket is
    /// closed when it passes.
    pub exp: u64,
}

/// Verifies an HS256 JWT and returns the user it speaks for.
/// `now` is seconds since the epoch.
pub fn verify_jwt(token: &str, secret: &[u8], now: u64) -> Result<Verified, AuthError> {
    let jwt = decode(token)?;
    verify_hs256(&jwt, secret, now)
}

/// The HS256 check of a decoded token. A token of another `alg` is refused,
/// so no public key can ever be used as an HMAC secret.
pub fn verify_hs256(jwt: &Jwt, secret: &[u8], now: u64) -> Result<Verified, AuthError> {
    if jwt.alg != Alg::Hs256 {
        return Err(AuthError::Algorithm);
    }
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| AuthError::BadSignature)?;
    mac.update(jwt.signed.as_bytes());
    mac.verify_slice(&jwt.signature).map_err(|_| AuthError::BadSignature)?;
    claims(jwt, &Expected::default(), now)
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
    fn a_far_future_expiry_is_clamped_to_the_ceiling() {
        // 2^53 - 1, 2^64 - 1, 1e308 and 1e13 (past a JS Date's range in ms).
        for exp in ["9007199254740991", "18446744073709551615", "1e308", "1e13", "4102444801"] {
            let t = forge(r#"{"alg":"HS256"}"#, &format!(r#"{{"sub":"42","exp":{exp}}}"#), SECRET);
            assert_eq!(verify_jwt(&t, SECRET, NOW).map(|v| v.exp), Ok(MAX_EXP_S), "exp {exp}");
        }
        let at_ceiling = sign_jwt("42", MAX_EXP_S, SECRET);
        assert_eq!(verify_jwt(&at_ceiling, SECRET, NOW).map(|v| v.exp), Ok(MAX_EXP_S));
        // Beyond an f64 the JSON itself is refused: a 401, never a 500.
        let huge = forge(r#"{"alg":"HS256"}"#, r#"{"sub":"42","exp":1e400}"#, SECRET);
        assert_eq!(verify_jwt(&huge, SECRET, NOW), Err(AuthError::Malformed));
        // The ceiling is an alarm the runtime takes (before 2189-01-01).
        const { assert!(MAX_EXP_S < 6_911_049_600) };
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
    fn identity_provider_claims_are_checked_when_configured() {
        let token = |claims: &str| {
            let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#);
            format!("{h}.{}.c2ln", URL_SAFE_NO_PAD.encode(claims))
        };
        let t = token(&format!(r#"{{"sub":"42","exp":{},"iss":"https://id.example","aud":["a","app"]}}"#, NOW + 60));
        let jwt = decode(&t).unwrap();
        assert_eq!(
            (jwt.alg, jwt.kid.as_deref(), jwt.signature.as_slice()),
            (Alg::Rs256, Some("k1"), b"sig".as_slice())
        );
        assert_eq!(jwt.signed, t.rsplit_once('.').unwrap().0);
        let want = |iss: &str, aud: &str| Expected { issuer: Some(iss.into()), audience: Some(aud.into()) };
        assert!(claims(&jwt, &want("https://id.example", "app"), NOW).is_ok());
        assert!(claims(&jwt, &Expected::default(), NOW).is_ok());
        assert_eq!(claims(&jwt, &want("https://other", "app"), NOW), Err(AuthError::Issuer));
        assert_eq!(claims(&jwt, &want("https://id.example", "web"), NOW), Err(AuthError::Audience));
        // HS256 verification never accepts an RS256 token, whatever key it is handed.
        assert_eq!(verify_hs256(&jwt, SECRET, NOW), Err(AuthError::Algorithm));
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
