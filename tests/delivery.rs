//! Model-based property test of the delivery state machine ([`Inbox`]).
//!
//! `Object` drives an `Inbox` the way the user's Durable Object does
//! (`src/edge/user_object/{mod,commit,v1}.rs`, `src/edge/store.rs`): a
//! SQLite-like log of rows `(seq, kind, sent, time)`, `meta.archived`,
//! `meta.queue_floor`, a `devices` table, D1 rows, and the in-memory state a
//! restart or hibernation loses (the inbox, device cursors not yet saved, an
//! archive batch in flight). Sockets record every frame they get.
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
//! - a delivery is refused as over `QUEUE_MAX` only when the queue holds that
//!   many entries from its oldest one, which has not expired.
//!
//! [`known_gaps`] replays the shortest interleavings of three bugs this test
//! found in the object (since fixed): a v1 device not saved at connect, a
//! rewound archive cursor not saved, and a queue left starting at an entry the
//! cap pruned (`Stats::refused_stuck`).
//!
//! `PROPTEST_CASES` raises the number of cases (default 400, about 2 s).

use std::collections::{BTreeMap, BTreeSet};

use edge_chat::inbox::{Batch, Inbox, Resume};
use edge_chat::message::Kind;
use proptest::prelude::*;

/// The object's parameters, small so that every limit is reached.
#[derive(Clone, Copy, Debug)]
struct Config {
    keep: u64,
    cap: u64,
    queue_ttl: u64,
    queue_max: u64,
    batch_rows: u64,
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
        cut: u8,
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
    kind: Kind,
    sent: bool,
    time: u64,
}

#[derive(Clone, Debug)]
struct Device {
    acked: u64,
    dirty: bool,
}

struct Life {
    inbox: Inbox,
    devices: BTreeMap<u8, Device>,
}

#[derive(Debug)]
struct Socket {
    id: u64,
    device: Option<u8>,
    /// v1: the welcome's `since`.
    start: u64,
    got: Vec<u64>,
    /// Still listed by the runtime, but every send fails (on Workers a send
    /// fails only once the socket is closing, so there is no other failure).
    dying: bool,
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
    // Durable: the log, meta, the devices table, D1.
    log: BTreeMap<u64, Row>,
    archived: u64,
    queue_floor: u64,
    saved_devices: BTreeMap<u8, u64>,
    d1: BTreeMap<u64, bool>,
    // Memory.
    life: Option<Life>,
    in_flight: Option<(Batch, u64, Vec<(u64, bool)>)>,
    // The runtime.
    sockets: Vec<Socket>,
    next_socket: u64,
    clock: u64,
}

impl Object {
    fn new(cfg: Config) -> Object {
        Object {
            cfg,
            log: BTreeMap::new(),
            archived: 0,
            queue_floor: 0,
            saved_devices: BTreeMap::new(),
            d1: BTreeMap::new(),
            life: None,
            in_flight: None,
            sockets: Vec::new(),
            next_socket: 0,
            clock: 1000,
        }
    }

    /// `Store::restore`: what a wake-up reads.
    fn restored(&self) -> Inbox {
        let head = self.log.keys().next_back().copied().unwrap_or(0);
        let first_unsent = self.log.range(self.queue_floor..).find(|(_, r)| !r.sent).map(|(s, _)| *s);
        Inbox::restore(head, first_unsent, self.archived)
    }

    /// `UserObject::load`: the first event after a wake reads the store.
    fn load(&mut self) {
        if self.life.is_none() {
            let devices = self.saved_devices.iter().map(|(d, a)| (*d, Device { acked: *a, dirty: false })).collect();
            self.life = Some(Life { inbox: self.restored(), devices });
        }
    }

    fn inbox(&mut self) -> &mut Inbox {
        self.load();
        &mut self.life.as_mut().unwrap().inbox
    }

    fn head(&mut self) -> u64 {
        self.inbox().head()
    }

