//! Socket tickets (platform side): the user's object answers
//! `POST /v1/ws-ticket` (the entry verified the token) with a ticket it
//! keeps for its one use at the upgrade. The format, the check and the
//! one-use rule are [`crate::ticket`]'s.

use std::cell::RefCell;

use worker::{Env, Response};

use super::{json, now_ms, random_u64};
use crate::auth::Verified;
use crate::ticket::{self, Outstanding};

/// A ticket for `v`, kept in `tickets`: `{"ticket": "...", "expires_in": <s>}`.
pub fn issue(env: &Env, tickets: &RefCell<Outstanding>, v: &Verified) -> worker::Result<Response> {
    let secret = env.secret("JWT_SECRET")?.to_string();
    // The nonce need only be unique among the user's waiting tickets: the
    // MAC, not the nonce, is what no one else can make.
    let mut random = [0u8; 16];
    random[..8].copy_from_slice(&random_u64().to_le_bytes());
    random[8..].copy_from_slice(&random_u64().to_le_bytes());
    let now = now_ms();
    let (text, t) = ticket::issue(v, random, now, secret.as_bytes());
    tickets.borrow_mut().issued(t.nonce, t.until_ms, now);
    let expires_in = t.until_ms.saturating_sub(now) / 1000;
    // The ticket is digits, base64url, dots and a user id: nothing to escape.
    json(200, &format!(r#"{{"ticket":"{text}","expires_in":{expires_in}}}"#))
}
