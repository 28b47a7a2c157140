//! What the Worker entry and the user objects ask of each other, and what
//! they answer: one [`Internal`] request type with its [`Internal::encode`]
//! and [`Internal::parse`], and one [`Answer`] for the hops.
//!
//! Nothing else writes an internal URL or reads one. A request travels as a
//! URL (`https://user/<route>?<params>`); a `Deliver` or `Send` carries the
//! message as its body. A hop's [`Answer`] is an empty response whose status
//! is the [`Outcome`], with the entry's seq in `x-seq` (and `x-dup` for a
//! retry already stored), so the sender never reads a response body (reading
//! one goes through a stream reader and costs more than the rest of the hop).

use std::fmt;

use crate::blocks::Change;
use crate::consent::GroupAdds;
use crate::group::GroupId;
use crate::history::PageQuery;
use crate::message::{is_id, Kind};
use crate::presence::Presence;
use crate::query;
use crate::user::UserId;

/// Every request between the entry and the objects (and between objects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Internal {
    /// A WebSocket upgrade for `uid`, verified by the entry: legacy, or v1
    /// with its device.
    /// `exp`: the token's expiry (s since the epoch); the socket closes then.
    /// `ticket`: the nonce of the socket ticket it came with, to be used up.
    Connect { uid: UserId, exp: u64, v1: Option<V1Connect>, ticket: Option<String> },
    /// `POST /v1/ws-ticket`: a socket ticket for `uid`, whose token expires
    /// at `exp` (see [`crate::ticket`]); its object issues it and allows its
    /// one use.
    Ticket { uid: UserId, exp: u64 },
    /// Store a message in `owner`'s log (the body is the message).
    Deliver(Delivery),
    /// The backend sends a chat on `uid`'s behalf (the body is the chat).
    Send(ApiSend),
    /// A peer received or read the owner's messages.
    Receipt(Receipt),
    /// A peer started or stopped typing; never stored.
    Typing(Typing),
    /// A read of `uid`'s history, validated by the entry.
    Read { uid: UserId, view: View, page: PageQuery },
    /// A read of, or a change to, `uid`'s block and mute lists.
    Blocks { uid: UserId, op: BlockOp },
    /// `from` asks for `owner`'s presence, and watches it for `ttl_ms` (0:
    /// asks only). Answered with the presence as `from` may see it.
    Watch(Watch),
    /// A watched user's presence changed: shown on `owner`'s v1 sockets.
    Presence(PresenceNotice),
    /// A read of `uid`'s settings, or a change (`hide_presence`, `group_adds`).
    Settings { uid: UserId, hide_presence: Option<bool>, group_adds: Option<GroupAdds> },
    /// The backend edits or deletes a chat of `uid`'s (the body is the new
    /// fields of an edit; empty for a delete).
    Edit(ApiEdit),
    /// A group's object delivers its entries to `owner`'s log (the body is
    /// the delivery, [`crate::group::calls::encode_delivery`]).
    GroupDeliver { owner: UserId },
    /// A frame for `owner`'s live v1 sockets (a group's typing or read
    /// counts): shown if a socket is open, never stored (the body is the frame).
    Relay { owner: UserId },
    /// `owner` read `group` up to `up_to` (HTTP): their object keeps its
    /// own cursor of it (the unread count) and tells the group's object.
    GroupRead { owner: UserId, group: GroupId, up_to: u64 },
    /// A group request of `owner`'s (HTTP: a send, a history page) that
    /// their object admits within their rates before it passes it on to
    /// the group's object (the body is the [`crate::group::calls::Request`]).
    GroupCall { owner: UserId },
    /// A group's object asks whether `owner` accepts being put in a group
    /// by `by` ([`crate::consent::may_add`]): answered `Done` for yes,
    /// `Conflict` for no.
    MayAdd { owner: UserId, by: UserId },
    /// An inbox shard hands `owner`'s object the deliveries it gathered
    /// (the body is the batch, [`crate::fanin::encode_batch`]); answered
    /// with one answer per delivery ([`crate::fanin::answers_header`]).
    InboxBatch { owner: UserId },
}

/// See [`Internal::Watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub owner: UserId,
    pub from: UserId,
    pub ttl_ms: u64,
}

