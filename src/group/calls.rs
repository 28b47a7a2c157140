//! What the Worker entry and the user objects ask of a group's object, and
//! how it answers (sans-IO): one [`Request`] type with its JSON encoding and
//! parsing, [`handle`] turning a request into calls of the [`Group`] and an
//! HTTP answer, and the body of a [`Delivery`] on its way to a member's
//! object, with the answer that comes back.
//!
//! A request travels as the JSON body of a `POST` to the group's object;
//! its answer is the status and JSON body the client gets, so the entry
//! passes it on as it is.

use serde_json::{json, Map, Value};

use super::{Actor, Answer, Delivery, EntryKind, Group, GroupEntry, GroupError, GroupId, Op, Role};
use crate::edits::EditOp;
use crate::internal::{self, Outcome};
use crate::log::Sql;
use crate::protocol::v1;
use crate::user::UserId;

/// Most entries in one page of a group's history.
pub const PAGE_MAX: u32 = 200;

/// One request to a group's object: who asks, and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub group: GroupId,
    pub by: Actor,
    pub call: Call,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `owner` creates the group with `members` (the backend may name any owner).
    Create {
        owner: UserId,
        members: Vec<UserId>,
    },
    Change(Op),
    /// A message: the sender's fields (`message` and any extras).
    Send {
        cmid: Option<String>,
        fields: Map<String, Value>,
    },
    /// The asker read the group up to `up_to`. `hidden`: the asker hides
    /// their presence (their object sets it; the group keeps their read
    /// position from the others).
    Read {
        up_to: u64,
        hidden: bool,
    },
    /// "Read by N of M" for the entry at `seq`.
    ReadBy {
        seq: u64,
    },
    /// The members and the head.
    Info,
    /// Entries before `before`, newest first.
    Page {
        before: Option<u64>,
        limit: u32,
    },
    /// The asker is (not) typing.
    Typing {
        typing: bool,
    },
    /// The backend edits (`edit`: the new fields) or deletes (`None`) the
    /// message `mid` for everyone; `sender`, when named, must be its sender.
    /// `id` is the op's id when the call is idempotent (derived from its key).
    Moderate {
        mid: String,
        sender: Option<UserId>,
        edit: Option<Map<String, Value>>,
        id: Option<String>,
    },
}

/// Why a request body is not a request (our own code writes them: a bug,
/// or the entry passing on a client's bad input it should have refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadCall(pub &'static str);

impl std::fmt::Display for BadCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad group request: {}", self.0)
    }
}

fn role_name(role: Role) -> &'static str {
    role.as_str()
}

/// A role a request may name (never owner: ownership is handed over).
pub fn parse_role(s: &str) -> Option<Role> {
    match s {
        "admin" => Some(Role::Admin),
        "member" => Some(Role::Member),
        _ => None,
    }
}

impl Request {
    pub fn encode(&self) -> String {
        let mut m = Map::new();
        m.insert("group".into(), self.group.as_str().into());
        m.insert("by".into(), self.by.user().map_or(Value::Null, |u| u.as_str().into()));
        let (op, rest) = match &self.call {
            Call::Create { owner, members } => (
                "create",
                json!({"owner": owner.as_str(), "members": members.iter().map(UserId::as_str).collect::<Vec<_>>()}),
            ),
            Call::Change(Op::Add { user, role }) => ("add", json!({"user": user.as_str(), "role": role_name(*role)})),
            Call::Change(Op::Remove { user }) => ("remove", json!({"user": user.as_str()})),
            Call::Change(Op::Leave) => ("leave", json!({})),
            Call::Change(Op::SetRole { user, role }) => {
                ("set_role", json!({"user": user.as_str(), "role": role_name(*role)}))
            }
            Call::Change(Op::HandOver { to }) => ("hand_over", json!({"user": to.as_str()})),
            Call::Send { cmid, fields } => ("send", json!({"cmid": cmid, "fields": fields})),
            Call::Read { up_to, hidden } => ("read", json!({"up_to": up_to, "hidden": hidden})),
            Call::ReadBy { seq } => ("read_by", json!({"seq": seq})),
            Call::Info => ("info", json!({})),
            Call::Page { before, limit } => ("page", json!({"before": before, "limit": limit})),
            Call::Typing { typing } => ("typing", json!({"typing": typing})),
            Call::Moderate { mid, sender, edit, id } => {
                ("moderate", json!({"mid": mid, "sender": sender.as_ref().map(UserId::as_str), "edit": edit, "id": id}))
            }
        };
        m.insert("op".into(), op.into());
        if let Value::Object(rest) = rest {
            m.extend(rest);
        }
        Value::Object(m).to_string()
    }

