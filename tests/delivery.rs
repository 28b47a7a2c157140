//! Model-based property test of the real per-user state machine.
//!
//! `Object` plays the platform for a real [`Mailbox`]: it owns the log (the
//! core's own SQL, run by `rusqlite` through the same `Sql` port the Durable
//! Object uses), the sockets (a port that records every frame and can make
//! sends fail), the D1 archive and the clock, and it calls the mailbox the
//! way `src/edge/user_object.rs` does: the same preamble (`load`), the same
//! calls, the same group commit (`append`, `commit`, `cooled`), the same
//! split of the archive pass around its D1 write. Nothing of the object's
//! orchestration is copied here: what is tested is the code that runs.
//!
//! A random interleaving of operations (legacy and v1 connects with any
//! `since`, drops, deliveries to the user in group-commit batches, the user's
//! own sent chats, sockets closing mid-push or mid-replay, acks, archive steps
//! that fail or race with replays, prunes, queue expiry, clock ticks,
//! hibernation, restarts, forgotten devices) is run against it, and the
//! `Spec` (what clients saw, what was acknowledged) checks after every step:
//!
//! - stored entries get seq 1, 2, 3, … across restarts (nothing reused);
//! - each v1 connection gets `start+1, start+2, …` with no gap, repeat or
//!   reordering; a resume from `since` starts right after it unless an entry
//!   after it is gone, and then says `recovered: false`, and the entries it
//!   skips are in D1; a device that resumes from what it processed is never
//!   sent an entry again;
//! - the legacy stream: each socket sees owed entries in increasing order, no
//!   entry reaches legacy sockets in two different events (no duplicate
//!   replay), entries reach a socket only once everything older is off the
//!   queue, and an owed entry leaves the queue only by reaching a socket, a v1
//!   connect, queue expiry (older than the TTL) or the cap;
//! - an entry leaves the log only once D1 has it and (it is past the cap, or
//!   it is outside the keep window, off the legacy queue and acknowledged by
//!   every device the object is meant to remember);
//! - D1 has the current delivery state of every entry behind the cursor (and
//!   of every entry pruned), and a restart restores the same head and queue;
//! - a delivery is refused as over `QUEUE_MAX` only when that many entries
//!   wait in the queue (owed ones, not on a socket yet; other entries in
//!   between do not count), the oldest of which has not expired;
//! - the log never holds more than `QUEUE_MAX` queued entries plus those
//!   accepted into one group write.
//!
//! [`known_gaps`] replays the shortest interleavings of three bugs this test
//! found in the object (since fixed): a v1 device not saved at connect, a
//! rewound archive cursor not saved, and a queue left starting at an entry the
//! cap pruned (`Stats::refused_stuck`).
//!
//! `PROPTEST_CASES` raises the number of cases (default 400).

mod support;

