//! Hot recipients: inbox shards (docs/scale.md, "A hot recipient").
//!
//! Every chat to a user is a request to that user's one object, and an
//! object takes about 1,000 requests/s before the platform refuses. A user
//! whose object stores more than `INBOX_HOT_RATE` entries in a second tells
//! the senders so in its answers; a sender then goes, for a lease, through
//! one of k inbox-shard objects chosen by a hash of the sender's id, and the
//! shards hand what they gather to the user's object in batches. The user's
//! object then sees about k requests per batch interval whatever the number
//! of senders.
//!
//! A shard stores nothing: it holds each delivery in memory and answers its
//! sender only with the user's object's own answer to the batch that carried
//! it (seq, duplicate, full). So `ok` still means "in the recipient's log",
//! the seq is still the user's object's, and an evicted shard loses only
//! unanswered deliveries, which their senders send again (deduplicated by id
//! when they carry a cmid, as a direct hop's retry is). Per-sender order
//! holds because one sender always goes through the same shard, a shard
//! keeps arrival order, and it has one batch in flight at a time.
//!
//! This module decides: when a user is hot ([`Meter`]), which shard a sender
//! uses and for how long ([`HotPeers`], [`shard_of`]), what a shard batches
//! and when it flushes ([`ShardQueue`]), how a batch and its answers travel
//! ([`encode_batch`], [`answers_header`]), and which entries of a batch the
//! user's object applies ([`plan_batch`]). `edge::inbox_shard` executes it.

use std::collections::HashMap;

use crate::internal::{Answer, Delivery, Internal, Outcome};
use crate::log::{NewEntry, Sql};
use crate::mailbox::{DeliverStep, Io, Mailbox, Sockets, Stored};
use crate::user::UserId;

/// Entries per second into one user's object above which its senders are
/// told to use shards (`INBOX_HOT_RATE`; half the soft limit of an object).
pub const DEFAULT_HOT_RATE: u64 = 500;
/// Shards per hot user (`INBOX_SHARDS`): each takes at most the soft
/// limit of senders' hops, so 16 take the user to about 16,000 messages/s.
pub const DEFAULT_SHARDS: u32 = 16;
/// Least time between the starts of two batches of one shard
/// (`INBOX_FLUSH_MS`): the user's object sees at most shards × 1000 ÷ this
/// batches per second (16 × 25 = 400, well under its soft limit) whatever
/// the senders offer, and a delivery waits at most this long in a shard.
pub const DEFAULT_FLUSH_MS: u64 = 40;
/// How long a sender keeps using shards after an answer said "hot".
pub const HOT_LEASE_MS: u64 = 10_000;
/// Most deliveries, and bytes of bodies, in one batch.
pub const BATCH_MAX: usize = 200;
pub const BATCH_BYTES: usize = 512 * 1024;
/// The answer header that says "hot: use this many shards".
pub const HOT_HEADER: &str = "x-hot";
/// The header of a batch's answer: one answer per delivery, in order.
pub const ANSWERS_HEADER: &str = "x-answers";
/// Most peers a sender's object remembers as hot.
const HOT_PEERS_MAX: usize = 1024;
const WINDOW_MS: u64 = 1000;

/// The fan-in settings (vars, with the defaults above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaninConfig {
    /// 0 turns sharding off.
    pub hot_rate: u64,
    pub shards: u32,
    pub flush_ms: u64,
}

impl Default for FaninConfig {
    fn default() -> Self {
        FaninConfig { hot_rate: DEFAULT_HOT_RATE, shards: DEFAULT_SHARDS, flush_ms: DEFAULT_FLUSH_MS }
    }
}

impl FaninConfig {
    /// Reads the vars; an absent or unreadable one keeps its default (these
    /// only move load around, so a typo must not stop delivery).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> FaninConfig {
        let d = FaninConfig::default();
        let num = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok());
        FaninConfig {
            hot_rate: num("INBOX_HOT_RATE").unwrap_or(d.hot_rate),
            shards: num("INBOX_SHARDS").and_then(|k| u32::try_from(k).ok()).filter(|k| *k >= 1).unwrap_or(d.shards),
            flush_ms: num("INBOX_FLUSH_MS").unwrap_or(d.flush_ms),
        }
    }
}

