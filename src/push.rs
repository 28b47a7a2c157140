//! The push webhook (sans-IO): which stored messages nobody received, when
//! to tell the app's backend, what the call carries, how it is signed, and
//! when a failed call is tried again.
//!
//! The outbox is the user's log itself: every entry past the push cursor
//! that is owed to the user is a candidate, and [`plan`] decides which are
//! due. One call at a time per user sits in the object's SQLite (the slot,
//! `Log::push_state`), so a call survives eviction with its id, and the
//! cursor moves only with it: nothing is lost, and nothing is pushed twice
//! once the backend answered 2xx.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::limits::LimitError;

/// The operator's push settings; absent without `PUSH_WEBHOOK_URL` and
/// `PUSH_WEBHOOK_SECRET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushConfig {
    /// How long a v1 device that received an entry has to ack it (`PUSH_DELAY_S`).
    pub delay_ms: u64,
    /// How long a call is retried before it is dropped (`PUSH_TTL_S`).
    pub ttl_ms: u64,
    /// Characters of the message text a push carries (`PUSH_PREVIEW_CHARS`; 0: none).
    pub preview_chars: usize,
}

impl PushConfig {
    /// The settings from the vars (`None` when `PUSH_WEBHOOK_URL` is unset
    /// or empty). A var set to something invalid is an error naming it.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<PushConfig>, LimitError> {
        let Some(url) = var("PUSH_WEBHOOK_URL").filter(|u| !u.trim().is_empty()) else { return Ok(None) };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(LimitError { var: "PUSH_WEBHOOK_URL", min: 0, max: 0 });
        }
        let num = |name: &'static str, default: u64, min: u64, max: u64| match var(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(LimitError { var: name, min, max }),
            },
        };
        Ok(Some(PushConfig {
            delay_ms: num("PUSH_DELAY_S", 30, 0, 3600)? * 1000,
            ttl_ms: num("PUSH_TTL_S", 24 * 3600, 1, 7 * 24 * 3600)? * 1000,
            preview_chars: num("PUSH_PREVIEW_CHARS", 0, 0, 1000)? as usize,
        }))
    }
}

/// Candidates read per plan: a longer backlog is pushed in several calls.
pub const CANDIDATES: u32 = 500;
/// The first retry waits about this long, doubling per attempt up to [`RETRY_MAX_MS`].
pub const RETRY_FIRST_MS: u64 = 1000;
pub const RETRY_MAX_MS: u64 = 10 * 60 * 1000;

/// An entry past the push cursor that is owed to the user and that no
/// legacy socket took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub seq: u64,
    /// The sender of a chat, or the group of a group's message (its id);
    /// `None` for a system message.
    pub peer: Option<String>,
    pub mid: String,
    pub time: u64,
    /// A v1 socket took it when it was stored: its device has the delay to ack.
    pub live: bool,
    pub body: String,
}

/// One conversation of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub peer: Option<String>,
    /// Entries of it in this push.
    pub count: u64,
    /// Its newest entry in this push.
    pub newest: Candidate,
}

/// What [`plan`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The cursor after this plan: every candidate up to it is pushed here
    /// or needs no push.
    pub upto: Option<u64>,
    /// The conversations to push now (none: no call).
    pub waiting: Vec<Waiting>,
    /// When the next candidate falls due.
    pub next_due: Option<u64>,
}

/// Decides a push over `cands` (in seq order, read past their
/// conversation's read cursor already) at `now`. A candidate needs none
/// once a device acked it (`acked`), or when its sender was muted when it
/// arrived (`muted(peer, time)`): a mute that ends later does not bring it
/// back. When any
/// candidate is due (no socket took it, or `delay_ms` passed without an
/// ack), one push carries every candidate that still needs one, due or
/// not: a user who did not see one message did not see the next either,
/// and hears of everything waiting in one call.
pub fn plan(cands: &[Candidate], now: u64, cfg: &PushConfig, acked: u64, muted: impl Fn(&str, u64) -> bool) -> Plan {
    let due = |c: &Candidate| c.time.saturating_add(if c.live { cfg.delay_ms } else { 0 });
    let needs: Vec<&Candidate> = cands
        .iter()
        .filter(|c| c.seq > acked)
        .filter(|c| !c.peer.as_deref().is_some_and(|p| muted(p, c.time)))
        .collect();
    if !needs.iter().any(|c| due(c) <= now) {
        // Nothing due: the cursor stops before the first that waits for its time.
        let upto = match needs.first() {
            Some(first) => Some(first.seq - 1),
            None => cands.last().map(|c| c.seq),
        };
        return Plan { upto, waiting: Vec::new(), next_due: needs.iter().map(|c| due(c)).min() };
    }
    let mut waiting: Vec<Waiting> = Vec::new();
    for c in &needs {
        match waiting.iter_mut().find(|w| w.peer == c.peer) {
            Some(w) => {
                w.count += 1;
                w.newest = (*c).clone();
            }
            None => waiting.push(Waiting { peer: c.peer.clone(), count: 1, newest: (*c).clone() }),
        }
    }
    Plan { upto: cands.last().map(|c| c.seq), waiting, next_due: None }
}