    pub fn parse(body: &str) -> Result<Request, BadCall> {
        let v: Value = serde_json::from_str(body).map_err(|_| BadCall("not JSON"))?;
        let get = |k: &'static str| v.get(k).filter(|x| !x.is_null());
        let user =
            |k: &'static str| get(k).and_then(Value::as_str).and_then(|s| UserId::parse(s).ok()).ok_or(BadCall(k));
        let num = |k: &'static str| get(k).and_then(Value::as_u64).ok_or(BadCall(k));
        let role = || get("role").and_then(Value::as_str).and_then(parse_role).ok_or(BadCall("role"));
        let group =
            get("group").and_then(Value::as_str).and_then(|s| GroupId::parse(s).ok()).ok_or(BadCall("group"))?;
        let by = match get("by") {
            None => Actor::Backend,
            Some(_) => Actor::User(user("by")?),
        };
        let call = match get("op").and_then(Value::as_str).ok_or(BadCall("op"))? {
            "create" => {
                let members = get("members").and_then(Value::as_array).ok_or(BadCall("members"))?;
                let members = members
                    .iter()
                    .map(|m| m.as_str().and_then(|s| UserId::parse(s).ok()).ok_or(BadCall("members")))
                    .collect::<Result<_, _>>()?;
                Call::Create { owner: user("owner")?, members }
            }
            "add" => Call::Change(Op::Add { user: user("user")?, role: role()? }),
            "remove" => Call::Change(Op::Remove { user: user("user")? }),
            "leave" => Call::Change(Op::Leave),
            "set_role" => Call::Change(Op::SetRole { user: user("user")?, role: role()? }),
            "hand_over" => Call::Change(Op::HandOver { to: user("user")? }),
            "send" => Call::Send {
                cmid: get("cmid").map(|c| c.as_str().map(str::to_owned).ok_or(BadCall("cmid"))).transpose()?,
                fields: get("fields").and_then(Value::as_object).cloned().ok_or(BadCall("fields"))?,
            },
            "read" => {
                Call::Read { up_to: num("up_to")?, hidden: get("hidden").and_then(Value::as_bool).unwrap_or(false) }
            }
            "read_by" => Call::ReadBy { seq: num("seq")? },
            "info" => Call::Info,
            "page" => Call::Page {
                before: get("before").map(|_| num("before")).transpose()?,
                limit: u32::try_from(num("limit")?).map_err(|_| BadCall("limit"))?,
            },
            "typing" => Call::Typing { typing: get("typing").and_then(Value::as_bool).ok_or(BadCall("typing"))? },
            "moderate" => Call::Moderate {
                mid: get("mid").and_then(Value::as_str).ok_or(BadCall("mid"))?.to_owned(),
                sender: get("sender").map(|_| user("sender")).transpose()?,
                edit: get("edit").map(|e| e.as_object().cloned().ok_or(BadCall("edit"))).transpose()?,
                id: get("id").map(|i| i.as_str().map(str::to_owned).ok_or(BadCall("id"))).transpose()?,
            },
            _ => return Err(BadCall("op")),
        };
        Ok(Request { group, by, call })
    }
}

use crate::http_error::Code;
/// Why an HTTP request is not a group request: the status, its code and
/// the reason.
pub use crate::http_error::HttpError;

/// A `bad_field` on `field`.
fn bad(field: &'static str, what: &str) -> HttpError {
    HttpError::field(field, what)
}

