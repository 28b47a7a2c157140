//! The `chat.v1` wire mode: JSON frames with an `op`, requests carrying an
//! `id` that the reply echoes as `re`. The specification is
//! `docs/protocol.md`; this module is its parser and encoder.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use super::RequestId;
use crate::blocks::{Blocks, Change, FOREVER};
pub use crate::consent::GroupAdds;
use crate::history::PageRow;
use crate::log::Conversation;
use crate::message::{is_id, Kind, Refusal};
pub use crate::presence::Presence;
use crate::user::UserId;

/// A v1 client frame.
#[derive(Debug, PartialEq)]
pub enum V1Frame {
    Heartbeat,
    /// A chat with a client message id that makes retries idempotent.
    Send {
        id: RequestId,
        to: UserId,
        cmid: String,
        body: Map<String, Value>,
    },
    /// This device processed the log up to `up_to`.
    Ack {
        up_to: u64,
    },
    /// The user read the conversation with `peer` up to `up_to`.
    Read {
        id: RequestId,
        peer: UserId,
        up_to: u64,
    },
    /// A page of the user's log from D1.
    History {
        id: RequestId,
        peer: Option<UserId>,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    },
    /// Typing started or stopped; never stored.
    Typing {
        to: UserId,
        active: bool,
    },
    /// `block`, `unblock`, `mute`, `unmute`: a change to the user's lists.
    Blocks {
        id: RequestId,
        change: Change,
    },
    /// `edit` or `delete` of the message `mid` (see [`crate::edits`]).
    Edit {
        id: RequestId,
        mid: String,
        cmid: String,
        op: crate::edits::EditOp,
    },
    /// Presence of `peer` now, and its changes for a while.
    Watch {
        id: RequestId,
        peer: UserId,
    },
    /// A change to the user's settings.
    Settings {
        id: RequestId,
        change: SettingsChange,
    },
    /// A request to a group's object (`call` says which: see
    /// [`crate::group::calls::from_frame`]); its fields as they came.
    Group {
        id: RequestId,
        fields: Map<String, Value>,
    },
}

/// The WebSocket subprotocol that selects this mode.
pub const SUBPROTOCOL: &str = "chat.v1";
/// How often a client should send `heartbeat` (the runtime answers it).
pub const HEARTBEAT_MS: u64 = 30_000;
/// Longest client message id accepted.
pub const MAX_CMID: usize = 64;

/// A refused v1 frame: the refusal and, when the frame had one, its id.
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub re: Option<RequestId>,
    pub error: V1Error,
}

/// Error codes of v1 replies (`docs/protocol.md` lists them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V1Error {
    TooLarge,
    BadFrame,
    UnknownOp,
    BadField(&'static str),
    Forbidden,
    Unavailable,
    RateLimited {
        retry_after_ms: u64,
    },
    RecipientFull,
    /// A send to someone the user blocked.
    Blocked,
    /// The block and mute lists are at `BLOCKS_MAX`.
    BlocksFull,
    /// An edit or delete of a message the log does not hold.
    NotFound,
    /// An edit or delete for everyone past `EDIT_WINDOW_S`.
    TooLate,
    /// An edit or delete of a message deleted for everyone.
    Deleted,
}

impl V1Error {
    pub fn code(self) -> &'static str {
        match self {
            V1Error::TooLarge => "too_large",
            V1Error::BadFrame => "bad_frame",
            V1Error::UnknownOp => "unknown_op",
            V1Error::BadField(_) => "bad_field",
            V1Error::Forbidden => "forbidden",
            V1Error::Unavailable => "unavailable",
            V1Error::RateLimited { .. } => "rate_limited",
            V1Error::RecipientFull => "recipient_full",
            V1Error::Blocked => "blocked",
            V1Error::BlocksFull => "blocks_full",
            V1Error::NotFound => "not_found",
            V1Error::TooLate => "too_late",
            V1Error::Deleted => "deleted",
        }
    }

    /// Whether sending the same frame again can succeed.
    pub fn retry(self) -> bool {
        matches!(self, V1Error::Unavailable | V1Error::RateLimited { .. })
    }

    fn message(self) -> String {
        match self {
            V1Error::TooLarge => "frame over the size limit (welcome limits.frame_bytes)".into(),
            V1Error::BadFrame => "not a JSON object with a string op".into(),
            V1Error::UnknownOp => "unknown op".into(),
            V1Error::BadField(f) => format!("missing or invalid field: {f}"),
            V1Error::Forbidden => "not allowed".into(),
            V1Error::Unavailable => "temporarily unavailable; nothing was stored, send again".into(),
            V1Error::RateLimited { retry_after_ms } => {
                format!("too many requests; nothing was done, send again in {retry_after_ms} ms")
            }
            V1Error::RecipientFull => "the recipient has too many undelivered messages; nothing was stored".into(),
            V1Error::Blocked => "you blocked this user; unblock them to send".into(),
            V1Error::BlocksFull => "too many blocked or muted peers (BLOCKS_MAX)".into(),
            V1Error::NotFound => "no such message in your log (unknown, or older than the log keeps)".into(),
            V1Error::TooLate => "past the edit window (EDIT_WINDOW_S); nothing changed".into(),
            V1Error::Deleted => "the message was deleted; nothing changed".into(),
        }
    }

    pub fn from_refusal(r: Refusal) -> V1Error {
        match r {
            Refusal::TooLarge => V1Error::TooLarge,
            Refusal::Format => V1Error::BadFrame,
            Refusal::BadFromUser => V1Error::BadField("from"),
            Refusal::BadToUser => V1Error::BadField("to"),
            Refusal::EmptyMessage => V1Error::BadField("body.message"),
            Refusal::NotYou => V1Error::Forbidden,
            Refusal::Unavailable => V1Error::Unavailable,
            Refusal::RateLimited { retry_after_ms } => V1Error::RateLimited { retry_after_ms },
            Refusal::RecipientFull => V1Error::RecipientFull,
            Refusal::Blocked => V1Error::Blocked,
        }
    }

    pub fn from_edit(r: crate::edits::EditRefusal) -> V1Error {
        use crate::edits::EditRefusal as E;
        match r {
            E::NotFound => V1Error::NotFound,
            E::NotYours => V1Error::Forbidden,
            E::TooLate => V1Error::TooLate,
            E::Deleted => V1Error::Deleted,
            E::Send(r) => V1Error::from_refusal(r),
        }
    }
}

