//! A user's group requests pass their own object first, where the user's
//! rates live: a group send draws from the one send bucket (`SEND_RATE`,
//! shared with their chats over every socket), a page of a group's history
//! from the read bucket (`READ_RATE`, shared with their history reads).
//! v1 `group` frames are there already; HTTP sends and group history pages
//! come through [`crate::internal::Internal::GroupCall`] (one hop more,
//! no row written: the buckets are in memory).

use serde_json::json;

use super::Mailbox;
use crate::group::calls::{Call, Request};
use crate::group::Actor;
use crate::message::Refusal;
use crate::user::UserId;

/// Which rate a group request is over, and when to try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupLimit {
    /// A send over `SEND_RATE`.
    Send { retry_after_ms: u64 },
    /// A history page over `READ_RATE`.
    Read { retry_after_ms: u64 },
}

impl GroupLimit {
    pub fn retry_after_ms(self) -> u64 {
        match self {
            GroupLimit::Send { retry_after_ms } | GroupLimit::Read { retry_after_ms } => retry_after_ms,
        }
    }

    /// The HTTP answer: 429 with when to retry; a send's in the group
    /// refusals' shape (with a `code`), a read's as every history read's.
    pub fn http(self) -> (u16, String) {
        let body = match self {
            GroupLimit::Send { retry_after_ms } => json!({
                "error": "too many sends (SEND_RATE); retry later",
                "code": "rate_limited",
                "retry_after_ms": retry_after_ms,
            }),
            GroupLimit::Read { retry_after_ms } => json!({
                "error": "too many history reads (READ_RATE); retry later",
                "retry_after_ms": retry_after_ms,
            }),
        };
        (429, body.to_string())
    }
}

/// Why a group request that came through the user's object goes no further.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRefused {
    /// Not a request of this user's (the entry writes them: a bug).
    Bad,
    Limit(GroupLimit),
}

impl GroupRefused {
    pub fn http(&self) -> (u16, String) {
        match self {
            GroupRefused::Bad => (400, json!({"error": "bad group request"}).to_string()),
            GroupRefused::Limit(l) => l.http(),
        }
    }
}

impl Mailbox {
    /// Whether a group request of the user's goes on to the group's object:
    /// a send takes a token of the send bucket, a history page one of the
    /// read bucket; other calls pass (typing is held to its rate by the
    /// group's object, which sees every path).
    pub fn admit_group(&mut self, now: u64, call: &Call) -> Result<(), GroupLimit> {
        match call {
            Call::Send { .. } => self.admit_send(now).map_err(|r| match r {
                Refusal::RateLimited { retry_after_ms } => GroupLimit::Send { retry_after_ms },
                _ => GroupLimit::Send { retry_after_ms: super::BUSY_RETRY_MS },
            }),
            Call::Page { .. } => self.admit_read(now).map_err(|retry_after_ms| GroupLimit::Read { retry_after_ms }),
            _ => Ok(()),
        }
    }

    /// An `Internal::GroupCall` for `owner` (the body is the request): the
    /// request to pass on to the group's object, if it is the owner's own
    /// and within their rates.
    pub fn group_call(&mut self, owner: &UserId, body: &str, now: u64) -> Result<Request, GroupRefused> {
        let request = Request::parse(body).map_err(|_| GroupRefused::Bad)?;
        if request.by != Actor::User(owner.clone()) {
            return Err(GroupRefused::Bad);
        }
        self.admit_group(now, &request.call).map_err(GroupRefused::Limit)?;
        Ok(request)
    }
}