use std::cell::{Ref, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use edge_chat::history::IS_SEND_DELIVERED;
use edge_chat::inbox::Inbox;
use edge_chat::internal::{Answer, Delivery, Outcome};
use edge_chat::limits::Limits;
use edge_chat::log::Log;
use edge_chat::mailbox::{
    self, Appended, ArchiveBatch, Config as MailboxConfig, DeliverStep, Io, Mailbox, Mode, SendPlan,
};
use edge_chat::message::{Chat, Kind};
use edge_chat::user::UserId;
use proptest::prelude::*;
use support::sqlite::Lite;

/// The object's parameters, small so that every limit is reached.
#[derive(Clone, Copy, Debug)]
struct Config {
    keep: u64,
    cap: u64,
    queue_ttl: u64,
    queue_max: u64,
    batch_rows: u64,
    /// Bytes of bodies per archive batch: small, so batches are cut by size.
    batch_bytes: usize,
    /// Entries per log generation (pruning drops whole generations).
    generation: u64,
}

#[derive(Clone, Copy, Debug)]
enum Since {
    /// What the device processed: the normal resume.
    Processed,
    Absent,
    /// Older than what it processed (a client replaying on purpose).
    Behind(u8),
    /// Past the head (a client whose state came from elsewhere).
    Ahead(u8),
}

#[derive(Clone, Debug)]
enum Op {
    ConnectLegacy {
        fail_at: Option<u8>,
    },
    ConnectV1 {
        device: u8,
        since: Since,
    },
    Drop {
        socket: u8,
    },
    /// Chats or system messages for the user, arriving together (one group
    /// write); a socket may have closed (listed, but sends fail).
    Deliver {
        system: bool,
        count: u8,
        dying: Option<u8>,
    },
    /// The user's own sent chats (never owed to legacy sockets).
    SendOwn {
        count: u8,
        dying: Option<u8>,
    },
    Ack {
        socket: u8,
        lag: u8,
    },
    /// Starts an archive batch, or finishes the one in flight (D1 may fail).
    Archive {
        fail: bool,
    },
    /// The end of an archive pass: save devices, expire the queue, prune.
    ArchiveEnd,
    Tick(u8),
    /// Evicted from memory; hibernated sockets stay open.
    Hibernate,
    /// Memory and sockets lost.
    Restart,
    /// Not seen for the device TTL: the object forgets it.
    ForgetDevice {
        device: u8,
    },
}

const DEVICES: u8 = 3;

#[derive(Clone, Debug)]
struct Row {
    sent: bool,
    time: u64,
}

#[derive(Debug)]
struct Socket {
    id: u64,
    device: Option<u8>,
    /// v1: the welcome's `since`.
    start: u64,
    /// Log entries received: a legacy socket's bodies carry the test's
    /// message number `n`, mapped to its seq once stored; v1 frames carry the seq.
    got: Vec<Got>,
    /// Still listed by the runtime, but every send fails (on Workers a send
    /// fails only once the socket is closing, so there is no other failure).
    dying: bool,
    /// Sends left before the socket starts dying (a replay cut short).
    budget: Option<u8>,
    welcome: Option<serde_json::Value>,
}

#[derive(Clone, Copy, Debug)]
enum Got {
    Body(u64),
    Seq(u64),
}

/// The sockets port: records what each socket gets.
struct Port(RefCell<Vec<Socket>>);

impl mailbox::Sockets for Port {
    type Socket = u64;
    fn open(&self, mode: Mode) -> Vec<u64> {
        let v1 = mode == Mode::V1;
        self.0.borrow().iter().filter(|s| s.device.is_some() == v1).map(|s| s.id).collect()
    }
    fn count(&self) -> usize {
        self.0.borrow().len()
    }
    fn send(&self, id: &u64, text: &str) -> bool {
        let mut sockets = self.0.borrow_mut();
        let Some(s) = sockets.iter_mut().find(|s| s.id == *id) else { return false };
        if let Some(b) = s.budget.as_mut() {
            if *b == 0 {
                s.dying = true;
            }
            *b = b.saturating_sub(1);
        }
        if s.dying {
            return false;
        }
        let v: serde_json::Value = serde_json::from_str(text).expect("frames are JSON");
        match (s.device, v["op"].as_str()) {
            (None, _) => s.got.push(Got::Body(v["n"].as_u64().expect("a body of this test"))),
            (Some(_), Some("msg")) => s.got.push(Got::Seq(v["seq"].as_u64().expect("msg has a seq"))),
            (Some(_), Some("welcome")) => s.welcome = Some(v),
            (Some(_), _) => {}
        }
        true
    }
}

/// What a v1 connect answered.
struct Welcome {
    asked: Option<u64>,
    head: u64,
    start: u64,
    recovered: bool,
}

struct Object {
    cfg: Config,
    owner: UserId,
    peer: UserId,
    // Durable: the log (SQLite) and D1.
    store: Log<Lite>,
    d1: BTreeMap<u64, bool>,
    // Memory.
    mb: Mailbox,
    in_flight: Option<ArchiveBatch>,
    // The runtime.
    port: Port,
    next_socket: u64,
    clock: u64,
    /// The test's message numbers (in bodies) and the seqs they were stored at.
    numbers: BTreeMap<u64, u64>,
    next_number: u64,
    // Snapshots of storage, refreshed after each call.
    log: BTreeMap<u64, Row>,
    archived: u64,
    saved_devices: BTreeMap<u8, u64>,
}

fn device_name(d: u8) -> String {
    format!("d{d}")
}

impl Object {
    fn new(cfg: Config) -> Object {
        let mut o = Object {
            cfg,
            owner: UserId::parse("me").unwrap(),
            peer: UserId::parse("peer").unwrap(),
            store: Lite::log(),
            d1: BTreeMap::new(),
            mb: Mailbox::new(Object::mailbox_config(cfg)),
            in_flight: None,
            port: Port(RefCell::new(Vec::new())),
            next_socket: 0,
            clock: 1000,
            numbers: BTreeMap::new(),
            next_number: 0,
            log: BTreeMap::new(),
            archived: 0,
            saved_devices: BTreeMap::new(),
        };
        o.sync();
        o
    }

    fn mailbox_config(cfg: Config) -> MailboxConfig {
        let limits =
            Limits { queue_max: cfg.queue_max, queue_ttl_ms: cfg.queue_ttl, log_cap: cfg.cap, ..Limits::default() };
        MailboxConfig {
            limits,
            archive_delay_ms: 500,
            archive_retry_ms: 1000,
            batch_rows: cfg.batch_rows,
            batch_bytes: cfg.batch_bytes,
            keep_entries: cfg.keep,
            generation_entries: cfg.generation,
            shards: 2,
            partitioning: Limits::default().partitioning,
            push: None,
        }
    }

    fn sockets(&self) -> Ref<'_, Vec<Socket>> {
        self.port.0.borrow()
    }

    /// One call into the mailbox, as the object makes it.
    fn call<T>(&mut self, f: impl FnOnce(&mut Mailbox, &Io<Lite, Port>) -> T) -> T {
        let io = Io { log: &self.store, sockets: &self.port, now: self.clock };
        let out = f(&mut self.mb, &io);
        // Alarms, timer ticks and notifications are the platform's business:
        // the test runs archive passes and commits when its operations say.
        self.mb.take_effects();
        out
    }

    /// The preamble of every hook.
    fn load(&mut self) {
        let owner = self.owner.clone();
        self.call(|mb, io| mb.load(io, &owner)).expect("the log loads");
    }

    /// Reads back what storage holds.
    fn sync(&mut self) {
        let mut log = BTreeMap::new();
        self.store
            .sql()
            .0
            .prepare("SELECT seq, kind, sent, time FROM log")
            .unwrap()
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)))
            .unwrap()
            .for_each(|r| {
                let (seq, kind, sent, time) = r.unwrap();
                assert!(Kind::from_code(kind).is_some(), "entry {seq} of unknown kind {kind}");
                log.insert(seq as u64, Row { sent: sent != 0, time: time as u64 });
            });
        self.log = log;
        let meta = |k: &str| -> Option<u64> {
            self.store
                .sql()
                .0
                .query_row("SELECT v FROM meta WHERE k = ?", [k], |r| r.get::<_, i64>(0))
                .ok()
                .map(|v| v as u64)
        };
        self.archived = meta("archived").unwrap_or(0);
        self.saved_devices = self
            .store
            .sql()
            .0
            .prepare("SELECT device, acked FROM devices")
            .unwrap()
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap()
            .map(|r| {
                let (d, a) = r.unwrap();
                (d[1..].parse().unwrap(), a as u64)
            })
            .collect();
    }

    /// `Log::restore`: what a wake-up reads.
    fn restored(&self) -> Inbox {
        self.store.restore().expect("restore").inbox
    }

    fn inbox(&mut self) -> Inbox {
        self.load();
        self.mb.inbox().cloned().expect("loaded")
    }

    fn head(&mut self) -> u64 {
        self.inbox().head()
    }

    fn accept(&mut self, device: Option<u8>, budget: Option<u8>) -> u64 {
        self.next_socket += 1;
        let id = self.next_socket;
        let s = Socket { id, device, start: 0, got: Vec::new(), dying: false, budget, welcome: None };
        self.port.0.borrow_mut().push(s);
        id
    }

    /// `UserObject::on_connect`.
    fn connect_legacy(&mut self, fail_at: Option<u8>) {
        self.load();
        let id = self.accept(None, fail_at);
        self.call(|mb, io| mb.connect_legacy(io, &id)).expect("connect");
    }

    /// Memory is lost (eviction, restart): returns the entries whose D1 state
    /// the restored cursor wrongly counts as current.
    fn lose_memory(&mut self, restart: bool) -> std::ops::RangeInclusive<u64> {
        let lost = match self.mb.inbox() {
            Some(inbox) if inbox.archived() < self.archived => inbox.archived() + 1..=self.archived,
            _ => std::ops::RangeInclusive::new(1, 0),
        };
        if restart {
            self.mb = Mailbox::new(Object::mailbox_config(self.cfg));
        } else {
            self.mb.forget();
        }
        self.in_flight = None;
        lost
    }

    /// `UserObject::on_connect_v1`.
    fn connect_v1(&mut self, device: u8, since: Option<u64>) -> Welcome {
        self.load();
        let id = self.accept(Some(device), None);
        self.call(|mb, io| mb.connect_v1(io, &id, &device_name(device), since)).expect("connect");
        let mut sockets = self.port.0.borrow_mut();
        let s = sockets.iter_mut().find(|s| s.id == id).unwrap();
        let w = s.welcome.take().expect("a welcome first");
        let welcome = Welcome {
            asked: since,
            head: w["head"].as_u64().unwrap(),
            start: w["since"].as_u64().unwrap(),
            recovered: w["recovered"].as_bool().unwrap(),
        };
        s.start = welcome.start;
        welcome
    }

    /// An `ack` frame from the device's socket.
    fn ack(&mut self, device: u8, up_to: u64) {
        self.load();
        let frame = format!(r#"{{"op":"ack","up_to":{up_to}}}"#);
        let step = self.call(|mb, io| mb.v1_frame(io, &device_name(device), u64::MAX, &frame)).expect("ack");
        assert_eq!(step, mailbox::V1Step::Done);
    }

    /// One step of `UserObject::archive`'s loop: read a batch, or write the
    /// one read to D1 (the await in between lets other events run). Returns
    /// whether a batch written counted (`None`: none was written).
    fn archive_step(&mut self, fail: bool) -> Option<bool> {
        self.load();
        match self.in_flight.take() {
            None => {
                self.in_flight = self.call(|mb, io| mb.archive_next(io, false)).expect("archive batch");
                None
            }
            Some(_) if fail => None,
            Some(batch) => {
                // history::ROW: [conv, id, sender, recipient, kind, time, body, is_send, sseq, rseq].
                for h in &batch.handoffs {
                    let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(&h.rows).unwrap();
                    for r in rows {
                        let own = if r[2].as_str() == Some(self.owner.as_str()) { &r[8] } else { &r[9] };
                        let delivered = r[7].as_i64() == Some(IS_SEND_DELIVERED);
                        // A row handed in again only ever learns of a delivery.
                        *self.d1.entry(own.as_u64().expect("the owner's seq")).or_insert(delivered) |= delivered;
                    }
                }
                Some(self.call(|mb, io| mb.archived(io, batch)).expect("archived"))
            }
        }
    }

    /// The end of `UserObject::archive`. Returns the entries pruned and their
    /// delivery state.
    fn archive_end(&mut self) -> Vec<(u64, bool)> {
        self.load();
        let before = self.log.clone();
        self.call(|mb, io| mb.archive_finish(io)).expect("archive finish");
        self.sync();
        before.into_iter().filter(|(s, _)| !self.log.contains_key(s)).map(|(s, r)| (s, r.sent)).collect()
    }

    fn forget(&mut self, device: u8) {
        let name = device_name(device);
        self.store.sql().0.execute("DELETE FROM devices WHERE device = ?", [name]).unwrap();
    }

    /// A body with a fresh message number.
    fn body(&mut self) -> (u64, String) {
        self.next_number += 1;
        (self.next_number, format!(r#"{{"n":{}}}"#, self.next_number))
    }
}

/// What a device (its client) knows.
#[derive(Clone, Debug, Default)]
struct DeviceSpec {
    /// The last seq it processed, in order.
    processed: u64,
    /// The highest ack it sent.
    acked: u64,
    /// The object is meant to remember it (connected, not forgotten since),
    /// and everything up to `acked` is what it no longer needs.
    remembered: bool,
}

/// What happened, as the clients and senders saw it.
struct Spec {
    /// Every stored entry by seq - 1: the senders got `ok`/`sent` for these.
    kinds: Vec<Kind>,
    times: Vec<u64>,
    /// The event in which an entry first reached legacy sockets.
    legacy_event: BTreeMap<u64, usize>,
    /// Owed entries that left the legacy queue legitimately.
    off_queue: BTreeSet<u64>,
    devices: BTreeMap<u8, DeviceSpec>,
    /// Frames already checked, by socket id.
    seen: BTreeMap<u64, usize>,
    /// Operations applied, for the counts printed at the end.
    stats: Stats,
}

#[derive(Clone, Debug, Default)]
struct Stats {
    ops: u64,
    stored: u64,
    refused_full: u64,
    replays: u64,
    v1_resumes: u64,
    not_recovered: u64,
    pruned: u64,
    cap_pruned: u64,
    expired: u64,
    restarts: u64,
    hibernations: u64,
    stale_batches: u64,
    /// Steps after which the in-memory queue starts at an entry the cap pruned.
    queue_head_pruned: u64,
    /// Deliveries refused as over `QUEUE_MAX` although the queue, counted
    /// from its oldest entry still in the log, is not full or has expired.
    refused_stuck: u64,
    /// Resumes without `since` that sent entries the device had acked (an
    /// ack not yet saved when the object lost its memory).
    acked_replayed: u64,
}

fn owed(k: Kind) -> bool {
    k.owed_to_owner()
}

impl Spec {
    fn new() -> Spec {
        Spec {
            kinds: Vec::new(),
            times: Vec::new(),
            legacy_event: BTreeMap::new(),
            off_queue: BTreeSet::new(),
            devices: BTreeMap::new(),
            seen: BTreeMap::new(),
            stats: Stats::default(),
        }
    }

    /// The object lost its memory: it must have saved every device it was
    /// meant to remember and every rewind of its archive cursor.
    fn memory_lost(&mut self, o: &Object, stale: std::ops::RangeInclusive<u64>) {
        assert!(stale.is_empty(), "cursor rewind to {} not saved", stale.start() - 1);
        for (d, dev) in &self.devices {
            assert!(!dev.remembered || o.saved_devices.contains_key(d), "device {d} was never saved");
        }
    }

    fn stored(&mut self, seqs: &[u64], kinds: &[Kind], time: u64) {
        for (seq, kind) in seqs.iter().zip(kinds) {
            assert_eq!(*seq, self.kinds.len() as u64 + 1, "sequence numbers are contiguous and never reused");
            self.kinds.push(*kind);
            self.times.push(time);
            self.stats.stored += 1;
        }
    }

    fn head(&self) -> u64 {
        self.kinds.len() as u64
    }

    /// The owed entries the object will still replay to a legacy socket.
    fn queue(o: &mut Object) -> BTreeSet<u64> {
        o.sync();
        let Some(first) = o.inbox().first_unsent() else { return BTreeSet::new() };
        o.log.range(first..).filter(|(_, r)| !r.sent).map(|(s, _)| *s).collect()
    }

    /// Checks the frames every socket got since the last step.
    fn check_streams(&mut self, o: &Object, event: usize) {
        let head = self.head();
        for s in o.sockets().iter() {
            let got: Vec<u64> = s
                .got
                .iter()
                .map(|g| match *g {
                    Got::Seq(seq) => seq,
                    Got::Body(n) => *o.numbers.get(&n).expect("a body pushed was stored"),
                })
                .collect();
            let seen = self.seen.entry(s.id).or_insert(0);
            let new = &got[*seen..];
            let mut prev = if *seen == 0 { None } else { Some(got[*seen - 1]) };
            for &seq in new {
                assert!(seq >= 1 && seq <= head, "socket {} got seq {seq} that was never stored", s.id);
                match s.device {
                    Some(d) => {
                        // v1: start+1, start+2, … whatever the entry's kind.
                        let want = prev.map_or(s.start + 1, |p| p + 1);
                        assert_eq!(seq, want, "v1 socket {} (device {d}): gap, repeat or reorder", s.id);
                        let dev = self.devices.entry(d).or_default();
                        dev.processed = dev.processed.max(seq);
                    }
                    None => {
                        assert!(owed(self.kinds[seq as usize - 1]), "own sent chat {seq} pushed to a legacy socket");
                        assert!(prev.is_none_or(|p| seq > p), "legacy socket {}: {seq} after {prev:?}", s.id);
                        let first = *self.legacy_event.entry(seq).or_insert(event);
                        assert_eq!(first, event, "entry {seq} reached legacy sockets in two events (a duplicate)");
                    }
                }
                if owed(self.kinds[seq as usize - 1]) {
                    self.off_queue.insert(seq);
                }
                prev = Some(seq);
            }
            *seen = got.len();
        }
    }

    /// After each step: the legacy queue, D1 and the restored state.
    fn check_state(&mut self, o: &mut Object, event: usize, pruned_now: &BTreeSet<u64>) {
        let queue = Spec::queue(o);
        let cutoff = o.clock.saturating_sub(o.cfg.queue_ttl);
        let head = self.head();
        for seq in 1..=head {
            if !owed(self.kinds[seq as usize - 1]) {
                assert!(!queue.contains(&seq));
                continue;
            }
            if queue.contains(&seq) {
                assert!(!self.legacy_event.contains_key(&seq), "entry {seq} is queued again after reaching a socket");
                continue;
            }
            if self.off_queue.contains(&seq) {
                continue;
            }
            // Off the queue without reaching a socket: only by age, or the cap.
            let expired = self.times[seq as usize - 1] < cutoff;
            let capped = pruned_now.contains(&seq) && seq + o.cfg.cap <= head;
            assert!(expired || capped, "owed entry {seq} left the queue undelivered (event {event})");
            self.stats.expired += expired as u64;
            self.off_queue.insert(seq);
        }
        // Nothing reached a legacy socket while something older was still queued.
        for (&seq, &e) in self.legacy_event.range(..) {
            if e == event {
                assert!(queue.range(..seq).next().is_none(), "entry {seq} overtook queued {queue:?}");
            }
        }
        if let Some(inbox) = o.mb.inbox().cloned() {
            assert_eq!(inbox.head(), head);
            // D1 holds the current state of everything behind the cursor.
            for (seq, r) in o.log.range(..=inbox.archived()) {
                assert_eq!(o.d1.get(seq), Some(&r.sent), "entry {seq} behind the archive cursor is stale in D1");
            }
            let restored = o.restored();
            assert_eq!(restored.head(), inbox.head(), "a restart restores the head");
            // The same entries queued. (The in-memory `first_unsent` may name an
            // entry the cap pruned, which a restart skips; replays read rows
            // from it, so the queue is the same.)
            let restored_queue: BTreeSet<u64> = restored
                .first_unsent()
                .map(|f| o.log.range(f..).filter(|(_, r)| !r.sent).map(|(s, _)| *s).collect())
                .unwrap_or_default();
            assert_eq!(restored_queue, queue, "a restart restores the queue");
            if inbox.first_unsent().is_some_and(|f| !o.log.contains_key(&f)) {
                self.stats.queue_head_pruned += 1;
            }
        }
    }

    fn check_welcome(&mut self, o: &Object, device: u8, w: &Welcome, since: Since) {
        self.stats.v1_resumes += 1;
        self.stats.not_recovered += !w.recovered as u64;
        assert_eq!(w.head, self.head());
        let dev = self.devices.entry(device).or_default();
        match w.asked {
            Some(s) if s <= w.head => {
                let oldest = o.log.keys().next().copied().unwrap_or(w.head + 1);
                // Told exactly when an entry after `since` is gone.
                assert_eq!(w.recovered, s + 1 >= oldest, "recovered must say whether ({s}, head] is all there");
                if w.recovered {
                    assert_eq!(w.start, s, "a resume starts right after since");
                } else {
                    assert!(w.start > s);
                    for gone in s + 1..=w.start {
                        assert!(!o.log.contains_key(&gone) && o.d1.contains_key(&gone), "gap entry {gone} not in D1");
                    }
                }
            }
            Some(_) => assert!(!w.recovered && w.start == w.head, "a client ahead of the log is told so"),
            None => {
                let oldest = o.log.keys().next().copied().unwrap_or(w.head + 1);
                if dev.remembered {
                    // From its last ack: never past it, unless that is gone (and then said so).
                    assert!(w.start <= dev.acked.max(oldest - 1), "a resume without since skipped past the ack");
                    assert!(w.start <= dev.acked || !w.recovered);
                    self.stats.acked_replayed += (w.start < dev.acked) as u64;
                } else {
                    assert_eq!(w.start, w.head, "a device new to the object starts at the head");
                }
            }
        }
        if matches!(since, Since::Processed) {
            assert!(w.start >= dev.processed.min(w.head), "a resume from what the device processed repeats nothing");
        }
        if !dev.remembered {
            dev.remembered = true;
            dev.acked = dev.acked.max(w.start);
        }
        // Whatever was queued for legacy sockets is the v1 device's now.
        for seq in 1..=w.head {
            if owed(self.kinds[seq as usize - 1]) {
                self.off_queue.insert(seq);
            }
        }
    }

    fn check_pruned(&mut self, o: &Object, pruned: &[(u64, bool)], queue_before: &BTreeSet<u64>) {
        let head = self.head();
        for &(seq, sent) in pruned {
            self.stats.pruned += 1;
            assert!(o.d1.contains_key(&seq), "entry {seq} pruned before it was archived");
            assert_eq!(o.d1[&seq], sent, "entry {seq} pruned while D1 has a stale state");
            if seq + o.cfg.cap <= head {
                self.stats.cap_pruned += 1;
                continue;
            }
            assert!(seq + o.cfg.keep.max(1) <= head, "entry {seq} pruned inside the keep window");
            assert!(!queue_before.contains(&seq), "entry {seq} pruned while queued");
            for (d, dev) in &self.devices {
                if dev.remembered {
                    assert!(seq <= dev.acked, "entry {seq} pruned before device {d} acked it (acked {})", dev.acked);
                }
            }
        }
    }
}

/// Entries for the user's log arriving together: each delivery is checked on
/// arrival (`QUEUE_MAX`), then they share the group write: the first finds
/// the log idle and is written at once, the rest wait for the commit.
fn store(o: &mut Object, spec: &mut Spec, kind: Kind, count: u8, dying: Option<u8>) {
    if let Some(d) = dying {
        let mut sockets = o.port.0.borrow_mut();
        let n = sockets.len();
        if n > 0 {
            sockets[d as usize % n].dying = true;
        }
    }
    o.load();
    let offline = o.sockets().is_empty();
    let time = o.clock;
    let mut written: Vec<(u64, u64)> = Vec::new();
    let mut waiters = Vec::new();
    for _ in 0..count {
        let (n, body) = o.body();
        let id = edge_chat::message::new_id(time, n);
        let entry = if kind == Kind::Sent {
            let fields = serde_json::json!({ "message": "m", "n": n }).as_object().unwrap().clone();
            let chat = Chat { from: o.owner.clone(), to: o.peer.clone(), fields };
            let Ok(SendPlan::Remote(remote)) = o.call(|mb, io| mb.plan_send(io, chat, &id, time, None, false)) else {
                panic!("a chat to a peer is a hop")
            };
            o.mb.hop_answered(remote, Some(Answer { seq: Some(1), ..Answer::of(Outcome::Stored { pushed: true }) }))
                .expect("stored there")
        } else {
            let peer = (kind == Kind::Received).then(|| o.peer.clone());
            let d = Delivery {
                owner: o.owner.clone(),
                kind,
                id,
                time_ms: time,
                peer,
                dedup: false,
                backend: false,
                key: None,
            };
            match o.call(|mb, io| mb.deliver(io, d, body)).expect("deliver") {
                DeliverStep::Append(entry) => entry,
                DeliverStep::Answer(Answer { outcome: Outcome::Full, .. }) => {
                    refused_full(o, spec, waiters.len() as u64);
                    continue;
                }
                other => panic!("unexpected answer {other:?}"),
            }
        };
        match o.call(|mb, io| mb.append(io, entry)) {
            Appended::Now(stored) => written.push((n, stored.expect("write").seq)),
            Appended::Wait { waiter, .. } => waiters.push((waiter, n)),
        }
    }
    if !waiters.is_empty() {
        let results = o.call(|mb, io| mb.commit(io));
        assert_eq!(results.len(), waiters.len(), "one result per entry waiting");
        for ((waiter, n), (w, stored)) in waiters.into_iter().zip(results) {
            assert_eq!(waiter, w, "results in append order");
            written.push((n, stored.expect("group write").seq));
        }
    }
    o.call(|mb, _| mb.cooled());
    for (n, seq) in &written {
        o.numbers.insert(*n, *seq);
    }
    if kind == Kind::Received {
        // A received chat's history row is its sender's to write (with what
        // the sender learned: pushed or queued); this user's pass only hands
        // in a later delivery from the queue.
        o.sync();
        for (_, seq) in &written {
            let pushed = o.log.get(seq).expect("just stored").sent;
            o.d1.insert(*seq, pushed);
        }
    }
    let seqs: Vec<u64> = written.iter().map(|(_, s)| *s).collect();
    spec.stored(&seqs, &vec![kind; seqs.len()], time);
    if kind != Kind::Sent && offline && !seqs.is_empty() {
        // Deliveries accepted with nobody online never take the queue past QUEUE_MAX.
        let queued = Spec::queue(o).len() as u64;
        assert!(queued <= o.cfg.queue_max, "queue of {queued} entries over QUEUE_MAX {}", o.cfg.queue_max);
    }
}

/// A delivery was refused as over `QUEUE_MAX`, with `waiting` owed entries
/// accepted for the group write but not yet written: check that it was.
fn refused_full(o: &mut Object, spec: &mut Spec, waiting: u64) {
    spec.stats.refused_full += 1;
    // Full means QUEUE_MAX entries queued, the oldest younger than the TTL,
    // counting those waiting; or, with nothing queued and no socket to take
    // them live, QUEUE_MAX waiting.
    let queue = Spec::queue(o);
    let cutoff = o.clock.saturating_sub(o.cfg.queue_ttl);
    let head = o.head();
    let full = match queue.first() {
        Some(&oldest) => queue.len() as u64 + waiting >= o.cfg.queue_max && o.log[&oldest].time >= cutoff,
        None => o.sockets().is_empty() && waiting >= o.cfg.queue_max,
    };
    let first = o.inbox().first_unsent();
    if !full && first.is_some_and(|f| !o.log.contains_key(&f)) {
        spec.stats.refused_stuck += 1;
    }
    assert!(full, "refused as full: queue {queue:?}, waiting {waiting}, head {head}, cutoff {cutoff}");
}

fn run(cfg: Config, ops: &[Op]) -> Stats {
    let mut o = Object::new(cfg);
    let mut spec = Spec::new();
    for (event, op) in ops.iter().enumerate() {
        spec.stats.ops += 1;
        o.clock += 1;
        let mut pruned_now = BTreeSet::new();
        match *op {
            Op::ConnectLegacy { fail_at } => {
                spec.stats.replays += 1;
                o.connect_legacy(fail_at);
            }
            Op::ConnectV1 { device, since } => {
                let dev = spec.devices.get(&device).cloned().unwrap_or_default();
                let asked = match since {
                    Since::Processed => Some(dev.processed),
                    Since::Absent => None,
                    Since::Behind(n) => Some(dev.processed.saturating_sub(n as u64)),
                    Since::Ahead(n) => Some(spec.head() + 1 + n as u64),
                };
                let w = o.connect_v1(device, asked);
                spec.check_welcome(&o, device, &w, since);
            }
            Op::Drop { socket } => {
                let mut sockets = o.port.0.borrow_mut();
                if !sockets.is_empty() {
                    let n = sockets.len();
                    sockets.remove(socket as usize % n);
                }
            }
            Op::Deliver { system, count, dying } => {
                let kind = if system { Kind::System } else { Kind::Received };
                store(&mut o, &mut spec, kind, count, dying);
            }
            Op::SendOwn { count, dying } => store(&mut o, &mut spec, Kind::Sent, count, dying),
            Op::Ack { socket, lag } => {
                let v1: Vec<u8> = o.sockets().iter().filter_map(|s| s.device).collect();
                if let Some(&device) = v1.get(socket as usize % v1.len().max(1)) {
                    let dev = spec.devices.entry(device).or_default();
                    let up_to = dev.processed.saturating_sub(lag as u64);
                    dev.acked = dev.acked.max(up_to);
                    // An ack makes the object know the device again.
                    dev.remembered = true;
                    o.ack(device, up_to);
                }
            }
            Op::Archive { fail } => {
                spec.stats.stale_batches += (o.archive_step(fail) == Some(false)) as u64;
            }
            Op::ArchiveEnd => {
                if o.in_flight.is_none() {
                    // The pass expires the queue before it prunes: entries older
                    // than the TTL are no longer queued by then.
                    let cutoff = o.clock.saturating_sub(o.cfg.queue_ttl);
                    let queue_before: BTreeSet<u64> =
                        Spec::queue(&mut o).into_iter().filter(|s| o.log[s].time >= cutoff).collect();
                    let pruned = o.archive_end();
                    spec.check_pruned(&o, &pruned, &queue_before);
                    pruned_now = pruned.into_iter().map(|(s, _)| s).collect();
                }
            }
            Op::Tick(n) => o.clock += n as u64 * 4,
            Op::Hibernate => {
                spec.stats.hibernations += 1;
                o.sync();
                let stale = o.lose_memory(false);
                spec.memory_lost(&o, stale);
            }
            Op::Restart => {
                spec.stats.restarts += 1;
                o.sync();
                let stale = o.lose_memory(true);
                o.port.0.borrow_mut().clear();
                spec.memory_lost(&o, stale);
            }
            Op::ForgetDevice { device } => {
                if !o.sockets().iter().any(|s| s.device == Some(device)) {
                    // As the archive pass does for a device unseen for the TTL:
                    // gone from the table, and from memory once it reloads.
                    o.forget(device);
                    if let Some(dev) = spec.devices.get_mut(&device) {
                        dev.remembered = false;
                    }
                    o.sync();
                    let stale = o.lose_memory(false);
                    spec.memory_lost(&o, stale);
                }
            }
        }
        o.sync();
        spec.check_streams(&o, event);
        o.port.0.borrow_mut().retain(|s| !s.dying);
        o.load();
        spec.check_state(&mut o, event, &pruned_now);
    }
    spec.stats
}

fn since() -> impl Strategy<Value = Since> {
    prop_oneof![
        6 => Just(Since::Processed),
        2 => Just(Since::Absent),
        1 => (1u8..4).prop_map(Since::Behind),
        1 => (0u8..3).prop_map(Since::Ahead),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let dying = prop_oneof![6 => Just(None), 1 => (0u8..4).prop_map(Some)];
    prop_oneof![
        3 => prop_oneof![4 => Just(None), 1 => (0u8..4).prop_map(Some)].prop_map(|fail_at| Op::ConnectLegacy { fail_at }),
        4 => (0..DEVICES, since()).prop_map(|(device, since)| Op::ConnectV1 { device, since }),
        4 => (0u8..8).prop_map(|socket| Op::Drop { socket }),
        10 => (any::<bool>(), 1u8..4, dying.clone()).prop_map(|(system, count, dying)| Op::Deliver { system, count, dying }),
        3 => (1u8..3, dying).prop_map(|(count, dying)| Op::SendOwn { count, dying }),
        8 => (0u8..8, prop_oneof![3 => Just(0u8), 1 => 1u8..3]).prop_map(|(socket, lag)| Op::Ack { socket, lag }),
        8 => prop_oneof![5 => Just(false), 1 => Just(true)].prop_map(|fail| Op::Archive { fail }),
        3 => Just(Op::ArchiveEnd),
        2 => (1u8..6).prop_map(Op::Tick),
        1 => Just(Op::Hibernate),
        1 => Just(Op::Restart),
        1 => (0..DEVICES).prop_map(|device| Op::ForgetDevice { device }),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (0u64..4, prop_oneof![2u64..8, 8u64..40], 8u64..60, 3u64..16, 1u64..8, 8usize..40, 1u64..6).prop_map(
        |(keep, cap, queue_ttl, queue_max, batch_rows, batch_bytes, generation)| Config {
            keep,
            cap: cap.max(keep),
            queue_ttl,
            queue_max,
            batch_rows,
            batch_bytes,
            generation,
        },
    )
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 20_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_acknowledged_entry_is_lost_repeated_or_reordered(cfg in config(), ops in prop::collection::vec(op(), 1..160)) {
        run(cfg, &ops);
    }
}

/// How much of the state space the default run covers (printed with
/// `cargo test --test delivery -- --nocapture coverage`).
#[test]
fn coverage() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut total = Stats::default();
    for _ in 0..200 {
        let cfg = config().new_tree(&mut runner).unwrap().current();
        let ops = prop::collection::vec(op(), 1..160).new_tree(&mut runner).unwrap().current();
        let s = run(cfg, &ops);
        total.ops += s.ops;
        total.stored += s.stored;
        total.refused_full += s.refused_full;
        total.replays += s.replays;
        total.v1_resumes += s.v1_resumes;
        total.not_recovered += s.not_recovered;
        total.pruned += s.pruned;
        total.cap_pruned += s.cap_pruned;
        total.expired += s.expired;
        total.restarts += s.restarts;
        total.hibernations += s.hibernations;
        total.stale_batches += s.stale_batches;
        total.queue_head_pruned += s.queue_head_pruned;
        total.refused_stuck += s.refused_stuck;
        total.acked_replayed += s.acked_replayed;
    }
    println!("200 deterministic cases: {total:?}");
    for (what, n) in [
        ("stored", total.stored),
        ("refused (queue full)", total.refused_full),
        ("not recovered", total.not_recovered),
        ("cap-pruned", total.cap_pruned),
        ("expired", total.expired),
        ("stale batches", total.stale_batches),
    ] {
        assert!(n > 0, "the generator never reaches: {what}");
    }
}

/// The shortest interleavings in which the property test found each bug:
/// each runs clean now (the model panics if a device or a cursor rewind is
/// lost), and counts what it would have tolerated.
#[test]
fn known_gaps() {
    let deliver = |count| Op::Deliver { system: false, count, dying: None };
    let cfg =
        Config { keep: 0, cap: 2, queue_ttl: 1000, queue_max: 3, batch_rows: 1, batch_bytes: 1 << 20, generation: 1 };

    // A device connects and leaves; the object is evicted before an archive
    // pass; a message arrives; the device comes back without `since`. When
    // devices were saved only by that pass, it was treated as new and the
    // message never replayed. (`memory_lost` panics if the device is lost.)
    run(
        cfg,
        &[
            Op::ConnectV1 { device: 0, since: Since::Processed },
            Op::Drop { socket: 0 },
            Op::Hibernate,
            deliver(1),
            Op::ConnectV1 { device: 0, since: Since::Absent },
        ],
    );

    // A queued entry is archived as queued, replayed to a legacy socket, and
    // the object is evicted before the next archive pass. When the rewound
    // cursor was not saved, D1 kept "queued" for good. (`memory_lost`
    // panics if the rewind is lost.)
    let archive = Op::Archive { fail: false };
    run(cfg, &[deliver(1), archive.clone(), archive.clone(), Op::ConnectLegacy { fail_at: None }, Op::Hibernate]);

    // The cap prunes the oldest queued entry. The object used to keep its
    // queue starting at it, so its span counted it and expiry (which reads
    // that row) could not run: a delivery was refused as over QUEUE_MAX with
    // 2 queued of 3. Now the queue moves past what the cap took. (Pruning
    // drops whole generations: the first pass's end starts a new generation,
    // so the second can drop the one holding the oldest entry.)
    let s = run(cfg, &[deliver(1), archive.clone(), archive, Op::ArchiveEnd, deliver(2), Op::ArchiveEnd, deliver(1)]);
    assert_eq!((s.queue_head_pruned, s.refused_stuck), (0, 0));
}
