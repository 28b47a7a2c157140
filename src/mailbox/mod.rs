//! The per-user state machine (sans-IO): everything a user's Durable Object
//! decides, with no platform types and no `async`.
//!
//! A [`Mailbox`] owns the user's log decisions ([`Inbox`]), their v1 devices,
//! the send rate, the sends in flight, the pending group write and the archive
//! and prune schedule. The object turns each platform event into one call
//! here and executes what comes back:
//!
//! - storage is reached through the synchronous [`Log`] over a [`Sql`] port;
//! - frames go out through the [`Sockets`] port, whose answer (did the send
//!   reach a socket) the queue decisions need at once;
//! - everything else is an [`Effect`] the object drains after each call
//!   (an alarm to set, a notification hop to fire, a timer tick);
//! - work that waits for the platform (a hop to another object, the group
//!   write's timer tick, D1) is split at that wait: the call before it
//!   returns what to wait for, the call after it takes the answer.
//!
//! [`v1`] holds the `chat.v1` session (handshake, requests, acks, receipts);
//! this file the log itself: loading, group commit, replay, delivery, the
//! send flow, the archive pass.

mod group;
mod group_gate;
mod keyed;
mod ops;
mod presence;
mod push;
mod v1;
mod wake;

use std::collections::{HashMap, HashSet};

pub use group_gate::{GroupLimit, GroupRefused};
pub use ops::{api_edit_outcome, ApiEditStep};
pub use v1::V1Step;
pub use wake::Due;
use wake::{Job, Wake};

use crate::archive::{Handoff, Partitioning};
use crate::blocks::{BlockError, Blocks, Change};
use crate::history::{BATCH_BYTES, BATCH_ROWS};
use crate::inbox::{Batch, Inbox};
use crate::internal::{Answer, BlockOp, Delivery, Outcome, PresenceNotice, Receipt, Typing};
use crate::limits::Limits;
use crate::log::{Log, NewEntry, Pass, Restored, Rewrite, Sql, StoreError};
use crate::message::{chat_body, Chat, Kind, Refusal};
use crate::metrics::{self, incr, Counter};
use crate::protocol::legacy::{self, LegacyFrame};
use crate::protocol::v1::{self as wire, EntryKind};
use crate::protocol::Reply;
use crate::ratelimit::Bucket;
use crate::user::UserId;

/// Log entries kept after they are delivered and archived (the resume window).
pub const KEEP_ENTRIES: u64 = 1000;
/// The least a generation holds before a new one starts: dropping one costs
/// about three billed rows (the table created again, the current
/// generation's name), against one per entry for deleting them.
pub const GENERATION_ENTRIES: u64 = 256;
/// A device not seen for this long no longer holds entries in the log.
pub const DEVICE_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
/// How long a send refused for too many in flight should wait.
pub const BUSY_RETRY_MS: u64 = 100;
/// How long a send's client id and a derived message id are remembered.
pub const IDEMPOTENCY_MS: u64 = 24 * 3600 * 1000;
/// Typing indicators to one peer: a few per second (start, stop, start).
pub const TYPING_RATE: crate::ratelimit::Rate = crate::ratelimit::Rate { per_second: 3, burst: 3 };
/// Peers remembered for the typing interval (bounded memory).
const MAX_TYPING_PEERS: usize = 256;
/// How far back a reader's archive pass hands in received chats, on top of
/// four archive delays (see [`Mailbox::recent_received`]).
pub const RECENT_MS: u64 = 60_000;

/// Which protocol a socket speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Legacy,
    V1,
}

/// The sockets port: the user's open sockets as the runtime lists them.
pub trait Sockets {
    type Socket;
    /// Open sockets of one mode (a closing socket may still be listed; its
    /// sends fail).
    fn open(&self, mode: Mode) -> Vec<Self::Socket>;
    /// How many sockets of any mode are open.
    fn count(&self) -> usize;
    /// Writes a text frame; false when the socket did not take it.
    fn send(&self, socket: &Self::Socket, text: &str) -> bool;
}

/// What one call needs of the world: the log, the sockets, the clock.
pub struct Io<'a, S, W> {
    pub log: &'a Log<S>,
    pub sockets: &'a W,
    pub now: u64,
}

/// What the platform layer does after a call, besides what the call returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Set the archive alarm `delay_ms` from now; if the platform refuses,
    /// report it with [`Mailbox::alarm_not_set`].
    SetAlarm { delay_ms: u64 },
    /// After one timer tick, call [`Mailbox::cooled`] (group commit).
    Cool,
    /// A request to another user's object that nobody waits for (a hint:
    /// lost on failure).
    Notify(Notice),
    /// Make the push webhook calls due now ([`Mailbox::push_next`]), without
    /// waiting for the alarm (which runs them again if this is cut short).
    Push,
    /// Tell these groups whether `owner` hides their presence (a read up to
    /// 0 saying so, [`crate::group::calls::Call::Read`]): their read
    /// position is shown or hidden from now. A hint per group, lost on
    /// failure; the member's next read there says it again.
    HideReads { owner: UserId, groups: Vec<crate::group::GroupId>, hidden: bool },
}

/// A hint for another user's object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Receipt(Receipt),
    Typing(Typing),
    Presence(PresenceNotice),
}

/// Why a call could not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    Store(StoreError),
    /// The object holds another user's log: a routing bug, never served.
    WrongOwner {
        stored: UserId,
        asked: UserId,
    },
    /// An event that needs the user's log came before any named the user.
    NotLoaded,
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::Store(e)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Store(e) => e.fmt(f),
            // Not the ids: log lines never name users.
            Error::WrongOwner { .. } => f.write_str("object asked to serve another user"),
            Error::NotLoaded => f.write_str("log used before it was loaded"),
        }
    }
}

/// The operator's settings a mailbox works under.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub limits: Limits,
    /// How long a new entry may wait before its archive pass.
    pub archive_delay_ms: u64,
    /// The first wait after D1 failed (doubled per attempt, capped).
    pub archive_retry_ms: u64,
    /// Bounds of one archive batch: entries, and bytes of bodies.
    pub batch_rows: u64,
    pub batch_bytes: usize,
    /// Entries kept after they are delivered and archived (the resume window).
    pub keep_entries: u64,
    /// Entries per generation of the log: pruning drops a whole generation,
    /// so up to about two of them stay beyond what must be kept.
    pub generation_entries: u64,
    /// History shards (D1 databases), and how history is cut in time.
    pub shards: u32,
    pub partitioning: Partitioning,
    /// The push webhook, when the operator configured one.
    pub push: Option<crate::push::PushConfig>,
}