/// Parses one v1 client text frame of at most `max_bytes` (`FRAME_MAX_BYTES`);
/// the size is checked before anything else.
pub fn parse(text: &str, max_bytes: usize) -> Result<V1Frame, Refused> {
    let refuse = |re: Option<RequestId>, error| Refused { re, error };
    if text.len() > max_bytes {
        return Err(refuse(None, V1Error::TooLarge));
    }
    if text == super::legacy::HEARTBEAT {
        return Ok(V1Frame::Heartbeat);
    }
    let Ok(Value::Object(mut f)) = serde_json::from_str::<Value>(text) else {
        return Err(refuse(None, V1Error::BadFrame));
    };
    let id = f.remove("id");
    let op = match f.get("op") {
        Some(Value::String(op)) => op.clone(),
        _ => return Err(refuse(id, V1Error::BadFrame)),
    };
    let bad = |field| refuse(id.clone(), V1Error::BadField(field));
    let uid = |f: &Map<String, Value>, k: &'static str| {
        f.get(k).and_then(|v| UserId::from_json(v).ok()).ok_or_else(|| bad(k))
    };
    // A mute names a user, or a group in either form (`g:team`, `gteam`).
    let mute_peer = |f: &Map<String, Value>| match f.get("peer").and_then(Value::as_str) {
        Some(g) if g.starts_with("g:") => crate::group::GroupId::mute_peer(g).ok_or_else(|| bad("peer")),
        _ => uid(f, "peer"),
    };
    let seq = |f: &Map<String, Value>, k: &'static str| f.get(k).and_then(Value::as_u64).ok_or_else(|| bad(k));
    let opt_seq = |f: &Map<String, Value>, k: &'static str| match f.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(k)),
    };
    // Requests that get a reply need an id to put in it.
    let need_id = || id.clone().filter(|v| v.is_string() || v.is_number()).ok_or_else(|| bad("id"));
    let cmid = |f: &Map<String, Value>| match f.get("cmid") {
        // No control characters: the backend's idempotency keys use
        // one, so no client string can name a backend call.
        Some(Value::String(c)) if !c.is_empty() && c.len() <= MAX_CMID && !c.chars().any(char::is_control) => {
            Ok(c.clone())
        }
        _ => Err(bad("cmid")),
    };
    let body = |f: &mut Map<String, Value>| {
        let body = match f.remove("body") {
            Some(Value::Object(b)) => b,
            _ => return Err(bad("body")),
        };
        match body.get("message") {
            Some(Value::String(m)) if !m.is_empty() => Ok(body),
            _ => Err(bad("body.message")),
        }
    };
    let mid = |f: &Map<String, Value>| match f.get("mid") {
        Some(Value::String(m)) if is_id(m) => Ok(m.clone()),
        _ => Err(bad("mid")),
    };
    match op.as_str() {
        "send" => {
            let id = need_id()?;
            let to = uid(&f, "to")?;
            let cmid = cmid(&f)?;
            Ok(V1Frame::Send { id, to, cmid, body: body(&mut f)? })
        }
        "edit" => {
            let id = need_id()?;
            let (mid, cmid) = (mid(&f)?, cmid(&f)?);
            Ok(V1Frame::Edit { id, mid, cmid, op: crate::edits::EditOp::Edit(body(&mut f)?) })
        }
        "delete" => {
            let id = need_id()?;
            let (mid, cmid) = (mid(&f)?, cmid(&f)?);
            let everyone = match f.get("for").and_then(Value::as_str) {
                Some("everyone") => true,
                Some("me") => false,
                _ => return Err(bad("for")),
            };
            Ok(V1Frame::Edit { id, mid, cmid, op: crate::edits::EditOp::Delete { everyone } })
        }
        "watch" => Ok(V1Frame::Watch { id: need_id()?, peer: uid(&f, "peer")? }),
        "settings" => {
            let id = need_id()?;
            let change = SettingsChange::of(&f).map_err(&bad)?;
            Ok(V1Frame::Settings { id, change })
        }
        "ack" => Ok(V1Frame::Ack { up_to: seq(&f, "up_to")? }),
        "read" => Ok(V1Frame::Read { id: need_id()?, peer: uid(&f, "peer")?, up_to: seq(&f, "up_to")? }),
        "history" => {
            let id = need_id()?;
            let peer = match f.get("peer") {
                None | Some(Value::Null) => None,
                Some(_) => Some(uid(&f, "peer")?),
            };
            let limit = opt_seq(&f, "limit")?.map(|l| l.min(u32::MAX as u64) as u32);
            if limit == Some(0) {
                return Err(bad("limit"));
            }
            Ok(V1Frame::History { id, peer, before: opt_seq(&f, "before")?, after: opt_seq(&f, "after")?, limit })
        }
        "typing" => {
            let active = f.get("active").and_then(Value::as_bool).ok_or_else(|| bad("active"))?;
            Ok(V1Frame::Typing { to: uid(&f, "to")?, active })
        }
        "block" => Ok(V1Frame::Blocks { id: need_id()?, change: Change::Block(uid(&f, "user")?) }),
        "unblock" => Ok(V1Frame::Blocks { id: need_id()?, change: Change::Unblock(uid(&f, "user")?) }),
        "mute" => {
            let id = need_id()?;
            Ok(V1Frame::Blocks { id, change: Change::Mute(mute_peer(&f)?, opt_seq(&f, "until")?) })
        }
        "unmute" => Ok(V1Frame::Blocks { id: need_id()?, change: Change::Unmute(mute_peer(&f)?) }),
        "group" => Ok(V1Frame::Group { id: need_id()?, fields: f }),
        _ => Err(refuse(id, V1Error::UnknownOp)),
    }
}