/// The group request an HTTP call makes: `path` is below `/v1/groups`
/// (a user's token: `by` is the user) or `/api/groups` (the API key: `by`
/// is the backend, which names an owner to create and a `fromUser` to send
/// as). `fresh` names a group created without a name.
///
/// - `POST /` `{"members":[…], "group"?, "owner"? (API)}`: create.
/// - `GET /{g}`: the members and the head.
/// - `POST /{g}/members` `{"user", "role"?}`: add (`member` unless `admin`).
/// - `DELETE /{g}/members/{user}`: remove; leave, when it is oneself.
/// - `PUT /{g}/members/{user}` `{"role"}`; `PUT /{g}/owner` `{"user"}`: hand over.
/// - `POST /{g}/messages` `{"message", "cmid"?, …}`: send.
/// - `POST /{g}/read` `{"up_to"}`; `GET /{g}/messages/{seq}/read`: read by N of M.
/// - `POST /{g}/typing` `{"typing"}`.
pub fn from_http(method: &str, path: &str, body: &str, by: Actor, fresh: GroupId) -> Result<Request, HttpError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let json = || -> Result<Map<String, Value>, HttpError> {
        match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(HttpError::new(Code::BadJson, "the body must be a JSON object")),
        }
    };
    let user_of = |m: &Map<String, Value>, k: &'static str| -> Result<UserId, HttpError> {
        m.get(k)
            .and_then(|v| match v {
                Value::String(s) => UserId::parse(s).ok(),
                Value::Number(n) => UserId::parse(&n.to_string()).ok(),
                _ => None,
            })
            .ok_or_else(|| bad(k, &format!("{k} must be a user id")))
    };
    // Path segments arrive percent-encoded (`u%40x`, the `:` of `g:team` as `g%3Ateam`): decoded before they are ids.
    let segment = |s: &str| crate::query::decode(s.as_bytes());
    let group = |s: &str| GroupId::parse(&segment(s)).map_err(|e| HttpError::new(Code::NoSuchGroup, e.to_string()));
    let user = |s: &str| UserId::parse(&segment(s)).map_err(|e| HttpError::new(Code::NoSuchMember, e.to_string()));
    let role_of = |m: &Map<String, Value>, default: Option<Role>| -> Result<Role, HttpError> {
        let invalid =
            || HttpError { field: Some("role"), ..HttpError::new(Code::InvalidRole, "role must be admin or member") };
        match m.get("role") {
            None | Some(Value::Null) => default.ok_or_else(invalid),
            Some(r) => r.as_str().and_then(parse_role).ok_or_else(invalid),
        }
    };
    let (g, call) = match (method, parts.as_slice()) {
        ("POST", []) => {
            let m = json()?;
            let g = match m.get("group") {
                None | Some(Value::Null) => fresh,
                Some(v) => v.as_str().and_then(|s| GroupId::parse(s).ok()).ok_or_else(|| {
                    bad("group", "group must be g: followed by 1 to 32 of lowercase letters, digits, _ and -")
                })?,
            };
            let members = match m.get("members") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => UserId::parse(s).ok(),
                        Value::Number(n) => UserId::parse(&n.to_string()).ok(),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("members", "members must be user ids"))?,
                Some(_) => return Err(bad("members", "members must be an array of user ids")),
            };
            let owner = match &by {
                Actor::User(u) => u.clone(),
                Actor::Backend => user_of(&m, "owner")?,
            };
            (g, Call::Create { owner, members })
        }
        ("GET", [g]) => (group(g)?, Call::Info),
        ("POST", [g, "members"]) => {
            let m = json()?;
            (group(g)?, Call::Change(Op::Add { user: user_of(&m, "user")?, role: role_of(&m, Some(Role::Member))? }))
        }
        ("DELETE", [g, "members", u]) => {
            let u = user(u)?;
            let op = if by.user() == Some(&u) { Op::Leave } else { Op::Remove { user: u } };
            (group(g)?, Call::Change(op))
        }
        ("PUT", [g, "members", u]) => {
            let m = json()?;
            (group(g)?, Call::Change(Op::SetRole { user: user(u)?, role: role_of(&m, None)? }))
        }
        ("PUT", [g, "owner"]) => {
            let m = json()?;
            (group(g)?, Call::Change(Op::HandOver { to: user_of(&m, "user")? }))
        }
        ("POST", [g, "messages"]) => {
            let mut m = json()?;
            let cmid = match m.remove("cmid") {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) if !c.is_empty() && c.len() <= 64 => Some(c),
                Some(_) => return Err(bad("cmid", "cmid must be a string of 1 to 64 characters")),
            };
            if !matches!(m.get("message"), Some(Value::String(t)) if !t.is_empty()) {
                let e = HttpError::new(Code::EmptyMessage, "message must be a non-empty string");
                return Err(HttpError { field: Some("message"), ..e });
            }
            let g = group(g)?;
            // The backend sends as a user it names (a bot, a moderator).
            let sender = match by {
                Actor::Backend => Actor::User(user_of(&m, "fromUser")?),
                user => user,
            };
            return Ok(Request { group: g, by: sender, call: Call::Send { cmid, fields: m } });
        }
        ("POST", [g, "read"]) => {
            let m = json()?;
            let up_to =
                m.get("up_to").and_then(Value::as_u64).ok_or_else(|| bad("up_to", "up_to must be a group_seq"))?;
            // The reader's object says whether they hide their presence.
            (group(g)?, Call::Read { up_to, hidden: false })
        }
        ("GET", [g, "messages", seq, "read"]) => {
            let seq = seq.parse().map_err(|_| HttpError::new(Code::NoSuchEntry, "no such group entry"))?;
            (group(g)?, Call::ReadBy { seq })
        }
        ("POST", [g, "typing"]) => {
            let m = json()?;
            let typing = m
                .get("typing")
                .and_then(Value::as_bool)
                .ok_or_else(|| bad("typing", "typing must be true or false"))?;
            (group(g)?, Call::Typing { typing })
        }
        _ => return Err(HttpError::new(Code::NoSuchRoute, "no such route")),
    };
    Ok(Request { group: g, by, call })
}