/// The recipient side: entries stored per one-second window. Hot from the
/// moment a window reaches the rate; cold again only after a whole window
/// under a quarter of it. The margin is wide because what the object sees
/// once sharded is what it stored, not what senders offered: where shards
/// make each send slower (locally, every object shares one thread), a
/// closed loop of senders stores less, and a narrow margin would flip the
/// user between hot and cold every lease.
#[derive(Clone, Debug)]
pub struct Meter {
    config: FaninConfig,
    window_start: u64,
    count: u64,
    /// The window's first sender, and whether another one came: shards
    /// spread senders, so one sender alone (a bench; a real user is held to
    /// `SEND_RATE`) never makes a user hot, however fast it sends.
    first: Option<UserId>,
    many: bool,
    hot: bool,
}

impl Meter {
    pub fn new(config: FaninConfig) -> Meter {
        Meter { config, window_start: 0, count: 0, first: None, many: false, hot: false }
    }

    /// Entries arrive at `now` from `senders` (`None`: the backend): the
    /// shard count to tell their senders, or `None` (go direct).
    pub fn note<'a>(&mut self, now: u64, senders: impl IntoIterator<Item = Option<&'a UserId>>) -> Option<u32> {
        if self.config.hot_rate == 0 {
            return None;
        }
        if now >= self.window_start.saturating_add(WINDOW_MS) {
            // A gap of more than a window means the last one was empty.
            let last = if now >= self.window_start.saturating_add(2 * WINDOW_MS) { 0 } else { self.count };
            if self.hot && last < self.config.hot_rate / 4 {
                self.hot = false;
            }
            self.window_start = now;
            self.count = 0;
            self.first = None;
            self.many = false;
        }
        for sender in senders {
            self.count = self.count.saturating_add(1);
            if let Some(sender) = sender.filter(|_| !self.many) {
                match &self.first {
                    None => self.first = Some(sender.clone()),
                    Some(first) => self.many |= first != sender,
                }
            }
        }
        if self.count >= self.config.hot_rate && self.many {
            self.hot = true;
        }
        self.hot.then_some(self.config.shards)
    }
}

/// The shard of `sender` among `k` (FNV-1a of the id: stable across builds
/// and isolates, which per-sender order needs).
pub fn shard_of(sender: &UserId, k: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sender.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(k.max(1))) as u32
}

/// The name of `owner`'s inbox shard `k` (`:` is not in user ids).
pub fn shard_name(owner: &UserId, k: u32) -> String {
    format!("inbox:{owner}:{k}")
}

/// Where a delivery goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The recipient's object.
    Direct,
    /// The named inbox shard.
    Shard(String),
}

/// The sender side: peers whose answers said "hot", with the shard count
/// and until when; and per peer, the path its sends in flight took.
///
/// Each path keeps a sender's order by itself (one stub each way, a shard
/// keeps arrival order), but nothing orders one path against the other. So
/// a sender switches paths for a peer only when none of its sends to that
/// peer is in flight: until then, new sends follow the ones before them.
#[derive(Clone, Debug, Default)]
pub struct HotPeers {
    peers: HashMap<UserId, (u32, u64)>,
    inflight: HashMap<UserId, (Route, u32)>,
}

impl HotPeers {
    /// Where `sender`'s next delivery to `peer` goes; [`HotPeers::started`]
    /// once it is sent, [`HotPeers::finished`] once answered or failed.
    pub fn route(&self, sender: &UserId, peer: &UserId, now: u64) -> Route {
        if let Some((route, _)) = self.inflight.get(peer) {
            return route.clone();
        }
        match self.peers.get(peer) {
            Some(&(k, until)) if now < until => Route::Shard(shard_name(peer, shard_of(sender, k))),
            _ => Route::Direct,
        }
    }

    pub fn started(&mut self, peer: &UserId, route: &Route) {
        let entry = self.inflight.entry(peer.clone()).or_insert_with(|| (route.clone(), 0));
        entry.1 += 1;
    }

