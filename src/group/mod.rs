//! Group conversations (sans-IO): every decision of a group's Durable
//! Object, with no platform types and no `async`, events in, effects out
//! (as [`crate::mailbox`] is for a user).
//!
//! A group has members with roles ([`Role`]), its own sequence (`group_seq`,
//! from 1, one per entry of the group log: a message or a membership
//! [`Change`]) and a 24 h memory of client message ids. A [`Group`] decides
//! sends and membership changes ([`GroupError`] says why one is refused),
//! stores the entry ([`store::Store`]), and fans it out: each recipient's
//! user object gets a [`Delivery`] ([`Effect::Deliver`]) and answers how far
//! it applied ([`Answer`], decided there by [`accept`]).
//!
//! Who gets what: a member gets every entry from their join (the add notice
//! itself) to their removal or leave (the notice itself) and nothing
//! outside; a user added again gets a new stretch. History reads follow the
//! same rule: a member reads from their current join on.
//!
//! # The fan-out outbox: a cursor per member
//!
//! The outbox is not a row per (member, message) but one cursor per member,
//! `members.delivered`: their object applied every entry owed to them up to
//! it. What a member is owed is derived: the entries above the cursor within
//! their stretches of membership (`spans`). Rows written per message (DO
//! SQLite bills each row written):
//!
//! - a row per (member, message) outbox: M inserts when stored and M deletes
//!   when acknowledged, 2M rows per message;
//! - a cursor: 0 when stored, and one update per member whose cursor moved
//!   per alarm: answers move cursors in memory, and the alarm that is set
//!   anyway while deliveries are out (for their timeout) stores them. So at
//!   most M per message, and far fewer under load. Plus the entry itself
//!   and its `cmid` row.
//!
//! Exactly once: the cursor only moves on an acknowledgement, so a lost hop,
//! an answer never received, a failure or an evicted object all lead to the
//! same entries being delivered again, and the member's object applies
//! only what is above its own cursor ([`accept`]). One delivery per member
//! is in flight at a time, so order holds per member. A failure waits with
//! exponential backoff ([`Config::retry_base_ms`] doubled per attempt up to
//! [`Config::retry_cap_ms`]); a delivery with no answer after
//! [`Config::ack_timeout_ms`] counts as failed. The platform alarm is set
//! whenever something is owed ([`Effect::SetAlarm`]), so an object evicted
//! mid-fan-out resumes when it fires ([`Group::alarm_fired`]).
//!
//! Which members to look at comes from an index in memory ([`schedule`]:
//! members due, waiting for an answer, or owed nothing), so an answer or a
//! failure does work for its member only, and a new entry for the members
//! it makes owed: never a walk of the whole membership per answer.
//!
//! `sent` goes to the sender once [`Group::send`] returns: the message is
//! stored and owed to every member, not yet delivered.

pub mod adds;
pub mod calls;
mod hidden;
mod member;
mod moderation;
mod readers;
mod schedule;
pub mod store;
mod typing;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde_json::{Map, Value};

pub use member::{accept, Accept};
pub use moderation::Moderated;
use store::{MemberRow, Span, Store};

use crate::log::{Sql, StoreError};
use crate::time::rfc3339;
use crate::user::UserId;

/// Most members of a group unless the operator says otherwise (`GROUP_MAX_MEMBERS`).
pub const DEFAULT_MAX_MEMBERS: u32 = 100;
/// How long a send's client message id is remembered.
pub const DEDUP_MS: u64 = 24 * 3600 * 1000;
/// The first wait after a failed delivery (doubled per attempt).
pub const RETRY_BASE_MS: u64 = 500;
/// The longest wait between deliveries to one member.
pub const RETRY_CAP_MS: u64 = 60_000;
/// A delivery with no answer after this long counts as failed.
pub const ACK_TIMEOUT_MS: u64 = 30_000;
/// Most entries in one delivery.
pub const BATCH_ENTRIES: usize = 200;
/// Most members a `created` notice names (the first, by user id); past
/// it the notice also says how many there are (`member_count`).
pub const CREATED_LISTS: usize = 100;
/// Longest group id, in bytes: `g` and 32 more.
pub const MAX_ID_LEN: usize = 33;

/// A validated group id. On the wire it is `g:` and 1 to 32 of
/// `[a-z0-9_-]` ([`GroupId::wire`], also `Display`): no user id holds a `:`,
/// so a field that names a user or a group (a push's or a conversation's
/// `peer`) always tells them apart. The form before that, `g` and the same
/// name, is still read everywhere and names the same group: it is the
/// group's object name and the key of everything stored about it
/// ([`GroupId::as_str`]), so groups made before the `g:` form keep their
/// object, logs and cursors. Both forms are safe in URLs and SQL bindings,
/// and the conversation id (`g:<object name>`) cannot collide with a pair's
/// or a system channel's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(String);

/// Why a value is not a group id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidGroupId {
    /// Does not start with `g`, or nothing follows it.
    NoPrefix,
    TooLong,
    BadCharacter,
}

impl fmt::Display for InvalidGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidGroupId::NoPrefix => "group id must be g: (or g) followed by at least one character",
            InvalidGroupId::TooLong => "group id's name (after g:) is longer than 32 characters",
            InvalidGroupId::BadCharacter => "group id may only hold lowercase letters, digits, _ and -",
        })
    }
}

impl std::error::Error for InvalidGroupId {}