/// See [`Internal::Presence`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceNotice {
    pub owner: UserId,
    pub user: UserId,
    pub presence: Presence,
}

/// A backend edit or delete (for everyone) of `uid`'s chat `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiEdit {
    pub uid: UserId,
    pub target: String,
    /// The op's own id.
    pub id: String,
    /// Derived from the call's idempotency key: a retry stores nothing new.
    pub cmid: Option<String>,
    pub delete: bool,
}

/// What a [`Internal::Blocks`] request does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockOp {
    /// Both lists (`GET /v1/blocks`).
    List,
    /// One peer of the block list, or of the mute list (`mute`).
    Get {
        peer: UserId,
        mute: bool,
    },
    Change(Change),
}

/// The device part of a v1 connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Connect {
    /// Valid as a user id is (1 to 64 of letters, digits, `_ - . @`).
    pub device: String,
    /// Replay entries after this seq (`None`: from the device's cursor).
    pub since: Option<u64>,
}

/// A backend call's chat, already given its id by the entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiSend {
    pub uid: UserId,
    pub id: String,
    pub time_ms: u64,
    /// Derived from the call's idempotency key: a retry stores nothing new.
    pub cmid: Option<String>,
}

/// Which shape of history a read answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// `GET /ws/history`: the legacy `{"sys":[…],"usr":[…]}`.
    Legacy,
    /// `GET /v1/history`: `msg` frames.
    V1,
    /// `GET /v1/conversations`.
    Conversations,
}

/// Why a URL is not an internal request: only our own code writes them, so
/// this is a bug (or a version skew during a deploy), never a client error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadInternal {
    Route,
    /// A parameter missing or not valid.
    Param(&'static str),
}

impl fmt::Display for BadInternal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadInternal::Route => f.write_str("bad internal request: no such route"),
            BadInternal::Param(p) => write!(f, "bad internal request: {p} missing or invalid"),
        }
    }
}

/// Every internal URL has this origin; the runtime routes by stub, not host.
const ORIGIN: &str = "https://user";

impl Internal {
    /// The user whose object serves the request.
    pub fn owner(&self) -> &UserId {
        match self {
            Internal::Connect { uid, .. }
            | Internal::Read { uid, .. }
            | Internal::Blocks { uid, .. }
            | Internal::Settings { uid, .. }
            | Internal::Ticket { uid, .. } => uid,
            Internal::Watch(w) => &w.owner,
            Internal::Presence(p) => &p.owner,
            Internal::Edit(e) => &e.uid,
            Internal::Send(s) => &s.uid,
            Internal::Deliver(d) => &d.owner,
            Internal::Receipt(r) => &r.owner,
            Internal::Typing(t) => &t.owner,
            Internal::GroupDeliver { owner }
            | Internal::Relay { owner }
            | Internal::GroupRead { owner, .. }
            | Internal::GroupCall { owner }
            | Internal::InboxBatch { owner } => owner,
            Internal::MayAdd { owner, .. } => owner,
        }
    }

    /// Whether the request carries a body (and so is a `POST`).
    pub fn has_body(&self) -> bool {
        matches!(
            self,
            Internal::Deliver(_)
                | Internal::Send(_)
                | Internal::Edit(_)
                | Internal::GroupDeliver { .. }
                | Internal::Relay { .. }
                | Internal::GroupCall { .. }
                | Internal::InboxBatch { .. }
        )
    }