/// The id of the call that pushes `owner`'s log up to `upto`: stable across
/// retries and restarts, so the backend can drop a repeat.
pub fn webhook_id(owner: &str, upto: u64) -> String {
    crate::message::derived_id("push", owner, &upto.to_string())
}

/// The body of a `message` push: per conversation the count waiting and the
/// newest message (its text only with `preview_chars` > 0, cut there), and
/// the user's total unread.
pub fn message_body(id: &str, user: &str, waiting: &[Waiting], unread: u64, preview_chars: usize) -> String {
    let convs: Vec<Value> = waiting
        .iter()
        .map(|w| {
            let n = &w.newest;
            let mut newest = json!({ "seq": n.seq, "mid": n.mid, "time": n.time });
            if preview_chars > 0 {
                let text = serde_json::from_str::<Value>(&n.body).ok().and_then(|b| {
                    b.get("message").and_then(Value::as_str).map(|m| m.chars().take(preview_chars).collect::<String>())
                });
                newest["preview"] = text.map_or(Value::Null, Value::from);
            }
            json!({ "peer": w.peer, "system": w.peer.is_none(), "waiting": w.count, "newest": newest })
        })
        .collect();
    json!({ "type": "message", "id": id, "user": user, "unread": unread, "conversations": convs }).to_string()
}

/// The body of a silent `read` push: `peer`'s conversation was read on a
/// device, so the app can clear its notification and badge.
pub fn read_body(id: &str, user: &str, peer: &str, conv_unread: u64, unread: u64) -> String {
    json!({ "type": "read", "id": id, "user": user, "unread": unread,
            "conversations": [{ "peer": peer, "unread": conv_unread }] })
    .to_string()
}