impl GroupId {
    /// Either form: `g:team` or `gteam`, the same group.
    pub fn parse(s: &str) -> Result<GroupId, InvalidGroupId> {
        let object;
        let s = match s.strip_prefix("g:") {
            Some(name) => {
                object = format!("g{name}");
                object.as_str()
            }
            None => s,
        };
        let Some(rest) = s.strip_prefix('g').filter(|r| !r.is_empty()) else {
            return Err(InvalidGroupId::NoPrefix);
        };
        if s.len() > MAX_ID_LEN {
            return Err(InvalidGroupId::TooLong);
        }
        if !rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-')) {
            return Err(InvalidGroupId::BadCharacter);
        }
        Ok(GroupId(s.to_owned()))
    }

    /// The object name (`gteam`): the storage key, never written to a client.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What a mute of the group is listed under: its object name, a valid
    /// user id (mutes name users and groups alike).
    pub fn mute_key(&self) -> Option<UserId> {
        UserId::parse(&self.0).ok()
    }

    /// A mute's `peer`: a user id, or a group id in either form.
    pub fn mute_peer(s: &str) -> Option<UserId> {
        match s.strip_prefix("g:") {
            Some(_) => GroupId::parse(s).ok()?.mute_key(),
            None => UserId::parse(s).ok(),
        }
    }

    /// The id as the server writes it to clients: `g:team`.
    pub fn wire(&self) -> String {
        format!("g:{}", &self.0[1..])
    }

    /// A new group's id when its creator names none: `g` and 16 hex digits.
    pub fn fresh(random: u64) -> GroupId {
        GroupId(format!("g{random:016x}"))
    }

    /// The group's conversation in history: written once for all members.
    pub fn conversation_id(&self) -> String {
        format!("g:{}", self.0)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g:{}", &self.0[1..])
    }
}

/// A member's role. The number is what the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Exactly one per group: adds and removes anyone but themself, changes
    /// roles, hands ownership over; cannot leave or be removed before that.
    Owner = 1,
    /// Adds members, removes members (not admins, not the owner).
    Admin = 2,
    Member = 3,
}

impl Role {
    pub fn code(self) -> u64 {
        self as u64
    }

    pub fn from_code(code: u64) -> Option<Role> {
        Some(match code {
            1 => Role::Owner,
            2 => Role::Admin,
            3 => Role::Member,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Whether this role may add and remove members.
    fn manages(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// Who asks: a user, or the backend API (API key), which may do everything
/// an owner may, for moderation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Backend,
}

impl Actor {
    pub fn user(&self) -> Option<&UserId> {
        match self {
            Actor::User(u) => Some(u),
            Actor::Backend => None,
        }
    }
}

/// A current member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub user: UserId,
    pub role: Role,
    /// The `group_seq` of their (current) join: they read from here on.
    pub joined: u64,
    /// They read the group up to here.
    pub read: u64,
}

/// A membership change, as the group log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Created {
        owner: UserId,
        members: Vec<UserId>,
    },
    Added {
        user: UserId,
        role: Role,
    },
    Removed {
        user: UserId,
    },
    Left {
        user: UserId,
    },
    RoleChanged {
        user: UserId,
        role: Role,
    },
    /// `from` becomes an admin, `to` the owner.
    HandedOver {
        from: UserId,
        to: UserId,
    },
}

impl Change {
    pub fn name(&self) -> &'static str {
        match self {
            Change::Created { .. } => "created",
            Change::Added { .. } => "added",
            Change::Removed { .. } => "removed",
            Change::Left { .. } => "left",
            Change::RoleChanged { .. } => "role_changed",
            Change::HandedOver { .. } => "handed_over",
        }
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("change".into(), Value::from(self.name()));
        match self {
            Change::Created { owner, members } => {
                m.insert("user".into(), owner.to_json());
                // Every member gets this notice: listing them all would make
                // a group's creation cost members² bytes (10,000 members:
                // 1.5 GB of deliveries, past the runtime's heap).
                let listed = members.iter().take(CREATED_LISTS).map(UserId::to_json).collect();
                m.insert("members".into(), Value::Array(listed));
                if members.len() > CREATED_LISTS {
                    m.insert("member_count".into(), Value::from(members.len()));
                }
            }
            Change::Added { user, role } | Change::RoleChanged { user, role } => {
                m.insert("user".into(), user.to_json());
                m.insert("role".into(), Value::from(role.as_str()));
            }
            Change::Removed { user } | Change::Left { user } => {
                m.insert("user".into(), user.to_json());
            }
            Change::HandedOver { from, to } => {
                m.insert("user".into(), to.to_json());
                m.insert("from".into(), from.to_json());
            }
        }
        m
    }
}

/// What a membership request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Owner, admins and the backend; only the owner (or the backend) adds an admin.
    Add { user: UserId, role: Role },
    /// Owner, admins (members only) and the backend; never the owner.
    Remove { user: UserId },
    /// Any member but the owner, who hands over first.
    Leave,
    /// Owner and backend: admin or member, never owner (hand over instead).
    SetRole { user: UserId, role: Role },
    /// Owner and backend: `to` becomes the owner, the owner an admin.
    HandOver { to: UserId },
}

/// What an entry of the group log is. The number is what the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Message = 1,
    Change = 2,
    /// The backend edited an earlier message for everyone (moderation):
    /// the body is an op's, `{"target","body"}` ([`crate::edits::group_op`]).
    Edit = 3,
    /// The backend deleted an earlier message for everyone: `{"target",
    /// "body" (the tombstone), "for": "everyone"}`.
    Delete = 4,
}

impl EntryKind {
    pub fn code(self) -> u64 {
        self as u64
    }

    pub fn from_code(code: u64) -> Option<EntryKind> {
        match code {
            1 => Some(EntryKind::Message),
            2 => Some(EntryKind::Change),
            3 => Some(EntryKind::Edit),
            4 => Some(EntryKind::Delete),
            _ => None,
        }
    }
}