    pub fn method(&self) -> &'static str {
        match self {
            // A change to the lists is a GET too: it carries no body, and the
            // entry forwards it with the cheapest call.
            Internal::Connect { .. }
            | Internal::Read { .. }
            | Internal::Blocks { .. }
            | Internal::Watch(_)
            | Internal::Settings { .. }
            | Internal::Ticket { .. } => "GET",
            Internal::MayAdd { .. } => "GET",
            _ => "POST",
        }
    }

    /// The request as a URL.
    pub fn encode(&self) -> String {
        let mut p: Vec<(&str, String)> = Vec::with_capacity(6);
        let route = match self {
            Internal::Connect { uid, exp, v1, ticket } => {
                p.push(("uid", uid.to_string()));
                p.push(("exp", exp.to_string()));
                if let Some(c) = v1 {
                    p.push(("device", c.device.clone()));
                    p.extend(c.since.map(|s| ("since", s.to_string())));
                }
                p.extend(ticket.as_ref().map(|t| ("ticket", t.clone())));
                "connect"
            }
            Internal::Ticket { uid, exp } => {
                p.push(("uid", uid.to_string()));
                p.push(("exp", exp.to_string()));
                "ticket"
            }
            Internal::Deliver(d) => {
                p.push(("owner", d.owner.to_string()));
                p.push(("kind", d.kind.code().to_string()));
                p.push(("id", d.id.clone()));
                p.push(("time", d.time_ms.to_string()));
                p.extend(d.peer.as_ref().map(|peer| ("peer", peer.to_string())));
                if d.dedup {
                    p.push(("dedup", "1".into()));
                }
                if d.backend {
                    p.push(("backend", "1".into()));
                }
                p.extend(d.key.as_ref().map(|k| ("key", k.clone())));
                "deliver"
            }
            Internal::Send(s) => {
                p.push(("uid", s.uid.to_string()));
                p.push(("id", s.id.clone()));
                p.push(("time", s.time_ms.to_string()));
                p.extend(s.cmid.as_ref().map(|c| ("cmid", c.clone())));
                "send"
            }
            Internal::Receipt(r) => {
                p.push(("owner", r.owner.to_string()));
                p.push(("from", r.from.to_string()));
                p.push(("type", if r.read { "read" } else { "delivered" }.into()));
                p.push(("up_to", r.up_to.to_string()));
                "receipt"
            }
            Internal::Typing(t) => {
                p.push(("owner", t.owner.to_string()));
                p.push(("from", t.from.to_string()));
                p.push(("active", (t.active as u8).to_string()));
                "typing"
            }
            Internal::Read { uid, view, page } => {
                p.push(("uid", uid.to_string()));
                p.push(("limit", page.limit.to_string()));
                p.extend(page.before.map(|b| ("before", b.to_string())));
                p.extend(page.after.map(|a| ("after", a.to_string())));
                p.extend(page.peer.as_ref().map(|peer| ("peer", peer.to_string())));
                match view {
                    View::Legacy => "history",
                    View::V1 => "v1-history",
                    View::Conversations => "conversations",
                }
            }
            Internal::Blocks { uid, op } => {
                p.push(("uid", uid.to_string()));
                let (name, peer, until) = match op {
                    BlockOp::List => ("list", None, None),
                    BlockOp::Get { peer, mute: false } => ("get-block", Some(peer), None),
                    BlockOp::Get { peer, mute: true } => ("get-mute", Some(peer), None),
                    BlockOp::Change(Change::Block(peer)) => ("block", Some(peer), None),
                    BlockOp::Change(Change::Unblock(peer)) => ("unblock", Some(peer), None),
                    BlockOp::Change(Change::Mute(peer, until)) => ("mute", Some(peer), *until),
                    BlockOp::Change(Change::Unmute(peer)) => ("unmute", Some(peer), None),
                };
                p.push(("op", name.into()));
                p.extend(peer.map(|peer| ("peer", peer.to_string())));
                p.extend(until.map(|u| ("until", u.to_string())));
                "blocks"
            }
            Internal::Watch(w) => {
                p.push(("owner", w.owner.to_string()));
                p.push(("from", w.from.to_string()));
                p.push(("ttl", w.ttl_ms.to_string()));
                "watch"
            }
            Internal::Presence(n) => {
                p.push(("owner", n.owner.to_string()));
                p.push(("user", n.user.to_string()));
                p.push(("online", (n.presence.online as u8).to_string()));
                p.extend(n.presence.last_seen.map(|t| ("last_seen", t.to_string())));
                "presence"
            }
            Internal::Settings { uid, hide_presence, group_adds } => {
                p.push(("uid", uid.to_string()));
                p.extend(hide_presence.map(|h| ("hide_presence", (h as u8).to_string())));
                p.extend(group_adds.map(|a| ("group_adds", a.as_str().to_owned())));
                "settings"
            }
            Internal::Edit(e) => {
                p.push(("uid", e.uid.to_string()));
                p.push(("target", e.target.clone()));
                p.push(("id", e.id.clone()));
                p.extend(e.cmid.as_ref().map(|c| ("cmid", c.clone())));
                if e.delete {
                    p.push(("delete", "1".into()));
                }
                "edit"
            }
            Internal::GroupDeliver { owner } => {
                p.push(("owner", owner.to_string()));
                "group-deliver"
            }
            Internal::Relay { owner } => {
                p.push(("owner", owner.to_string()));
                "relay"
            }
            Internal::GroupRead { owner, group, up_to } => {
                p.push(("owner", owner.to_string()));
                p.push(("group", group.to_string()));
                p.push(("up_to", up_to.to_string()));
                "group-read"
            }
            Internal::GroupCall { owner } => {
                p.push(("owner", owner.to_string()));
                "group-call"
            }
            Internal::MayAdd { owner, by } => {
                p.push(("owner", owner.to_string()));
                p.push(("by", by.to_string()));
                "may-add"
            }
            Internal::InboxBatch { owner } => {
                p.push(("owner", owner.to_string()));
                "inbox-batch"
            }
        };
        let q = query::encode(p.iter().map(|(k, v)| (*k, v.as_str())));
        format!("{ORIGIN}/{route}?{q}")
    }

    /// Reads a URL written by [`Internal::encode`]. Only the path and the
    /// query count: the runtime may rewrite the origin.
    pub fn parse(url: &str) -> Result<Internal, BadInternal> {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        let route = path.rsplit('/').next().unwrap_or_default();
        let pairs = query::parse(query::of_url(url).as_bytes());
        let get = |name: &'static str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let need = |name: &'static str| get(name).ok_or(BadInternal::Param(name));
        let user = |name: &'static str| need(name).and_then(|v| UserId::parse(v).map_err(|_| BadInternal::Param(name)));
        let opt_user =
            |name: &'static str| get(name).map(|v| UserId::parse(v).map_err(|_| BadInternal::Param(name))).transpose();
        let number =
            |name: &'static str| need(name).and_then(|v| v.parse::<u64>().map_err(|_| BadInternal::Param(name)));
        let opt_number =
            |name: &'static str| get(name).map(|v| v.parse::<u64>().map_err(|_| BadInternal::Param(name))).transpose();
        let msg_id = |name: &'static str| {
            need(name).and_then(|v| if is_id(v) { Ok(v.to_owned()) } else { Err(BadInternal::Param(name)) })
        };
        let flag = |name: &'static str| match get(name) {
            None | Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(_) => Err(BadInternal::Param(name)),
        };
        Ok(match route {
            "connect" => {
                let uid = user("uid")?;
                let v1 = match get("device") {
                    None => None,
                    Some(d) => {
                        UserId::parse(d).map_err(|_| BadInternal::Param("device"))?;
                        Some(V1Connect { device: d.to_owned(), since: opt_number("since")? })
                    }
                };
                Internal::Connect { uid, exp: number("exp")?, v1, ticket: get("ticket").map(str::to_owned) }
            }
            "ticket" => Internal::Ticket { uid: user("uid")?, exp: number("exp")? },
            "deliver" => Internal::Deliver(Delivery {
                owner: user("owner")?,
                kind: number("kind")
                    .ok()
                    .and_then(|k| i64::try_from(k).ok())
                    .and_then(Kind::from_code)
                    // Group entries arrive only through a group's delivery.
                    .filter(|k| *k != Kind::Group)
                    .ok_or(BadInternal::Param("kind"))?,
                id: msg_id("id")?,
                time_ms: number("time")?,
                peer: opt_user("peer")?,
                dedup: flag("dedup")?,
                backend: flag("backend")?,
                key: get("key").map(str::to_owned),
            }),
            "send" => Internal::Send(ApiSend {
                uid: user("uid")?,
                id: msg_id("id")?,
                time_ms: number("time")?,
                cmid: get("cmid").map(str::to_owned),
            }),
            "receipt" => Internal::Receipt(Receipt {
                owner: user("owner")?,
                from: user("from")?,
                read: match need("type")? {
                    "read" => true,
                    "delivered" => false,
                    _ => return Err(BadInternal::Param("type")),
                },
                up_to: number("up_to")?,
            }),
            "typing" => {
                Internal::Typing(Typing { owner: user("owner")?, from: user("from")?, active: flag("active")? })
            }
            "history" | "v1-history" | "conversations" => {
                let view = match route {
                    "history" => View::Legacy,
                    "v1-history" => View::V1,
                    _ => View::Conversations,
                };
                let uid = user("uid")?;
                need("limit")?;
                let page = PageQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(|bad| BadInternal::Param(bad.param))?;
                Internal::Read { uid, view, page }
            }
            "blocks" => {
                let uid = user("uid")?;
                let op = match need("op")? {
                    "list" => BlockOp::List,
                    "get-block" => BlockOp::Get { peer: user("peer")?, mute: false },
                    "get-mute" => BlockOp::Get { peer: user("peer")?, mute: true },
                    "block" => BlockOp::Change(Change::Block(user("peer")?)),
                    "unblock" => BlockOp::Change(Change::Unblock(user("peer")?)),
                    "mute" => BlockOp::Change(Change::Mute(user("peer")?, opt_number("until")?)),
                    "unmute" => BlockOp::Change(Change::Unmute(user("peer")?)),
                    _ => return Err(BadInternal::Param("op")),
                };
                Internal::Blocks { uid, op }
            }
            "watch" => Internal::Watch(Watch { owner: user("owner")?, from: user("from")?, ttl_ms: number("ttl")? }),
            "presence" => Internal::Presence(PresenceNotice {
                owner: user("owner")?,
                user: user("user")?,
                presence: Presence { online: flag("online")?, last_seen: opt_number("last_seen")? },
            }),
            "settings" => Internal::Settings {
                uid: user("uid")?,
                hide_presence: get("hide_presence").map(|_| flag("hide_presence")).transpose()?,
                group_adds: get("group_adds")
                    .map(|a| GroupAdds::parse(a).map_err(|_| BadInternal::Param("group_adds")))
                    .transpose()?,
            },
            "edit" => Internal::Edit(ApiEdit {
                uid: user("uid")?,
                target: msg_id("target")?,
                id: msg_id("id")?,
                cmid: get("cmid").map(str::to_owned),
                delete: flag("delete")?,
            }),
            "group-deliver" => Internal::GroupDeliver { owner: user("owner")? },
            "relay" => Internal::Relay { owner: user("owner")? },
            "group-call" => Internal::GroupCall { owner: user("owner")? },
            "inbox-batch" => Internal::InboxBatch { owner: user("owner")? },
            "group-read" => Internal::GroupRead {
                owner: user("owner")?,
                group: GroupId::parse(need("group")?).map_err(|_| BadInternal::Param("group"))?,
                up_to: number("up_to")?,
            },
            "may-add" => Internal::MayAdd { owner: user("owner")?, by: user("by")? },
            _ => return Err(BadInternal::Route),
        })
    }
}