    fn send(&mut self, i: usize, seq: u64) -> bool {
        let s = &mut self.sockets[i];
        if s.dying {
            return false;
        }
        s.got.push(seq);
        true
    }

    fn mark_sent(&mut self, from: u64, to: u64) {
        for (_, r) in self.log.range_mut(from..=to) {
            r.sent = true;
        }
    }

    /// `UserObject::expire_queue` with `Store::expire_queue`.
    fn expire_queue(&mut self) {
        let Some(first) = self.inbox().first_unsent() else { return };
        let cutoff = self.clock.saturating_sub(self.cfg.queue_ttl);
        if self.log.get(&first).is_none_or(|r| r.time >= cutoff) {
            return;
        }
        let max = self.log.keys().next_back().copied().unwrap_or(0);
        let floor = self.log.range(first + 1..).find(|(_, r)| r.time >= cutoff).map_or(max + 1, |(s, _)| *s);
        self.queue_floor = floor;
        let next = self.log.range(floor..).find(|(_, r)| !r.sent).map(|(s, _)| *s);
        self.inbox().expire_queue(next);
    }

    /// `UserObject::queue_full`, with `waiting` owed entries accepted for the
    /// group write but not yet admitted.
    fn queue_full(&mut self, waiting: u64) -> bool {
        let max = self.cfg.queue_max;
        if !self.inbox().queue_at(max, waiting, false) {
            return false;
        }
        self.expire_queue();
        let live = !self.sockets.is_empty();
        self.inbox().queue_at(max, waiting, live)
    }

    /// `UserObject::write_batch`: one group write, then the pushes in order.
    /// Returns the seqs stored.
    fn write_batch(&mut self, kinds: &[Kind]) -> Vec<u64> {
        self.load();
        let owed = kinds.iter().any(|k| k.owed_to_owner());
        let legacy: Vec<usize> = if owed { self.of_kind(false) } else { Vec::new() };
        let v1 = self.of_kind(true);
        let open = legacy.len() + v1.len();
        let admitted: Vec<_> = kinds.iter().map(|k| self.inbox().admit(*k, open)).collect();
        for (k, a) in kinds.iter().zip(&admitted) {
            let row = Row { kind: *k, sent: a.push_now || !k.owed_to_owner(), time: self.clock };
            assert!(self.log.insert(a.seq, row).is_none(), "seq {} reused", a.seq);
        }
        let mut failed_from = None;
        for a in &admitted {
            let live = a.push_now && failed_from.is_none();
            let mut pushed = false;
            if live {
                for &i in &legacy {
                    pushed |= self.send(i, a.seq);
                }
            }
            for &i in &v1 {
                pushed |= self.send(i, a.seq) && live;
            }
            if live && !pushed {
                failed_from = Some(a.seq);
            }
        }
        if let Some(from) = failed_from {
            let head = self.head();
            for (_, r) in self.log.range_mut(from..=head) {
                if r.kind != Kind::Sent {
                    r.sent = false;
                }
            }
            self.inbox().push_failed(from);
        }
        admitted.iter().map(|a| a.seq).collect()
    }

    /// Open sockets as `get_websockets_with_tag` lists them (dying ones too).
    fn of_kind(&self, v1: bool) -> Vec<usize> {
        (0..self.sockets.len()).filter(|&i| self.sockets[i].device.is_some() == v1).collect()
    }

    fn accept(&mut self, device: Option<u8>, start: u64) -> usize {
        self.next_socket += 1;
        self.sockets.push(Socket { id: self.next_socket, device, start, got: Vec::new(), dying: false });
        self.sockets.len() - 1
    }