/// An entry of the group log, as stored and as delivered. A member's object
/// appends it to the member's log (kind group, with the group id and
/// `group_seq`) under the member's own seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub seq: u64,
    /// The message id (the change's own id for a change).
    pub id: String,
    pub kind: EntryKind,
    /// `None`: the backend.
    pub sender: Option<UserId>,
    pub time_ms: u64,
    /// What every member receives, built once ([`message_body`], [`change_body`]).
    pub body: String,
}

/// Why a group request is refused. Nothing was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupError {
    Store(StoreError),
    /// The group was never created.
    NoSuchGroup,
    /// Create on a group that exists.
    AlreadyExists,
    /// The one asking (sender, reader, leaver) is not a member.
    NotMember,
    /// The user a change names is not a member.
    NoSuchMember,
    AlreadyMember,
    /// The role asking cannot do this; `needs` is the least role that can.
    NotAllowed {
        needs: Role,
    },
    /// The group would pass `GROUP_MAX_MEMBERS`.
    Full {
        max: u32,
    },
    /// The owner leaves, or their role changes, only by handing over first.
    OwnerMustHandOver,
    CannotRemoveOwner,
    /// Ownership moves only by handing over, never by adding or setting a role.
    InvalidRole,
    /// The change would change nothing (same role, hand over to oneself).
    Unchanged,
    /// A message without a non-empty `message` string.
    EmptyMessage,
    /// No entry at that `group_seq`, or no message with that id.
    NoSuchEntry,
    /// An edit or delete of a message deleted for everyone.
    Deleted,
    /// The user does not accept being added by the one asking (their
    /// `group_adds` setting, or a block: the same refusal either way).
    AddRefused,
}

impl From<StoreError> for GroupError {
    fn from(e: StoreError) -> GroupError {
        GroupError::Store(e)
    }
}

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupError::Store(e) => e.fmt(f),
            GroupError::NoSuchGroup => f.write_str("no such group"),
            GroupError::AlreadyExists => f.write_str("the group exists already"),
            GroupError::NotMember => f.write_str("not a member of the group"),
            GroupError::NoSuchMember => f.write_str("that user is not a member of the group"),
            GroupError::AlreadyMember => f.write_str("that user is a member already"),
            GroupError::NotAllowed { needs } => write!(f, "only the {} may do this", needs.as_str()),
            GroupError::Full { max } => write!(f, "the group has {max} members, GROUP_MAX_MEMBERS"),
            GroupError::OwnerMustHandOver => f.write_str("the owner must hand ownership over first"),
            GroupError::CannotRemoveOwner => f.write_str("the owner cannot be removed"),
            GroupError::InvalidRole => f.write_str("ownership moves only by handing it over"),
            GroupError::Unchanged => f.write_str("nothing to change"),
            GroupError::EmptyMessage => f.write_str("message must be a non-empty string"),
            GroupError::NoSuchEntry => f.write_str("no such group entry"),
            GroupError::Deleted => f.write_str("the message was deleted; nothing changed"),
            GroupError::AddRefused => f.write_str("that user does not accept being added to groups by you"),
        }
    }
}

/// The settings a group works under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `GROUP_MAX_MEMBERS`.
    pub max_members: u32,
    pub dedup_ms: u64,
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    pub ack_timeout_ms: u64,
    /// Most entries in one delivery.
    pub batch_entries: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_members: DEFAULT_MAX_MEMBERS,
            dedup_ms: DEDUP_MS,
            retry_base_ms: RETRY_BASE_MS,
            retry_cap_ms: RETRY_CAP_MS,
            ack_timeout_ms: ACK_TIMEOUT_MS,
            batch_entries: BATCH_ENTRIES,
        }
    }
}

impl Config {
    /// The wait before attempt `attempt + 1` after `attempt` failures.
    pub fn backoff(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(32);
        self.retry_base_ms.saturating_mul(1u64 << doublings).min(self.retry_cap_ms)
    }
}

/// Entries for one member's object, in `group_seq` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub group: GroupId,
    pub member: UserId,
    /// Names this attempt in [`Group::failed`] (an answer to any attempt counts).
    pub flight: u64,
    /// The group's cursor for this member: they acknowledged everything owed
    /// to them up to it ([`accept`]).
    pub since: u64,
    pub entries: Vec<GroupEntry>,
}

/// A member's object's answer to a [`Delivery`] ([`Accept::answer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Its log holds the group's entries owed to it up to here.
    Applied(u64),
    /// Its log holds only up to here, below the delivery's `since`.
    Gap(u64),
}

/// What the platform does after a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Make this hop to the member's object, then call [`Group::answered`]
    /// with its answer, or [`Group::failed`].
    Deliver(Delivery),
    /// Set the platform alarm for `at_ms` (earlier than any set before);
    /// then call [`Group::alarm_fired`].
    SetAlarm { at_ms: u64 },
    /// Tell these members' objects that `from` is (not) typing; each shows it
    /// on its open sockets if there are any. Never stored, lost on failure.
    Typing { from: UserId, to: Vec<UserId>, typing: bool },
}

/// The answer to a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub seq: u64,
    pub id: String,
    /// A retry of a send already stored (same sender and `cmid` within 24 h):
    /// the original's seq and id, nothing stored.
    pub duplicate: bool,
}

/// "Read by `read` of `of`": of the members at a message's `group_seq` other
/// than its sender, how many read up to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadBy {
    pub read: u32,
    pub of: u32,
}

/// A delivery in flight to one member.
#[derive(Clone, Copy, Debug)]
struct Flight {
    id: u64,
    sent_at: u64,
}

