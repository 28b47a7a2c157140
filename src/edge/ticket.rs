//! Socket tickets (platform side): `POST /v1/ws-ticket` issues one for the
//! verified bearer token's user, with 128 bits of WebCrypto randomness, and
//! tells that user's object of it; the object allows its one use at the
//! upgrade. The format, the check and the one-use rule are
//! [`crate::ticket`]'s.

use wasm_bindgen::prelude::*;
use worker::{Env, Response};

use super::{json, json_error, log, now_ms, Rid, USER_BINDING};
use crate::auth::Verified;
use crate::internal::{Internal, Outcome};
use crate::ticket;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// `POST /v1/ws-ticket`: `{"ticket": "...", "expires_in": <s>}`.
pub async fn issue(env: &Env, secret: &str, v: Verified) -> worker::Result<Response> {
    let mut random = [0u8; 16];
    if get_random_values(&mut random).is_err() {
        log(Rid::new().line("ticket_random_failed"));
        return json_error(503, "temporarily unavailable; retry");
    }
    let now = now_ms();
    let (text, t) = ticket::issue(&v, random, now, secret.as_bytes());
    let request = Internal::Ticket { uid: t.user, nonce: t.nonce, until_ms: t.until_ms };
    let stub = env.durable_object(USER_BINDING)?.get_by_name(request.owner().as_str())?;
    // Unless the user's object knows the nonce, the upgrade would be refused.
    let told = stub
        .fetch_with_str(&request.encode())
        .await
        .is_ok_and(|r| Outcome::from_status(r.status_code()) == Outcome::Done);
    if !told {
        return json_error(503, "temporarily unavailable; retry");
    }
    let expires_in = t.until_ms.saturating_sub(now) / 1000;
    json(200, &serde_json::json!({ "ticket": text, "expires_in": expires_in }).to_string())
}