    /// `UserObject::on_connect` and `replay`.
    fn connect_legacy(&mut self, fail_at: Option<u8>) {
        self.load();
        self.expire_queue();
        let i = self.accept(None, 0);
        let Some(first) = self.inbox().first_unsent() else { return };
        let queued: Vec<u64> = self.log.range(first..).filter(|(_, r)| !r.sent).map(|(s, _)| *s).collect();
        let (mut last, mut next_unsent) = (None, None);
        for (k, seq) in queued.into_iter().enumerate() {
            if fail_at.is_some_and(|f| f as usize == k) {
                self.sockets[i].dying = true;
            }
            if !self.send(i, seq) {
                next_unsent = Some(seq);
                break;
            }
            last = Some(seq);
        }
        if let Some(last) = last {
            self.mark_sent(first, last);
            self.replayed(first, last, next_unsent);
        }
    }

    /// `UserObject::replayed`: the rewound cursor is saved.
    fn replayed(&mut self, first: u64, last: u64, next_unsent: Option<u64>) {
        if self.inbox().replayed(first, last, next_unsent) {
            self.archived = self.inbox().archived();
        }
    }

    /// Memory is lost (eviction, restart): returns the entries whose D1 state
    /// the restored cursor wrongly counts as current.
    fn lose_memory(&mut self) -> std::ops::RangeInclusive<u64> {
        let lost = match self.life.take() {
            Some(life) if life.inbox.archived() < self.archived => life.inbox.archived() + 1..=self.archived,
            _ => std::ops::RangeInclusive::new(1, 0),
        };
        self.in_flight = None;
        lost
    }

    /// `UserObject::on_connect_v1`.
    fn connect_v1(&mut self, device: u8, since: Option<u64>) -> Welcome {
        self.load();
        self.expire_queue();
        let head = self.head();
        let oldest = self.log.keys().next().copied().unwrap_or(head + 1);
        let known = self.life.as_ref().unwrap().devices.get(&device).map(|d| d.acked);
        let Resume { start, recovered } = self.inbox().resume(oldest, since, known);
        let i = self.accept(Some(device), start);
        let replay: Vec<u64> = self.log.range(start + 1..).map(|(s, _)| *s).collect();
        for seq in replay {
            assert!(self.send(i, seq));
        }
        if let Some(first) = self.inbox().first_unsent() {
            self.mark_sent(first, head);
            self.replayed(first, head, None);
        }
        let devices = &mut self.life.as_mut().unwrap().devices;
        let d = devices.entry(device).or_insert(Device { acked: start, dirty: true });
        // Saved at connect, not at the next archive pass.
        d.dirty = false;
        let saved = self.saved_devices.entry(device).or_insert(0);
        *saved = (*saved).max(d.acked);
        Welcome { asked: since, head, start, recovered }
    }

    /// `UserObject::v1_ack`.
    fn ack(&mut self, device: u8, up_to: u64) {
        let up_to = up_to.min(self.head());
        let d = self.life.as_mut().unwrap().devices.entry(device).or_insert(Device { acked: 0, dirty: true });
        if up_to > d.acked {
            *d = Device { acked: up_to, dirty: true };
        }
    }

    /// One step of `UserObject::archive`'s loop: read a batch, or write the
    /// one read to D1 (the await in between lets other events run). Returns
    /// whether a batch written counted (`None`: none was written).
    fn archive_step(&mut self, cut: u8, fail: bool) -> Option<bool> {
        self.load();
        match self.in_flight.take() {
            None => {
                let rows = self.cfg.batch_rows;
                let b = self.inbox().to_archive(rows)?;
                // Cut short by size, but always at least one row.
                let upto = b.from + cut as u64 % (b.to - b.from + 1);
                let rows = self.log.range(b.from..=upto).map(|(s, r)| (*s, r.sent)).collect();
                self.in_flight = Some((b, upto, rows));
                None
            }
            Some(_) if fail => None,
            Some((b, upto, rows)) => {
                self.d1.extend(rows);
                let counted = self.inbox().archived_upto(b, upto);
                if counted {
                    self.archived = self.inbox().archived();
                }
                Some(counted)
            }
        }
    }