/// A hand-off to the history writer of a shard (the body is the rows, a
/// JSON array in the `history::ROW` layout). Answered `Done` once D1
/// confirmed them, `Unavailable` if it did not (hand them in again), `Bad`
/// for rows that are not an array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archive {
    pub shard: u32,
    /// The partition the rows belong to (its first day).
    pub first_day: u64,
    /// A reader waits: write now rather than gather more.
    pub urgent: bool,
}

impl Archive {
    /// The name of the shard's writer object.
    pub fn writer(&self) -> String {
        format!("shard-{}", self.shard)
    }

    pub fn encode(&self) -> String {
        let urgent = (self.urgent as u8).to_string();
        let (shard, day) = (self.shard.to_string(), self.first_day.to_string());
        let q = query::encode([("shard", shard.as_str()), ("day", day.as_str()), ("urgent", urgent.as_str())]);
        format!("{ORIGIN}/archive?{q}")
    }

    pub fn parse(url: &str) -> Result<Archive, BadInternal> {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        if path.rsplit('/').next() != Some("archive") {
            return Err(BadInternal::Route);
        }
        let pairs = query::parse(query::of_url(url).as_bytes());
        let get = |name: &'static str| {
            pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).ok_or(BadInternal::Param(name))
        };
        Ok(Archive {
            shard: get("shard")?.parse().map_err(|_| BadInternal::Param("shard"))?,
            first_day: get("day")?.parse().map_err(|_| BadInternal::Param("day"))?,
            urgent: match get("urgent")? {
                "0" => false,
                "1" => true,
                _ => return Err(BadInternal::Param("urgent")),
            },
        })
    }
}