    pub fn finished(&mut self, peer: &UserId) {
        if let Some(entry) = self.inflight.get_mut(peer) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                self.inflight.remove(peer);
            }
        }
    }

    /// An answer from `peer` (directly or through a shard): `hot` renews
    /// the lease. An answer saying cold does not end it early: the lease
    /// runs out instead, so a send still in a shard's batch is not
    /// overtaken by a later one going direct.
    pub fn answered(&mut self, peer: &UserId, hot: Option<u32>, now: u64) {
        let Some(k) = hot else { return };
        if self.peers.len() >= HOT_PEERS_MAX && !self.peers.contains_key(peer) {
            self.peers.retain(|_, (_, until)| now < *until);
            if self.peers.len() >= HOT_PEERS_MAX {
                self.peers.clear();
            }
        }
        self.peers.insert(peer.clone(), (k, now.saturating_add(HOT_LEASE_MS)));
    }
}

/// A delivery waiting in a shard, by its ticket.
pub type Ticket = u64;

/// What the platform does after a delivery arrived or a batch was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send a batch after this delay.
    Flush { delay_ms: u64 },
    /// A flush is already due or a batch is in flight; it takes this one.
    Wait,
}

/// One batch for the user's object: its body and the tickets it answers,
/// in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardBatch {
    pub tickets: Vec<Ticket>,
    pub body: String,
}

/// A shard's queue: deliveries in arrival order, one batch in flight.
#[derive(Debug)]
pub struct ShardQueue {
    flush_ms: u64,
    waiting: Vec<(Ticket, String, String)>,
    next_ticket: Ticket,
    /// A flush is scheduled or a batch is in flight.
    busy: bool,
    /// When the last batch started (ms; 0: never).
    last_start: u64,
}

impl ShardQueue {
    pub fn new(flush_ms: u64) -> ShardQueue {
        ShardQueue { flush_ms, waiting: Vec::new(), next_ticket: 0, busy: false, last_start: 0 }
    }

    /// A delivery (its request's URL and body) arrives at `now`: an idle
    /// shard sends it as soon as `flush_ms` passed since its last batch
    /// began (at once after a quiet spell).
    pub fn add(&mut self, url: String, body: String, now: u64) -> (Ticket, Next) {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.waiting.push((ticket, url, body));
        if std::mem::replace(&mut self.busy, true) {
            return (ticket, Next::Wait);
        }
        (ticket, Next::Flush { delay_ms: self.wait(now) })
    }

    fn wait(&self, now: u64) -> u64 {
        match self.last_start {
            0 => 0,
            t => t.saturating_add(self.flush_ms).saturating_sub(now),
        }
    }

    /// The next batch: the oldest deliveries, up to [`BATCH_MAX`] and
    /// [`BATCH_BYTES`] (at least one). `None`: nothing waits.
    pub fn take(&mut self, now: u64) -> Option<ShardBatch> {
        if self.waiting.is_empty() {
            self.busy = false;
            return None;
        }
        self.last_start = now.max(1);
        let mut bytes = 0;
        let mut n = 0;
        for (_, url, body) in &self.waiting {
            bytes += url.len() + body.len();
            if n > 0 && (n == BATCH_MAX || bytes > BATCH_BYTES) {
                break;
            }
            n += 1;
        }
        let items: Vec<_> = self.waiting.drain(..n).collect();
        let tickets = items.iter().map(|(t, _, _)| *t).collect();
        let pairs: Vec<(&str, &str)> = items.iter().map(|(_, u, b)| (u.as_str(), b.as_str())).collect();
        Some(ShardBatch { tickets, body: encode_pairs(&pairs) })
    }

    /// The batch in flight was answered (or failed) at `now`: the next one
    /// goes `flush_ms` after this one began, if deliveries waited meanwhile.
    pub fn answered(&mut self, now: u64) -> Next {
        if self.waiting.is_empty() {
            self.busy = false;
            Next::Wait
        } else {
            Next::Flush { delay_ms: self.wait(now) }
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

fn encode_pairs(pairs: &[(&str, &str)]) -> String {
    serde_json::to_string(pairs).unwrap_or_else(|_| "[]".into())
}

/// A batch body from its deliveries (for tests and tools; shards build it
/// from the requests' URLs as they came).
pub fn encode_batch(items: &[(Delivery, String)]) -> String {
    let urls: Vec<String> = items.iter().map(|(d, _)| Internal::Deliver(d.clone()).encode()).collect();
    let pairs: Vec<(&str, &str)> = urls.iter().zip(items).map(|(u, (_, b))| (u.as_str(), b.as_str())).collect();
    encode_pairs(&pairs)
}

/// Why a batch body cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadBatch;

impl std::fmt::Display for BadBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad inbox batch: not an array of [url, body] pairs")
    }
}

/// One item of a batch as the user's object reads it: a delivery to it, or
/// one it must refuse (another owner's, or not a delivery: a bug).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchItem {
    Deliver(Delivery, String),
    Bad,
}