// Outbound frames. Each is a struct whose fields are in wire order: the
// frames once built with `json!` had their keys sorted (serde_json's map is a
// BTreeMap here), and their fields stay in that order so the bytes clients
// receive do not change. The TypeScript types of the SDK (`client/src/wire.ts`)
// are rendered from these structs by the test in `v1/wire_ts.rs`.

/// One-value types for the `op` of each frame: a frame cannot carry another
/// op, and in TypeScript its `op` is the literal.
macro_rules! ops {
    ($($name:ident = $op:tt,)*) => {$(
        #[derive(Serialize)]
        #[cfg_attr(test, derive(ts_rs::TS))]
        enum $name {
            #[serde(rename = $op)]
            Op,
        }
    )*};
}

ops! {
    WelcomeOp = "welcome",
    MsgOp = "msg",
    SentOp = "sent",
    OkOp = "ok",
    UnreadOp = "unread",
    ReceiptOp = "receipt",
    TypingOp = "typing",
    HistoryOp = "history",
    ErrorOp = "error",
    BlocksOp = "blocks",
    PresenceOp = "presence",
    SettingsOp = "settings",
    GroupReadOp = "group_read",
    GroupOp = "group",
}

/// Encodes a frame. Frames hold strings, numbers, booleans and JSON already
/// checked, so serde_json has nothing to refuse; should that ever change,
/// the frame is `null` (a bad frame to a client) rather than a panic that
/// would take the user's object down.
fn encode(frame: &impl Serialize) -> String {
    serde_json::to_string(frame).unwrap_or_else(|_| "null".into())
}

/// `{"op":"error",…}`: the reply to a refused frame.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct ErrorFrame<'a> {
    /// One of the codes of `docs/protocol.md`; clients must accept others.
    code: &'static str,
    /// The missing or invalid field of a `bad_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    field: Option<&'static str>,
    message: String,
    #[cfg_attr(test, ts(inline))]
    op: ErrorOp,
    /// The `id` of the refused frame, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional, type = "string | number"))]
    re: Option<&'a RequestId>,
    /// Whether sending the same frame again can succeed.
    retry: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    retry_after_ms: Option<u64>,
}

/// An `ErrorFrame`, encoded.
pub fn error(re: Option<&RequestId>, e: V1Error) -> String {
    encode(&ErrorFrame {
        code: e.code(),
        field: match e {
            V1Error::BadField(field) => Some(field),
            _ => None,
        },
        message: e.message(),
        op: ErrorOp::Op,
        re,
        retry: e.retry(),
        retry_after_ms: match e {
            V1Error::RateLimited { retry_after_ms } => Some(retry_after_ms),
            _ => None,
        },
    })
}

/// What a log entry is, as a `msg` frame says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    In,
    Out,
    Sys,
    /// An edit of the message `body.target`: `body.body` is its new body.
    Edit,
    /// A delete of the message `body.target`, for `body.for` (`everyone`
    /// or `me`): `body.body` is its tombstone.
    Delete,
    /// An entry of the group `body.group`, its `body.group_seq`: a message
    /// (`body.fromUser`, `body.message`), or a membership change
    /// (`body.type` is `group`, `body.change` says which).
    Group,
}

impl EntryKind {
    pub fn of(kind: Kind) -> EntryKind {
        match kind {
            Kind::Received => EntryKind::In,
            Kind::Sent => EntryKind::Out,
            Kind::System => EntryKind::Sys,
            Kind::EditOut | Kind::EditIn => EntryKind::Edit,
            Kind::DeleteOut | Kind::DeleteIn | Kind::DeleteMine => EntryKind::Delete,
            Kind::Group => EntryKind::Group,
        }
    }
}

/// A message body: the JSON text the server stored, written out as is.
#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Json(&'a RawValue),
    /// A stored body that is not JSON: the server stores only bodies it
    /// encoded itself, so only a damaged row. It goes out as `{}`: the frame
    /// stays valid and the entry (seq, mid) still reaches the client, where
    /// a `null` body or a broken frame is one the SDK rejects as a protocol
    /// error, and a skipped entry would leave a hole in the seqs.
    Unreadable {},
}

impl<'a> Body<'a> {
    /// Checks (does not re-encode) the stored JSON text.
    fn of(stored: &'a str) -> Body<'a> {
        serde_json::from_str(stored).map_or(Body::Unreadable {}, Body::Json)
    }
}

/// `{"op":"msg",…}`: one log entry.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct MsgFrame<'a> {
    #[cfg_attr(test, ts(inline))]
    op: MsgOp,
    seq: u64,
    kind: EntryKind,
    /// The other user; null for system messages.
    peer: Option<&'a str>,
    mid: &'a str,
    #[cfg_attr(test, ts(type = "{ [key: string]: unknown }"))]
    body: Body<'a>,
}