struct State {
    id: GroupId,
    head: u64,
    /// Everyone who ever was a member, by user (former members with no role).
    members: BTreeMap<UserId, MemberRow>,
    /// Each user's stretches of membership, oldest first.
    spans: HashMap<UserId, Vec<Span>>,
}

impl State {
    fn role(&self, user: &UserId) -> Option<Role> {
        self.members.get(user).and_then(|m| m.role)
    }

    fn count(&self) -> usize {
        self.members.values().filter(|m| m.role.is_some()).count()
    }

    fn owner(&self) -> Option<&UserId> {
        self.members.values().find(|m| m.role == Some(Role::Owner)).map(|m| &m.user)
    }

    /// The last entry owed to `user` so far.
    fn owed_up_to(&self, user: &UserId) -> u64 {
        match self.spans.get(user).and_then(|s| s.last()) {
            Some(Span { until: None, .. }) => self.head,
            Some(Span { until: Some(u), .. }) => *u,
            None => 0,
        }
    }

    /// Whether `user` was a member at `seq` (their removal's own entry not
    /// counted).
    fn member_at(&self, user: &UserId, seq: u64) -> bool {
        self.spans.get(user).is_some_and(|s| s.iter().any(|s| s.joined <= seq && s.until.is_none_or(|u| seq < u)))
    }
}

/// A group object's decisions over its store.
pub struct Group<S> {
    store: Store<S>,
    config: Config,
    state: Option<State>,
    flights: HashMap<UserId, Flight>,
    next_flight: u64,
    /// The alarm time this instance set, until it fires.
    armed: Option<u64>,
    /// Members whose cursor moved in memory since it was last stored: saved
    /// when the alarm fires (see [`Group::answered`]).
    unsaved: BTreeSet<UserId>,
    /// Each member's typing rate (memory only).
    typists: typing::Typists,
    /// Members who hide their presence: their read position is theirs alone
    /// (the member's object says so with each read, [`Group::set_hidden`]).
    hidden: BTreeSet<UserId>,
    effects: Vec<Effect>,
    /// Members by what they wait for (memory only, rebuilt on open).
    schedule: schedule::Schedule,
    /// Stretches of membership and what of them was read, for "read by N
    /// of M" (memory only, rebuilt on open).
    readers: readers::Readers,
}

/// The body every member receives for a message: the sender's fields
/// (extras carried) with the server's `fromUser`, `group`, `id`, `time` and
/// `group_seq`; fields only the server sets are dropped.
pub fn message_body(
    group: &GroupId,
    from: &UserId,
    mut fields: Map<String, Value>,
    id: &str,
    seq: u64,
    time_ms: u64,
) -> String {
    for k in ["type", "toUser", "change", "edit_version", "edited_at", "deleted_at"] {
        fields.remove(k);
    }
    fields.insert("fromUser".into(), from.to_json());
    fields.insert("group".into(), Value::from(group.wire()));
    fields.insert("id".into(), Value::from(id));
    fields.insert("time".into(), Value::from(rfc3339(time_ms)));
    fields.insert("group_seq".into(), Value::from(seq));
    Value::Object(fields).to_string()
}

/// The body of a membership change, a system entry ("alice added bob"):
/// `type` is `group`, `by` the user who did it (null: the backend).
pub fn change_body(group: &GroupId, change: &Change, by: &Actor, id: &str, seq: u64, time_ms: u64) -> String {
    let mut m = change.fields();
    m.insert("type".into(), Value::from("group"));
    m.insert("group".into(), Value::from(group.wire()));
    m.insert("by".into(), by.user().map_or(Value::Null, UserId::to_json));
    m.insert("id".into(), Value::from(id));
    m.insert("time".into(), Value::from(rfc3339(time_ms)));
    m.insert("group_seq".into(), Value::from(seq));
    Value::Object(m).to_string()
}

impl<S: Sql> Group<S> {
    /// Opens a group object: reads its members and spans (small: capped).
    pub fn open(store: Store<S>, config: Config) -> Result<Group<S>, StoreError> {
        let loaded = store.load()?;
        let hidden = store.hidden_readers()?.into_iter().collect();
        let state = loaded.id.map(|id| {
            let mut spans: HashMap<UserId, Vec<Span>> = HashMap::new();
            for (user, span) in loaded.spans {
                spans.entry(user).or_default().push(span);
            }
            State {
                id,
                head: loaded.head,
                members: loaded.members.into_iter().map(|m| (m.user.clone(), m)).collect(),
                spans,
            }
        });
        Ok(Group {
            store,
            config,
            state,
            flights: HashMap::new(),
            next_flight: 0,
            armed: None,
            unsaved: BTreeSet::new(),
            typists: typing::Typists::default(),
            hidden,
            effects: Vec::new(),
            schedule: schedule::Schedule::default(),
            readers: readers::Readers::default(),
        })
        .map(|mut g| {
            g.refile_all();
            g.recount_all();
            g
        })
    }

    /// The store back, for tests that open the same database again.
    pub fn into_store(self) -> Store<S> {
        self.store
    }

    pub fn store(&self) -> &Store<S> {
        &self.store
    }