/// Reads a batch sent to `owner`'s object.
pub fn parse_batch(owner: &UserId, body: &str) -> Result<Vec<BatchItem>, BadBatch> {
    let pairs: Vec<(String, String)> = serde_json::from_str(body).map_err(|_| BadBatch)?;
    Ok(pairs
        .into_iter()
        .map(|(url, body)| match Internal::parse(&url) {
            Ok(Internal::Deliver(d)) if d.owner == *owner => BatchItem::Deliver(d, body),
            _ => BatchItem::Bad,
        })
        .collect())
}

/// What the user's object does with each item of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchStep {
    /// Apply it as a direct delivery.
    Deliver(Delivery, String),
    /// The same id as item `j` of this batch with dedup (a sender's retry
    /// that overtook its first try): answered as item `j` is, stored once.
    SameAs(usize),
    Bad,
}

/// Plans a batch: each item applied once, whatever else the batch holds. A
/// batch sent again (its answer was lost) is idempotent the way a direct
/// hop is: items with dedup are found in `seen`, by id, when applied.
pub fn plan_batch(items: Vec<BatchItem>) -> Vec<BatchStep> {
    let mut first: HashMap<String, usize> = HashMap::new();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            BatchItem::Bad => BatchStep::Bad,
            BatchItem::Deliver(d, body) => {
                if d.dedup {
                    if let Some(&j) = first.get(&d.id) {
                        return BatchStep::SameAs(j);
                    }
                    first.insert(d.id.clone(), i);
                }
                BatchStep::Deliver(d, body)
            }
        })
        .collect()
}

/// A batch decided by the user's object: the entries to append (in order,
/// together), and how each delivery is answered once they are written.
#[derive(Debug)]
pub struct AppliedBatch {
    pub entries: Vec<NewEntry>,
    slots: Vec<Slot>,
    /// Deliveries the mailbox could not decide (storage failed): answered
    /// `Unavailable`, for the platform to log.
    pub failures: Vec<crate::mailbox::Error>,
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    Ready(Answer),
    /// The n-th entry of [`AppliedBatch::entries`].
    Append(usize),
    /// Answered as delivery j.
    Same(usize),
}

/// Decides every delivery of a batch as a direct delivery is decided
/// ([`Mailbox::deliver`]: blocks, keys, `seen` ids, queue bounds), a retry
/// inside the batch once ([`plan_batch`]). Sent again after its answer was
/// lost, a batch stores again only what a direct hop sent again would:
/// deliveries with dedup are found in `seen` and answered as duplicates.
pub fn apply_batch<S: Sql, W: Sockets>(mb: &mut Mailbox, io: &Io<S, W>, items: Vec<BatchItem>) -> AppliedBatch {
    let mut out = AppliedBatch { entries: Vec::new(), slots: Vec::with_capacity(items.len()), failures: Vec::new() };
    for step in plan_batch(items) {
        let slot = match step {
            BatchStep::Bad => Slot::Ready(Answer::of(Outcome::Bad)),
            BatchStep::SameAs(j) => Slot::Same(j),
            BatchStep::Deliver(d, body) => match mb.deliver(io, d, body) {
                Ok(DeliverStep::Answer(a)) => Slot::Ready(a),
                Ok(DeliverStep::Append(entry)) => {
                    out.entries.push(entry);
                    Slot::Append(out.entries.len() - 1)
                }
                Err(e) => {
                    out.failures.push(e);
                    Slot::Ready(Answer::of(Outcome::Unavailable))
                }
            },
        };
        out.slots.push(slot);
    }
    out
}