    /// The end of `UserObject::archive`: save devices, expire the queue,
    /// prune. Returns the entries pruned and their delivery state.
    fn archive_end(&mut self) -> Vec<(u64, bool)> {
        self.load();
        let life = self.life.as_mut().unwrap();
        for (d, dev) in life.devices.iter_mut().filter(|(_, dev)| dev.dirty) {
            dev.dirty = false;
            let saved = self.saved_devices.entry(*d).or_insert(0);
            *saved = (*saved).max(dev.acked);
        }
        self.expire_queue();
        let life = self.life.as_ref().unwrap();
        let acked = life.devices.values().map(|d| d.acked).min();
        let below = life.inbox.prunable_below(self.cfg.keep, self.cfg.cap, acked);
        let pruned: Vec<(u64, bool)> = self.log.range(..below).map(|(s, r)| (*s, r.sent)).collect();
        for (s, _) in &pruned {
            self.log.remove(s);
        }
        // The cap may take queued entries: the queue then starts after them.
        if self.inbox().queue_pruned(below) {
            let next = self.log.range(below..).find(|(_, r)| !r.sent).map(|(s, _)| *s);
            self.inbox().expire_queue(next);
        }
        pruned
    }

    fn forget(&mut self, device: u8) {
        if let Some(life) = self.life.as_mut() {
            life.devices.remove(&device);
        }
        self.saved_devices.remove(&device);
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
        let Some(first) = o.inbox().first_unsent() else { return BTreeSet::new() };
        o.log.range(first..).filter(|(_, r)| !r.sent).map(|(s, _)| *s).collect()
    }