/// What a hop did, as its status code carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored, and written to an open socket (`pushed`) or queued for the
    /// recipient's next connection.
    Stored { pushed: bool },
    /// A notice (receipt, typing) was taken; nothing to store.
    Done,
    /// Stored nothing: the recipient's offline queue is at `QUEUE_MAX`.
    Full,
    /// Stored nothing: the request was malformed.
    Bad,
    /// Stored nothing: an edit or delete names no message of the user's.
    NotFound,
    /// Stored nothing: an edit or delete of a message already deleted.
    Conflict,
    /// Stored nothing: the backend's idempotency key came with another request.
    KeyReused,
    /// Stored nothing, or the answer was lost: sending again is safe.
    Unavailable,
}

impl Outcome {
    pub fn status(self) -> u16 {
        match self {
            Outcome::Stored { pushed: true } => 200,
            Outcome::Stored { pushed: false } => 202,
            Outcome::Done => 204,
            Outcome::Bad => 400,
            Outcome::NotFound => 404,
            Outcome::Conflict => 409,
            Outcome::KeyReused => 422,
            Outcome::Unavailable => 503,
            Outcome::Full => 507,
        }
    }

    /// Any code this module does not send (a runtime error, say) is `Unavailable`.
    pub fn from_status(code: u16) -> Outcome {
        match code {
            200 => Outcome::Stored { pushed: true },
            202 => Outcome::Stored { pushed: false },
            204 => Outcome::Done,
            400 => Outcome::Bad,
            404 => Outcome::NotFound,
            409 => Outcome::Conflict,
            422 => Outcome::KeyReused,
            507 => Outcome::Full,
            _ => Outcome::Unavailable,
        }
    }
}