impl Config {
    /// The production settings under `limits`.
    pub fn new(limits: Limits, archive_delay_ms: u64, archive_retry_ms: u64) -> Config {
        Config {
            archive_delay_ms,
            archive_retry_ms,
            batch_rows: BATCH_ROWS,
            batch_bytes: BATCH_BYTES,
            keep_entries: KEEP_ENTRIES,
            // Small caps (tests, demos) still rotate generations often.
            generation_entries: GENERATION_ENTRIES.min(limits.log_cap / 4).max(1),
            shards: 1,
            partitioning: limits.partitioning,
            push: None,
            limits,
        }
    }
}

/// Where an appended entry ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    /// Written to at least one open socket.
    pub pushed: bool,
}

/// A handler waiting for the group write that holds its entry.
pub type Waiter = u64;

/// What [`Mailbox::append`] did with an entry.
#[derive(Debug, PartialEq)]
pub enum Appended {
    /// The log was idle: written (or refused) at once.
    Now(Result<Stored, Error>),
    /// Waits for the next group write. With `commit`, this caller runs it:
    /// after one timer tick it calls [`Mailbox::commit`].
    Wait { waiter: Waiter, commit: bool },
}

#[derive(Clone, Copy, Debug)]
struct Device {
    acked: u64,
    seen: u64,
    dirty: bool,
}

/// What is lost with memory: restored from the log on the next event.
struct Life {
    owner: UserId,
    inbox: Inbox,
    devices: HashMap<String, Device>,
    /// Read once per wake: checking a message costs no storage read.
    blocks: Blocks,
    /// The push cursor and call in flight (with push configured).
    push: Option<crate::log::PushState>,
    /// Presence as stored: `Some(0)` online, `Some(ms)` offline since (last
    /// seen), `None` never seen.
    seen: Option<u64>,
    hide_presence: bool,
    /// Who may add the user to groups, as they chose it (`None`: never
    /// chose; the operator's default applies). Read with the rest.
    group_adds: Option<crate::consent::GroupAdds>,
    /// Per group, the highest `group_seq` this log applied (see
    /// [`Mailbox::group_delivery`]).
    groups: HashMap<crate::group::GroupId, u64>,
    /// The offline queue's length as last counted (see [`Mailbox::queued_count`]).
    queued: Option<QueueCount>,
}

/// How many entries wait in the queue that starts at `start`, counted over
/// the log up to `upto`.
#[derive(Clone, Copy, Debug)]
struct QueueCount {
    start: u64,
    upto: u64,
    count: u64,
}

/// A chat on its way out of this user's object.
#[derive(Debug, PartialEq)]
pub enum SendPlan {
    /// To the user themself: one entry in this log.
    Local(NewEntry),
    /// To a peer: deliver there first, then keep the sender's copy here
    /// ([`Mailbox::hop_answered`]).
    Remote(Remote),
}

/// A delivery to another object and the sender's copy that follows it.
#[derive(Debug, PartialEq)]
pub struct Remote {
    pub to: UserId,
    pub delivery: Delivery,
    /// The message body, built once.
    pub body: String,
    cmid: Option<String>,
    /// For an op: its change, made in the sender's log too.
    rewrite: Option<Rewrite>,
}

/// What the answer to a `deliver` request is, or the entry it must append first.
#[derive(Debug, PartialEq)]
pub enum DeliverStep {
    Answer(Answer),
    Append(NewEntry),
}

/// A backend call sending a chat on this user's behalf.
#[derive(Debug, PartialEq)]
pub enum ApiStep {
    Answer(Outcome),
    Send(Chat),
}

