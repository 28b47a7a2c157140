//! One-time socket tickets: a client trades its bearer token for a ticket
//! (`POST /v1/ws-ticket`, the token in a header) and opens its socket with
//! `?ticket=`, so the long-lived token never travels in a URL, where
//! platform request logs would keep it.
//!
//! A ticket is `t1.<mac>.<exp>.<until>.<nonce>.<user>`: the token's expiry
//! (s), the time until which the ticket may be used (ms), a random nonce and
//! the user; the MAC (HMAC-SHA256 over what follows it, under a key derived
//! from `JWT_SECRET`) lets the entry refuse a forged or stale ticket without
//! waking any object. (Plain text rather than JSON: the worker's wasm has a
//! size budget.) Single use is the user's object's: it issues the ticket
//! and keeps its nonce ([`Outstanding::issued`]), and takes it away at the
//! upgrade ([`Outstanding::redeem`]), which every upgrade of the user's
//! reaches, whatever isolate it came through. It keeps them in memory only: an
//! object that restarted in between knows none, so the ticket is refused
//! (never honoured twice) and the client asks for another.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::{Verified, MAX_EXP_S};
use crate::user::UserId;

type HmacSha256 = Hmac<Sha256>;

/// How long a ticket may be used after it is issued.
pub const TTL_MS: u64 = 30_000;
/// Most tickets a user's object keeps waiting at once; one more drops the
/// oldest (only the user's own token can ask for them).
pub const MAX_OUTSTANDING: usize = 16;
/// The version prefix: a ticket is never taken for a JWT, nor one for it.
const PREFIX: &str = "t1.";
/// What the MAC key is derived with, so no other HMAC under `JWT_SECRET`
/// (a token's signature) can pass as a ticket's.
const KEY_LABEL: &[u8] = b"edge-chat ws-ticket v1";

/// Why a ticket was refused (a 401; the client asks for a new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketError {
    /// Not a ticket of ours (or a forged one).
    Invalid,
    /// Past its use-by time, or its token expired.
    Expired,
    /// Used already, or unknown to the user's object (it restarted, or the
    /// ticket's time was up).
    Used,
}

impl TicketError {
    pub fn message(self) -> &'static str {
        match self {
            TicketError::Invalid => "invalid ticket",
            TicketError::Expired => "ticket expired",
            TicketError::Used => "ticket already used",
        }
    }
}

impl std::fmt::Display for TicketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for TicketError {}

/// A ticket's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub user: UserId,
    /// The token's expiry (s): the socket closes then, as with the token.
    pub exp: u64,
    /// Usable before this time (ms).
    pub until_ms: u64,
    /// What the user's object checks off (22 base64url characters).
    pub nonce: String,
}

/// A ticket for the verified token `v`, usable for [`TTL_MS`] from `now_ms`
/// (less when the token expires sooner). `random`: 128 random bits, the
/// nonce (it need only be unique: the MAC is what no one else can make).
/// Returns the ticket's text and its contents.
pub fn issue(v: &Verified, random: [u8; 16], now_ms: u64, secret: &[u8]) -> (String, Ticket) {
    let nonce = URL_SAFE_NO_PAD.encode(random);
    let until_ms = (now_ms + TTL_MS).min(v.exp.saturating_mul(1000));
    let body = format!("{}.{until_ms}.{nonce}.{}", v.exp, v.user.as_str());
    let tag = URL_SAFE_NO_PAD.encode(mac(secret, &body).finalize().into_bytes());
    (format!("{PREFIX}{tag}.{body}"), Ticket { user: v.user.clone(), exp: v.exp, until_ms, nonce })
}

/// Checks a ticket's MAC and times at `now_ms`. One use is not checked here:
/// that is the user's object's ([`Outstanding::redeem`]).
pub fn verify(text: &str, now_ms: u64, secret: &[u8]) -> Result<Ticket, TicketError> {
    let rest = text.strip_prefix(PREFIX).ok_or(TicketError::Invalid)?;
    let (tag, body) = rest.split_once('.').ok_or(TicketError::Invalid)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TicketError::Invalid)?;
    mac(secret, body).verify_slice(&tag).map_err(|_| TicketError::Invalid)?;
    // The user comes last: a user id may hold dots.
    let mut parts = body.splitn(4, '.');
    let (Some(exp), Some(until), Some(nonce), Some(user)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TicketError::Invalid);
    };
    let number = |s: &str| s.parse::<u64>().map_err(|_| TicketError::Invalid);
    let (exp, until_ms) = (number(exp)?, number(until)?);
    let user = UserId::parse(user).map_err(|_| TicketError::Invalid)?;
    if now_ms >= until_ms || now_ms / 1000 >= exp {
        return Err(TicketError::Expired);
    }
    Ok(Ticket { user, exp: exp.min(MAX_EXP_S), until_ms, nonce: nonce.to_owned() })
}

/// The MAC of `body` under a key derived from `secret` (HMAC accepts keys
/// of any length, so neither step can fail).
fn mac(secret: &[u8], body: &str) -> HmacSha256 {
    let mut derive = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    derive.update(KEY_LABEL);
    let key = derive.finalize().into_bytes();
    let mut m = HmacSha256::new_from_slice(&key).unwrap_or_else(|_| unreachable!());
    m.update(body.as_bytes());
    m
}

/// The tickets a user's object issued that are not used yet.
#[derive(Debug, Default)]
pub struct Outstanding {
    /// (nonce, usable before (ms)), oldest first.
    live: Vec<(String, u64)>,
}