    /// What the platform must do now.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn id(&self) -> Option<&GroupId> {
        self.state.as_ref().map(|s| &s.id)
    }

    /// `GROUP_MAX_MEMBERS`.
    pub fn max_members(&self) -> u32 {
        self.config.max_members
    }

    /// The newest `group_seq` (0: not created).
    pub fn head(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.head)
    }

    fn state(&self) -> Result<&State, GroupError> {
        self.state.as_ref().ok_or(GroupError::NoSuchGroup)
    }

    /// The current members, by user id.
    pub fn members(&self) -> Result<Vec<Member>, GroupError> {
        Ok(self
            .state()?
            .members
            .values()
            .filter_map(|m| Some(Member { user: m.user.clone(), role: m.role?, joined: m.joined, read: m.read }))
            .collect())
    }

    /// Creates the group: `owner` and `members` join at `group_seq` 1, the
    /// created notice. A user creates a group they own; the backend any.
    pub fn create(
        &mut self,
        id: GroupId,
        by: &Actor,
        owner: UserId,
        members: &[UserId],
        entry_id: &str,
        now: u64,
    ) -> Result<u64, GroupError> {
        if self.state.is_some() {
            return Err(GroupError::AlreadyExists);
        }
        if by.user().is_some_and(|u| *u != owner) {
            return Err(GroupError::NotAllowed { needs: Role::Owner });
        }
        let mut others: Vec<UserId> = members.iter().filter(|u| **u != owner).cloned().collect();
        others.sort();
        others.dedup();
        if others.len() + 1 > self.config.max_members as usize {
            return Err(GroupError::Full { max: self.config.max_members });
        }
        let change = Change::Created { owner: owner.clone(), members: others.clone() };
        let entry = GroupEntry {
            seq: 1,
            id: entry_id.to_owned(),
            kind: EntryKind::Change,
            sender: by.user().cloned(),
            time_ms: now,
            body: change_body(&id, &change, by, entry_id, 1, now),
        };
        self.store.set_group(&id)?;
        self.store.append(&entry, None)?;
        let mut state = State { id, head: 1, members: BTreeMap::new(), spans: HashMap::new() };
        for (user, role) in std::iter::once((owner, Role::Owner)).chain(others.into_iter().map(|u| (u, Role::Member))) {
            join(&self.store, &mut state, user, role, 1)?;
        }
        self.state = Some(state);
        self.refile_all();
        self.recount_all();
        self.pump(now)?;
        Ok(1)
    }

    /// A member's message: stored under the next `group_seq` and owed to
    /// every member. A retry (same sender and `cmid` within 24 h) answers
    /// the original, storing nothing. `id` is the message id to use if new.
    pub fn send(
        &mut self,
        sender: &UserId,
        cmid: Option<&str>,
        fields: Map<String, Value>,
        id: &str,
        now: u64,
    ) -> Result<Sent, GroupError> {
        let state = self.state()?;
        // Before membership: a retry of a stored send gets its answer even
        // if the sender was removed since.
        if let Some(cmid) = cmid {
            let since = now.saturating_sub(self.config.dedup_ms);
            if let Some((seq, id)) = self.store.sent_before(sender, cmid, since)? {
                return Ok(Sent { seq, id, duplicate: true });
            }
        }
        if state.role(sender).is_none() {
            return Err(GroupError::NotMember);
        }
        if !matches!(fields.get("message"), Some(Value::String(m)) if !m.is_empty()) {
            return Err(GroupError::EmptyMessage);
        }
        let seq = state.head + 1;
        let entry = GroupEntry {
            seq,
            id: id.to_owned(),
            kind: EntryKind::Message,
            sender: Some(sender.clone()),
            time_ms: now,
            body: message_body(&state.id, sender, fields, id, seq, now),
        };
        self.store.append(&entry, cmid)?;
        if let Some(s) = self.state.as_mut() {
            s.head = seq;
        }
        self.pump(now)?;
        Ok(Sent { seq, id: id.to_owned(), duplicate: false })
    }

    /// A membership change: decided, stored as an entry of the group log
    /// (returned: its `group_seq`) and owed to every member (and to the user
    /// it removes, who gets this entry and nothing after).
    pub fn change(&mut self, by: &Actor, op: Op, entry_id: &str, now: u64) -> Result<u64, GroupError> {
        let state = self.state()?;
        let actor_role = match by {
            Actor::Backend => Some(Role::Owner),
            Actor::User(u) => state.role(u),
        };
        let Some(actor_role) = actor_role else { return Err(GroupError::NotMember) };
        let change = match op {
            Op::Add { user, role } => {
                if !actor_role.manages() {
                    return Err(GroupError::NotAllowed { needs: Role::Admin });
                }
                if role == Role::Owner {
                    return Err(GroupError::InvalidRole);
                }
                if role == Role::Admin && actor_role != Role::Owner {
                    return Err(GroupError::NotAllowed { needs: Role::Owner });
                }
                if state.role(&user).is_some() {
                    return Err(GroupError::AlreadyMember);
                }
                if state.count() >= self.config.max_members as usize {
                    return Err(GroupError::Full { max: self.config.max_members });
                }
                Change::Added { user, role }
            }
            Op::Remove { user } => {
                if !actor_role.manages() {
                    return Err(GroupError::NotAllowed { needs: Role::Admin });
                }
                match state.role(&user) {
                    None => return Err(GroupError::NoSuchMember),
                    Some(Role::Owner) => return Err(GroupError::CannotRemoveOwner),
                    Some(Role::Admin) if actor_role != Role::Owner => {
                        return Err(GroupError::NotAllowed { needs: Role::Owner })
                    }
                    Some(_) => Change::Removed { user },
                }
            }
            Op::Leave => {
                let Actor::User(user) = by else { return Err(GroupError::NotMember) };
                if actor_role == Role::Owner {
                    return Err(GroupError::OwnerMustHandOver);
                }
                Change::Left { user: user.clone() }
            }
            Op::SetRole { user, role } => {
                if actor_role != Role::Owner {
                    return Err(GroupError::NotAllowed { needs: Role::Owner });
                }
                if role == Role::Owner {
                    return Err(GroupError::InvalidRole);
                }
                match state.role(&user) {
                    None => return Err(GroupError::NoSuchMember),
                    Some(Role::Owner) => return Err(GroupError::OwnerMustHandOver),
                    Some(r) if r == role => return Err(GroupError::Unchanged),
                    Some(_) => Change::RoleChanged { user, role },
                }
            }
            Op::HandOver { to } => {
                if actor_role != Role::Owner {
                    return Err(GroupError::NotAllowed { needs: Role::Owner });
                }
                let from = state.owner().cloned().ok_or(GroupError::NoSuchMember)?;
                match state.role(&to) {
                    None => return Err(GroupError::NoSuchMember),
                    Some(Role::Owner) => return Err(GroupError::Unchanged),
                    Some(_) => Change::HandedOver { from, to },
                }
            }
        };
        let seq = state.head + 1;
        let entry = GroupEntry {
            seq,
            id: entry_id.to_owned(),
            kind: EntryKind::Change,
            sender: by.user().cloned(),
            time_ms: now,
            body: change_body(&state.id, &change, by, entry_id, seq, now),
        };
        self.store.append(&entry, None)?;
        let Some(state) = self.state.as_mut() else { return Err(GroupError::NoSuchGroup) };
        state.head = seq;
        let counted = match &change {
            Change::Added { user, .. } | Change::Removed { user } | Change::Left { user } => Some(user.clone()),
            _ => None,
        };
        if let Some(user) = &counted {
            self.recount(user, false);
        }
        let Some(state) = self.state.as_mut() else { return Err(GroupError::NoSuchGroup) };
        match change {
            Change::Added { user, role } => {
                join(&self.store, state, user.clone(), role, seq)?;
                self.refile(&user);
            }
            Change::Removed { user } | Change::Left { user } => {
                part(&self.store, state, &user, seq)?;
                self.refile(&user);
            }
            Change::RoleChanged { user, role } => set_role(&self.store, state, &user, role)?,
            Change::HandedOver { from, to } => {
                set_role(&self.store, state, &from, Role::Admin)?;
                set_role(&self.store, state, &to, Role::Owner)?;
            }
            Change::Created { .. } => {}
        }
        if let Some(user) = &counted {
            self.recount(user, true);
        }
        self.pump(now)?;
        Ok(seq)
    }

    /// A member's object answered a delivery (any attempt's answer counts:
    /// the cursor only moves forward on [`Answer::Applied`]).
    pub fn answered(&mut self, member: &UserId, flight: u64, answer: Answer, now: u64) -> Result<(), StoreError> {
        let Some(state) = self.state.as_mut() else { return Ok(()) };
        let owed = state.owed_up_to(member);
        let Some(row) = state.members.get_mut(member) else { return Ok(()) };
        if self.flights.get(member).is_some_and(|f| f.id == flight) {
            if let Some(f) = self.flights.remove(member) {
                self.schedule.flight_back(member, f.sent_at + self.config.ack_timeout_ms);
            }
        }
        let cursor = match answer {
            Answer::Applied(n) => row.delivered.max(n.min(owed)),
            // The member's log is behind the cursor (it lost entries): go back.
            Answer::Gap(n) => n.min(row.delivered),
        };
        if row.attempt > 0 || matches!(answer, Answer::Gap(_)) {
            // Rare: the end of a retry state, a step back. Stored at once.
            self.store.set_delivered(member, cursor)?;
            self.unsaved.remove(member);
            row.attempt = 0;
            row.next_at = 0;
        } else if cursor != row.delivered {
            // A row written per answer would be most of what a group message
            // costs. A cursor lost with the instance only makes the member's
            // object answer a repeat as already applied (it stores nothing),
            // so cursors are kept in memory and stored when the alarm fires
            // (one is always set while deliveries are out, for their timeout).
            self.unsaved.insert(member.clone());
        }
        row.delivered = cursor;
        self.refile(member);
        self.pump(now)
    }

    /// A delivery did not reach the member's object or was not answered:
    /// retried after a backoff. A failure of an attempt no longer in flight
    /// changes nothing.
    pub fn failed(&mut self, member: &UserId, flight: u64, now: u64) -> Result<(), StoreError> {
        if self.flights.get(member).is_none_or(|f| f.id != flight) {
            return Ok(());
        }
        self.land(member);
        self.back_off(member, now)?;
        self.pump(now)
    }

    /// The flight to `member` is over (answered or given up).
    fn land(&mut self, member: &UserId) {
        if let Some(f) = self.flights.remove(member) {
            self.schedule.flight_back(member, f.sent_at + self.config.ack_timeout_ms);
        }
    }

    fn back_off(&mut self, member: &UserId, now: u64) -> Result<(), StoreError> {
        let Some(row) = self.state.as_mut().and_then(|s| s.members.get_mut(member)) else { return Ok(()) };
        row.attempt = row.attempt.saturating_add(1);
        row.next_at = now + self.config.backoff(row.attempt);
        self.store.set_retry(member, row.attempt, row.next_at)?;
        self.refile(member);
        Ok(())
    }

    /// The platform alarm fired: deliveries unanswered for too long count as
    /// failed, deliveries due go out, old client message ids are forgotten.
    pub fn alarm_fired(&mut self, now: u64) -> Result<(), StoreError> {
        self.armed = None;
        self.save_cursors()?;
        for user in self.schedule.overdue(now) {
            self.land(&user);
            self.back_off(&user, now)?;
        }
        self.store.expire_cmids(now.saturating_sub(self.config.dedup_ms))?;
        self.pump(now)
    }

    /// Stores the cursors answers moved since they were last stored.
    pub fn save_cursors(&mut self) -> Result<(), StoreError> {
        let Some(state) = self.state.as_ref() else { return Ok(()) };
        for user in std::mem::take(&mut self.unsaved) {
            if let Some(row) = state.members.get(&user) {
                self.store.set_cursor(&user, row.delivered)?;
            }
        }
        Ok(())
    }

    /// Sends what is owed and due to every member not already waiting for
    /// an answer, and sets the alarm for whatever comes next. Looks only at
    /// the members a new entry made owed and those due ([`schedule`]).
    fn pump(&mut self, now: u64) -> Result<(), StoreError> {
        let Some(head) = self.state.as_ref().map(|s| s.head) else { return Ok(()) };
        if self.schedule.head != head {
            for user in self.schedule.take_idle() {
                self.refile(&user);
            }
            self.schedule.head = head;
        }
        let due = self.schedule.take_due(now);
        let Some(state) = self.state.as_ref() else { return Ok(()) };
        let mut cache: HashMap<(u64, u64, usize), Vec<GroupEntry>> = HashMap::new();
        let mut out = Vec::new();
        for user in due {
            let Some(row) = state.members.get(&user) else { continue };
            let entries = owed(&self.store, state, row, self.config.batch_entries, &mut cache)?;
            if entries.is_empty() {
                // Owed by the cursor but nothing stored to send (a damaged
                // store): looked at again when the next entry comes.
                self.schedule.file(&user, Some(schedule::Slot::Idle));
                continue;
            }
            self.next_flight += 1;
            let deadline = now + self.config.ack_timeout_ms;
            self.flights.insert(user.clone(), Flight { id: self.next_flight, sent_at: now });
            self.schedule.flight_out(&user, deadline);
            self.schedule.file(&user, Some(schedule::Slot::Flying(deadline)));
            out.push(Effect::Deliver(Delivery {
                group: state.id.clone(),
                member: user,
                flight: self.next_flight,
                since: row.delivered,
                entries,
            }));
        }
        self.effects.extend(out);
        let mut next = self.schedule.next_wake();
        if !self.unsaved.is_empty() && next.is_none() && self.armed.is_none() {
            next = Some(now + self.config.ack_timeout_ms);
        }
        if let Some(at) = next {
            if self.armed.is_none_or(|a| at < a) {
                self.armed = Some(at);
                self.effects.push(Effect::SetAlarm { at_ms: at });
            }
        }
        Ok(())
    }

    /// A member read the group up to `up_to` (kept if it moves forward).
    /// Returns their read cursor.
    pub fn read(&mut self, member: &UserId, up_to: u64) -> Result<u64, GroupError> {
        let Some(state) = self.state.as_mut() else { return Err(GroupError::NoSuchGroup) };
        let head = state.head;
        let Some(row) = state.members.get_mut(member).filter(|m| m.role.is_some()) else {
            return Err(GroupError::NotMember);
        };
        let up_to = up_to.min(head);
        if up_to <= row.read {
            return Ok(row.read);
        }
        self.store.set_read(member, up_to)?;
        self.recount(member, false);
        if let Some(row) = self.state.as_mut().and_then(|s| s.members.get_mut(member)) {
            row.read = up_to;
        }
        self.recount(member, true);
        Ok(up_to)
    }

    /// "Read by N of M" for the entry at `seq`: M is the users who were
    /// members at `seq` (those removed by it not counted) other than its
    /// sender, N those of them whose read cursor reached `seq` (a former
    /// member's last cursor counts). Asked by a member who can read `seq`,
    /// or the backend.
    pub fn read_by(&self, by: &Actor, seq: u64) -> Result<ReadBy, GroupError> {
        let state = self.state()?;
        if seq < self.readable_from(by)? {
            return Err(GroupError::NotMember);
        }
        let entry = self.store.entry(seq)?.ok_or(GroupError::NoSuchEntry)?;
        let (mut read, mut of) = self.readers.at(seq);
        // The sender is not counted.
        if let Some(sender) = entry.sender.as_ref().filter(|s| state.member_at(s, seq)) {
            of = of.saturating_sub(1);
            if state.members.get(sender).is_some_and(|m| m.read >= seq) {
                read = read.saturating_sub(1);
            }
        }
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(ReadBy { read: clamp(read), of: clamp(of) })
    }

    /// The first `group_seq` `by` may read: a member's current join (the
    /// backend reads everything). A former member reads nothing.
    pub fn readable_from(&self, by: &Actor) -> Result<u64, GroupError> {
        let state = self.state()?;
        match by {
            Actor::Backend => Ok(1),
            Actor::User(u) => {
                state.members.get(u).filter(|m| m.role.is_some()).map(|m| m.joined).ok_or(GroupError::NotMember)
            }
        }
    }

    /// A page of the group's history, newest first: up to `limit` entries
    /// before `before` (`None`: the newest), none before `by`'s join.
    pub fn page(&self, by: &Actor, before: Option<u64>, limit: u32) -> Result<Vec<GroupEntry>, GroupError> {
        let from = self.readable_from(by)?;
        // Any cursor past every seq (up to 2^64 - 1) is "from the newest",
        // as for the conversation list; SQLite's integers would wrap it.
        const NEWEST: u64 = u64::MAX >> 11;
        let before = before.unwrap_or(NEWEST).min(NEWEST);
        Ok(self.store.page(from, before, limit)?)
    }

    /// A member is (not) typing, within [`crate::mailbox::TYPING_RATE`]:
    /// relayed (true), or dropped past the rate (false; typing is a hint,
    /// so the typist is not told to slow down).
    pub fn typing_at(&mut self, from: &UserId, typing: bool, now: u64) -> Result<bool, GroupError> {
        if self.state()?.role(from).is_none() {
            return Err(GroupError::NotMember);
        }
        if !self.typists.allow(from, now) {
            crate::metrics::incr(crate::metrics::Counter::DroppedTyping);
            return Ok(false);
        }
        self.typing(from, typing).map(|_| true)
    }

    /// A member is (not) typing: relayed to the other members, not stored.
    pub fn typing(&mut self, from: &UserId, typing: bool) -> Result<(), GroupError> {
        let state = self.state()?;
        if state.role(from).is_none() {
            return Err(GroupError::NotMember);
        }
        let to: Vec<UserId> =
            state.members.values().filter(|m| m.role.is_some() && m.user != *from).map(|m| m.user.clone()).collect();
        if !to.is_empty() {
            self.effects.push(Effect::Typing { from: from.clone(), to, typing });
        }
        Ok(())
    }
}