impl<'a> MsgFrame<'a> {
    fn new(seq: u64, kind: EntryKind, peer: Option<&'a str>, mid: &'a str, body: &'a str) -> MsgFrame<'a> {
        MsgFrame { op: MsgOp::Op, seq, kind, peer, mid, body: Body::of(body) }
    }
}

/// A `MsgFrame`, encoded. `body` is already JSON; it is written out as is,
/// so delivering a message costs no re-encoding of its body.
pub fn msg(seq: u64, kind: EntryKind, peer: Option<&str>, mid: &str, body: &str) -> String {
    encode(&MsgFrame::new(seq, kind, peer, mid, body))
}

/// A `msg` frame already encoded: pages of history splice it in as is.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct EncodedMsg(Box<RawValue>);

impl EncodedMsg {
    fn new(frame: &MsgFrame) -> EncodedMsg {
        // As `encode`: a frame serde_json cannot write goes out as `null`.
        EncodedMsg(serde_json::value::to_raw_value(frame).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    /// The frame's JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

/// `{"op":"welcome",…}`: the first frame of a v1 connection.
pub struct Welcome<'a> {
    pub user: &'a UserId,
    pub device: &'a str,
    pub head: u64,
    /// Entries after this one follow.
    pub since: u64,
    /// False when entries the client asked for are no longer kept.
    pub recovered: bool,
    /// What the client may send: frame size, page size, send rate.
    pub limits: &'a crate::limits::Limits,
    pub blocks: BlockLists<'a>,
    pub settings: Settings,
}

/// `{"op":"welcome",…}`: the first frame of a v1 connection.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct WelcomeFrame<'a> {
    device: &'a str,
    /// Newest seq of the user's log.
    head: u64,
    /// How often the client sends `heartbeat`.
    heartbeat_ms: u64,
    limits: WelcomeLimits,
    #[cfg_attr(test, ts(inline))]
    op: WelcomeOp,
    /// False: entries this device asked for are gone from the log (read them with history).
    recovered: bool,
    /// Entries after this seq follow.
    since: u64,
    user: &'a str,
    /// The protocol version.
    v: u32,
    /// The user's block and mute lists (a `blocks` frame follows each
    /// change). Last but one: the keys before it keep their old bytes.
    blocks: &'a BlockLists<'a>,
    /// The user's settings (a `settings` frame follows each change).
    settings: Settings,
}

/// What a client may send, in a welcome.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct WelcomeLimits {
    cmid_chars: usize,
    frame_bytes: usize,
    history_page: u32,
    queue_max: u64,
    queue_ttl_s: u64,
    read_burst: u32,
    reads_per_second: u32,
    send_burst: u32,
    sends_per_second: u32,
    /// How long after a send it may be edited or deleted for everyone.
    edit_window_s: u64,
    /// How long a `watch` lasts: renew it before then.
    watch_ttl_s: u64,
}

impl Welcome<'_> {
    pub fn encode(&self) -> String {
        let l = self.limits;
        encode(&WelcomeFrame {
            device: self.device,
            head: self.head,
            heartbeat_ms: HEARTBEAT_MS,
            limits: WelcomeLimits {
                cmid_chars: MAX_CMID,
                frame_bytes: l.frame_bytes,
                history_page: l.history_page,
                queue_max: l.queue_max,
                queue_ttl_s: l.queue_ttl_ms / 1000,
                read_burst: l.read_rate.burst,
                reads_per_second: l.read_rate.per_second,
                send_burst: l.send_rate.burst,
                sends_per_second: l.send_rate.per_second,
                edit_window_s: l.edit_window_ms / 1000,
                watch_ttl_s: l.watch_ttl_ms / 1000,
            },
            op: WelcomeOp::Op,
            recovered: self.recovered,
            since: self.since,
            user: self.user.as_str(),
            v: 1,
            blocks: &self.blocks,
            settings: self.settings,
        })
    }
}

/// `{"op":"sent",…}`: a send is stored in the recipient's and the sender's log.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct SentFrame<'a> {
    /// The `cmid` was stored before: this is the first send's result.
    duplicate: bool,
    mid: &'a str,
    #[cfg_attr(test, ts(inline))]
    op: SentOp,
    #[cfg_attr(test, ts(type = "string | number"))]
    re: &'a RequestId,
    seq: u64,
}

/// A `SentFrame`, encoded.
pub fn sent(re: &RequestId, mid: &str, seq: u64, duplicate: bool) -> String {
    encode(&SentFrame { duplicate, mid, op: SentOp::Op, re, seq })
}

/// `{"op":"ok","re":…}`: a request without a result succeeded.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct OkFrame<'a> {
    #[cfg_attr(test, ts(inline))]
    op: OkOp,
    #[cfg_attr(test, ts(type = "string | number"))]
    re: &'a RequestId,
}

/// An `OkFrame`, encoded.
pub fn ok(re: &RequestId) -> String {
    encode(&OkFrame { op: OkOp::Op, re })
}

/// `{"op":"unread",…}`: a conversation's unread count and read cursor changed.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct UnreadFrame<'a> {
    count: u64,
    #[cfg_attr(test, ts(inline))]
    op: UnreadOp,
    peer: &'a str,
    read_up_to: u64,
}

/// An `UnreadFrame`, encoded.
pub fn unread(peer: &str, count: u64, read_up_to: u64) -> String {
    encode(&UnreadFrame { count, op: UnreadOp::Op, peer, read_up_to })
}

/// Which receipt a peer sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum ReceiptKind {
    Delivered,
    Read,
}

impl ReceiptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptKind::Delivered => "delivered",
            ReceiptKind::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Option<ReceiptKind> {
        match s {
            "delivered" => Some(ReceiptKind::Delivered),
            "read" => Some(ReceiptKind::Read),
            _ => None,
        }
    }
}

/// `{"op":"receipt",…}`: `peer` has received or read this user's messages
/// up to `up_to`.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct ReceiptFrame<'a> {
    #[cfg_attr(test, ts(inline))]
    op: ReceiptOp,
    peer: &'a str,
    r#type: ReceiptKind,
    /// A seq of this user's log.
    up_to: u64,
}

/// A `ReceiptFrame`, encoded.
pub fn receipt(peer: &str, kind: ReceiptKind, up_to: u64) -> String {
    encode(&ReceiptFrame { op: ReceiptOp::Op, peer, r#type: kind, up_to })
}

/// `{"op":"typing",…}`: `from` started or stopped typing to this user, or
/// in the group `group`.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct TypingFrame<'a> {
    active: bool,
    from: &'a str,
    /// The group it is in (absent: typing to this user).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    group: Option<&'a str>,
    #[cfg_attr(test, ts(inline))]
    op: TypingOp,
}

/// A `TypingFrame`, encoded.
pub fn typing(from: &str, active: bool) -> String {
    encode(&TypingFrame { active, from, group: None, op: TypingOp::Op })
}

/// A `TypingFrame` of a group, encoded.
pub fn group_typing(group: &str, from: &str, active: bool) -> String {
    encode(&TypingFrame { active, from, group: Some(group), op: TypingOp::Op })
}

/// `{"op":"group_read",…}`: how many of the group's members (other than
/// its sender) read the message at `group_seq`, sent to its sender as the
/// count changes.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct GroupReadFrame<'a> {
    #[cfg_attr(test, ts(inline))]
    op: GroupReadOp,
    group: &'a str,
    group_seq: u64,
    read: u32,
    of: u32,
}