impl AppliedBatch {
    /// The answer of each delivery, in order, given what became of each
    /// entry (`None`: its write failed; the sender sends it again).
    pub fn answers(&self, stored: &[Option<Stored>]) -> Vec<Answer> {
        let mut answers: Vec<Answer> = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let a = match *slot {
                Slot::Ready(a) => a,
                Slot::Append(n) => Mailbox::delivered(stored.get(n).copied().flatten()),
                Slot::Same(j) => {
                    let first = answers.get(j).copied().unwrap_or(Answer::of(Outcome::Unavailable));
                    Answer { duplicate: matches!(first.outcome, Outcome::Stored { .. }), ..first }
                }
            };
            answers.push(a);
        }
        answers
    }
}

/// The answers of a batch, in order, as one header value:
/// `<status>[:<seq>][d]` per item, comma-separated.
pub fn answers_header(answers: &[Answer]) -> String {
    let mut out = String::with_capacity(answers.len() * 8);
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&a.status().to_string());
        if let Some(seq) = a.seq {
            out.push(':');
            out.push_str(&seq.to_string());
        }
        if a.duplicate {
            out.push('d');
        }
    }
    out
}

/// Reads [`answers_header`]; an item missing or unreadable is
/// `Unavailable` (its sender sends again).
pub fn read_answers(header: Option<&str>, n: usize) -> Vec<Answer> {
    let mut out: Vec<Answer> = header
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (item, duplicate) = match item.strip_suffix('d') {
                Some(rest) => (rest, true),
                None => (item, false),
            };
            let (status, seq) = match item.split_once(':') {
                Some((s, q)) => (s, q.parse().ok()),
                None => (item, None),
            };
            let outcome = status.parse().map(Outcome::from_status).unwrap_or(Outcome::Unavailable);
            Answer { seq, duplicate, ..Answer::of(outcome) }
        })
        .collect();
    out.resize(n, Answer::of(Outcome::Unavailable));
    out.truncate(n);
    out
}