/// The group request of a v1 `group` frame from `by`: `call` names it and
/// the other fields are those of the HTTP call it stands for ([`from_http`]):
/// `create` (`group`?, `members`), `info`, `add` (`user`, `role`?),
/// `remove` (`user`), `leave`, `set_role` (`user`, `role`), `hand_over`
/// (`user`), `send` (`cmid`?, `body` with `message`), `read` (`up_to`),
/// `read_by` (`seq`), `typing` (`typing`), `history` (`before`?, `limit`?).
pub fn from_frame(f: &Map<String, Value>, by: &UserId, fresh: GroupId) -> Result<Request, HttpError> {
    let call = f.get("call").and_then(Value::as_str).ok_or_else(|| bad("call", "call must name the group request"))?;
    let group = || -> Result<GroupId, HttpError> {
        let g = f.get("group").and_then(Value::as_str).ok_or_else(|| bad("group", "group must be a group id"))?;
        GroupId::parse(g).map_err(|e| bad("group", &e.to_string()))
    };
    // Path segments are validated ids: nothing in them can change the route.
    let user = || -> Result<UserId, HttpError> {
        f.get("user").and_then(|v| UserId::from_json(v).ok()).ok_or_else(|| bad("user", "user must be a user id"))
    };
    let body = Value::Object(f.clone()).to_string();
    let by_actor = Actor::User(by.clone());
    let (method, path, body) = match call {
        "create" => ("POST", String::new(), body),
        "info" => ("GET", format!("/{}", group()?), body),
        "add" => ("POST", format!("/{}/members", group()?), body),
        "remove" => ("DELETE", format!("/{}/members/{}", group()?, user()?), body),
        "leave" => ("DELETE", format!("/{}/members/{}", group()?, by), body),
        "set_role" => ("PUT", format!("/{}/members/{}", group()?, user()?), body),
        "hand_over" => ("PUT", format!("/{}/owner", group()?), body),
        "send" => {
            let mut fields = match f.get("body") {
                Some(Value::Object(b)) => b.clone(),
                _ => return Err(bad("body", "body must be an object with a message")),
            };
            if let Some(c) = f.get("cmid") {
                fields.insert("cmid".into(), c.clone());
            }
            ("POST", format!("/{}/messages", group()?), Value::Object(fields).to_string())
        }
        "read" => ("POST", format!("/{}/read", group()?), body),
        "read_by" => {
            let seq = f.get("seq").and_then(Value::as_u64).ok_or_else(|| bad("seq", "seq must be a group_seq"))?;
            ("GET", format!("/{}/messages/{seq}/read", group()?), body)
        }
        "typing" => ("POST", format!("/{}/typing", group()?), body),
        "history" => {
            let num = |k: &'static str| match f.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(k, &format!("{k} must be a number"))),
            };
            let limit = num("limit")?.unwrap_or(50).clamp(1, u64::from(PAGE_MAX)) as u32;
            return Ok(Request { group: group()?, by: by_actor, call: Call::Page { before: num("before")?, limit } });
        }
        _ => return Err(bad("call", "call is not a group request")),
    };
    from_http(method, &path, &body, by_actor, fresh)
}

/// `GET /v1/history?group=…&before=…&limit=…`: a page of the group's
/// history for a member (from their join on), newest first.
pub fn history_request(by: UserId, group: &str, before: Option<u64>, limit: u32) -> Result<Request, HttpError> {
    let group = GroupId::parse(group).map_err(|e| bad("group", &e.to_string()))?;
    Ok(Request { group, by: Actor::User(by), call: Call::Page { before, limit } })
}

/// `GET /api/groups/{g}/messages?before=&limit=` (the API key): a page of
/// the group's whole history for the backend, newest first, as a member's
/// `GET /v1/history?group=` pages it (`limit` 1 to [`PAGE_MAX`], 50 when
/// absent). `None`: `path` (below `/api/groups`) is not this route.
pub fn backend_history(path: &str, before: Option<&str>, limit: Option<&str>) -> Option<Result<Request, HttpError>> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let [g, "messages"] = parts.as_slice() else { return None };
    Some((|| {
        let group = GroupId::parse(&crate::query::decode(g.as_bytes()))
            .map_err(|e| HttpError::new(Code::NoSuchGroup, e.to_string()))?;
        let before =
            before.map(|b| b.parse::<u64>().map_err(|_| bad("before", "before: must be a group_seq"))).transpose()?;
        let limit = match limit.map(str::parse::<u32>) {
            None => 50,
            Some(Ok(n)) if (1..=PAGE_MAX).contains(&n) => n,
            Some(_) => return Err(bad("limit", &format!("limit: must be 1 to {PAGE_MAX}"))),
        };
        Ok(Request { group, by: Actor::Backend, call: Call::Page { before, limit } })
    })())
}

/// An answer to the client: the HTTP status and its JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Frames for members' live sockets (read counts for the senders of
    /// what a read covered): relayed, never stored.
    pub relays: Vec<(UserId, String)>,
}

impl Reply {
    fn ok(status: u16, body: Value) -> Reply {
        Reply { status, body: body.to_string(), relays: Vec::new() }
    }

