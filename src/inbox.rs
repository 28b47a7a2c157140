//! The delivery state machine of one user's log (sans-IO).
//!
//! Every entry of a user's log gets the next sequence number. Entries owed to
//! the user's sockets (received chats and system messages) form the offline
//! queue until one is written to an open socket; entries are archived to D1
//! in order, behind a cursor. The Durable Object restores an [`Inbox`] from
//! its SQLite log, asks it what to do, and writes down what it says.
//!
//! Invariants kept here and tested below:
//! - sequence numbers are contiguous from 1 and never reused;
//! - an owed entry is pushed live only when nothing older is queued, so a
//!   socket sees owed entries oldest first, queued ones before live ones;
//! - the archive cursor only moves past entries whose delivery state D1 has.

use crate::message::Kind;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inbox {
    /// Last sequence number assigned; 0 for an empty log.
    head: u64,
    /// Oldest owed entry not yet written to any socket.
    first_unsent: Option<u64>,
    /// Entries up to here are in D1 as they are now.
    archived: u64,
    /// Bumped whenever stored entries change state, so an archive batch read
    /// before the change is not taken as current.
    epoch: u64,
}

/// A range of entries read for D1, and the state epoch it was read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    pub from: u64,
    pub to: u64,
    epoch: u64,
}

/// Where a v1 device's replay starts: it is sent every entry after `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pub start: u64,
    pub recovered: bool,
}

/// Where a new entry goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    pub seq: u64,
    /// Write it to the open sockets now; otherwise it waits in the queue.
    pub push_now: bool,
}