/// `user` joins at `seq` with `role`: their row (cursor kept if they were
/// a member before) and a new span.
fn join<S: Sql>(store: &Store<S>, state: &mut State, user: UserId, role: Role, seq: u64) -> Result<(), StoreError> {
    let row = match state.members.get(&user) {
        Some(old) => MemberRow { role: Some(role), joined: seq, ..old.clone() },
        None => MemberRow {
            user: user.clone(),
            role: Some(role),
            joined: seq,
            delivered: 0,
            attempt: 0,
            next_at: 0,
            read: 0,
        },
    };
    let span = Span { joined: seq, until: None };
    store.save_member(&row)?;
    store.save_span(&user, span)?;
    state.members.insert(user.clone(), row);
    state.spans.entry(user).or_default().push(span);
    Ok(())
}

/// `user` stops being a member at `seq` (they still get that entry).
fn part<S: Sql>(store: &Store<S>, state: &mut State, user: &UserId, seq: u64) -> Result<(), StoreError> {
    let Some(row) = state.members.get_mut(user) else { return Ok(()) };
    row.role = None;
    store.save_member(row)?;
    if let Some(span) = state.spans.get_mut(user).and_then(|s| s.last_mut()) {
        span.until = Some(seq);
        store.save_span(user, *span)?;
    }
    Ok(())
}