    /// A refusal: the status, a stable `code` and the reason in words.
    pub fn refused(e: &GroupError) -> Reply {
        let (status, code) = match e {
            GroupError::Store(_) => (503, "unavailable"),
            GroupError::NoSuchGroup => (404, "no_such_group"),
            GroupError::AlreadyExists => (409, "group_exists"),
            GroupError::NotMember => (403, "not_member"),
            GroupError::NoSuchMember => (404, "no_such_member"),
            GroupError::AlreadyMember => (409, "already_member"),
            GroupError::NotAllowed { .. } => (403, "not_allowed"),
            GroupError::Full { .. } => (409, "group_full"),
            GroupError::OwnerMustHandOver => (409, "owner_must_hand_over"),
            GroupError::CannotRemoveOwner => (409, "cannot_remove_owner"),
            GroupError::InvalidRole => (400, "invalid_role"),
            GroupError::Unchanged => (409, "unchanged"),
            GroupError::EmptyMessage => (400, "empty_message"),
            GroupError::NoSuchEntry => (404, "no_such_entry"),
            GroupError::Deleted => (409, "deleted"),
            GroupError::AddRefused => (403, "add_refused"),
        };
        // A storage failure's text is the platform's: the client gets the kind only.
        let message = if matches!(e, GroupError::Store(_)) {
            "the group is temporarily unavailable; retry".to_owned()
        } else {
            e.to_string()
        };
        Reply::ok(status, json!({"error": message, "code": code}))
    }
}

/// One entry as a history page shows it.
fn page_item(e: &GroupEntry) -> Value {
    let body: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
    let kind = match e.kind {
        EntryKind::Message => "message",
        EntryKind::Change => "change",
        // Not page items ([`super::store::Store::page`]); named all the same.
        EntryKind::Edit => "edit",
        EntryKind::Delete => "delete",
    };
    json!({"group_seq": e.seq, "kind": kind, "mid": e.id, "body": body})
}

/// Carries out a request on the group (its effects are left in the group
/// for the platform to take). `new_id` gives the id of an entry, if one is
/// stored.
pub fn handle<S: Sql>(g: &mut Group<S>, req: Request, new_id: &str, now: u64) -> Reply {
    let result = match req.call {
        Call::Create { owner, members } => g
            .create(req.group.clone(), &req.by, owner, &members, new_id, now)
            .map(|seq| Reply::ok(201, json!({"group": req.group.wire(), "group_seq": seq}))),
        Call::Change(op) => g.change(&req.by, op, new_id, now).map(|seq| Reply::ok(200, json!({"group_seq": seq}))),
        Call::Send { cmid, fields } => match &req.by {
            Actor::User(from) => g
                .send(from, cmid.as_deref(), fields, new_id, now)
                .map(|s| Reply::ok(200, json!({"id": s.id, "group_seq": s.seq, "duplicate": s.duplicate}))),
            Actor::Backend => Err(GroupError::NotMember),
        },
        Call::Read { up_to, hidden } => match &req.by {
            Actor::User(u) => {
                g.set_hidden(u, hidden).map_err(GroupError::from).and_then(|_| read(g, &req.group, u, up_to))
            }
            Actor::Backend => Err(GroupError::NotMember),
        },
        Call::ReadBy { seq } => {
            g.read_by(&req.by, seq).map(|r| Reply::ok(200, json!({"group_seq": seq, "read": r.read, "of": r.of})))
        }
        Call::Info => g.readable_from(&req.by).and_then(|_| g.members_seen_by(&req.by)).map(|members| {
            let members: Vec<Value> = members
                .iter()
                .map(|m| json!({"user": m.user.as_str(), "role": m.role.as_str(), "joined": m.joined, "read": m.read}))
                .collect();
            Reply::ok(200, json!({"group": req.group.wire(), "head": g.head(), "members": members}))
        }),
        Call::Page { before, limit } => {
            let limit = limit.clamp(1, PAGE_MAX);
            g.page(&req.by, before, limit + 1).map(|mut entries| {
                let next = (entries.len() > limit as usize).then(|| {
                    entries.truncate(limit as usize);
                    entries.last().map(|e| e.seq)
                });
                let items: Vec<Value> = entries.iter().map(page_item).collect();
                Reply::ok(200, json!({"items": items, "next": next.flatten()}))
            })
        }
        Call::Typing { typing } => match &req.by {
            Actor::User(u) => {
                g.typing_at(u, typing, now).map(|_| Reply { status: 204, body: String::new(), relays: Vec::new() })
            }
            Actor::Backend => Err(GroupError::NotMember),
        },
        // Moderation is the backend's alone (`/api/edit`, `/api/delete`).
        Call::Moderate { mid, sender, edit, id } => match &req.by {
            Actor::Backend => {
                let op = match edit {
                    Some(fields) => EditOp::Edit(fields),
                    None => EditOp::Delete { everyone: true },
                };
                g.moderate(&mid, sender.as_ref(), op, id.as_deref().unwrap_or(new_id), now)
                    .map(|m| Reply::ok(200, json!({"id": m.id, "group_seq": m.seq, "duplicate": m.duplicate})))
            }
            Actor::User(_) => Err(GroupError::NotAllowed { needs: Role::Owner }),
        },
    };
    result.unwrap_or_else(|e| Reply::refused(&e))
}

/// Most entries a read looks through for senders to tell.
const READ_NOTICES_SCAN: u32 = 200;