/// `{"op":"group","re":…}`: a group's object's answer to a `group` request,
/// as its HTTP API gives it: `status` (2xx: done; a `send` answered 200 is
/// stored and queued for every member) and the JSON `body`.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct GroupFrame<'a> {
    #[cfg_attr(test, ts(type = "{ [key: string]: unknown } | null"))]
    body: Option<&'a RawValue>,
    #[cfg_attr(test, ts(inline))]
    op: GroupOp,
    #[cfg_attr(test, ts(type = "string | number"))]
    re: &'a RequestId,
    status: u16,
}

/// A `GroupFrame`, encoded (`body`: the answer's JSON text, empty for none).
pub fn group_reply(re: &RequestId, status: u16, body: &str) -> String {
    let body = serde_json::from_str::<&RawValue>(body).ok();
    encode(&GroupFrame { body, op: GroupOp::Op, re, status })
}

/// A `GroupReadFrame`, encoded.
pub fn group_read(group: &str, group_seq: u64, read: u32, of: u32) -> String {
    encode(&GroupReadFrame { op: GroupReadOp::Op, group, group_seq, read, of })
}

/// The user's block and mute lists, as the welcome and `GET /v1/blocks`
/// carry them.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BlockLists<'a> {
    /// Users whose chats never reach this user (they are not told).
    blocked: Vec<&'a str>,
    /// Peers whose messages start no push.
    muted: Vec<Muted<'a>>,
}

/// A muted peer.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct Muted<'a> {
    peer: &'a str,
    /// When the mute ends (ms since the epoch); null: when unmuted.
    until: Option<u64>,
}

impl<'a> BlockLists<'a> {
    pub fn of(blocks: &'a Blocks, now: u64) -> BlockLists<'a> {
        BlockLists {
            blocked: blocks.blocked().collect(),
            muted: blocks
                .muted(now)
                .map(|(peer, until)| Muted { peer, until: (until != FOREVER).then_some(until) })
                .collect(),
        }
    }

    /// As the body of `GET /v1/blocks`.
    pub fn encode(&self) -> String {
        encode(self)
    }
}

/// `{"op":"blocks",…}`: the user's lists changed (on any device).
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct BlocksFrame<'a> {
    lists: BlockLists<'a>,
    #[cfg_attr(test, ts(inline))]
    op: BlocksOp,
}

/// A `BlocksFrame`, encoded.
pub fn blocks(lists: BlockLists) -> String {
    encode(&BlocksFrame { lists, op: BlocksOp::Op })
}

/// A user's settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Settings {
    /// Others see this user offline and never seen.
    pub hide_presence: bool,
    /// Who may add this user to a group: `everyone`, `contacts` (users they
    /// sent a 1:1 message to; the default) or `nobody`. Never someone they
    /// blocked.
    #[cfg_attr(test, ts(type = "\"everyone\" | \"contacts\" | \"nobody\""))]
    pub group_adds: GroupAdds,
}

/// A change of settings (`PUT /v1/settings`, a `settings` frame): the
/// fields it names, at least one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub hide_presence: Option<bool>,
    pub group_adds: Option<GroupAdds>,
}

impl SettingsChange {
    /// The change a JSON object asks for; `Err` names the field at fault.
    pub fn of(f: &Map<String, Value>) -> Result<SettingsChange, &'static str> {
        let hide_presence = match f.get("hide_presence") {
            None => None,
            Some(v) => Some(v.as_bool().ok_or("hide_presence")?),
        };
        let group_adds = match f.get("group_adds") {
            None => None,
            Some(v) => Some(v.as_str().and_then(|s| GroupAdds::parse(s).ok()).ok_or("group_adds")?),
        };
        if hide_presence.is_none() && group_adds.is_none() {
            return Err("hide_presence");
        }
        Ok(SettingsChange { hide_presence, group_adds })
    }
}

impl Settings {
    /// As the body of `GET /v1/settings`.
    pub fn encode(&self) -> String {
        encode(self)
    }
}

/// `{"op":"settings",…}`: the user's settings changed (on any device).
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct SettingsFrame {
    #[cfg_attr(test, ts(inline))]
    op: SettingsOp,
    settings: Settings,
}

/// A `SettingsFrame`, encoded.
pub fn settings(settings: Settings) -> String {
    encode(&SettingsFrame { op: SettingsOp::Op, settings })
}

/// `{"op":"presence",…}`: a watched user's presence, in reply to `watch`
/// (with `re`) and on each change while the watch lives.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct PresenceFrame<'a> {
    last_seen: Option<u64>,
    online: bool,
    #[cfg_attr(test, ts(inline))]
    op: PresenceOp,
    /// The `id` of the `watch` this answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional, type = "string | number"))]
    re: Option<&'a RequestId>,
    user: &'a str,
}

/// A `PresenceFrame`, encoded.
pub fn presence(re: Option<&RequestId>, user: &str, p: Presence) -> String {
    encode(&PresenceFrame { last_seen: p.last_seen, online: p.online, op: PresenceOp::Op, re, user })
}

/// `{"op":"history","re":…}`: a page of the user's log, as `msg` frames.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct HistoryFrame<'a> {
    #[cfg_attr(test, ts(inline))]
    op: HistoryOp,
    #[cfg_attr(test, ts(type = "string | number"))]
    re: &'a RequestId,
    #[cfg_attr(test, ts(type = "Array<MsgFrame>"))]
    items: &'a [EncodedMsg],
    /// The cursor that continues the page (`before` or `after`); null at the end.
    next: Option<u64>,
}

/// A `HistoryFrame`, encoded: its items are copied in as they are.
pub fn history(re: &RequestId, items: &[EncodedMsg], next: Option<u64>) -> String {
    encode(&HistoryFrame { op: HistoryOp::Op, re, items, next })
}

/// The `msg` frames of a v1 history page (rows fetched newest first, at
/// most `limit` + 1 of them) and the cursor that continues it.
pub fn page_items(rows: &[PageRow], limit: u32) -> (Vec<EncodedMsg>, Option<u64>) {
    let page = &rows[..rows.len().min(limit as usize)];
    let next = (rows.len() > limit as usize).then(|| page.last().map(|r| r.seq)).flatten();
    let items = page
        .iter()
        .map(|r| {
            let kind = EntryKind::of(Kind::from_code(r.kind).unwrap_or(Kind::Received));
            EncodedMsg::new(&MsgFrame::new(r.seq, kind, r.peer.as_deref(), &r.mid, &r.body))
        })
        .collect();
    (items, next)
}