/// What an object answers a hop with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    /// The entry's place in the recipient's log.
    pub seq: Option<u64>,
    /// The delivery was a retry of one already stored.
    pub duplicate: bool,
    /// The answer to a `watch`: the presence as the asker may see it.
    pub presence: Option<Presence>,
}

const SEQ_HEADER: &str = "x-seq";
const DUP_HEADER: &str = "x-dup";
const ONLINE_HEADER: &str = "x-online";
const LAST_SEEN_HEADER: &str = "x-last-seen";

impl Answer {
    pub fn of(outcome: Outcome) -> Answer {
        Answer { outcome, seq: None, duplicate: false, presence: None }
    }

    /// The answer to a `watch`.
    pub fn presence(p: Presence) -> Answer {
        Answer { presence: Some(p), ..Answer::of(Outcome::Done) }
    }

    pub fn status(&self) -> u16 {
        self.outcome.status()
    }

    /// The headers that carry the rest of the answer (none for most).
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, String)> {
        let seq = self.seq.map(|s| (SEQ_HEADER, s.to_string()));
        let dup = self.duplicate.then(|| (DUP_HEADER, "1".to_owned()));
        let online = self.presence.map(|p| (ONLINE_HEADER, (p.online as u8).to_string()));
        let seen = self.presence.and_then(|p| p.last_seen).map(|t| (LAST_SEEN_HEADER, t.to_string()));
        seq.into_iter().chain(dup).chain(online).chain(seen)
    }

    /// Reads an answer from a response's status and headers.
    pub fn read(status: u16, header: impl Fn(&str) -> Option<String>) -> Answer {
        Answer {
            outcome: Outcome::from_status(status),
            seq: header(SEQ_HEADER).and_then(|s| s.parse().ok()),
            duplicate: header(DUP_HEADER).as_deref() == Some("1"),
            presence: header(ONLINE_HEADER).map(|online| Presence {
                online: online == "1",
                last_seen: header(LAST_SEEN_HEADER).and_then(|t| t.parse().ok()),
            }),
        }
    }
}