/// What a legacy frame needs.
#[derive(Debug, PartialEq)]
pub enum LegacyStep {
    Reply(Reply<'static>),
    /// The socket's token expired: close it with this code and reason.
    Close(u16, &'static str),
    /// Send this chat ([`Mailbox::plan_send`]), then reply `ok` or the refusal.
    Send(Chat),
}

/// One archive batch read from the log, for the platform to hand to the
/// shards' history writers.
#[derive(Debug, PartialEq)]
pub struct ArchiveBatch {
    pub handoffs: Vec<Handoff>,
    batch: Batch,
    upto: u64,
}

/// Why a new socket is refused before the upgrade.
#[derive(Debug, PartialEq, Eq)]
pub struct SocketRefused {
    pub status: u16,
    pub message: String,
}

pub struct Mailbox {
    config: Config,
    life: Option<Life>,
    /// Entries appended since the last group write.
    pending: Vec<(Waiter, NewEntry)>,
    next_waiter: Waiter,
    /// Groups this object named for their creator (a group id's nonce).
    groups_named: u64,
    commit_scheduled: bool,
    /// Set for one timer tick after a write; entries appended meanwhile wait
    /// for the group write.
    cooling: bool,
    /// The alarm and the timed jobs it serves.
    wake: Wake,
    archive_failures: u32,
    /// Conversations read whose silent `read` push waits for the call in flight.
    reads_to_push: Vec<push::ReadConv>,
    /// The user's send rate over all their sockets.
    bucket: Option<Bucket>,
    /// The user's read rate (history, conversations) over HTTP and sockets.
    read_bucket: Option<Bucket>,
    /// Chats waiting in the queue per sender, as counted when the queue
    /// started at the seq kept with them (recounted when it moves), plus
    /// those admitted since.
    queued_by_sender: Option<(u64, Vec<(String, u64)>)>,
    /// The typing indicators each peer may still get (peers in it have a
    /// conversation with this user).
    typing_sent: Vec<(UserId, Bucket)>,
    /// Sends of any protocol waiting for the recipient's answer: each holds
    /// its message in memory, so their number is bounded (`INFLIGHT_SENDS`).
    sends_waiting: usize,
    /// Client message ids of v1 sends waiting for the recipient's answer.
    inflight: HashSet<String>,
    /// When the user's last socket closed, while the presence grace runs.
    closed_at: Option<u64>,
    /// Whether this instance checked which sockets survived its wake
    /// ([`Mailbox::woke`]).
    woke_checked: bool,
    effects: Vec<Effect>,
}

impl Mailbox {
    pub fn new(config: Config) -> Mailbox {
        Mailbox {
            config,
            life: None,
            pending: Vec::new(),
            next_waiter: 0,
            groups_named: 0,
            commit_scheduled: false,
            cooling: false,
            wake: Wake::default(),
            archive_failures: 0,
            reads_to_push: Vec::new(),
            bucket: None,
            read_bucket: None,
            typing_sent: Vec::new(),
            queued_by_sender: None,
            sends_waiting: 0,
            inflight: HashSet::new(),
            closed_at: None,
            woke_checked: false,
            effects: Vec::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The effects of the calls since the last drain, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Forgets what memory holds of the log (as an eviction does); the next
    /// event restores it from storage. Session state (sends in flight, the
    /// send rate, the pending group write) stays.
    pub fn forget(&mut self) {
        self.life = None;
    }

    /// Loads the log state for `uid` if this is the first event since a wake.
    pub fn load<S: Sql, W>(&mut self, io: &Io<S, W>, uid: &UserId) -> Result<(), Error> {
        if let Some(life) = &self.life {
            return match life.owner == *uid {
                true => Ok(()),
                false => Err(Error::WrongOwner { stored: life.owner.clone(), asked: uid.clone() }),
            };
        }
        let restored = io.log.restore()?;
        match restored.owner {
            Some(owner) if owner != *uid => return Err(Error::WrongOwner { stored: owner, asked: uid.clone() }),
            Some(_) => {}
            None => io.log.set_owner(uid)?,
        }
        self.life = Some(self.restore_life(io.log, uid.clone(), restored)?);
        Ok(())
    }

    /// The rest of a user's state, read once per wake.
    fn restore_life<S: Sql>(&self, log: &Log<S>, owner: UserId, restored: Restored) -> Result<Life, Error> {
        Ok(Life {
            owner,
            inbox: restored.inbox,
            devices: restore_devices(log)?,
            blocks: Blocks::from_rows(log.blocks()?),
            push: self.restore_push(log)?,
            seen: restored.last_seen,
            hide_presence: restored.hide_presence,
            group_adds: restored.group_adds.as_deref().and_then(|a| crate::consent::GroupAdds::parse(a).ok()),
            groups: HashMap::new(),
            queued: None,
        })
    }

    /// Loads the log state without a request to name the user (alarms);
    /// `None` for an object that never served anyone.
    pub fn load_stored<S: Sql, W>(&mut self, io: &Io<S, W>) -> Result<Option<UserId>, Error> {
        if let Some(life) = &self.life {
            return Ok(Some(life.owner.clone()));
        }
        let restored = io.log.restore()?;
        let Some(owner) = restored.owner.clone() else { return Ok(None) };
        self.life = Some(self.restore_life(io.log, owner.clone(), restored)?);
        Ok(Some(owner))
    }

    fn life(&self) -> Result<&Life, Error> {
        self.life.as_ref().ok_or(Error::NotLoaded)
    }

    fn life_mut(&mut self) -> Result<&mut Life, Error> {
        self.life.as_mut().ok_or(Error::NotLoaded)
    }

    fn inbox_mut(&mut self) -> Result<&mut Inbox, Error> {
        Ok(&mut self.life_mut()?.inbox)
    }

    /// The loaded log's head (0 before any event loaded it).
    pub fn head(&self) -> u64 {
        self.life.as_ref().map_or(0, |l| l.inbox.head())
    }

    /// The loaded in-memory log state, for tests that compare it with storage.
    pub fn inbox(&self) -> Option<&Inbox> {
        self.life.as_ref().map(|l| &l.inbox)
    }

    /// Takes a token from the user's send bucket.
    pub fn admit_send(&mut self, now: u64) -> Result<(), Refusal> {
        let rate = self.config.limits.send_rate;
        let b = self.bucket.get_or_insert_with(|| Bucket::full(rate, now));
        b.take(rate, now).map_err(|retry_after_ms| {
            incr(Counter::RefusedRate);
            Refusal::RateLimited { retry_after_ms }
        })
    }

    /// A history or conversation read, within `READ_RATE`/`READ_BURST`; or how
    /// many milliseconds until one may be made (counted).
    pub fn admit_read(&mut self, now: u64) -> Result<(), u64> {
        let rate = self.config.limits.read_rate;
        let b = self.read_bucket.get_or_insert_with(|| Bucket::full(rate, now));
        b.take(rate, now).inspect_err(|_| incr(Counter::RefusedRead))
    }

    /// Whether a typing indicator may go to `peer` now: only within a
    /// conversation that exists (either side wrote in it), and within
    /// [`TYPING_RATE`] per peer. Excess is dropped (typing is a hint), never
    /// answered: a typist is not told to slow down.
    pub fn typing_allowed<S: Sql, W>(&mut self, io: &Io<S, W>, peer: &UserId) -> Result<bool, Error> {
        if self.blocked(peer) {
            return Ok(false);
        }
        // A short list, linear: a user types to few peers at a time.
        let i = match self.typing_sent.iter().position(|(p, _)| p == peer) {
            Some(i) => i,
            None => {
                if !io.log.has_conversation(peer.as_str())? {
                    return Ok(false);
                }
                if self.typing_sent.len() >= MAX_TYPING_PEERS {
                    self.typing_sent.clear();
                }
                self.typing_sent.push((peer.clone(), Bucket::full(TYPING_RATE, io.now)));
                self.typing_sent.len() - 1
            }
        };
        Ok(self.typing_sent[i].1.take(TYPING_RATE, io.now).is_ok())
    }

    /// A new socket past `SOCKETS_PER_USER` is refused before the upgrade
    /// (429), rather than closing an old one: two clients over the bound
    /// would otherwise take turns closing each other.
    pub fn admit_socket(&self, open: usize) -> Result<(), SocketRefused> {
        let max = self.config.limits.sockets_per_user;
        if open < max {
            return Ok(());
        }
        incr(Counter::RefusedSockets);
        Err(SocketRefused { status: 429, message: format!("too many open sockets for this user (at most {max})") })
    }

    /// Drops from the offline queue the entries no socket received within
    /// `QUEUE_TTL_S`. They stay in the log and in D1 history, and leave the
    /// log through the usual pruning; a v1 device that resumes from before
    /// them once they are pruned is told `recovered: false`.
    fn expire_queue<S: Sql, W>(&mut self, io: &Io<S, W>) -> Result<(), Error> {
        let ttl = self.config.limits.queue_ttl_ms;
        let inbox = self.inbox_mut()?;
        let Some(first) = inbox.first_unsent() else { return Ok(()) };
        if let Some((next, dropped)) = io.log.expire_queue(first, io.now.saturating_sub(ttl))? {
            metrics::add(Counter::QueueExpired, dropped);
            inbox.expire_queue(next);
        }
        Ok(())
    }

    /// Whether the offline queue is at `QUEUE_MAX`, once expired entries left
    /// it. Owed entries still waiting for the group write count too, or
    /// concurrent deliveries would all pass the check and overshoot it.
    /// Only entries that wait in the queue count (chats to the user, system
    /// messages): group entries, edits, deletes and the user's own chats
    /// never do, so nobody fills the queue with them.
    fn queue_full<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>) -> Result<bool, Error> {
        let waiting = self.pending.iter().filter(|(_, e)| e.kind.owed_to_owner()).count() as u64;
        let max = self.config.limits.queue_max;
        // The span from the oldest queued entry to the head is never less
        // than what is queued: below the bound, nothing needs counting.
        if !self.life()?.inbox.queue_at(max, waiting, false) {
            return Ok(false);
        }
        self.expire_queue(io)?;
        if !self.life()?.inbox.queue_at(max, waiting, io.sockets.count() > 0) {
            return Ok(false);
        }
        let full = crate::inbox::queue_full(self.queued_count(io)?, waiting, max);
        if full {
            incr(Counter::RefusedQueueFull);
        }
        Ok(full)
    }

    /// How many entries wait in the offline queue: counted over the log
    /// once per queue start (and wake), then only over the entries
    /// appended since (a few rows read per delivery, not the queue's length).
    fn queued_count<S: Sql, W>(&mut self, io: &Io<S, W>) -> Result<u64, Error> {
        let life = self.life_mut()?;
        let Some(start) = life.inbox.first_unsent() else { return Ok(0) };
        let head = life.inbox.head();
        let count = match life.queued {
            // Entries before `upto` leave the queue only as its start moves.
            Some(q) if q.start == start && q.upto <= head => q.count + io.log.count_queued(q.upto + 1, head)?,
            _ => io.log.count_queued(start, head)?,
        };
        life.queued = Some(QueueCount { start, upto: head, count });
        Ok(count)
    }

    /// Whether a chat that will wait in the queue comes from a sender who
    /// has `QUEUE_PER_SENDER` waiting there already: one sender (a stranger,
    /// say) cannot take the whole queue from the others. Counts it if not.
    fn sender_full<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, d: &Delivery) -> Result<bool, Error> {
        let Some(sender) = d.peer.as_ref().filter(|_| d.kind == Kind::Received) else { return Ok(false) };
        let inbox = &self.life()?.inbox;
        // Pushed live (nothing queued, a socket open): it will not wait.
        if inbox.queued_span() == 0 && io.sockets.count() > 0 {
            return Ok(false);
        }
        let start = inbox.first_unsent().unwrap_or(inbox.head() + 1);
        if self.queued_by_sender.as_ref().is_none_or(|(at, _)| *at != start) {
            self.queued_by_sender = Some((start, io.log.queued_by_sender(start)?));
        }
        let Some((_, counts)) = self.queued_by_sender.as_mut() else { return Ok(false) };
        // Admitted ones count at once (below), so concurrent deliveries
        // still waiting for the group write are in it.
        let i = match counts.iter().position(|(s, _)| s == sender.as_str()) {
            Some(i) => i,
            None => {
                counts.push((sender.to_string(), 0));
                counts.len() - 1
            }
        };
        let waiting = &mut counts[i].1;
        if *waiting >= self.config.limits.queue_per_sender {
            incr(Counter::RefusedSenderFull);
            return Ok(true);
        }
        // Counted now; a recount follows whenever the queue's start moves.
        *waiting += 1;
        Ok(false)
    }

    /// A new legacy socket, just accepted: the queue is replayed into it
    /// before anything live (the caller awaits nothing in between).
    pub fn connect_legacy<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, socket: &W::Socket) -> Result<(), Error> {
        self.expire_queue(io)?;
        let Some(first) = self.life()?.inbox.first_unsent() else { return Ok(()) };
        let mut last = None;
        let mut next_unsent = None;
        io.log.queued(first, |seq, body| {
            if !send(io.sockets, socket, body) {
                next_unsent = Some(seq);
                return false;
            }
            last = Some(seq);
            true
        })?;
        if let Some(last) = last {
            io.log.mark_sent(first, last)?;
            self.replayed(io, first, last, next_unsent)?;
            self.want_archive(io.now);
        }
        Ok(())
    }

    /// The queue from `first` to `last` reached a socket; a rewound archive
    /// cursor is saved at once (see [`Inbox::replayed`]).
    fn replayed<S: Sql, W>(&mut self, io: &Io<S, W>, first: u64, last: u64, next: Option<u64>) -> Result<(), Error> {
        let inbox = self.inbox_mut()?;
        if inbox.replayed(first, last, next) {
            io.log.set_archived(inbox.archived())?;
        }
        Ok(())
    }

    /// `deliver`: another object (or the API) stores a message here.
    pub fn deliver<S: Sql, W: Sockets>(
        &mut self,
        io: &Io<S, W>,
        d: Delivery,
        body: String,
    ) -> Result<DeliverStep, Error> {
        self.load(io, &d.owner)?;
        // Answered as if stored, so the sender cannot probe for the block;
        // with no seq here, the sender's copy never names one of this log.
        // (A delete still applies: taking content away never harms the blocker.)
        let held_back = matches!(d.kind, Kind::Received | Kind::EditIn);
        if held_back && !d.backend && d.peer.as_ref().is_some_and(|p| self.blocked(p)) {
            incr(Counter::DroppedBlocked);
            return Ok(DeliverStep::Answer(Answer::of(Outcome::Stored { pushed: false })));
        }
        // A backend system message's key: a retry answers as the first time,
        // a reuse for another request is refused.
        if let Some(key) = &d.key {
            match keyed::replay(io.log, key)? {
                (crate::idempotency::Replay::Same, seq) => {
                    let answer = Answer { seq, duplicate: true, ..Answer::of(Outcome::Stored { pushed: true }) };
                    return Ok(DeliverStep::Answer(answer));
                }
                (crate::idempotency::Replay::Reused, _) => {
                    return Ok(DeliverStep::Answer(Answer::of(Outcome::KeyReused)))
                }
                (crate::idempotency::Replay::New, _) => {}
            }
        }
        if d.dedup {
            if let Some((seq, pushed)) = io.log.seen(&d.id)? {
                let stored = Outcome::Stored { pushed };
                let answer = Answer { seq: Some(seq), duplicate: true, ..Answer::of(stored) };
                return Ok(DeliverStep::Answer(answer));
            }
        }
        // An op never waits in the queue (it is not owed to a legacy
        // socket), so no queue bound holds it back.
        let rewrite = match d.kind.is_op() {
            true => match crate::edits::rewrite_of(&body) {
                Some((target, body)) => Some(Rewrite { target, body }),
                None => return Ok(DeliverStep::Answer(Answer::of(Outcome::Bad))),
            },
            false => None,
        };
        if rewrite.is_none() && (self.queue_full(io)? || self.sender_full(io, &d)?) {
            return Ok(DeliverStep::Answer(Answer::of(Outcome::Full)));
        }
        Ok(DeliverStep::Append(NewEntry {
            id: d.id,
            kind: d.kind,
            peer: d.peer,
            time_ms: d.time_ms,
            body,
            peer_state: None,
            // A keyed message is remembered under its key (one row, in
            // `sends`); `seen` is for ids derived elsewhere.
            dedup: d.dedup && d.key.is_none(),
            cmid: d.key,
            rewrite,
        }))
    }

    /// The answer to a `deliver` once its entry was written (or not).
    pub fn delivered(stored: Option<Stored>) -> Answer {
        match stored {
            Some(s) => Answer { seq: Some(s.seq), ..Answer::of(Outcome::Stored { pushed: s.pushed }) },
            None => Answer::of(Outcome::Unavailable),
        }
    }

    /// One legacy client frame: answered at once, or a chat to send.
    /// The user this mailbox serves, once loaded.
    pub fn owner(&self) -> Option<&UserId> {
        self.life.as_ref().map(|l| &l.owner)
    }

    pub fn legacy_frame(&mut self, owner: &UserId, exp: u64, text: &str, now: u64) -> LegacyStep {
        if crate::auth::token_expired(exp, now) {
            return LegacyStep::Close(wire::close::TOKEN_EXPIRED, "token expired");
        }
        let frame = match legacy::parse(text, self.config.limits.frame_bytes) {
            Ok(f) => f,
            Err(r) => {
                if r == Refusal::TooLarge {
                    incr(Counter::RefusedFrame);
                }
                return LegacyStep::Reply(Reply::Refused(r));
            }
        };
        match frame {
            LegacyFrame::Heartbeat => LegacyStep::Reply(Reply::Heartbeat),
            LegacyFrame::Chat(chat) if chat.from != *owner => LegacyStep::Reply(Reply::Refused(Refusal::NotYou)),
            LegacyFrame::Chat(chat) => match self.admit_send(now) {
                Err(r) => LegacyStep::Reply(Reply::Refused(r)),
                Ok(()) => LegacyStep::Send(chat),
            },
        }
    }

    /// A backend `send` on this user's behalf: a repeat of an idempotent call
    /// is answered at once; otherwise the chat to send.
    pub fn api_send<S: Sql, W>(
        &mut self,
        io: &Io<S, W>,
        uid: &UserId,
        cmid: Option<&str>,
        body: &str,
    ) -> Result<ApiStep, Error> {
        self.load(io, uid)?;
        if let Some(cmid) = cmid {
            match keyed::replay(io.log, cmid)?.0 {
                crate::idempotency::Replay::Same => return Ok(ApiStep::Answer(Outcome::Stored { pushed: true })),
                crate::idempotency::Replay::Reused => return Ok(ApiStep::Answer(Outcome::KeyReused)),
                crate::idempotency::Replay::New => {}
            }
        }
        let chat = serde_json::from_str(body).map_err(|_| Refusal::Format).and_then(crate::message::parse_chat);
        Ok(match chat {
            Ok(chat) if chat.from == *uid => ApiStep::Send(chat),
            Ok(_) => ApiStep::Answer(Outcome::Bad),
            Err(_) => ApiStep::Answer(Outcome::Bad),
        })
    }

    /// How a backend send's result is answered.
    pub fn api_outcome(result: Result<u64, Refusal>) -> Outcome {
        match result {
            Ok(_) => Outcome::Stored { pushed: true },
            Err(Refusal::Unavailable | Refusal::RateLimited { .. }) => Outcome::Unavailable,
            Err(Refusal::RecipientFull) => Outcome::Full,
            Err(_) => Outcome::Bad,
        }
    }

    /// Plans a chat from the owner: the entry for a chat to themself, or the
    /// delivery to the peer's object. A planned remote send counts as in
    /// flight until [`Mailbox::hop_answered`].
    pub fn plan_send<S: Sql, W: Sockets>(
        &mut self,
        io: &Io<S, W>,
        chat: Chat,
        id: &str,
        time: u64,
        cmid: Option<&str>,
        backend: bool,
    ) -> Result<SendPlan, Refusal> {
        let owner = self.life().map_err(|_| Refusal::Unavailable)?.owner.clone();
        if !backend && self.blocked(&chat.to) {
            return Err(Refusal::Blocked);
        }
        let body = chat_body(&chat.from, &chat.to, chat.fields, id, time);
        let cmid = cmid.map(str::to_owned);
        let dedup = cmid.is_some();
        if chat.to == owner {
            if self.queue_full(io).map_err(|_| Refusal::Unavailable)? {
                return Err(Refusal::RecipientFull);
            }
            let peer = Some(owner);
            let entry = NewEntry {
                id: id.to_owned(),
                kind: Kind::Received,
                peer,
                time_ms: time,
                body,
                peer_state: None,
                cmid,
                dedup,
                rewrite: None,
            };
            return Ok(SendPlan::Local(entry));
        }
        if self.sends_waiting >= self.config.limits.inflight_sends {
            incr(Counter::RefusedBusy);
            return Err(Refusal::RateLimited { retry_after_ms: BUSY_RETRY_MS });
        }
        self.sends_waiting += 1;
        let delivery = Delivery {
            owner: chat.to.clone(),
            kind: Kind::Received,
            id: id.to_owned(),
            time_ms: time,
            peer: Some(owner),
            dedup,
            backend,
            key: None,
        };
        Ok(SendPlan::Remote(Remote { to: chat.to, delivery, body, cmid, rewrite: None }))
    }

    /// The peer's object answered a delivery (`None`: the hop failed): the
    /// sender's own copy to append, or why the send failed.
    pub fn hop_answered(&mut self, remote: Remote, answer: Option<Answer>) -> Result<NewEntry, Refusal> {
        self.sends_waiting = self.sends_waiting.saturating_sub(1);
        let (peer_seq, pushed) = match answer {
            Some(Answer { outcome: Outcome::Stored { pushed }, seq, .. }) => (seq.unwrap_or(0), pushed),
            Some(Answer { outcome: Outcome::Full, .. }) => return Err(Refusal::RecipientFull),
            _ => return Err(Refusal::Unavailable),
        };
        let Remote { to, delivery, body, cmid, rewrite } = remote;
        Ok(NewEntry {
            id: delivery.id,
            kind: delivery.kind.mirror(),
            peer: Some(to),
            time_ms: delivery.time_ms,
            body,
            peer_state: Some((peer_seq, pushed)),
            cmid,
            dedup: false,
            rewrite,
        })
    }

    /// Appends an entry to the log (group commit).
    ///
    /// Every event that writes costs the runtime a commit, which is most of
    /// the price of a message. An entry that finds the log idle is written at
    /// once; entries that arrive within the next timer tick share one later
    /// write. Nobody is answered before the write holding their entry, and
    /// entries are written in the order they were appended.
    pub fn append<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, entry: NewEntry) -> Appended {
        if !self.cooling && self.pending.is_empty() {
            self.cooling = true;
            self.effects.push(Effect::Cool);
            let written = self.write(io, vec![entry]).map(|s| s[0]);
            return Appended::Now(written);
        }
        self.next_waiter += 1;
        let waiter = self.next_waiter;
        self.pending.push((waiter, entry));
        Appended::Wait { waiter, commit: !std::mem::replace(&mut self.commit_scheduled, true) }
    }