/// The `x-hot` header's value read back.
pub fn read_hot(header: Option<&str>) -> Option<u32> {
    header.and_then(|v| v.parse().ok()).filter(|k| *k >= 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Kind;
    use std::collections::HashSet;

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn delivery(owner: &str, from: &str, id: &str, dedup: bool) -> Delivery {
        Delivery {
            owner: uid(owner),
            kind: Kind::Received,
            id: id.into(),
            time_ms: 1,
            peer: Some(uid(from)),
            dedup,
            backend: false,
            key: None,
        }
    }

    fn cfg(hot_rate: u64) -> FaninConfig {
        FaninConfig { hot_rate, shards: 4, flush_ms: 5 }
    }

    #[test]
    fn a_user_turns_hot_at_the_rate_and_cold_after_a_quiet_window() {
        let (a, b) = (uid("a"), uid("b"));
        let n = |k: usize, who: &UserId| vec![Some(who.clone()); k];
        let note = |m: &mut Meter, now: u64, v: Vec<Option<UserId>>| m.note(now, v.iter().map(Option::as_ref));
        let mut m = Meter::new(cfg(10));
        for i in 0..9 {
            let who = if i % 2 == 0 { &a } else { &b };
            assert_eq!(note(&mut m, 1000 + i, n(1, who)), None, "under the rate");
        }
        assert_eq!(note(&mut m, 1500, n(1, &a)), Some(4), "the tenth entry in a second");
        // The next window at 3 per second: still over a quarter of the rate.
        assert_eq!(note(&mut m, 2000, n(3, &a)), Some(4));
        // Then a window of 1 (under a quarter): cold from the window after it.
        assert_eq!(note(&mut m, 3000, n(1, &a)), Some(4));
        assert_eq!(note(&mut m, 4000, n(1, &a)), None);
        // A long gap counts as empty windows.
        let mut m = Meter::new(cfg(10));
        assert_eq!(note(&mut m, 0, [n(5, &a), n(5, &b)].concat()), Some(4));
        assert_eq!(note(&mut m, 5000, n(1, &a)), None);
        // One sender alone never makes a user hot; the backend counts as none.
        let mut m = Meter::new(cfg(10));
        assert_eq!(note(&mut m, 0, n(1000, &a)), None);
        assert_eq!(note(&mut m, 1, vec![None; 1000]), None);
        assert_eq!(note(&mut m, 2, n(1, &b)), Some(4), "a second sender");
        // 0 turns it off.
        assert_eq!(note(&mut Meter::new(cfg(0)), 0, [n(5, &a), n(5, &b)].concat()), None);
    }

    #[test]
    fn a_sender_always_uses_the_same_shard_and_the_lease_ends() {
        let (a, b, hot) = (uid("alice"), uid("bob"), uid("star"));
        let mut peers = HotPeers::default();
        assert_eq!(peers.route(&a, &hot, 0), Route::Direct);
        peers.answered(&hot, Some(8), 100);
        let ra = peers.route(&a, &hot, 200);
        assert_eq!(ra, Route::Shard(shard_name(&hot, shard_of(&a, 8))));
        assert_eq!(peers.route(&a, &hot, 300), ra, "stable");
        assert!(matches!(peers.route(&b, &hot, 200), Route::Shard(_)));
        assert_eq!(peers.route(&a, &hot, 100 + HOT_LEASE_MS), Route::Direct, "lease over");
        peers.answered(&hot, Some(8), 100);
        peers.answered(&hot, None, 200);
        assert_eq!(peers.route(&a, &hot, 300), ra, "told cold: the lease runs out first");
        assert_eq!(peers.route(&a, &hot, 100 + HOT_LEASE_MS), Route::Direct);
        // Senders spread over the shards.
        let used: HashSet<u32> = (0..200).map(|i| shard_of(&uid(&format!("s{i}")), 8)).collect();
        assert_eq!(used.len(), 8);
        assert_eq!(shard_name(&hot, 3), "inbox:star:3");
    }

    #[test]
    fn a_sender_switches_paths_only_with_nothing_in_flight() {
        let (a, hot) = (uid("alice"), uid("star"));
        let mut peers = HotPeers::default();
        // Two sends go direct; the first answer says hot.
        peers.started(&hot, &Route::Direct);
        peers.started(&hot, &Route::Direct);
        peers.finished(&hot);
        peers.answered(&hot, Some(4), 100);
        assert_eq!(peers.route(&a, &hot, 110), Route::Direct, "one direct send still on its way");
        peers.started(&hot, &Route::Direct);
        peers.finished(&hot);
        peers.finished(&hot);
        let shard = Route::Shard(shard_name(&hot, shard_of(&a, 4)));
        assert_eq!(peers.route(&a, &hot, 120), shard, "drained: now through the shard");
        // And back: the lease ran out while a send waits in the shard.
        peers.started(&hot, &shard);
        assert_eq!(peers.route(&a, &hot, 100 + HOT_LEASE_MS), shard);
        peers.finished(&hot);
        assert_eq!(peers.route(&a, &hot, 100 + HOT_LEASE_MS), Route::Direct);
    }

    #[test]
    fn a_shard_starts_at_most_one_batch_per_interval() {
        let mut q = ShardQueue::new(40);
        // Idle since ever: at once.
        assert_eq!(q.add("u1".into(), "b1".into(), 1000), (1, Next::Flush { delay_ms: 0 }));
        assert_eq!(q.add("u2".into(), "b2".into(), 1000), (2, Next::Wait));
        let batch = q.take(1000).unwrap();
        assert_eq!(batch.tickets, vec![1, 2]);
        assert_eq!(batch.body, r#"[["u1","b1"],["u2","b2"]]"#);
        // Arrivals while the batch is in flight wait for it, and the next
        // batch starts 40 ms after this one did.
        assert_eq!(q.add("u3".into(), "b3".into(), 1005), (3, Next::Wait));
        assert_eq!(q.answered(1010), Next::Flush { delay_ms: 30 });
        assert_eq!(q.take(1040).unwrap().tickets, vec![3]);
        // A slow answer: the next goes at once.
        q.add("u4".into(), "b4".into(), 1050);
        assert_eq!(q.answered(1100), Next::Flush { delay_ms: 0 });
        assert_eq!(q.take(1100).unwrap().tickets, vec![4]);
        assert_eq!(q.answered(1101), Next::Wait);
        assert!(q.is_empty());
        // Idle again: the next arrival waits out the interval, then goes.
        assert_eq!(q.add("u5".into(), "b5".into(), 1120), (5, Next::Flush { delay_ms: 20 }));
        q.take(1140);
        q.answered(1141);
        assert_eq!(q.add("u6".into(), "b6".into(), 5000), (6, Next::Flush { delay_ms: 0 }));
    }

    #[test]
    fn a_batch_is_bounded_in_entries_and_bytes() {
        let mut q = ShardQueue::new(0);
        for i in 0..(BATCH_MAX + 3) {
            q.add(format!("u{i}"), "x".into(), 1);
        }
        assert_eq!(q.take(1).unwrap().tickets.len(), BATCH_MAX);
        assert_eq!(q.answered(2), Next::Flush { delay_ms: 0 });
        assert_eq!(q.take(2).unwrap().tickets.len(), 3);
        let mut q = ShardQueue::new(0);
        let big = "y".repeat(BATCH_BYTES);
        q.add("a".into(), big.clone(), 1);
        q.add("b".into(), big, 1);
        assert_eq!(q.take(1).unwrap().tickets, vec![1], "one oversized item still goes alone");
        q.answered(2);
        assert_eq!(q.take(2).unwrap().tickets, vec![2]);
    }

    #[test]
    fn a_batch_round_trips_and_refuses_other_owners() {
        let items = vec![
            (delivery("star", "alice", &crate::message::new_id(1, 1), true), "{\"a\":1}".to_owned()),
            (delivery("star", "bob", &crate::message::new_id(2, 2), false), "x,\"y\"".to_owned()),
            (delivery("other", "bob", &crate::message::new_id(3, 3), false), "z".to_owned()),
        ];
        let parsed = parse_batch(&uid("star"), &encode_batch(&items)).unwrap();
        assert_eq!(parsed[0], BatchItem::Deliver(items[0].0.clone(), items[0].1.clone()));
        assert_eq!(parsed[1], BatchItem::Deliver(items[1].0.clone(), items[1].1.clone()));
        assert_eq!(parsed[2], BatchItem::Bad);
        assert_eq!(parse_batch(&uid("star"), "{}"), Err(BadBatch));
    }

    #[test]
    fn a_retry_inside_one_batch_is_applied_once() {
        let id = crate::message::new_id(1, 1);
        let other = crate::message::new_id(2, 2);
        let items = vec![
            BatchItem::Deliver(delivery("star", "alice", &id, true), "b".into()),
            BatchItem::Deliver(delivery("star", "alice", &other, false), "c".into()),
            BatchItem::Deliver(delivery("star", "alice", &id, true), "b".into()),
            BatchItem::Bad,
        ];
        let steps = plan_batch(items);
        assert!(matches!(steps[0], BatchStep::Deliver(..)));
        assert!(matches!(steps[1], BatchStep::Deliver(..)));
        assert_eq!(steps[2], BatchStep::SameAs(0));
        assert_eq!(steps[3], BatchStep::Bad);
    }

    #[test]
    fn answers_travel_in_one_header() {
        let answers = vec![
            Answer { seq: Some(7), ..Answer::of(Outcome::Stored { pushed: true }) },
            Answer { seq: Some(8), duplicate: true, ..Answer::of(Outcome::Stored { pushed: false }) },
            Answer::of(Outcome::Full),
            Answer::of(Outcome::Stored { pushed: false }),
        ];
        let h = answers_header(&answers);
        assert_eq!(h, "200:7,202:8d,507,202");
        assert_eq!(read_answers(Some(&h), 4), answers);
        // Missing answers are unavailable (the sender retries).
        let short = read_answers(Some("200:1"), 2);
        assert_eq!(short[1], Answer::of(Outcome::Unavailable));
        assert_eq!(read_answers(None, 1), vec![Answer::of(Outcome::Unavailable)]);
        assert_eq!(read_hot(Some("8")), Some(8));
        assert_eq!(read_hot(Some("0")), None);
        assert_eq!(read_hot(None), None);
    }

    #[test]
    fn config_reads_vars_and_keeps_defaults() {
        let c = FaninConfig::from_vars(|n| match n {
            "INBOX_HOT_RATE" => Some("50".into()),
            "INBOX_SHARDS" => Some("0".into()),
            _ => None,
        });
        assert_eq!(c, FaninConfig { hot_rate: 50, shards: DEFAULT_SHARDS, flush_ms: DEFAULT_FLUSH_MS });
    }
}