/// A message on its way into `owner`'s log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub owner: UserId,
    pub kind: Kind,
    /// A message id ([`is_id`]).
    pub id: String,
    pub time_ms: u64,
    /// The other party of a chat.
    pub peer: Option<UserId>,
    /// The id is derived from an idempotency key: store it at most once.
    pub dedup: bool,
    /// Sent through the backend API: no block list holds it back.
    pub backend: bool,
    /// A backend system message's idempotency key, bound to its request
    /// ([`crate::idempotency`]): a retry is stored once, a reuse refused.
    pub key: Option<String>,
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

/// A typing indicator on its way to `owner`'s live sockets; never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Typing {
    pub owner: UserId,
    pub from: UserId,
    pub active: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_hand_offs_round_trip() {
        let a = Archive { shard: 3, first_day: 20_400, urgent: true };
        assert_eq!(Archive::parse(&a.encode()), Ok(a.clone()));
        assert_eq!(a.writer(), "shard-3");
        assert_eq!(Archive::parse("https://user/archive?shard=1&day=2&urgent=x"), Err(BadInternal::Param("urgent")));
        assert_eq!(Archive::parse("https://user/deliver?shard=1&day=2&urgent=0"), Err(BadInternal::Route));
        assert_eq!(Internal::parse(&a.encode()), Err(BadInternal::Route), "not a user object's request");
    }

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn every_kind() -> Vec<Internal> {
        let page = PageQuery { limit: 5, before: Some(9), after: None, peer: Some(uid("p@x")) };
        vec![
            Internal::Connect { uid: uid("1"), exp: 7, v1: None, ticket: None },
            Internal::Connect {
                uid: uid("a.b"),
                exp: 99,
                v1: Some(V1Connect { device: "phone".into(), since: Some(4) }),
                ticket: Some("0f".repeat(16)),
            },
            Internal::Ticket { uid: uid("t"), exp: 30 },
            Internal::Connect {
                uid: uid("a"),
                exp: 1,
                v1: Some(V1Connect { device: "d".into(), since: None }),
                ticket: None,
            },
            Internal::Deliver(Delivery {
                owner: uid("bob@x.y"),
                kind: Kind::Received,
                id: crate::message::new_id(5, 6),
                time_ms: 5,
                peer: Some(uid("1")),
                dedup: true,
                backend: true,
                key: Some("\u{1f}api:k#0\u{1e}f00".into()),
            }),
            Internal::Deliver(Delivery {
                owner: uid("b"),
                kind: Kind::System,
                id: crate::message::new_id(7, 8),
                time_ms: 0,
                peer: None,
                dedup: false,
                backend: false,
                key: None,
            }),
            Internal::Send(ApiSend {
                uid: uid("u"),
                id: crate::message::new_id(1, 2),
                time_ms: 3,
                cmid: Some("api:key with spaces&=#?".into()),
            }),
            Internal::Receipt(Receipt { owner: uid("a"), from: uid("b"), read: true, up_to: 9 }),
            Internal::Typing(Typing { owner: uid("a"), from: uid("b"), active: false }),
            Internal::Read { uid: uid("r"), view: View::Legacy, page: page.clone() },
            Internal::Read { uid: uid("r"), view: View::V1, page: PageQuery { after: Some(2), ..page.clone() } },
            Internal::Read {
                uid: uid("r"),
                view: View::Conversations,
                page: PageQuery { limit: 1, before: None, after: None, peer: None },
            },
            Internal::Blocks { uid: uid("o"), op: BlockOp::List },
            Internal::Blocks { uid: uid("o"), op: BlockOp::Get { peer: uid("p"), mute: true } },
            Internal::Blocks { uid: uid("o"), op: BlockOp::Get { peer: uid("p"), mute: false } },
            Internal::Blocks { uid: uid("o"), op: BlockOp::Change(Change::Block(uid("p"))) },
            Internal::Blocks { uid: uid("o"), op: BlockOp::Change(Change::Unblock(uid("p"))) },
            Internal::Blocks { uid: uid("o"), op: BlockOp::Change(Change::Mute(uid("p"), Some(12))) },
            Internal::Blocks { uid: uid("o"), op: BlockOp::Change(Change::Mute(uid("p"), None)) },
            Internal::Blocks { uid: uid("o"), op: BlockOp::Change(Change::Unmute(uid("p"))) },
            Internal::Watch(Watch { owner: uid("a"), from: uid("b"), ttl_ms: 60_000 }),
            Internal::Presence(PresenceNotice {
                owner: uid("a"),
                user: uid("b"),
                presence: Presence { online: false, last_seen: Some(120_000) },
            }),
            Internal::Presence(PresenceNotice { owner: uid("a"), user: uid("b"), presence: Presence::HIDDEN }),
            Internal::Settings { uid: uid("s"), hide_presence: None, group_adds: None },
            Internal::Settings { uid: uid("s"), hide_presence: Some(true), group_adds: Some(GroupAdds::Nobody) },
            Internal::MayAdd { owner: uid("b"), by: uid("m") },
            Internal::Edit(ApiEdit {
                uid: uid("e"),
                target: crate::message::new_id(1, 2),
                id: crate::message::new_id(3, 4),
                cmid: Some("api:k".into()),
                delete: true,
            }),
            Internal::GroupDeliver { owner: uid("g") },
            Internal::Relay { owner: uid("r") },
            Internal::GroupRead { owner: uid("r"), group: GroupId::parse("gteam").unwrap(), up_to: 4 },
            Internal::GroupCall { owner: uid("c") },
            Internal::InboxBatch { owner: uid("hot") },
        ]
    }

    #[test]
    fn every_request_survives_its_url() {
        for r in every_kind() {
            let url = r.encode();
            assert!(url.starts_with("https://user/"), "{url}");
            assert_eq!(Internal::parse(&url), Ok(r.clone()), "{url}");
            // The runtime may hand the object another origin.
            let elsewhere = url.replacen("https://user", "http://127.0.0.1:8787", 1);
            assert_eq!(Internal::parse(&elsewhere), Ok(r));
        }
    }

    #[test]
    fn refuses_bad_routes_and_params() {
        let id = crate::message::new_id(5, 6);
        assert_eq!(Internal::parse("https://user/nope?uid=1"), Err(BadInternal::Route));
        assert_eq!(Internal::parse("https://user/deliver?owner=1&kind=1&time=5"), Err(BadInternal::Param("id")));
        let kind9 = format!("https://user/deliver?owner=1&kind=9&id={id}&time=5");
        assert_eq!(Internal::parse(&kind9), Err(BadInternal::Param("kind")));
        assert_eq!(
            Internal::parse("https://user/deliver?owner=1&kind=1&id=../../x&time=5"),
            Err(BadInternal::Param("id"))
        );
        let bad_peer = format!("https://user/deliver?owner=1&kind=1&id={id}&time=5&peer=a+b");
        assert_eq!(Internal::parse(&bad_peer), Err(BadInternal::Param("peer")));
        assert_eq!(Internal::parse("https://user/connect?uid=1&device=d"), Err(BadInternal::Param("exp")));
        assert_eq!(Internal::parse("https://user/history?uid=1"), Err(BadInternal::Param("limit")));
        assert_eq!(Internal::parse("https://user/history?uid=1&limit=0"), Err(BadInternal::Param("limit")));
        assert_eq!(Internal::parse("https://user/typing?owner=1&from=2&active=yes"), Err(BadInternal::Param("active")));
    }

    #[test]
    fn every_answer_survives_its_response() {
        for outcome in [
            Outcome::Stored { pushed: true },
            Outcome::Stored { pushed: false },
            Outcome::Done,
            Outcome::Full,
            Outcome::Bad,
            Outcome::NotFound,
            Outcome::Conflict,
            Outcome::Unavailable,
        ] {
            let seen = Presence { online: false, last_seen: Some(60_000) };
            for (seq, duplicate, presence) in [
                (None, false, None),
                (Some(7), false, None),
                (Some(8), true, None),
                (None, false, Some(seen)),
                (None, false, Some(Presence { online: true, last_seen: None })),
            ] {
                let a = Answer { outcome, seq, duplicate, presence };
                let headers: Vec<_> = a.headers().collect();
                let read =
                    Answer::read(a.status(), |name| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()));
                assert_eq!(read, a);
            }
        }
        assert_eq!(Answer::read(500, |_| None), Answer::of(Outcome::Unavailable));
    }
}
