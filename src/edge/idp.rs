//! Tokens from an identity provider (platform side): its JWKS document
//! fetched through the runtime's global `fetch` (never waited on for more
//! than [`FETCH_TIMEOUT_MS`]), each key imported into WebCrypto once, and
//! RS256 and ES256 signatures checked there (a bad one fetches the keys again,
//! for a key rotated under its kid). Which key, and when to fetch,
//! is [`crate::jwks`]'s; the claims are [`crate::auth::claims`]'.

use std::cell::RefCell;
use std::collections::HashMap;

use wasm_bindgen::prelude::*;
use worker::js_sys::{self, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen_futures::JsFuture;
use worker::Env;

use crate::auth::{claims, Alg, AuthError, Expected, Jwt, Verified};
use crate::jwks::{self, Attempt, Key, KeySet, Step};

/// Longest a token waits for the provider's keys.
pub const FETCH_TIMEOUT_MS: u32 = 3000;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_name = fetch)]
    fn global_fetch(url: &str, init: &Object) -> Result<Promise, JsValue>;

    type FetchResponse;
    #[wasm_bindgen(method, getter)]
    fn ok(this: &FetchResponse) -> bool;
    #[wasm_bindgen(method, catch)]
    fn text(this: &FetchResponse) -> Result<Promise, JsValue>;

    #[wasm_bindgen(js_namespace = AbortSignal, js_name = timeout)]
    fn abort_after(ms: u32) -> JsValue;

    type Subtle;
    #[wasm_bindgen(js_namespace = crypto, js_name = subtle, thread_local_v2)]
    static SUBTLE: Subtle;
    #[wasm_bindgen(method, catch, js_name = importKey)]
    fn import_key(
        this: &Subtle,
        format: &str,
        key: &JsValue,
        algorithm: &Object,
        extractable: bool,
        usages: &js_sys::Array,
    ) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn verify(
        this: &Subtle,
        algorithm: &Object,
        key: &JsValue,
        signature: &Uint8Array,
        data: &Uint8Array,
    ) -> Result<Promise, JsValue>;
}

thread_local! {
    /// The provider's keys, for the life of the isolate.
    static KEYS: RefCell<KeySet> = RefCell::default();
    /// Keys imported into WebCrypto, by their JWK text.
    static IMPORTED: RefCell<HashMap<String, JsValue>> = RefCell::default();
}

/// The identity provider, when `JWT_JWKS_URL` is set.
pub struct Idp {
    url: String,
    expected: Expected,
    refetch_ms: u64,
}

impl Idp {
    pub fn from_env(env: &Env) -> Option<Idp> {
        let var = |name: &str| env.var(name).ok().map(|v| v.to_string()).filter(|v| !v.is_empty());
        let url = var("JWT_JWKS_URL")?;
        let refetch_ms =
            var("JWT_JWKS_REFETCH_S").and_then(|s| s.parse::<u64>().ok()).map_or(jwks::REFETCH_MS, |s| s * 1000);
        Some(Idp { url, expected: Expected { issuer: var("JWT_ISSUER"), audience: var("JWT_AUDIENCE") }, refetch_ms })
    }

    /// Checks an RS256 or ES256 token (`now_ms`: the clock): the steps are
    /// [`KeySet::next`]'s.
    pub async fn verify(&self, jwt: &Jwt<'_>, now_ms: u64) -> Result<Verified, AuthError> {
        let mut at = Attempt::default();
        loop {
            let step = KEYS.with(|keys| keys.borrow().next(jwt.kid.as_deref(), jwt.alg, &at, now_ms, self.refetch_ms));
            match step {
                Step::Refuse(e) => return Err(e),
                Step::Fetch => {
                    KEYS.with(|keys| keys.borrow_mut().fetching(now_ms));
                    match self.get().await {
                        Some(keys) => KEYS.with(|set| set.borrow_mut().fetched(keys)),
                        // Known keys keep working; this token's may be unknown.
                        None => super::log(super::Rid::new().line("jwks_fetch_failed")),
                    }
                    at.fetched = true;
                }
                Step::Check(key) => {
                    let crypto_key = import(&key).await.ok_or(AuthError::UnknownKey)?;
                    if check(key.alg, &crypto_key, &jwt.signature, jwt.signed.as_bytes()).await {
                        return claims(jwt, &self.expected, now_ms / 1000);
                    }
                    at.tried = Some(key);
                }
            }
        }
    }

    /// The document's usable keys; `None` when it could not be had in time.
    async fn get(&self) -> Option<Vec<Key>> {
        let init = Object::new();
        Reflect::set(&init, &"signal".into(), &abort_after(FETCH_TIMEOUT_MS)).ok()?;
        let res: FetchResponse = JsFuture::from(global_fetch(&self.url, &init).ok()?).await.ok()?.unchecked_into();
        if !res.ok() {
            return None;
        }
        let body = JsFuture::from(res.text().ok()?).await.ok()?.as_string()?;
        jwks::parse(&body)
    }
}

/// The WebCrypto key for `key`, imported once per isolate.
async fn import(key: &Key) -> Option<JsValue> {
    if let Some(k) = IMPORTED.with(|m| m.borrow().get(&key.jwk).cloned()) {
        return Some(k);
    }
    let jwk = js_sys::JSON::parse(&key.jwk).ok()?;
    let usages = js_sys::Array::of1(&"verify".into());
    let promise = SUBTLE.with(|s| s.import_key("jwk", &jwk, &algorithm(key.alg, true), false, &usages)).ok()?;
    let imported = JsFuture::from(promise).await.ok()?;
    IMPORTED.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= jwks::MAX_KEYS * 2 {
            m.clear();
        }
        m.insert(key.jwk.clone(), imported.clone());
    });
    Some(imported)
}

/// Whether `signature` is `alg`'s over `data` with `key`.
async fn check(alg: Alg, key: &JsValue, signature: &[u8], data: &[u8]) -> bool {
    let (signature, data) = (Uint8Array::from(signature), Uint8Array::from(data));
    let Ok(promise) = SUBTLE.with(|s| s.verify(&algorithm(alg, false), key, &signature, &data)) else { return false };
    JsFuture::from(promise).await.ok().and_then(|v| v.as_bool()).unwrap_or(false)
}

/// WebCrypto's parameters for `alg`, to import a key (`import`) or verify.
fn algorithm(alg: Alg, import: bool) -> Object {
    let o = Object::new();
    let set = |k: &str, v: &str| {
        let _ = Reflect::set(&o, &k.into(), &v.into());
    };
    match alg {
        Alg::Es256 => {
            set("name", "ECDSA");
            set(if import { "namedCurve" } else { "hash" }, if import { "P-256" } else { "SHA-256" });
        }
        _ => {
            set("name", "RSASSA-PKCS1-v1_5");
            set("hash", "SHA-256");
        }
    }
    o
}
