//! The hop between a user's object and another's: what a delivery request
//! says and what its status code answers.
//!
//! A delivery is `POST /deliver?<params>` with the message body as the
//! request body. The answer is an empty response whose status carries the
//! result and an `x-seq` header with the entry's place in the recipient's log,
//! so the sender never reads a response body (reading one goes through a
//! stream reader and costs more than the rest of the hop).

use crate::message::{is_id, Kind};
use crate::user::UserId;

/// What a hop did, as its status code carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored, and written to an open socket (`pushed`) or queued for the
    /// recipient's next connection.
    Stored { pushed: bool },
    /// Stored nothing: the recipient's offline queue is at `QUEUE_MAX`.
    Full,
    /// Stored nothing: the request was malformed.
    Bad,
    /// Stored nothing, or the answer was lost: sending again is safe.
    Unavailable,
}

impl Outcome {
    pub fn status(self) -> u16 {
        match self {
            Outcome::Stored { pushed: true } => 200,
            Outcome::Stored { pushed: false } => 202,
            Outcome::Bad => 400,
            Outcome::Unavailable => 503,
            Outcome::Full => 507,
        }
    }

    /// Any code this module does not send (a runtime error, say) is `Unavailable`.
    pub fn from_status(code: u16) -> Outcome {
        match code {
            200 => Outcome::Stored { pushed: true },
            202 => Outcome::Stored { pushed: false },
            400 => Outcome::Bad,
            507 => Outcome::Full,
            _ => Outcome::Unavailable,
        }
    }
}

pub const SEQ_HEADER: &str = "x-seq";
/// Present (`1`) when a delivery was a retry of one already stored.
pub const DUP_HEADER: &str = "x-dup";

/// A message on its way into `owner`'s log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub owner: UserId,
    pub kind: Kind,
    pub id: String,
    pub time_ms: u64,
    /// The other party of a chat.
    pub peer: Option<UserId>,
    /// The id is derived from an idempotency key: store it at most once.
    pub dedup: bool,
}

impl Delivery {
    /// Query string for the hop. Ids and user ids are URL-safe by construction.
    pub fn to_query(&self) -> String {
        let mut q = format!("owner={}&kind={}&id={}&time={}", self.owner, self.kind.code(), self.id, self.time_ms);
        if let Some(p) = &self.peer {
            q.push_str("&peer=");
            q.push_str(p.as_str());
        }
        if self.dedup {
            q.push_str("&dedup=1");
        }
        q
    }

    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Delivery> {
        let (mut owner, mut kind, mut id, mut time, mut peer, mut dedup) = (None, None, None, None, None, false);
        for (k, v) in pairs {
            match k {
                "owner" => owner = UserId::parse(v).ok(),
                "kind" => kind = v.parse().ok().and_then(Kind::from_code),
                "id" => id = is_id(v).then(|| v.to_owned()),
                "time" => time = v.parse().ok(),
                "peer" => peer = Some(UserId::parse(v).ok()?),
                "dedup" => dedup = v == "1",
                _ => {}
            }
        }
        Some(Delivery { owner: owner?, kind: kind?, id: id?, time_ms: time?, peer, dedup })
    }
}

/// A receipt on its way to the object of the user whose messages it is
/// about: `from` received or read `owner`'s messages up to `up_to`, a seq of
/// `from`'s log (the owner's object maps it to its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub owner: UserId,
    pub from: UserId,
    pub read: bool,
    pub up_to: u64,
}

impl Receipt {
    pub fn to_query(&self) -> String {
        format!(
            "owner={}&from={}&type={}&up_to={}",
            self.owner,
            self.from,
            if self.read { "read" } else { "delivered" },
            self.up_to
        )
    }

    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Receipt> {
        let (mut owner, mut from, mut read, mut up_to) = (None, None, None, None);
        for (k, v) in pairs {
            match k {
                "owner" => owner = UserId::parse(v).ok(),
                "from" => from = UserId::parse(v).ok(),
                "type" => {
                    read = match v {
                        "read" => Some(true),
                        "delivered" => Some(false),
                        _ => None,
                    }
                }
                "up_to" => up_to = v.parse().ok(),
                _ => {}
            }
        }
        Some(Receipt { owner: owner?, from: from?, read: read?, up_to: up_to? })
    }
}

/// A typing indicator on its way to `owner`'s live sockets; never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Typing {
    pub owner: UserId,
    pub from: UserId,
    pub active: bool,
}

impl Typing {
    pub fn to_query(&self) -> String {
        format!("owner={}&from={}&active={}", self.owner, self.from, self.active as u8)
    }

    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Typing> {
        let (mut owner, mut from, mut active) = (None, None, None);
        for (k, v) in pairs {
            match k {
                "owner" => owner = UserId::parse(v).ok(),
                "from" => from = UserId::parse(v).ok(),
                "active" => active = Some(v == "1"),
                _ => {}
            }
        }
        Some(Typing { owner: owner?, from: from?, active: active? })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_outcome_survives_its_status_code() {
        for o in [
            Outcome::Stored { pushed: true },
            Outcome::Stored { pushed: false },
            Outcome::Full,
            Outcome::Bad,
            Outcome::Unavailable,
        ] {
            assert_eq!(Outcome::from_status(o.status()), o);
        }
        assert_eq!(Outcome::from_status(500), Outcome::Unavailable);
    }

    use super::*;

    #[test]
    fn round_trip() {
        let d = Delivery {
            owner: UserId::parse("bob@x.y").unwrap(),
            kind: Kind::Received,
            id: crate::message::new_id(5, 6),
            time_ms: 5,
            peer: Some(UserId::parse("1").unwrap()),
            dedup: true,
        };
        let pairs = |q: &str| {
            q.split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect::<Vec<_>>()
        };
        let q = pairs(&d.to_query());
        assert_eq!(Delivery::from_query(q.iter().map(|(a, b)| (a.as_str(), b.as_str()))), Some(d));
        let r = Receipt { owner: UserId::parse("a").unwrap(), from: UserId::parse("b").unwrap(), read: true, up_to: 9 };
        let q = pairs(&r.to_query());
        assert_eq!(Receipt::from_query(q.iter().map(|(a, b)| (a.as_str(), b.as_str()))), Some(r));
        let t = Typing { owner: UserId::parse("a").unwrap(), from: UserId::parse("b").unwrap(), active: false };
        let q = pairs(&t.to_query());
        assert_eq!(Typing::from_query(q.iter().map(|(a, b)| (a.as_str(), b.as_str()))), Some(t));
    }

    #[test]
    fn refuses_incomplete_or_bad_params() {
        let parse = |q: &str| Delivery::from_query(q.split('&').filter_map(|p| p.split_once('=')));
        assert_eq!(parse("owner=1&kind=1&time=5"), None);
        assert_eq!(parse("owner=1&kind=9&id=000000000005000000000000000a&time=5"), None);
        assert_eq!(parse("owner=1&kind=1&id=../../x&time=5"), None);
        assert_eq!(parse("owner=1&kind=1&id=000000000005000000000000000a&time=5&peer=a b"), None);
    }
}