impl Inbox {
    /// Restores the state a log was left in.
    pub fn restore(head: u64, first_unsent: Option<u64>, archived: u64) -> Inbox {
        Inbox { head, first_unsent, archived: archived.min(head), epoch: 0 }
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    /// The oldest queued entry, where a replay starts.
    pub fn first_unsent(&self) -> Option<u64> {
        self.first_unsent
    }

    /// Entries from the oldest queued one to the head: never fewer than
    /// are queued, so below `QUEUE_MAX` it needs no count of the queue
    /// (entries in between that never queue count in it too: own sent
    /// chats, group entries, edits and deletes).
    pub fn queued_span(&self) -> u64 {
        self.first_unsent.map_or(0, |f| self.head - f + 1)
    }

    /// Queued entries before `next_unsent` (or all, for `None`) expired: they
    /// leave the offline queue without reaching a socket. D1 keeps them as
    /// never delivered, which is what they are, so the archive stays as is.
    pub fn expire_queue(&mut self, next_unsent: Option<u64>) {
        debug_assert!(next_unsent.is_none_or(|n| Some(n) > self.first_unsent && n <= self.head));
        self.first_unsent = next_unsent;
    }

    /// Assigns the next sequence number to a new entry of `kind`.
    pub fn admit(&mut self, kind: Kind, open_sockets: usize) -> Admission {
        self.head += 1;
        let seq = self.head;
        if !kind.owed_to_owner() {
            return Admission { seq, push_now: false };
        }
        let push_now = open_sockets > 0 && self.first_unsent.is_none();
        if !push_now {
            self.first_unsent.get_or_insert(seq);
        }
        Admission { seq, push_now }
    }

    /// A live push reached no socket: the entry stays queued.
    pub fn push_failed(&mut self, seq: u64) {
        let first = self.first_unsent.map_or(seq, |f| f.min(seq));
        self.first_unsent = Some(first);
    }

    /// The queue from `first` to `last` was written to a socket; `next_unsent`
    /// is the next entry still queued (a send failed), if any. Returns true
    /// when the archive cursor moved back, which the caller must save at once:
    /// forgotten, it would leave those entries "queued" in D1 for good.
    pub fn replayed(&mut self, first: u64, last: u64, next_unsent: Option<u64>) -> bool {
        debug_assert!(first <= last && last <= self.head);
        self.first_unsent = next_unsent;
        self.epoch += 1;
        // Those entries may already be in D1 as "queued"; archive them again.
        let rewound = first <= self.archived;
        if rewound {
            self.archived = first - 1;
        }
        rewound
    }

    /// Where a v1 device's replay starts, given the oldest entry the log still
    /// holds (`head + 1` when it holds none), the `since` the device sent, and
    /// the last ack the log knows of it. A device the log has not met starts
    /// at the head. `recovered` is false when entries it asked for are gone,
    /// or when it claims to be ahead of the log (its state was lost elsewhere).
    pub fn resume(&self, oldest: u64, since: Option<u64>, known: Option<u64>) -> Resume {
        let asked = since.or(known).unwrap_or(self.head);
        Resume {
            start: asked.min(self.head).max(oldest.saturating_sub(1)),
            recovered: asked <= self.head && asked + 1 >= oldest,
        }
    }

    /// Whether the queue's span ([`Inbox::queued_span`], never less than the
    /// queue) is at `max` (`QUEUE_MAX`), counting `waiting` entries not yet
    /// admitted, unless nothing is queued and a socket is open (`live`): then
    /// they will go out live, not into the queue. False means the queue is
    /// below `max` too; true, that it must be counted ([`queue_full`]).
    pub fn queue_at(&self, max: u64, waiting: u64, live: bool) -> bool {
        let span = self.queued_span();
        let waiting = if span == 0 && live { 0 } else { waiting };
        span + waiting >= max
    }

    /// Whether pruning below `below` took the queue's oldest entry, so that
    /// the queue must move to the next queued entry ([`Inbox::expire_queue`]).
    pub fn queue_pruned(&self, below: u64) -> bool {
        self.first_unsent.is_some_and(|f| f < below)
    }

    /// The next range to archive, at most `max` entries, oldest first.
    pub fn to_archive(&self, max: u64) -> Option<Batch> {
        (self.archived < self.head && max > 0).then(|| Batch {
            from: self.archived + 1,
            to: self.head.min(self.archived + max),
            epoch: self.epoch,
        })
    }

    /// D1 confirmed `batch` up to `upto` (a batch may be cut short by size).
    /// If entries changed state meanwhile, what D1 got may be stale, so the
    /// cursor stays and the next pass writes them again (idempotently).
    pub fn archived_upto(&mut self, batch: Batch, upto: u64) -> bool {
        if batch.epoch != self.epoch {
            return false;
        }
        self.archived = self.archived.max(upto.min(batch.to));
        true
    }

    pub fn archived(&self) -> u64 {
        self.archived
    }

    /// Entries with a lower sequence number may leave the log.
    ///
    /// An entry stays while it is queued for a legacy socket, not yet in D1,
    /// not yet acknowledged by every v1 device (`devices_acked`: the lowest
    /// device cursor), or among the `keep` newest (the resume window for a
    /// device the log has not met yet). `cap` bounds the log whatever the
    /// devices and sockets: past it, the oldest archived entries go, and a
    /// device that resumes from before them is told so. The head entry always
    /// stays, so the next sequence number survives a restart.
    pub fn prunable_below(&self, keep: u64, cap: u64, devices_acked: Option<u64>) -> u64 {
        let archived_limit = self.archived + 1;
        let newest_kept = self.head.saturating_sub(keep.max(1)) + 1;
        let unsent = self.first_unsent.unwrap_or(u64::MAX);
        let acked = devices_acked.map_or(u64::MAX, |a| a + 1);
        let wanted = newest_kept.min(unsent).min(acked).min(archived_limit);
        wanted.max(self.over_cap_below(cap))
    }

    /// Entries below this are past `cap` (and archived): they go whatever
    /// holds them.
    pub fn over_cap_below(&self, cap: u64) -> u64 {
        (self.head.saturating_sub(cap.max(1)) + 1).min(self.archived + 1)
    }
}

/// Whether a queue of `queued` entries, with `waiting` more owed ones not
/// yet written, is at `max` (`QUEUE_MAX`). Only entries that wait in the
/// queue count ([`Kind::owed_to_owner`]): whatever else the log holds in
/// between, no sender can fill it with anything but chats of theirs (each
/// within `QUEUE_PER_SENDER`).
pub fn queue_full(queued: u64, waiting: u64, max: u64) -> bool {
    queued.saturating_add(waiting) >= max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_contiguous_for_every_kind() {
        let mut ib = Inbox::default();
        let seqs: Vec<u64> = [Kind::Received, Kind::Sent, Kind::System, Kind::Received]
            .into_iter()
            .map(|k| ib.admit(k, 1).seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
    }

    #[test]
    fn offline_entries_queue_and_later_ones_wait_behind_them() {
        let mut ib = Inbox::default();
        assert_eq!(ib.admit(Kind::Received, 0), Admission { seq: 1, push_now: false });
        // A socket is open now, but entry 1 is still queued: 2 must not overtake it.
        assert_eq!(ib.admit(Kind::System, 1), Admission { seq: 2, push_now: false });
        assert_eq!(ib.first_unsent(), Some(1));
        ib.replayed(1, 2, None);
        assert_eq!(ib.admit(Kind::Received, 1), Admission { seq: 3, push_now: true });
    }

    #[test]
    fn the_queue_span_runs_from_the_oldest_queued_entry_and_expiry_shortens_it() {
        let mut ib = Inbox::default();
        ib.admit(Kind::Received, 1);
        assert_eq!(ib.queued_span(), 0, "pushed live, nothing queued");
        for _ in 0..4 {
            ib.admit(Kind::Received, 0);
        }
        ib.admit(Kind::Sent, 0);
        assert_eq!(ib.queued_span(), 5, "entries 2..=6, the own chat included");
        ib.expire_queue(Some(4));
        assert_eq!((ib.first_unsent(), ib.queued_span()), (Some(4), 3));
        assert_eq!(ib.prunable_below(0, 100, None), 1, "expired but not archived: kept");
        ib.expire_queue(None);
        assert_eq!(ib.queued_span(), 0);
        assert!(ib.admit(Kind::Received, 1).push_now, "nothing queued ahead of a live entry");
    }

    #[test]
    fn a_replay_says_when_the_archive_cursor_moved_back() {
        let mut ib = Inbox::default();
        for _ in 0..4 {
            ib.admit(Kind::Received, 0);
        }
        let b = ib.to_archive(2).unwrap();
        ib.archived_upto(b, 2);
        assert!(ib.replayed(1, 4, None), "1 and 2 are in D1 as queued");
        assert_eq!(ib.archived(), 0);
        ib.admit(Kind::Received, 0);
        ib.push_failed(5);
        assert!(!ib.replayed(5, 5, None), "5 was never archived");
    }

    #[test]
    fn resume_points() {
        let mut ib = Inbox::default();
        for _ in 0..10 {
            ib.admit(Kind::Received, 1);
        }
        let r = |since, known, oldest| ib.resume(oldest, since, known);
        assert_eq!(r(Some(4), Some(7), 1), Resume { start: 4, recovered: true }, "since wins over the known ack");
        assert_eq!(r(None, Some(7), 1), Resume { start: 7, recovered: true });
        assert_eq!(r(None, None, 1), Resume { start: 10, recovered: true }, "a new device starts at the head");
        assert_eq!(r(Some(2), None, 6), Resume { start: 5, recovered: false }, "3..=5 are gone");
        assert_eq!(r(Some(5), None, 6), Resume { start: 5, recovered: true }, "nothing it needs is gone");
        assert_eq!(r(Some(12), None, 1), Resume { start: 10, recovered: false }, "ahead of the log");
    }

    #[test]
    fn the_queue_bound_counts_waiting_entries_unless_they_go_out_live() {
        let mut ib = Inbox::default();
        assert!(!ib.queue_at(3, 2, false));
        assert!(ib.queue_at(3, 3, false), "three waiting for an offline user");
        assert!(!ib.queue_at(3, 3, true), "nothing queued and a socket open: they go out live");
        ib.admit(Kind::Received, 0);
        assert!(ib.queue_at(3, 2, true), "one queued: the waiting ones queue behind it");
        assert!(!ib.queue_pruned(1));
        assert!(ib.queue_pruned(2));
    }

    #[test]
    fn own_sent_chats_are_never_queued() {
        let mut ib = Inbox::default();
        assert_eq!(ib.admit(Kind::Sent, 0), Admission { seq: 1, push_now: false });
        assert_eq!(ib.first_unsent(), None);
    }

    #[test]
    fn a_failed_push_queues_the_entry() {
        let mut ib = Inbox::default();
        let a = ib.admit(Kind::Received, 2);
        assert!(a.push_now);
        ib.push_failed(a.seq);
        assert_eq!(ib.first_unsent(), Some(1));
        assert!(!ib.admit(Kind::Received, 2).push_now);
    }

    #[test]
    fn a_partial_replay_keeps_the_rest_queued() {
        let mut ib = Inbox::default();
        for _ in 0..5 {
            ib.admit(Kind::Received, 0);
        }
        ib.replayed(1, 3, Some(4));
        assert_eq!(ib.first_unsent(), Some(4));
    }

    #[test]
    fn archive_cursor_moves_in_batches_and_rewinds_for_state_changes() {
        let mut ib = Inbox::default();
        for _ in 0..5 {
            ib.admit(Kind::Received, 0);
        }
        let b = ib.to_archive(2).unwrap();
        assert_eq!((b.from, b.to), (1, 2));
        assert!(ib.archived_upto(b, 2));
        let b = ib.to_archive(10).unwrap();
        assert_eq!((b.from, b.to), (3, 5));
        assert!(ib.archived_upto(b, 4), "cut short by size");
        let b = ib.to_archive(10).unwrap();
        assert!(ib.archived_upto(b, 5));
        assert_eq!(ib.to_archive(10), None);
        // Entries 1..5 were archived as queued; delivering them changes D1's view.
        ib.replayed(1, 5, None);
        let b = ib.to_archive(10).unwrap();
        assert_eq!((b.from, b.to), (1, 5));
    }

    #[test]
    fn a_batch_read_before_a_state_change_does_not_count() {
        let mut ib = Inbox::default();
        for _ in 0..3 {
            ib.admit(Kind::Received, 0);
        }
        let stale = ib.to_archive(10).unwrap();
        // While D1 is writing the batch, a connect delivers the queue.
        ib.replayed(1, 3, None);
        assert!(!ib.archived_upto(stale, 3));
        assert_eq!(ib.archived(), 0);
        let fresh = ib.to_archive(10).unwrap();
        assert!(ib.archived_upto(fresh, 3));
    }

    #[test]
    fn pruning_keeps_queued_unarchived_unacked_and_recent_entries() {
        let mut ib = Inbox::default();
        for _ in 0..10 {
            ib.admit(Kind::Received, 1);
        }
        assert_eq!(ib.prunable_below(3, 100, None), 1, "nothing archived yet");
        let b = ib.to_archive(10).unwrap();
        ib.archived_upto(b, 10);
        assert_eq!(ib.prunable_below(3, 100, None), 8);
        assert_eq!(ib.prunable_below(0, 100, None), 10, "the head entry always stays");
        assert_eq!(ib.prunable_below(3, 100, Some(4)), 5, "a device acked up to 4");
        ib.push_failed(6);
        assert_eq!(ib.prunable_below(3, 100, None), 6);
    }

    #[test]
    fn the_cap_overrides_devices_and_sockets_but_not_the_archive() {
        let mut ib = Inbox::default();
        for _ in 0..10 {
            ib.admit(Kind::Received, 0);
        }
        assert_eq!(ib.prunable_below(1, 4, Some(0)), 1, "unarchived entries stay whatever the cap");
        let b = ib.to_archive(10).unwrap();
        ib.archived_upto(b, 10);
        assert_eq!(ib.prunable_below(1, 4, Some(0)), 7, "only the 4 newest stay");
    }

    /// A tiny deterministic generator, so the randomized test needs no crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// Drives the machine the way the Durable Object does, with sockets
    /// coming and going, pushes failing and restarts from "storage", and checks
    /// that the client stream holds every owed entry exactly once, in order.
    #[test]
    fn randomized_no_loss_no_reorder() {
        for seed in 0..200 {
            let mut rng = Lcg(seed);
            let mut ib = Inbox::default();
            // "storage": (seq, owed, sent)
            let mut log: Vec<(u64, bool, bool)> = Vec::new();
            let mut sockets = 0usize;
            let mut received: Vec<u64> = Vec::new();
            for _ in 0..300 {
                match rng.next(6) {
                    0 | 1 => {
                        let kind = [Kind::Received, Kind::Sent, Kind::System][rng.next(3) as usize];
                        let a = ib.admit(kind, sockets);
                        let mut sent = !kind.owed_to_owner();
                        if a.push_now {
                            if rng.next(8) == 0 {
                                ib.push_failed(a.seq);
                            } else {
                                received.push(a.seq);
                                sent = true;
                            }
                        }
                        log.push((a.seq, kind.owed_to_owner(), sent));
                    }
                    2 => {
                        // connect: replay the queue, a send may fail midway
                        sockets += 1;
                        if let Some(first) = ib.first_unsent() {
                            let queued: Vec<usize> =
                                (0..log.len()).filter(|&i| log[i].0 >= first && log[i].1 && !log[i].2).collect();
                            let fail_at = rng.next(queued.len() as u64 + 3) as usize;
                            let mut last = None;
                            let mut next_unsent = None;
                            for (k, &i) in queued.iter().enumerate() {
                                if k == fail_at {
                                    next_unsent = Some(log[i].0);
                                    break;
                                }
                                received.push(log[i].0);
                                log[i].2 = true;
                                last = Some(log[i].0);
                            }
                            match last {
                                Some(last) => {
                                    ib.replayed(first, last, next_unsent);
                                }
                                None => sockets -= 1,
                            }
                        }
                    }
                    3 => sockets = sockets.saturating_sub(1),
                    4 => {
                        // restart: rebuild from storage the way the object does
                        let head = log.last().map_or(0, |e| e.0);
                        let first_unsent = log.iter().find(|e| e.1 && !e.2).map(|e| e.0);
                        ib = Inbox::restore(head, first_unsent, ib.archived());
                        sockets = 0;
                    }
                    _ => {
                        if let Some(b) = ib.to_archive(1 + rng.next(4)) {
                            ib.archived_upto(b, b.to);
                        }
                    }
                }
            }
            let owed_sent: Vec<u64> = log.iter().filter(|e| e.1 && e.2).map(|e| e.0).collect();
            assert_eq!(received, owed_sent, "seed {seed}: stream must equal the delivered entries, in order");
            let mut sorted = received.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted, received, "seed {seed}: order or duplicate");
            // Whatever was not delivered is still queued.
            let unsent: Vec<u64> = log.iter().filter(|e| e.1 && !e.2).map(|e| e.0).collect();
            assert_eq!(ib.first_unsent(), unsent.first().copied(), "seed {seed}");
        }
    }
}