    /// Checks the frames every socket got since the last step.
    fn check_streams(&mut self, o: &Object, event: usize) {
        let head = self.head();
        for s in &o.sockets {
            let seen = self.seen.entry(s.id).or_insert(0);
            let new = &s.got[*seen..];
            let mut prev = if *seen == 0 { None } else { Some(s.got[*seen - 1]) };
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
            *seen = s.got.len();
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
        if let Some(life) = o.life.as_ref() {
            let inbox = life.inbox.clone();
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
/// arrival (`QUEUE_MAX`), then they share one group write.
fn store(o: &mut Object, spec: &mut Spec, kind: Kind, count: u8, dying: Option<u8>) {
    if let Some(d) = dying.filter(|_| !o.sockets.is_empty()) {
        let n = o.sockets.len();
        o.sockets[d as usize % n].dying = true;
    }
    let mut kinds = Vec::new();
    for _ in 0..count {
        // Owed entries accepted above wait for the same group write.
        let waiting = kinds.iter().filter(|k| **k != Kind::Sent).count() as u64;
        if kind != Kind::Sent && o.queue_full(waiting) {
            spec.stats.refused_full += 1;
            // Full means QUEUE_MAX entries from the oldest queued one, which
            // is younger than the TTL, counting those waiting; or, with nothing
            // queued and no socket to take them live, QUEUE_MAX waiting.
            let queue = Spec::queue(o);
            let cutoff = o.clock.saturating_sub(o.cfg.queue_ttl);
            let full = match queue.first() {
                Some(&oldest) => o.head() - oldest + 1 + waiting >= o.cfg.queue_max && o.log[&oldest].time >= cutoff,
                None => o.sockets.is_empty() && waiting >= o.cfg.queue_max,
            };
            let first = o.inbox().first_unsent();
            if !full && first.is_some_and(|f| !o.log.contains_key(&f)) {
                spec.stats.refused_stuck += 1;
            }
            assert!(full, "refused as full: queue {queue:?}, waiting {waiting}, head {}, cutoff {cutoff}", o.head());
        } else {
            kinds.push(kind);
        }
    }
    if !kinds.is_empty() {
        let time = o.clock;
        let seqs = o.write_batch(&kinds);
        spec.stored(&seqs, &kinds, time);
    }
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
                if !o.sockets.is_empty() {
                    o.sockets.remove(socket as usize % o.sockets.len());
                }
            }
            Op::Deliver { system, count, dying } => {
                let kind = if system { Kind::System } else { Kind::Received };
                store(&mut o, &mut spec, kind, count, dying);
            }
            Op::SendOwn { count, dying } => store(&mut o, &mut spec, Kind::Sent, count, dying),
            Op::Ack { socket, lag } => {
                let v1 = o.of_kind(true);
                if let Some(&i) = v1.get(socket as usize % v1.len().max(1)) {
                    let device = o.sockets[i].device.unwrap();
                    let dev = spec.devices.entry(device).or_default();
                    let up_to = dev.processed.saturating_sub(lag as u64);
                    dev.acked = dev.acked.max(up_to);
                    // An ack makes the object know the device again.
                    dev.remembered = true;
                    o.load();
                    o.ack(device, up_to);
                }
            }
            Op::Archive { cut, fail } => {
                spec.stats.stale_batches += (o.archive_step(cut, fail) == Some(false)) as u64;
            }
            Op::ArchiveEnd => {
                if o.in_flight.is_none() {
                    let queue_before = {
                        o.load();
                        o.expire_queue();
                        Spec::queue(&mut o)
                    };
                    let pruned = o.archive_end();
                    spec.check_pruned(&o, &pruned, &queue_before);
                    pruned_now = pruned.into_iter().map(|(s, _)| s).collect();
                }
            }
            Op::Tick(n) => o.clock += n as u64 * 4,
            Op::Hibernate => {
                spec.stats.hibernations += 1;
                let stale = o.lose_memory();
                spec.memory_lost(&o, stale);
            }
            Op::Restart => {
                spec.stats.restarts += 1;
                let stale = o.lose_memory();
                o.sockets.clear();
                spec.memory_lost(&o, stale);
            }
            Op::ForgetDevice { device } => {
                if !o.sockets.iter().any(|s| s.device == Some(device)) {
                    o.forget(device);
                    if let Some(dev) = spec.devices.get_mut(&device) {
                        dev.remembered = false;
                    }
                }
            }
        }
        spec.check_streams(&o, event);
        o.sockets.retain(|s| !s.dying);
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
        8 => (any::<u8>(), prop_oneof![5 => Just(false), 1 => Just(true)]).prop_map(|(cut, fail)| Op::Archive { cut, fail }),
        3 => Just(Op::ArchiveEnd),
        2 => (1u8..6).prop_map(Op::Tick),
        1 => Just(Op::Hibernate),
        1 => Just(Op::Restart),
        1 => (0..DEVICES).prop_map(|device| Op::ForgetDevice { device }),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (0u64..4, prop_oneof![2u64..8, 8u64..40], 8u64..60, 3u64..16, 1u64..8).prop_map(
        |(keep, cap, queue_ttl, queue_max, batch_rows)| Config {
            keep,
            cap: cap.max(keep),
            queue_ttl,
            queue_max,
            batch_rows,
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
    let cfg = Config { keep: 0, cap: 2, queue_ttl: 1000, queue_max: 3, batch_rows: 1 };

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
    let archive = Op::Archive { cut: 0, fail: false };
    run(cfg, &[deliver(1), archive.clone(), archive.clone(), Op::ConnectLegacy { fail_at: None }, Op::Hibernate]);

    // The cap prunes the oldest queued entry. The object used to keep its
    // queue starting at it, so its span counted it and expiry (which reads
    // that row) could not run: a delivery was refused as over QUEUE_MAX with
    // 2 queued of 3. Now the queue moves past what the cap took.
    let s = run(cfg, &[deliver(1), archive.clone(), archive, deliver(2), Op::ArchiveEnd, deliver(1)]);
    assert_eq!((s.queue_head_pruned, s.refused_stuck), (0, 0));
}
