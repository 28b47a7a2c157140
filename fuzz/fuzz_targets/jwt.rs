//! Client tokens (HS256 JWTs; the decoding and claims of RS256/ES256 ones
//! from an identity provider), the backend API key and where a token is
//! taken from.
//!
//! Each input is tried twice: as a whole token, and, when it holds a newline,
//! as `header\npayload` JSON that the target signs with the secret (so claim
//! handling is reached without the fuzzer having to find a MAC).
//!
//! Invariants: nothing panics; a token verifies only if its signature is the
//! HMAC-SHA256 of its first two parts under the secret (checked here
//! independently), its header says HS256, it has a numeric `exp` after the
//! clock (taken as at most `MAX_EXP_S`), an `nbf` (if any) not after it, and a valid `sub`; a token signed
//! with another secret is refused before its claims are read; the API key matches only itself.
//! A decoded token has one of the three algorithms and signs exactly its
//! first two parts; an identity provider's claims pass only with the
//! issuer and audience asked for. A JWKS document yields only signature
//! keys of the two algorithms, each with its kid.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use edge_chat::auth::{claims, client_token, decode, verify_api_key, verify_jwt, Alg, AuthError, Expected};
use edge_chat::user::UserId;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;

const SECRET: &[u8] = b"fuzz-secret";
const OTHER: &[u8] = b"fuzz-secret-2";
const NOW: u64 = 1_800_000_000;
const API_KEY: &str = "k3y";

fn mac(secret: &[u8], signed: &str) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    m.update(signed.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn forge(header: &[u8], payload: &[u8], secret: &[u8]) -> String {
    let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac(secret, &signed)))
}

/// The fields of a verified part this target checks. Read into a struct, as
/// a `Value` cannot hold everything serde_json skips in fields a struct does
/// not name (numbers beyond f64, invalid UTF-8 in strings): such a part may
/// still verify.
#[derive(Deserialize)]
struct Header {
    alg: Option<Value>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
}

#[derive(Deserialize)]
struct IdpClaims {
    iss: Option<Value>,
    aud: Option<Value>,
}

fn part<T: serde::de::DeserializeOwned>(encoded: &str) -> T {
    let bytes = URL_SAFE_NO_PAD.decode(encoded).expect("a verified part is base64url");
    serde_json::from_slice(&bytes).expect("and a JSON object")
}

fn check(token: &str) {
    let Ok(v) = verify_jwt(token, SECRET, NOW) else { return };
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("a verified signature is base64url");
    assert_eq!(sig, mac(SECRET, &format!("{}.{}", parts[0], parts[1])), "verified without a valid signature");
    assert_eq!(part::<Header>(parts[0]).alg, Some(Value::from("HS256")));
    let claims: Claims = part(parts[1]);
    let exp = claims.exp.and_then(|e| e.as_f64()).expect("a verified token has a numeric exp");
    assert!(exp > NOW as f64);
    assert_eq!(v.exp, exp.min(edge_chat::auth::MAX_EXP_S as f64) as u64, "exp, clamped to the ceiling");
    if let Some(nbf) = claims.nbf {
        assert!(nbf.as_f64().expect("a numeric nbf") <= NOW as f64);
    }
    assert_eq!(claims.sub.as_ref().and_then(Value::as_str), Some(v.user.as_str()));
    assert!(UserId::parse(v.user.as_str()).is_ok());
    assert!(verify_jwt(token, OTHER, NOW).is_err());
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&text);
    if let Some(nl) = data.iter().position(|&b| b == b'\n') {
        let (header, payload) = (&data[..nl], &data[nl + 1..]);
        check(&forge(header, payload, SECRET));
        let other = forge(header, payload, OTHER);
        // Refused before any claim is looked at: the claims of a forged token tell nothing.
        let refused = verify_jwt(&other, SECRET, NOW);
        assert!(
            matches!(refused, Err(AuthError::Malformed | AuthError::Algorithm | AuthError::BadSignature)),
            "{refused:?}"
        );
    }
    if let Ok(jwt) = decode(&text) {
        assert!(matches!(jwt.alg, Alg::Hs256 | Alg::Rs256 | Alg::Es256));
        assert_eq!(text.rsplit_once('.').map(|(signed, _)| signed), Some(jwt.signed));
        let want = Expected { issuer: Some("https://id".into()), audience: Some("app".into()) };
        if claims(&jwt, &want, NOW).is_ok() {
            let c: IdpClaims = part(text.split('.').nth(1).expect("a payload"));
            assert_eq!(c.iss.as_ref().and_then(Value::as_str), Some("https://id"));
            let aud = c.aud.expect("an audience");
            assert!(aud == "app" || aud.as_array().is_some_and(|a| a.iter().any(|x| x == "app")));
        }
    }
    if let Some(keys) = edge_chat::jwks::parse(&text) {
        for k in keys {
            let jwk: Value = serde_json::from_str(&k.jwk).expect("a kept key is JSON");
            assert_eq!(jwk["kid"].as_str(), Some(k.kid.as_str()));
            assert!(matches!(k.alg, Alg::Rs256 | Alg::Es256));
        }
    }
    let key = verify_api_key(Some(&text), API_KEY);
    assert_eq!(key.is_ok(), text == format!("Bearer {API_KEY}"));
    if let Ok(t) = client_token(Some(&text), None) {
        assert_eq!(t, text);
    }
});