    /// The timer tick after a write: the log is idle again.
    pub fn cooled(&mut self) {
        self.cooling = false;
    }

    /// The group write: every entry appended since the last one.
    pub fn commit<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>) -> Vec<(Waiter, Result<Stored, Error>)> {
        self.commit_scheduled = false;
        let (waiters, entries): (Vec<Waiter>, Vec<NewEntry>) = std::mem::take(&mut self.pending).into_iter().unzip();
        if entries.is_empty() {
            return Vec::new();
        }
        match self.write(io, entries) {
            Ok(stored) => waiters.into_iter().zip(stored.into_iter().map(Ok)).collect(),
            Err(e) => waiters.into_iter().map(|w| (w, Err(e.clone()))).collect(),
        }
    }

    /// Writes a batch in one statement, then pushes the owed entries in order.
    /// Pushes come after the write, so the output gate holds them until it is
    /// durable. A failed write leaves memory to be reloaded from storage.
    fn write<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, batch: Vec<NewEntry>) -> Result<Vec<Stored>, Error> {
        let result = self.write_batch(io, &batch);
        if result.is_err() {
            // Do not trust in-memory state a failed write may have left behind.
            self.life = None;
        }
        result
    }

    fn write_batch<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, batch: &[NewEntry]) -> Result<Vec<Stored>, Error> {
        let owed = batch.iter().any(|e| e.kind.owed_to_owner());
        let shown = ops::shown_bodies(io, batch)?;
        let legacy = if owed { io.sockets.open(Mode::Legacy) } else { Vec::new() };
        let v1 = io.sockets.open(Mode::V1);
        let life = self.life.as_mut().ok_or(Error::NotLoaded)?;
        // Any open socket of the user, legacy or v1, takes an entry off the queue.
        let open = legacy.len() + v1.len();
        let admitted: Vec<_> = batch.iter().map(|e| life.inbox.admit(e.kind, open)).collect();
        // Not owed to the queue, an entry counts as taken; but one that is
        // pushed (a group's) is marked not taken when no v1 socket is open,
        // so its push is due at once rather than after the ack delay.
        let taken = |e: &NewEntry, push_now: bool| {
            push_now || (!e.kind.owed_to_owner() && (!e.kind.pushed() || !v1.is_empty()))
        };
        let rows: Vec<_> = batch.iter().zip(&admitted).map(|(e, a)| (a.seq, e, taken(e, a.push_now))).collect();
        io.log.append(&life.owner, &rows, !legacy.is_empty())?;
        metrics::add(Counter::MessagesStored, batch.iter().filter(|e| e.kind.owed_to_owner()).count() as u64);
        let own_ops = |e: &&NewEntry| matches!(e.kind, Kind::EditOut | Kind::DeleteOut | Kind::DeleteMine);
        metrics::add(Counter::Edits, batch.iter().filter(own_ops).count() as u64);
        let mut stored = Vec::with_capacity(batch.len());
        let mut failed_from = None;
        let mut push_at = None;
        for ((e, a), shown) in batch.iter().zip(&admitted).zip(&shown) {
            let live = a.push_now && failed_from.is_none();
            let mut pushed = false;
            if live {
                for ws in &legacy {
                    pushed |= send(io.sockets, ws, &e.body);
                }
            }
            // v1 devices get every entry in seq order, their own sends
            // included; what a device has is decided by its acks.
            if !v1.is_empty() {
                let body = shown.as_deref().unwrap_or(&e.body);
                let frame = wire::msg(a.seq, EntryKind::of(e.kind), e.peer.as_ref().map(UserId::as_str), &e.id, body);
                for ws in &v1 {
                    pushed |= send(io.sockets, ws, &frame) && live;
                }
            }
            if live && !pushed {
                failed_from = Some(a.seq);
            }
            stored.push(Stored { seq: a.seq, pushed });
            // Owed and not on a legacy socket: a push is due at once if no
            // socket took it, or when a device that did has not acked it.
            let received = pushed && !legacy.is_empty();
            if let Some(cfg) = self.config.push.filter(|_| e.kind.pushed() && !received) {
                // A muted peer's entry needs no push, but a plan at once moves
                // the cursor past it, before the mute could end.
                // A group is muted by its id (the plan checks), not by its sender.
                let muted = e.kind != Kind::Group && e.peer.as_ref().is_some_and(|p| life.blocks.is_muted(p, io.now));
                if e.peer.as_ref() != Some(&life.owner) {
                    let at = io.now.saturating_add(if pushed && !muted { cfg.delay_ms } else { 0 });
                    push_at = Some(push_at.map_or(at, |t: u64| t.min(at)));
                }
            }
        }
        if let Some(from) = failed_from {
            // No socket took it: it and everything after it stay queued, in order.
            io.log.mark_unsent(from, life.inbox.head())?;
            life.inbox.push_failed(from);
        }
        for e in batch.iter().filter(|e| matches!(e.kind, Kind::DeleteIn | Kind::DeleteMine)) {
            self.deleted_unread(io, e)?;
        }
        // One alarm for both jobs: set once, for the earlier. A push due now
        // goes out at once and rides on the archive pass's alarm.
        let archive = self.wake.want_once(Job::Archive, io.now.saturating_add(self.config.archive_delay_ms));
        let push = match push_at {
            Some(at) if at <= io.now => {
                self.wake.note(Job::Push, at);
                self.effects.push(Effect::Push);
                None
            }
            Some(at) => self.wake.want(Job::Push, at),
            None => None,
        };
        if let Some(at) = push.or(archive) {
            self.effects.push(Effect::SetAlarm { delay_ms: at.saturating_sub(io.now) });
        }
        Ok(stored)
    }

    /// Schedules `job` at `at`, moving the alarm earlier if it must.
    fn want(&mut self, now: u64, job: Job, at: u64) {
        if let Some(at) = self.wake.want(job, at) {
            self.effects.push(Effect::SetAlarm { delay_ms: at.saturating_sub(now) });
        }
    }

    /// Schedules an archive pass unless one is already scheduled.
    pub fn want_archive(&mut self, now: u64) {
        let at = now.saturating_add(self.config.archive_delay_ms);
        if let Some(at) = self.wake.want_once(Job::Archive, at) {
            self.effects.push(Effect::SetAlarm { delay_ms: at.saturating_sub(now) });
        }
    }

    /// The platform did not set the alarm: the next job wanted sets it.
    pub fn alarm_not_set(&mut self) {
        self.wake.not_set();
    }

    /// The alarm fired: the jobs due now.
    pub fn alarm_fired(&mut self, now: u64) -> Due {
        self.wake.fired(now)
    }

    /// A socket's token expires at `exp_s` (s; 0: never): the alarm closes
    /// it then, whether or not anything is sent on it.
    pub fn socket_expires(&mut self, now: u64, exp_s: u64) {
        if exp_s != 0 {
            self.want(now, Job::Expiry, exp_s.saturating_mul(1000));
        }
    }

    /// As the alarm runs: the earliest token expiry (s; 0: none) among the
    /// sockets still open. Without one, no alarm is kept for it.
    pub fn sockets_expire_next(&mut self, exp_s: u64) {
        self.wake.reset(Job::Expiry, (exp_s != 0).then(|| exp_s.saturating_mul(1000)));
    }

    /// The alarm's jobs ran: set it again for what is still scheduled.
    pub fn alarm_done(&mut self, now: u64) {
        if let Some(at) = self.wake.rearm() {
            self.effects.push(Effect::SetAlarm { delay_ms: at.saturating_sub(now) });
        }
    }

    /// History could not be read or written: archive again later.
    pub fn history_failed(&mut self, now: u64) {
        self.want_archive(now);
    }

    /// The next batch of the log to hand to history, if any. `reader`: a
    /// history page waits for it, so it carries this user's recent received
    /// chats too (see [`Log::archive_batch`]).
    pub fn archive_next<S: Sql, W>(&mut self, io: &Io<S, W>, reader: bool) -> Result<Option<ArchiveBatch>, Error> {
        let (rows, bytes) = (self.config.batch_rows, self.config.batch_bytes);
        let pass = self.pass(io, reader)?;
        let life = self.life()?;
        let Some(batch) = life.inbox.to_archive(rows) else { return Ok(None) };
        let Some((tagged, upto)) = io.log.archive_batch(batch.from, batch.to, bytes, &pass)? else { return Ok(None) };
        Ok(Some(ArchiveBatch { handoffs: self.split(&tagged)?, batch, upto }))
    }

    /// A reader's pass first hands in what it received recently below the
    /// archive cursor: those are the senders' to write, and a sender's pass
    /// may not have run yet. Rows already there cost nothing written.
    pub fn recent_received<S: Sql, W>(&mut self, io: &Io<S, W>) -> Result<Vec<Handoff>, Error> {
        let pass = self.pass(io, true)?;
        let archived = self.life()?.inbox.archived();
        let first = io.log.first_since(pass.received_from_ms)?;
        let Some(first) = first.filter(|&f| f <= archived) else { return Ok(Vec::new()) };
        let Some((tagged, _)) = io.log.archive_batch(first, archived, self.config.batch_bytes, &pass)? else {
            return Ok(Vec::new());
        };
        self.split(&tagged)
    }

    fn pass<S: Sql, W>(&self, io: &Io<S, W>, reader: bool) -> Result<Pass, Error> {
        // A sender's pass runs within the archive delay and its retries;
        // a reader covers what arrived within a few of those.
        let recent_ms = self.config.archive_delay_ms.saturating_mul(4).saturating_add(RECENT_MS);
        Ok(Pass {
            owner: self.life()?.owner.clone(),
            received_from_ms: if reader { io.now.saturating_sub(recent_ms) } else { Pass::NONE_RECEIVED },
            partition_days: self.config.partitioning.days,
        })
    }

    fn split(&self, tagged: &str) -> Result<Vec<Handoff>, Error> {
        crate::archive::split(tagged, self.config.shards)
            .map_err(|e| Error::Store(StoreError(format!("archive batch: {e}"))))
    }

    /// D1 confirmed a batch: the cursor moves, unless entries changed state
    /// while it was written (see [`Inbox::archived_upto`]). Returns whether
    /// the batch counted.
    pub fn archived<S: Sql, W>(&mut self, io: &Io<S, W>, batch: ArchiveBatch) -> Result<bool, Error> {
        let inbox = self.inbox_mut()?;
        let before = inbox.archived();
        let counted = inbox.archived_upto(batch.batch, batch.upto);
        if counted {
            io.log.set_archived(inbox.archived())?;
            // In the same write: a wake recounts groups' cursors only from
            // the entries past the archive cursor.
            io.log.save_group_cursors(before.saturating_add(1), inbox.archived().saturating_add(1))?;
        }
        Ok(counted)
    }

    /// The end of an archive pass: device cursors saved, the queue expired,
    /// the log pruned, old idempotency records forgotten.
    pub fn archive_finish<S: Sql, W>(&mut self, io: &Io<S, W>) -> Result<(), Error> {
        self.save_devices(io)?;
        self.expire_queue(io)?;
        let (keep, cap, generation) =
            (self.config.keep_entries, self.config.limits.log_cap, self.config.generation_entries);
        let life = self.life_mut()?;
        let acked = life.devices.values().map(|d| d.acked).min();
        let below = life.inbox.prunable_below(keep, cap, acked);
        // Pruning goes by whole generations. The older one goes once all of
        // it is past the prune point, which is when the current one has
        // reached the window (the cap, or the keep window): so the log spans
        // up to about twice the window. A burst could keep more: past twice
        // the cap and a generation, entries are deleted one by one instead.
        // What is gone is below `kept`.
        let hard = life.inbox.over_cap_below(cap.saturating_mul(2).saturating_add(generation));
        // Past the cap, pruning may take entries the archive cursor has not
        // passed, which a wake would recount groups' cursors from.
        if hard > life.inbox.archived() {
            io.log.save_group_cursors(life.inbox.archived().saturating_add(1), hard)?;
        }
        let kept = io.log.prune_below(below, hard, generation)?.unwrap_or(u64::MAX);
        // The cap may take queued entries (the queue can outgrow the log by
        // own sent chats in between): the queue then starts after them.
        if life.inbox.queue_pruned(kept) {
            life.inbox.expire_queue(io.log.first_unsent_from(kept)?);
        }
        io.log.expire_idempotency(io.now.saturating_sub(IDEMPOTENCY_MS))?;
        Ok(())
    }

    /// An archive pass ended: after a failure, the pass is scheduled again
    /// after a backoff, which is returned.
    pub fn archive_ended(&mut self, ok: bool, now: u64) -> Option<u64> {
        if ok {
            self.archive_failures = 0;
            return None;
        }
        let attempt = self.archive_failures;
        self.archive_failures += 1;
        let delay = crate::history::retry_delay_ms(self.config.archive_retry_ms, attempt);
        self.want(now, Job::Archive, now.saturating_add(delay));
        Some(delay)
    }

    /// How many archive passes failed in a row.
    pub fn archive_failures(&self) -> u32 {
        self.archive_failures
    }

    /// Writes changed device cursors and forgets devices not seen for a while.
    fn save_devices<S: Sql, W>(&mut self, io: &Io<S, W>) -> Result<(), Error> {
        let cutoff = io.now.saturating_sub(DEVICE_TTL_MS);
        let life = self.life_mut()?;
        life.devices.retain(|_, d| d.seen >= cutoff || d.seen == 0);
        for (device, d) in life.devices.iter_mut().filter(|(_, d)| d.dirty) {
            io.log.save_device(device, d.acked, d.seen)?;
            d.dirty = false;
        }
        Ok(io.log.forget_devices_unseen_since(cutoff)?)
    }

    /// A notification for another user's object; none to, or about, a
    /// blocked peer.
    fn notify(&mut self, notice: Notice) {
        let peer = match &notice {
            Notice::Receipt(r) => &r.owner,
            Notice::Typing(t) => &t.owner,
            Notice::Presence(p) => &p.owner,
        };
        if !self.blocked(peer) {
            self.effects.push(Effect::Notify(notice));
        }
    }

    /// Whether the loaded user blocked `peer`.
    pub fn blocked(&self, peer: &UserId) -> bool {
        self.life.as_ref().is_some_and(|l| l.blocks.is_blocked(peer))
    }

    /// Whether the loaded user muted `peer` at `now`.
    pub fn muted(&self, peer: &UserId, now: u64) -> bool {
        self.life.as_ref().is_some_and(|l| l.blocks.is_muted(peer, now))
    }

    /// A change to the user's block or mute lists: stored (one row), then
    /// shown on every v1 socket of theirs. A repeat writes nothing.
    pub fn change_blocks<S: Sql, W: Sockets>(
        &mut self,
        io: &Io<S, W>,
        change: Change,
    ) -> Result<Result<(), BlockError>, Error> {
        let max = self.config.limits.blocks_max;
        let life = self.life_mut()?;
        let mut blocks = life.blocks.clone();
        let row = match blocks.apply(&life.owner, change, max, io.now) {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(Ok(())),
            Err(e) => {
                if matches!(e, BlockError::Full { .. }) {
                    incr(Counter::RefusedBlocks);
                }
                return Ok(Err(e));
            }
        };
        // Memory follows storage, never leads it.
        io.log.save_block(&row)?;
        life.blocks = blocks;
        let frame = wire::blocks(wire::BlockLists::of(&life.blocks, io.now));
        for ws in io.sockets.open(Mode::V1) {
            send(io.sockets, &ws, &frame);
        }
        Ok(Ok(()))
    }

    /// An HTTP request about the lists (`/v1/blocks`, `/v1/mutes`,
    /// `/api/blocks`): the status and JSON body of the answer.
    pub fn blocks_request<S: Sql, W: Sockets>(
        &mut self,
        io: &Io<S, W>,
        uid: &UserId,
        op: BlockOp,
    ) -> Result<(u16, String), Error> {
        self.load(io, uid)?;
        let (peer, mute) = match op {
            BlockOp::List => return Ok((200, wire::BlockLists::of(&self.life()?.blocks, io.now).encode())),
            BlockOp::Get { peer, mute } => (peer, mute),
            BlockOp::Change(change) => {
                let mute = matches!(change, Change::Mute(..) | Change::Unmute(_));
                let peer = change.peer().clone();
                match self.change_blocks(io, change)? {
                    Ok(()) => (peer, mute),
                    Err(e) => {
                        let (status, code) =
                            if e == BlockError::Yourself { (400, "bad_field") } else { (409, "blocks_full") };
                        return Ok((status, serde_json::json!({ "error": e.message(), "code": code }).to_string()));
                    }
                }
            }
        };
        Ok((200, self.life()?.blocks.one_json(&peer, mute, io.now).to_string()))
    }
}

fn restore_devices<S: Sql>(log: &Log<S>) -> Result<HashMap<String, Device>, Error> {
    Ok(log.devices()?.into_iter().map(|d| (d.device, Device { acked: d.acked, seen: d.seen, dirty: false })).collect())
}

/// A frame to one socket, counted.
fn send<W: Sockets>(sockets: &W, socket: &W::Socket, text: &str) -> bool {
    incr(Counter::FramesOut);
    sockets.send(socket, text)
}