/// `X-Signature`: `t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &[u8], t: u64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return String::new() };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// What happened to one call: the status, or `None` for a network error.
/// Returns when to try again (ms from now), or `None`: done (2xx) or
/// dropped (another 4xx, or past the TTL).
pub fn retry_after(status: Option<u16>, attempt: u32, first_at: u64, now: u64, ttl_ms: u64, jitter: f64) -> Retry {
    match status {
        Some(200..=299) => return Retry::Done,
        Some(408 | 429) | Some(500..=599) | None => {}
        Some(_) => return Retry::Drop,
    }
    let base = RETRY_FIRST_MS.saturating_mul(1 << attempt.min(20)).min(RETRY_MAX_MS);
    // Half fixed, half random: retries of many users spread out.
    let wait = base / 2 + (base as f64 / 2.0 * jitter.clamp(0.0, 1.0)) as u64;
    if now.saturating_add(wait) > first_at.saturating_add(ttl_ms) {
        return Retry::Drop;
    }
    Retry::After(wait)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    Done,
    After(u64),
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: PushConfig = PushConfig { delay_ms: 30_000, ttl_ms: 3_600_000, preview_chars: 0 };

    fn cand(seq: u64, peer: &str, time: u64, live: bool) -> Candidate {
        let peer = (!peer.is_empty()).then(|| peer.to_string());
        Candidate {
            seq,
            peer,
            mid: format!("m{seq}"),
            time,
            live,
            body: format!(r#"{{"message":"hello number {seq}"}}"#),
        }
    }

    fn plan_at(cands: &[Candidate], now: u64, acked: u64) -> Plan {
        plan(cands, now, &CFG, acked, |p, time| p == "muted" || (p == "until10" && time < 10))
    }

    #[test]
    fn settings_come_from_the_vars_and_a_bad_one_is_named() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(PushConfig::from_vars(vars(&[])), Ok(None), "no URL, no push");
        let c = PushConfig::from_vars(vars(&[("PUSH_WEBHOOK_URL", "https://x/y"), ("PUSH_DELAY_S", "2")])).unwrap();
        assert_eq!(c, Some(PushConfig { delay_ms: 2000, ttl_ms: 86_400_000, preview_chars: 0 }));
        let bad = PushConfig::from_vars(vars(&[("PUSH_WEBHOOK_URL", "https://x"), ("PUSH_TTL_S", "0")]));
        assert_eq!(bad.unwrap_err().var, "PUSH_TTL_S");
        assert_eq!(
            PushConfig::from_vars(vars(&[("PUSH_WEBHOOK_URL", "ftp://x")])).unwrap_err().var,
            "PUSH_WEBHOOK_URL"
        );
    }

    #[test]
    fn an_entry_no_socket_took_is_due_at_once_one_a_device_took_after_the_delay() {
        let offline = [cand(1, "a", 100, false)];
        let p = plan_at(&offline, 100, 0);
        assert_eq!((p.upto, p.waiting.len(), p.next_due), (Some(1), 1, None));
        let online = [cand(1, "a", 100, true)];
        let p = plan_at(&online, 100, 0);
        assert_eq!((p.upto, p.waiting.len(), p.next_due), (Some(0), 0, Some(30_100)));
        assert_eq!(plan_at(&online, 30_100, 0).waiting.len(), 1, "not acked within the delay");
        let acked = plan_at(&online, 30_100, 1);
        assert_eq!((acked.upto, acked.waiting.len()), (Some(1), 0), "an ack cancels it");
    }

    #[test]
    fn a_burst_is_one_push_per_conversation_with_counts_and_the_newest() {
        let c = [cand(1, "a", 1, false), cand(2, "b", 2, false), cand(3, "a", 3, false), cand(4, "", 4, false)];
        let p = plan_at(&c, 10, 0);
        let got: Vec<_> = p.waiting.iter().map(|w| (w.peer.as_deref(), w.count, w.newest.seq)).collect();
        assert_eq!(got, [(Some("a"), 2, 3), (Some("b"), 1, 2), (None, 1, 4)]);
        assert_eq!(p.upto, Some(4));
    }

    #[test]
    fn muted_conversations_push_nothing_and_the_cursor_passes_them() {
        let c = [cand(1, "muted", 1, false), cand(2, "muted", 2, true)];
        let p = plan_at(&c, 10, 0);
        assert_eq!((p.upto, p.waiting.len(), p.next_due), (Some(2), 0, None));
        // What came while a mute lasted stays quiet after it ended.
        let c = [cand(1, "until10", 5, false), cand(2, "until10", 12, false)];
        let p = plan_at(&c, 20, 0);
        assert_eq!(p.waiting.iter().map(|w| (w.count, w.newest.seq)).collect::<Vec<_>>(), [(1, 2)]);
    }

    #[test]
    fn a_due_entry_carries_every_waiting_one_and_the_cursor_waits_until_one_is_due() {
        // 1 reached a device at 0 (due 30 s later); 2 found no socket at 10 s;
        // 3 reached a device again at 20 s.
        let c = [cand(1, "a", 0, true), cand(2, "b", 10_000, false), cand(3, "a", 20_000, true)];
        let before = plan_at(&c, 9_999, 0);
        assert_eq!((before.upto, before.waiting.len(), before.next_due), (Some(0), 0, Some(10_000)));
        let p = plan_at(&c, 10_000, 0);
        let got: Vec<_> = p.waiting.iter().map(|w| (w.peer.as_deref(), w.count, w.newest.seq)).collect();
        assert_eq!(got, [(Some("a"), 2, 3), (Some("b"), 1, 2)], "2 is due and carries 1 and 3");
        assert_eq!((p.upto, p.next_due), (Some(3), None));
        // Acked up to 2: 3 alone waits for its own time.
        let p = plan_at(&c, 10_000, 2);
        assert_eq!((p.upto, p.waiting.len(), p.next_due), (Some(2), 0, Some(50_000)));
    }

    #[test]
    fn bodies_carry_no_text_unless_asked_and_then_trimmed() {
        let w = Waiting { peer: Some("a".into()), count: 2, newest: cand(7, "a", 5, false) };
        let plain: Value = serde_json::from_str(&message_body("id1", "u", std::slice::from_ref(&w), 3, 0)).unwrap();
        assert_eq!(plain["conversations"][0]["newest"], json!({ "seq": 7, "mid": "m7", "time": 5 }));
        assert_eq!((plain["unread"].as_u64(), plain["type"].as_str()), (Some(3), Some("message")));
        assert!(!plain.to_string().contains("hello"));
        let short: Value = serde_json::from_str(&message_body("id1", "u", &[w], 3, 8)).unwrap();
        assert_eq!(short["conversations"][0]["newest"]["preview"], "hello nu");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn retries_back_off_within_the_ttl_and_only_for_transient_failures() {
        assert_eq!(retry_after(Some(204), 0, 0, 0, 60_000, 0.5), Retry::Done);
        assert_eq!(retry_after(Some(400), 0, 0, 0, 60_000, 0.5), Retry::Drop);
        assert_eq!(retry_after(Some(410), 0, 0, 0, 60_000, 0.5), Retry::Drop);
        for s in [Some(408), Some(429), Some(500), Some(503), None] {
            assert!(matches!(retry_after(s, 0, 0, 0, 60_000, 0.5), Retry::After(_)), "{s:?}");
        }
        let waits: Vec<_> = (0..4).map(|a| retry_after(None, a, 0, 0, u64::MAX / 2, 0.0)).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000].map(Retry::After));
        assert_eq!(retry_after(None, 30, 0, 0, u64::MAX / 2, 1.0), Retry::After(RETRY_MAX_MS));
        assert_eq!(retry_after(Some(503), 3, 0, 59_000, 60_000, 0.0), Retry::Drop, "past the TTL");
    }
}