impl Outstanding {
    /// A ticket was issued for this user.
    pub fn issued(&mut self, nonce: String, until_ms: u64, now_ms: u64) {
        self.live.retain(|(_, until)| *until > now_ms);
        if self.live.len() >= MAX_OUTSTANDING {
            self.live.remove(0);
        }
        self.live.push((nonce, until_ms));
    }

    /// The upgrade of a ticket: allowed once, before its time is up (the
    /// entry checked the time already: one past it here is refused as used).
    pub fn redeem(&mut self, nonce: &str, now_ms: u64) -> Result<(), TicketError> {
        let i = self.live.iter().position(|(n, until)| n == nonce && *until > now_ms).ok_or(TicketError::Used)?;
        self.live.remove(i);
        Ok(())
    }

    /// How many tickets wait to be used.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"dev-secret";
    const NOW: u64 = 1_800_000_000_000;

    fn verified(user: &str, exp: u64) -> Verified {
        Verified { user: UserId::parse(user).unwrap(), exp }
    }

    #[test]
    fn a_ticket_names_its_user_and_the_tokens_expiry_for_thirty_seconds() {
        let (text, t) = issue(&verified("a.b@c", NOW / 1000 + 3600), [7; 16], NOW, SECRET);
        assert!(text.starts_with("t1.") && text.ends_with(".a.b@c") && !text.contains(['?', '&', '=', '+', '/']));
        assert_eq!(t.nonce, URL_SAFE_NO_PAD.encode([7; 16]));
        assert_eq!(verify(&text, NOW, SECRET), Ok(t.clone()));
        assert_eq!((t.user.as_str(), t.exp, t.until_ms), ("a.b@c", NOW / 1000 + 3600, NOW + TTL_MS));
        assert_eq!(verify(&text, NOW + TTL_MS - 1, SECRET).map(|t| t.nonce), Ok(URL_SAFE_NO_PAD.encode([7; 16])));
        assert_eq!(verify(&text, NOW + TTL_MS, SECRET), Err(TicketError::Expired));
        // A token expiring sooner bounds the ticket.
        let (soon, t) = issue(&verified("u", NOW / 1000 + 10), [1; 16], NOW, SECRET);
        assert_eq!(t.until_ms, NOW + 10_000);
        assert_eq!(verify(&soon, NOW + 10_000, SECRET), Err(TicketError::Expired));
    }

    #[test]
    fn forged_tampered_or_foreign_tickets_are_invalid() {
        let (text, _) = issue(&verified("u", NOW / 1000 + 60), [1; 16], NOW, SECRET);
        assert_eq!(verify(&text, NOW, b"other"), Err(TicketError::Invalid));
        let other_user = format!("{}v", &text[..text.len() - 1]);
        assert_eq!(verify(&other_user, NOW, SECRET), Err(TicketError::Invalid));
        let later = text.replacen(&format!(".{}.", NOW + TTL_MS), &format!(".{}.", NOW + 10 * TTL_MS), 1);
        assert_ne!(later, text);
        assert_eq!(verify(&later, NOW + TTL_MS, SECRET), Err(TicketError::Invalid));
        assert_eq!(verify(&text.replacen("t1.", "t2.", 1), NOW, SECRET), Err(TicketError::Invalid));
        // Signed, but not the four fields: refused as well.
        let tag = |body: &str| URL_SAFE_NO_PAD.encode(mac(SECRET, body).finalize().into_bytes());
        for body in ["1", "x.1.n.u", &format!("{}.{}.n.a b", NOW, NOW + 1)] {
            assert_eq!(verify(&format!("t1.{}.{body}", tag(body)), NOW, SECRET), Err(TicketError::Invalid), "{body}");
        }
        for junk in ["", "t1.", "t1..", "a.b.c", "t1.!!.!!", &text[..text.len() - 2]] {
            assert_eq!(verify(junk, NOW, SECRET), Err(TicketError::Invalid), "{junk:?}");
        }
        // A JWT signed with the same secret is not a ticket.
        let jwt = crate::auth::sign_jwt("u", NOW / 1000 + 60, SECRET);
        assert_eq!(verify(&jwt, NOW, SECRET), Err(TicketError::Invalid));
        assert!(crate::auth::verify_jwt(&text, SECRET, NOW / 1000).is_err(), "nor a ticket a JWT");
    }

    #[test]
    fn a_ticket_opens_one_socket_only() {
        let mut out = Outstanding::default();
        out.issued("a".into(), NOW + TTL_MS, NOW);
        out.issued("b".into(), NOW + TTL_MS, NOW);
        assert_eq!(out.redeem("a", NOW + 1), Ok(()));
        assert_eq!(out.redeem("a", NOW + 2), Err(TicketError::Used), "a second upgrade");
        assert_eq!(out.redeem("never", NOW + 2), Err(TicketError::Used), "not issued here (a restart)");
        assert_eq!(out.redeem("b", NOW + TTL_MS), Err(TicketError::Used), "past its time");
        out.issued("c".into(), NOW + 2 * TTL_MS, NOW + TTL_MS);
        assert_eq!(out.len(), 1, "the expired one is gone");
    }

    #[test]
    fn outstanding_tickets_are_bounded_and_expire() {
        let mut out = Outstanding::default();
        for i in 0..MAX_OUTSTANDING + 3 {
            out.issued(format!("n{i}"), NOW + TTL_MS, NOW);
        }
        assert_eq!(out.len(), MAX_OUTSTANDING);
        assert_eq!(out.redeem("n0", NOW), Err(TicketError::Used), "the oldest made room");
        assert_eq!(out.redeem(&format!("n{}", MAX_OUTSTANDING + 2), NOW), Ok(()));
        out.issued("late".into(), NOW + 2 * TTL_MS, NOW + TTL_MS);
        assert_eq!(out.len(), 1, "the expired ones are gone");
    }
}