/// A member read the group up to `up_to`: their cursor moves, and the
/// sender of each message it newly covers hears its new count ("read by N
/// of M") for their newest such message, one frame per sender.
fn read<S: Sql>(g: &mut Group<S>, group: &GroupId, reader: &UserId, up_to: u64) -> Result<Reply, GroupError> {
    let before = g.read_position(reader).unwrap_or(0);
    let now = g.read(reader, up_to)?;
    let mut reply = Reply::ok(200, json!({"read": now}));
    if now <= before {
        return Ok(reply);
    }
    let covered = g.page(&Actor::User(reader.clone()), Some(now + 1), READ_NOTICES_SCAN)?;
    let mut told: Vec<&UserId> = Vec::new();
    for e in covered.iter().filter(|e| e.seq > before && e.kind == EntryKind::Message) {
        let Some(sender) = e.sender.as_ref().filter(|s| *s != reader && !told.contains(s)) else { continue };
        told.push(sender);
        let counts = g.read_by(&Actor::Backend, e.seq)?;
        reply.relays.push((sender.clone(), v1::group_read(&group.wire(), e.seq, counts.read, counts.of)));
    }
    Ok(reply)
}

/// A delivery's body on its way to the member's object (the member is in
/// the hop's URL: [`internal::Internal::GroupDeliver`]).
pub fn encode_delivery(d: &Delivery) -> String {
    let entries: Vec<Value> = d
        .entries
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq,
                "id": e.id,
                "kind": e.kind.code(),
                "sender": e.sender.as_ref().map(UserId::as_str),
                "time": e.time_ms,
                "body": e.body,
            })
        })
        .collect();
    json!({"group": d.group.as_str(), "flight": d.flight, "since": d.since, "entries": entries}).to_string()
}

/// Reads a delivery for `member` written by [`encode_delivery`].
pub fn parse_delivery(member: &UserId, body: &str) -> Result<Delivery, BadCall> {
    let v: Value = serde_json::from_str(body).map_err(|_| BadCall("not JSON"))?;
    let group = v.get("group").and_then(Value::as_str).and_then(|s| GroupId::parse(s).ok()).ok_or(BadCall("group"))?;
    let num = |x: &Value, k: &'static str| x.get(k).and_then(Value::as_u64).ok_or(BadCall(k));
    let entries = v.get("entries").and_then(Value::as_array).ok_or(BadCall("entries"))?;
    let entries = entries
        .iter()
        .map(|e| {
            Ok(GroupEntry {
                seq: num(e, "seq")?,
                id: e.get("id").and_then(Value::as_str).ok_or(BadCall("id"))?.to_owned(),
                kind: EntryKind::from_code(num(e, "kind")?).ok_or(BadCall("kind"))?,
                sender: match e.get("sender").and_then(Value::as_str) {
                    Some(s) => Some(UserId::parse(s).map_err(|_| BadCall("sender"))?),
                    None => None,
                },
                time_ms: num(e, "time")?,
                body: e.get("body").and_then(Value::as_str).ok_or(BadCall("body"))?.to_owned(),
            })
        })
        .collect::<Result<_, BadCall>>()?;
    Ok(Delivery { group, member: member.clone(), flight: num(&v, "flight")?, since: num(&v, "since")?, entries })
}

/// The member object's answer to a delivery, as a hop's answer: `Done`
/// with the cursor in `x-seq` for applied, `Conflict` with it for a gap,
/// `Bad` for a malformed delivery.
pub fn hop_answer(a: Option<Answer>) -> internal::Answer {
    match a {
        Some(Answer::Applied(s)) => internal::Answer { seq: Some(s), ..internal::Answer::of(Outcome::Done) },
        Some(Answer::Gap(s)) => internal::Answer { seq: Some(s), ..internal::Answer::of(Outcome::Conflict) },
        None => internal::Answer::of(Outcome::Bad),
    }
}