/// A page of an HTTP listing: `{"items":[…],"next":…}`.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct Page<'a, T> {
    items: &'a [T],
    /// The cursor of the next page; null at the end.
    next: Option<u64>,
}

/// `GET /v1/history`: `{"items":[…],"next":…}`.
pub fn page(items: &[EncodedMsg], next: Option<u64>) -> String {
    encode(&Page { items, next })
}

/// One conversation of `GET /v1/conversations`.
#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
struct ConversationItem<'a> {
    /// The other user; for a group, the group's id (as `group`).
    peer: &'a str,
    /// Set for a group's conversation: its id. `read_up_to` and the
    /// `last` entry's `body.group_seq` are then group_seqs, and the peer
    /// fields are 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    group: Option<&'a str>,
    /// The newest seq of this user's log that the peer has received.
    peer_delivered: u64,
    /// The newest seq of this user's log that the peer has read.
    peer_read: u64,
    read_up_to: u64,
    unread: u64,
    /// The conversation's newest message, in its current state.
    last: MsgFrame<'a>,
    /// The peer's presence, as they let this user see it.
    presence: Presence,
}

/// `GET /v1/conversations`: newest activity first (rows fetched with one
/// more than `limit`), each with its newest entry as a `msg` frame and the
/// peer's presence.
pub fn conversations(rows: &[Conversation], limit: u32, presence: impl Fn(&str) -> Presence) -> String {
    let shown = &rows[..rows.len().min(limit as usize)];
    let next = (rows.len() > limit as usize).then(|| shown.last().map(|c| c.last_seq)).flatten();
    let items: Vec<ConversationItem> = shown
        .iter()
        .map(|c| ConversationItem {
            peer: &c.peer,
            group: c.group.then_some(c.peer.as_str()),
            peer_delivered: c.peer_delivered,
            peer_read: c.peer_read,
            read_up_to: c.read_up_to,
            unread: c.unread,
            last: MsgFrame::new(
                c.last_seq,
                EntryKind::of(c.last_kind),
                (!c.group).then_some(c.peer.as_str()),
                &c.last_mid,
                &c.last_body,
            ),
            presence: if c.group { Presence::default() } else { presence(&c.peer) },
        })
        .collect();
    encode(&Page { items: &items, next })
}

/// Close codes a v1 server sends, and what a client should do.
pub mod close {
    /// The token expired: reconnect with a fresh token.
    pub const TOKEN_EXPIRED: u16 = 4001;
}

