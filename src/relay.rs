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

/// Stored and written to an open socket.
pub const STATUS_PUSHED: u16 = 200;
/// Stored and queued for the recipient's next connection.
pub const STATUS_QUEUED: u16 = 202;
/// Stored nothing: the request was malformed.
pub const STATUS_BAD: u16 = 400;

pub const SEQ_HEADER: &str = "x-seq";

/// A message on its way into `owner`'s log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub owner: UserId,
    pub kind: Kind,
    pub id: String,
    pub time_ms: u64,
    /// The other party of a chat.
    pub peer: Option<UserId>,
}

impl Delivery {
    /// Query string for the hop. Ids and user ids are URL-safe by construction.
    pub fn to_query(&self) -> String {
        let mut q = format!("owner={}&kind={}&id={}&time={}", self.owner, self.kind.code(), self.id, self.time_ms);
        if let Some(p) = &self.peer {
            q.push_str("&peer=");
            q.push_str(p.as_str());
        }
        q
    }

    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Delivery> {
        let (mut owner, mut kind, mut id, mut time, mut peer) = (None, None, None, None, None);
        for (k, v) in pairs {
            match k {
                "owner" => owner = UserId::parse(v).ok(),
                "kind" => kind = v.parse().ok().and_then(Kind::from_code),
                "id" => id = is_id(v).then(|| v.to_owned()),
                "time" => time = v.parse().ok(),
                "peer" => peer = Some(UserId::parse(v).ok()?),
                _ => {}
            }
        }
        Some(Delivery { owner: owner?, kind: kind?, id: id?, time_ms: time?, peer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = Delivery {
            owner: UserId::parse("bob@x.y").unwrap(),
            kind: Kind::Received,
            id: crate::message::new_id(5, 6),
            time_ms: 5,
            peer: Some(UserId::parse("1").unwrap()),
        };
        let q = d.to_query();
        let back = Delivery::from_query(q.split('&').filter_map(|p| p.split_once('=')));
        assert_eq!(back, Some(d));
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