/// The group's side of [`hop_answer`] (`None`: the delivery failed).
pub fn read_hop_answer(a: &internal::Answer) -> Option<Answer> {
    match (a.outcome, a.seq) {
        (Outcome::Done, Some(s)) => Some(Answer::Applied(s)),
        (Outcome::Conflict, Some(s)) => Some(Answer::Gap(s)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn every_request_survives_its_encoding() {
        let g = GroupId::parse("gteam").unwrap();
        let mut fields = Map::new();
        fields.insert("message".into(), "hi".into());
        let calls = vec![
            Call::Create { owner: uid("a"), members: vec![uid("b"), uid("c")] },
            Call::Change(Op::Add { user: uid("d"), role: Role::Admin }),
            Call::Change(Op::Remove { user: uid("d") }),
            Call::Change(Op::Leave),
            Call::Change(Op::SetRole { user: uid("b"), role: Role::Member }),
            Call::Change(Op::HandOver { to: uid("b") }),
            Call::Send { cmid: Some("c1".into()), fields: fields.clone() },
            Call::Send { cmid: None, fields },
            Call::Read { up_to: 7, hidden: false },
            Call::Read { up_to: 7, hidden: true },
            Call::ReadBy { seq: 3 },
            Call::Info,
            Call::Page { before: Some(9), limit: 20 },
            Call::Page { before: None, limit: 20 },
            Call::Typing { typing: true },
            Call::Moderate { mid: "m1".into(), sender: None, edit: None, id: None },
            Call::Moderate {
                mid: "m1".into(),
                sender: Some(uid("b")),
                edit: Some(json!({"message": "x"}).as_object().unwrap().clone()),
                id: Some("op1".into()),
            },
        ];
        for call in calls {
            for by in [Actor::User(uid("a")), Actor::Backend] {
                let r = Request { group: g.clone(), by, call: call.clone() };
                assert_eq!(Request::parse(&r.encode()), Ok(r));
            }
        }
        assert_eq!(Request::parse(r#"{"group":"x","op":"info"}"#), Err(BadCall("group")));
        assert_eq!(Request::parse(r#"{"group":"gx","op":"add","user":"b","role":"owner"}"#), Err(BadCall("role")));
        assert_eq!(Request::parse(r#"{"group":"gx","op":"nope"}"#), Err(BadCall("op")));
    }

    #[test]
    fn deliveries_and_their_answers_survive_the_hop() {
        let d = Delivery {
            group: GroupId::parse("gteam").unwrap(),
            member: uid("b"),
            flight: 4,
            since: 2,
            entries: vec![GroupEntry {
                seq: 3,
                id: "m3".into(),
                kind: EntryKind::Message,
                sender: Some(uid("a")),
                time_ms: 5,
                body: r#"{"message":"x"}"#.into(),
            }],
        };
        assert_eq!(parse_delivery(&uid("b"), &encode_delivery(&d)), Ok(d));
        for a in [Some(Answer::Applied(3)), Some(Answer::Gap(1)), None] {
            let hop = hop_answer(a);
            let back =
                internal::Answer::read(hop.status(), |name| hop.headers().find(|(n, _)| *n == name).map(|(_, v)| v));
            assert_eq!(read_hop_answer(&back), a);
        }
    }

    #[test]
    fn http_calls_become_requests() {
        let fresh = || GroupId::parse("gfresh").unwrap();
        let a = Actor::User(uid("a"));
        let r = from_http("POST", "/", r#"{"members":["b",3]}"#, a.clone(), fresh()).unwrap();
        assert_eq!(r.call, Call::Create { owner: uid("a"), members: vec![uid("b"), uid("3")] });
        assert_eq!(r.group, fresh());
        let r = from_http("POST", "", r#"{"group":"gmine"}"#, a.clone(), fresh()).unwrap();
        assert_eq!(r.group.as_str(), "gmine");
        let api = from_http("POST", "/", r#"{"owner":"o","members":[]}"#, Actor::Backend, fresh()).unwrap();
        assert_eq!(api.call, Call::Create { owner: uid("o"), members: vec![] });
        assert_eq!(from_http("POST", "/", r#"{"members":[]}"#, Actor::Backend, fresh()).unwrap_err().status(), 400);
        let leave = from_http("DELETE", "/gx/members/a", "", a.clone(), fresh()).unwrap();
        assert_eq!(leave.call, Call::Change(Op::Leave));
        let remove = from_http("DELETE", "/gx/members/b", "", a.clone(), fresh()).unwrap();
        assert_eq!(remove.call, Call::Change(Op::Remove { user: uid("b") }));
        let send =
            from_http("POST", "/gx/messages", r#"{"message":"hi","cmid":"c1","x":1}"#, a.clone(), fresh()).unwrap();
        let Call::Send { cmid, fields } = &send.call else { panic!() };
        assert_eq!(cmid.as_deref(), Some("c1"));
        assert!(fields.get("cmid").is_none() && fields["x"] == 1);
        let as_bot = from_http("POST", "/gx/messages", r#"{"message":"hi","fromUser":"bot"}"#, Actor::Backend, fresh());
        assert_eq!(as_bot.unwrap().by, Actor::User(uid("bot")));
        assert_eq!(
            from_http("POST", "/gx/messages", r#"{"message":""}"#, a.clone(), fresh()).unwrap_err().status(),
            400
        );
        assert_eq!(
            from_http("POST", "/gx/members", r#"{"user":"b","role":"owner"}"#, a.clone(), fresh())
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            from_http("GET", "/gx/messages/7/read", "", a.clone(), fresh()).unwrap().call,
            Call::ReadBy { seq: 7 }
        );
        assert_eq!(from_http("GET", "/NOPE", "", a.clone(), fresh()).unwrap_err().status(), 404);
        assert_eq!(from_http("PATCH", "/gx", "", a, fresh()).unwrap_err().status(), 404);
    }

    #[test]
    fn percent_encoded_path_ids_are_decoded() {
        let fresh = || GroupId::parse("gfresh").unwrap();
        let a = Actor::User(uid("a"));
        let r = from_http("DELETE", "/g%5Fteam/members/u%40x", "", a.clone(), fresh()).unwrap();
        assert_eq!((r.group.as_str(), r.call), ("g_team", Call::Change(Op::Remove { user: uid("u@x") })));
        let r = from_http("PUT", "/g%5fteam/members/u%40x", r#"{"role":"admin"}"#, a.clone(), fresh()).unwrap();
        assert_eq!(r.call, Call::Change(Op::SetRole { user: uid("u@x"), role: Role::Admin }));
        assert_eq!(from_http("GET", "/g%5Fteam", "", a.clone(), fresh()).unwrap().group.as_str(), "g_team");
        // An encoded slash stays inside its segment: not an id, not another route.
        let e = from_http("DELETE", "/gx/members/a%2F..%2Fb", "", a, fresh()).unwrap_err();
        assert_eq!((e.status(), e.code), (404, Code::NoSuchMember));
    }

    #[test]
    fn the_backend_pages_a_groups_history() {
        let r = backend_history("/g%5Fx/messages", Some("9"), None).unwrap().unwrap();
        assert_eq!(
            (r.group.as_str(), r.by, r.call),
            ("g_x", Actor::Backend, Call::Page { before: Some(9), limit: 50 })
        );
        let r = backend_history("/gx/messages", None, Some("200")).unwrap().unwrap();
        assert_eq!(r.call, Call::Page { before: None, limit: 200 });
        assert_eq!(backend_history("/gx/messages", None, Some("201")).unwrap().unwrap_err().field, Some("limit"));
        assert_eq!(backend_history("/gx/messages", Some("x"), None).unwrap().unwrap_err().field, Some("before"));
        assert_eq!(backend_history("/NO/messages", None, None).unwrap().unwrap_err().code, Code::NoSuchGroup);
        assert!(
            backend_history("/gx", None, None).is_none()
                && backend_history("/gx/messages/1/read", None, None).is_none()
        );
    }

    #[test]
    fn every_refusal_of_the_entry_has_a_code() {
        let fresh = || GroupId::parse("gfresh").unwrap();
        let a = Actor::User(uid("a"));
        let code = |m: &str, p: &str, b: &str| from_http(m, p, b, a.clone(), fresh()).unwrap_err().code;
        assert_eq!(code("POST", "/gx/members", "{"), Code::BadJson);
        assert_eq!(code("POST", "/gx/members", r#"{"user":"b","role":"owner"}"#), Code::InvalidRole);
        assert_eq!(code("PUT", "/gx/members/b", r#"{}"#), Code::InvalidRole);
        assert_eq!(code("POST", "/gx/messages", r#"{"message":""}"#), Code::EmptyMessage);
        assert_eq!(code("POST", "/gx/members", r#"{"user":"a b"}"#), Code::BadField);
        assert_eq!(code("GET", "/NOPE", ""), Code::NoSuchGroup);
        assert_eq!(code("GET", "/gx/messages/x/read", ""), Code::NoSuchEntry);
        assert_eq!(code("PATCH", "/gx", ""), Code::NoSuchRoute);
        let e = from_http("POST", "/gx/members", r#"{"user":true}"#, a.clone(), fresh()).unwrap_err();
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!((v["code"].as_str(), v["field"].as_str()), (Some("bad_field"), Some("user")));
    }

    #[test]
    fn frames_become_the_requests_their_http_calls_make() {
        let fresh = || GroupId::parse("gfresh").unwrap();
        let frame = |v: Value| v.as_object().unwrap().clone();
        let a = uid("a");
        let send =
            from_frame(&frame(json!({"call":"send","group":"gx","cmid":"c","body":{"message":"hi"}})), &a, fresh());
        let Call::Send { cmid, fields } = send.unwrap().call else { panic!() };
        assert_eq!((cmid.as_deref(), fields["message"].as_str()), (Some("c"), Some("hi")));
        let leave = from_frame(&frame(json!({"call":"leave","group":"gx"})), &a, fresh()).unwrap();
        assert_eq!(leave.call, Call::Change(Op::Leave));
        let sneaky = from_frame(&frame(json!({"call":"remove","group":"gx","user":"b/../../x"})), &a, fresh());
        assert_eq!(sneaky.unwrap_err().status(), 400);
        let hist = from_frame(&frame(json!({"call":"history","group":"gx","limit":5000})), &a, fresh()).unwrap();
        assert_eq!(hist.call, Call::Page { before: None, limit: PAGE_MAX });
        assert_eq!(from_frame(&frame(json!({"call":"nope"})), &a, fresh()).unwrap_err().status(), 400);
        let made = from_frame(&frame(json!({"call":"create","members":["b"]})), &a, fresh()).unwrap();
        assert_eq!((made.group, made.call), (fresh(), Call::Create { owner: a, members: vec![uid("b")] }));
    }

    #[test]
    fn refusals_have_a_status_and_a_stable_code() {
        let r = Reply::refused(&GroupError::Full { max: 100 });
        assert_eq!(r.status, 409);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["code"], "group_full");
        assert!(v["error"].as_str().unwrap().contains("GROUP_MAX_MEMBERS"));
        let s = Reply::refused(&GroupError::Store(crate::log::StoreError("disk on fire at row 'x'".into())));
        assert_eq!(s.status, 503);
        assert!(!s.body.contains("fire"));
    }
}