#[cfg(test)]
mod wire_ts;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAX: usize = 64 * 1024;

    fn err(text: &str) -> (Option<Value>, &'static str) {
        let r = parse(text, MAX).unwrap_err();
        (r.re, r.error.code())
    }

    #[test]
    fn send() {
        let r = parse(r#"{"op":"send","id":7,"to":"2","cmid":"c1","body":{"message":"hi","x":1}}"#, MAX).unwrap();
        let V1Frame::Send { id, to, cmid, body } = r else { panic!() };
        assert_eq!((id, to.as_str(), cmid.as_str()), (json!(7), "2", "c1"));
        assert_eq!(body["x"], json!(1));
    }

    #[test]
    fn send_needs_id_cmid_and_a_message() {
        assert_eq!(err(r#"{"op":"send","to":"2","cmid":"c","body":{"message":"m"}}"#), (None, "bad_field"));
        assert_eq!(err(r#"{"op":"send","id":1,"to":"2","body":{"message":"m"}}"#), (Some(json!(1)), "bad_field"));
        let long = "c".repeat(MAX_CMID + 1);
        let text = format!(r#"{{"op":"send","id":1,"to":"2","cmid":"{long}","body":{{"message":"m"}}}}"#);
        assert_eq!(err(&text).1, "bad_field");
        assert_eq!(err(r#"{"op":"send","id":1,"to":"2","cmid":"c","body":{"message":""}}"#).1, "bad_field");
        assert_eq!(err(r#"{"op":"send","id":1,"to":"a b","cmid":"c","body":{"message":"m"}}"#).1, "bad_field");
    }

    #[test]
    fn other_requests() {
        assert_eq!(parse(r#"{"op":"ack","up_to":5}"#, MAX).unwrap(), V1Frame::Ack { up_to: 5 });
        assert_eq!(
            parse(r#"{"op":"read","id":"r","peer":2,"up_to":9}"#, MAX).unwrap(),
            V1Frame::Read { id: json!("r"), peer: UserId::parse("2").unwrap(), up_to: 9 }
        );
        assert_eq!(
            parse(r#"{"op":"history","id":1,"peer":"2","before":10}"#, MAX).unwrap(),
            V1Frame::History {
                id: json!(1),
                peer: UserId::parse("2").ok(),
                before: Some(10),
                after: None,
                limit: None
            }
        );
        assert_eq!(
            parse(r#"{"op":"typing","to":"2","active":true}"#, MAX).unwrap(),
            V1Frame::Typing { to: UserId::parse("2").unwrap(), active: true }
        );
    }

    #[test]
    fn edits_watches_and_settings() {
        let mid = crate::message::new_id(1, 2);
        let f = parse(&format!(r#"{{"op":"edit","id":1,"mid":"{mid}","cmid":"e1","body":{{"message":"x"}}}}"#), MAX);
        let V1Frame::Edit { op: crate::edits::EditOp::Edit(body), cmid, .. } = f.unwrap() else { panic!() };
        assert_eq!((body["message"].as_str(), cmid.as_str()), (Some("x"), "e1"));
        let f = parse(&format!(r#"{{"op":"delete","id":1,"mid":"{mid}","cmid":"d1","for":"me"}}"#), MAX).unwrap();
        assert!(matches!(f, V1Frame::Edit { op: crate::edits::EditOp::Delete { everyone: false }, .. }));
        assert_eq!(err(&format!(r#"{{"op":"delete","id":1,"mid":"{mid}","cmid":"d1","for":"all"}}"#)).1, "bad_field");
        assert_eq!(err(r#"{"op":"edit","id":1,"mid":"../x","cmid":"e","body":{"message":"x"}}"#).1, "bad_field");
        let e = parse(&format!(r#"{{"op":"edit","id":1,"mid":"{mid}","cmid":"e","body":{{"message":""}}}}"#), MAX);
        assert_eq!(e.unwrap_err().error, V1Error::BadField("body.message"));
        assert_eq!(
            parse(r#"{"op":"watch","id":"w","peer":"2"}"#, MAX).unwrap(),
            V1Frame::Watch { id: json!("w"), peer: UserId::parse("2").unwrap() }
        );
        assert_eq!(
            parse(r#"{"op":"settings","id":2,"hide_presence":true}"#, MAX).unwrap(),
            V1Frame::Settings { id: json!(2), change: SettingsChange { hide_presence: Some(true), group_adds: None } }
        );
        assert_eq!(
            parse(r#"{"op":"settings","id":2,"group_adds":"nobody"}"#, MAX).unwrap(),
            V1Frame::Settings {
                id: json!(2),
                change: SettingsChange { hide_presence: None, group_adds: Some(GroupAdds::Nobody) }
            }
        );
        assert_eq!(err(r#"{"op":"settings","id":2,"group_adds":"friends"}"#).1, "bad_field");
        assert_eq!(err(r#"{"op":"settings","id":2}"#).1, "bad_field");
        assert_eq!(err(r#"{"op":"settings","id":2,"hide_presence":"yes"}"#).1, "bad_field");
    }

    #[test]
    fn bad_frames() {
        assert_eq!(err("heartbeats"), (None, "bad_frame"));
        assert_eq!(err(r#"{"id":3}"#), (Some(json!(3)), "bad_frame"));
        assert_eq!(err(r#"{"op":"fly","id":3}"#), (Some(json!(3)), "unknown_op"));
        assert_eq!(err(r#"{"op":"ack","up_to":-1}"#), (None, "bad_field"));
        assert_eq!(err(r#"{"op":"history","id":1,"limit":0}"#).1, "bad_field");
        assert_eq!(err(&"x".repeat(MAX + 1)), (None, "too_large"));
    }

    #[test]
    fn encoded_frames_are_json() {
        let m: Value = serde_json::from_str(&msg(3, EntryKind::In, Some("a\"b"), "mid", r#"{"message":"x"}"#)).unwrap();
        assert_eq!(m, json!({"op":"msg","seq":3,"kind":"in","peer":"a\"b","mid":"mid","body":{"message":"x"}}));
        let e: Value = serde_json::from_str(&error(Some(&json!(1)), V1Error::BadField("to"))).unwrap();
        assert_eq!(
            (e["code"].as_str(), e["field"].as_str(), e["retry"].as_bool(), e["re"].as_i64()),
            (Some("bad_field"), Some("to"), Some(false), Some(1))
        );
        let h: Value = serde_json::from_str(&history(
            &json!("q"),
            &[EncodedMsg::new(&MsgFrame::new(1, EntryKind::Sys, None, "m", "{}"))],
            Some(1),
        ))
        .unwrap();
        assert_eq!(h["items"][0]["peer"], Value::Null);
        assert_eq!(h["next"], json!(1));
        let limits = crate::limits::Limits {
            send_rate: crate::ratelimit::Rate { per_second: 1, burst: 2 },
            ..Default::default()
        };
        let none = Blocks::default();
        let w = Welcome {
            user: &UserId::parse("1").unwrap(),
            device: "d",
            head: 5,
            since: 3,
            recovered: false,
            limits: &limits,
            blocks: BlockLists::of(&none, 0),
            settings: Settings::default(),
        };
        let w: Value = serde_json::from_str(&w.encode()).unwrap();
        assert_eq!((w["head"].as_u64(), w["recovered"].as_bool()), (Some(5), Some(false)));
        assert_eq!(w["limits"]["send_burst"].as_u64(), Some(2));
        let e: Value = serde_json::from_str(&error(None, V1Error::RateLimited { retry_after_ms: 70 })).unwrap();
        assert_eq!(
            (e["code"].as_str(), e["retry"].as_bool(), e["retry_after_ms"].as_u64()),
            (Some("rate_limited"), Some(true), Some(70))
        );
    }

    /// Every outbound frame, byte for byte as clients have always received it
    /// (key order included): encoding may change, the wire may not.
    #[test]
    fn frames_keep_their_bytes() {
        let limits = crate::limits::Limits::default();
        let user = UserId::parse("u1").unwrap();
        let mut lists = Blocks::default();
        let me = UserId::parse("u1").unwrap();
        lists.apply(&me, Change::Block(UserId::parse("b").unwrap()), 9, 0).unwrap();
        lists.apply(&me, Change::Mute(UserId::parse("m").unwrap(), Some(70)), 9, 0).unwrap();
        lists.apply(&me, Change::Mute(UserId::parse("n").unwrap(), None), 9, 0).unwrap();
        let blocks = BlockLists::of(&lists, 0);
        let settings = Settings { hide_presence: true, group_adds: GroupAdds::Contacts };
        let w = Welcome {
            user: &user,
            device: "d\"1",
            head: 9,
            since: 4,
            recovered: true,
            limits: &limits,
            blocks,
            settings,
        };
        assert_eq!(
            w.encode(),
            r#"{"device":"d\"1","head":9,"heartbeat_ms":30000,"limits":{"cmid_chars":64,"frame_bytes":65536,"history_page":200,"queue_max":10000,"queue_ttl_s":2592000,"read_burst":30,"reads_per_second":5,"send_burst":60,"sends_per_second":20,"edit_window_s":86400,"watch_ttl_s":60},"op":"welcome","recovered":true,"since":4,"user":"u1","v":1,"blocks":{"blocked":["b"],"muted":[{"peer":"m","until":70},{"peer":"n","until":null}]},"settings":{"hide_presence":true,"group_adds":"contacts"}}"#
        );
        assert_eq!(
            msg(3, EntryKind::In, Some("p\"2"), "m1", r#"{"message":"hi","x":[1,2]}"#),
            r#"{"op":"msg","seq":3,"kind":"in","peer":"p\"2","mid":"m1","body":{"message":"hi","x":[1,2]}}"#
        );
        assert_eq!(
            msg(4, EntryKind::Sys, None, "m2", r#"{ "message" : "spaced" }"#),
            r#"{"op":"msg","seq":4,"kind":"sys","peer":null,"mid":"m2","body":{ "message" : "spaced" }}"#
        );
        assert_eq!(
            error(Some(&json!("r1")), V1Error::TooLarge),
            r#"{"code":"too_large","message":"frame over the size limit (welcome limits.frame_bytes)","op":"error","re":"r1","retry":false}"#
        );
        assert_eq!(
            error(None, V1Error::BadField("to")),
            r#"{"code":"bad_field","field":"to","message":"missing or invalid field: to","op":"error","retry":false}"#
        );
        assert_eq!(
            error(Some(&json!(5)), V1Error::RateLimited { retry_after_ms: 70 }),
            r#"{"code":"rate_limited","message":"too many requests; nothing was done, send again in 70 ms","op":"error","re":5,"retry":true,"retry_after_ms":70}"#
        );
        assert_eq!(sent(&json!(7), "m1", 12, false), r#"{"duplicate":false,"mid":"m1","op":"sent","re":7,"seq":12}"#);
        assert_eq!(ok(&json!("x")), r#"{"op":"ok","re":"x"}"#);
        assert_eq!(unread("p2", 3, 11), r#"{"count":3,"op":"unread","peer":"p2","read_up_to":11}"#);
        assert_eq!(receipt("p2", ReceiptKind::Read, 5), r#"{"op":"receipt","peer":"p2","type":"read","up_to":5}"#);
        assert_eq!(
            receipt("p2", ReceiptKind::Delivered, 5),
            r#"{"op":"receipt","peer":"p2","type":"delivered","up_to":5}"#
        );
        assert_eq!(typing("p2", true), r#"{"active":true,"from":"p2","op":"typing"}"#);

        let rows: Vec<PageRow> = (1..=3)
            .map(|seq| PageRow {
                seq,
                kind: seq as i64,
                peer: Some("2".into()),
                mid: format!("m{seq}"),
                body: r#"{"message":"b"}"#.into(),
                item: String::new(),
            })
            .collect();
        let m = |seq, kind| {
            format!(r#"{{"op":"msg","seq":{seq},"kind":"{kind}","peer":"2","mid":"m{seq}","body":{{"message":"b"}}}}"#)
        };
        let (items, next) = page_items(&rows, 2);
        assert_eq!(
            history(&json!(1), &items, next),
            format!(r#"{{"op":"history","re":1,"items":[{},{}],"next":2}}"#, m(1, "in"), m(2, "out"))
        );
        assert_eq!(page(&items, next), format!(r#"{{"items":[{},{}],"next":2}}"#, m(1, "in"), m(2, "out")));
        let (items, next) = page_items(&rows[2..], 5);
        assert_eq!(
            history(&json!("q"), &items, next),
            format!(r#"{{"op":"history","re":"q","items":[{}],"next":null}}"#, m(3, "sys"))
        );
        let (items, next) = page_items(&[], 5);
        assert_eq!(page(&items, next), r#"{"items":[],"next":null}"#);

        let conv = |peer: &str, seq| Conversation {
            peer: peer.into(),
            last_seq: seq,
            last_kind: Kind::Sent,
            last_mid: format!("m{seq}"),
            last_body: r#"{"message":"c"}"#.into(),
            unread: 1,
            read_up_to: 2,
            peer_delivered: 3,
            peer_read: 4,
            group: false,
        };
        let item = r#"{"peer":"a","peer_delivered":3,"peer_read":4,"read_up_to":2,"unread":1,"last":{"op":"msg","seq":9,"kind":"out","peer":"a","mid":"m9","body":{"message":"c"}},"presence":{"last_seen":60000,"online":false}}"#;
        let seen = |_: &str| Presence { last_seen: Some(60_000), online: false };
        assert_eq!(conversations(&[conv("a", 9), conv("b", 7)], 1, seen), format!(r#"{{"items":[{item}],"next":9}}"#));
        assert_eq!(conversations(&[conv("a", 9)], 5, seen), format!(r#"{{"items":[{item}],"next":null}}"#));
        assert_eq!(
            presence(Some(&json!(3)), "p2", Presence { last_seen: None, online: true }),
            r#"{"last_seen":null,"online":true,"op":"presence","re":3,"user":"p2"}"#
        );
        assert_eq!(
            presence(None, "p2", Presence { last_seen: Some(120_000), online: false }),
            r#"{"last_seen":120000,"online":false,"op":"presence","user":"p2"}"#
        );
        assert_eq!(
            super::settings(Settings { hide_presence: false, group_adds: GroupAdds::Everyone }),
            r#"{"op":"settings","settings":{"hide_presence":false,"group_adds":"everyone"}}"#
        );
        assert_eq!(
            msg(5, EntryKind::Edit, Some("2"), "m5", r#"{"body":{"message":"b"},"target":"m1"}"#),
            r#"{"op":"msg","seq":5,"kind":"edit","peer":"2","mid":"m5","body":{"body":{"message":"b"},"target":"m1"}}"#
        );
    }

    #[test]
    fn bodies_go_out_as_stored() {
        // Spacing inside the body is kept: the text is checked, not re-encoded.
        let m = msg(1, EntryKind::In, Some("2"), "m", r#"{"message" : "a\u0062"}"#);
        assert!(m.ends_with(r#""body":{"message" : "a\u0062"}}"#), "{m}");
        // A damaged row still makes a valid frame, with an empty body.
        let m = msg(1, EntryKind::In, Some("2"), "m", r#"{"message":"cut"#);
        assert_eq!(m, r#"{"op":"msg","seq":1,"kind":"in","peer":"2","mid":"m","body":{}}"#);
    }
}