fn set_role<S: Sql>(store: &Store<S>, state: &mut State, user: &UserId, role: Role) -> Result<(), StoreError> {
    let Some(row) = state.members.get_mut(user) else { return Ok(()) };
    row.role = Some(role);
    store.save_member(row)
}

/// What `row`'s user is owed after their cursor, in order, up to `limit`
/// entries: the entries of their spans above it. Members at the same cursor
/// share one read (`cache`).
fn owed<S: Sql>(
    store: &Store<S>,
    state: &State,
    row: &MemberRow,
    limit: usize,
    cache: &mut HashMap<(u64, u64, usize), Vec<GroupEntry>>,
) -> Result<Vec<GroupEntry>, StoreError> {
    let mut out = Vec::new();
    for span in state.spans.get(&row.user).map(Vec::as_slice).unwrap_or_default() {
        let from = span.joined.max(row.delivered + 1);
        let to = span.until.unwrap_or(state.head);
        let left = limit.saturating_sub(out.len());
        if from > to {
            continue;
        }
        if left == 0 {
            break;
        }
        let entries = match cache.entry((from, to, left)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(store.entries(from, to, left)?),
        };
        out.extend(entries.iter().cloned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids() {
        for ok in ["ga", "g0", "g-_x9", &format!("g{}", "a".repeat(32))] {
            assert!(GroupId::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(GroupId::parse(""), Err(InvalidGroupId::NoPrefix));
        assert_eq!(GroupId::parse("g"), Err(InvalidGroupId::NoPrefix));
        assert_eq!(GroupId::parse("abc"), Err(InvalidGroupId::NoPrefix));
        assert_eq!(GroupId::parse(&format!("g{}", "a".repeat(33))), Err(InvalidGroupId::TooLong));
        for bad in ["gA", "g a", "g/x", "g.x", "gx:y", "gé"] {
            assert_eq!(GroupId::parse(bad), Err(InvalidGroupId::BadCharacter), "{bad:?}");
        }
        assert_eq!(GroupId::parse("gabc").unwrap().conversation_id(), "g:gabc");
        // The `g:` form names the same group, stored under the same key.
        let new = GroupId::parse("g:abc").unwrap();
        assert_eq!(new, GroupId::parse("gabc").unwrap());
        assert_eq!((new.as_str(), new.wire(), new.to_string()), ("gabc", "g:abc".to_owned(), "g:abc".to_owned()));
        assert_eq!(GroupId::parse(&format!("g:{}", "a".repeat(32))).unwrap().wire().len(), 34);
        assert_eq!(GroupId::parse("g:"), Err(InvalidGroupId::NoPrefix));
        assert_eq!(GroupId::parse("g::x"), Err(InvalidGroupId::BadCharacter));
        assert_eq!(GroupId::parse(&format!("g:{}", "a".repeat(33))), Err(InvalidGroupId::TooLong));
        assert!(crate::user::UserId::parse("g:abc").is_err(), "no user id can be a group's");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = Config::default();
        assert_eq!(c.backoff(1), RETRY_BASE_MS);
        assert_eq!(c.backoff(2), 2 * RETRY_BASE_MS);
        assert_eq!(c.backoff(3), 4 * RETRY_BASE_MS);
        assert_eq!(c.backoff(40), RETRY_CAP_MS);
        assert_eq!(c.backoff(u32::MAX), RETRY_CAP_MS);
    }

    #[test]
    fn roles_round_trip() {
        for r in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(Role::from_code(r.code()), Some(r));
        }
        assert_eq!(Role::from_code(0), None);
    }
}
