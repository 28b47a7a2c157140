//! "Read by N of M" without a walk of the members (issue 25, part 1): each
//! member's stretches of membership, and the part of each they read, are
//! kept in memory as intervals of `group_seq`, counted by where they start
//! and stop. How many intervals hold a `seq` is then read off the starts
//! and stops above it, so a count for a recent message costs the entries
//! since it, not the membership (a read notice asks about the newest
//! messages it covers). Rebuilt from the member rows when the object opens.

use std::cell::Cell;
use std::collections::BTreeMap;

use super::store::Span;
use super::Group;
use crate::log::Sql;
use crate::user::UserId;

/// Intervals `[start, stop)` of `group_seq` (`stop` `None`: open), counted
/// by their ends.
#[derive(Debug, Default)]
struct Cover {
    starts: BTreeMap<u64, u64>,
    stops: BTreeMap<u64, u64>,
    started: u64,
    stopped: u64,
}

fn bump(map: &mut BTreeMap<u64, u64>, at: u64, add: bool) {
    let n = map.entry(at).or_insert(0);
    *n = if add { *n + 1 } else { n.saturating_sub(1) };
    if *n == 0 {
        map.remove(&at);
    }
}

impl Cover {
    fn change(&mut self, start: u64, stop: Option<u64>, add: bool) {
        bump(&mut self.starts, start, add);
        self.started = if add { self.started + 1 } else { self.started.saturating_sub(1) };
        if let Some(stop) = stop {
            bump(&mut self.stops, stop, add);
            self.stopped = if add { self.stopped + 1 } else { self.stopped.saturating_sub(1) };
        }
    }

    /// The intervals holding `seq`: those started by it less those stopped
    /// by it (every interval stops after it starts), each read as the total
    /// less what lies above `seq`.
    fn count(&self, seq: u64, visits: &mut u64) -> u64 {
        let mut above = |m: &BTreeMap<u64, u64>| -> u64 {
            m.range(seq.saturating_add(1)..)
                .map(|(_, n)| {
                    *visits += 1;
                    *n
                })
                .sum()
        };
        let started = self.started.saturating_sub(above(&self.starts));
        let stopped = self.stopped.saturating_sub(above(&self.stops));
        started.saturating_sub(stopped)
    }
}

/// Who was a member at each `group_seq`, and who of them read up to it.
#[derive(Debug, Default)]
pub(super) struct Readers {
    members: Cover,
    read: Cover,
    /// Positions looked at by counts so far (for tests).
    pub(super) visits: Cell<u64>,
}

impl Readers {
    /// Adds (`add`) or takes away one user's intervals: their stretches of
    /// membership, and of each the part up to their read cursor.
    pub(super) fn user(&mut self, spans: &[Span], read: u64, add: bool) {
        for span in spans {
            self.members.change(span.joined, span.until, add);
            let stop = span.until.map_or(read + 1, |u| u.min(read + 1));
            if stop > span.joined {
                self.read.change(span.joined, Some(stop), add);
            }
        }
    }

    /// `(read, of)` at `seq`, everyone counted (the sender too).
    pub(super) fn at(&self, seq: u64) -> (u64, u64) {
        let mut visits = 0;
        let counts = self.peek(seq, &mut visits);
        self.visits.set(self.visits.get() + visits);
        counts
    }

    /// [`Readers::at`] without counting the visits.
    pub(super) fn peek(&self, seq: u64, visits: &mut u64) -> (u64, u64) {
        (self.read.count(seq, visits), self.members.count(seq, visits))
    }
}

impl<S: Sql> Group<S> {
    /// Positions looked at by "read by N of M" counts so far (a count for
    /// tests: it grows with the entries after the one asked about, not with
    /// the membership).
    pub fn read_by_visits(&self) -> u64 {
        self.readers.visits.get()
    }

    /// A member's read cursor (`None`: not a member).
    pub fn read_position(&self, member: &UserId) -> Option<u64> {
        self.state.as_ref()?.members.get(member).filter(|m| m.role.is_some()).map(|m| m.read)
    }

    /// Takes a user's intervals out of the counts (`add` false) or puts
    /// them back, around a change of their spans or read cursor.
    pub(super) fn recount(&mut self, user: &UserId, add: bool) {
        let Some(state) = self.state.as_ref() else { return };
        let (Some(row), Some(spans)) = (state.members.get(user), state.spans.get(user)) else { return };
        self.readers.user(spans, row.read, add);
    }

    pub(super) fn recount_all(&mut self) {
        self.readers = Readers::default();
        let Some(state) = self.state.as_ref() else { return };
        for row in state.members.values() {
            if let Some(spans) = state.spans.get(&row.user) {
                self.readers.user(spans, row.read, true);
            }
        }
    }

    /// The first `group_seq` whose "read by N of M" differs from a walk of
    /// every member (`None`: none), for the tests.
    pub fn read_by_mismatch(&self) -> Option<u64> {
        let state = self.state.as_ref()?;
        let mut counts = Readers::default();
        for row in state.members.values() {
            if let Some(spans) = state.spans.get(&row.user) {
                counts.user(spans, row.read, true);
            }
        }
        (1..=state.head).find(|&seq| {
            let walked = state.members.values().filter(|r| state.member_at(&r.user, seq));
            let of = walked.clone().count() as u64;
            let read = walked.filter(|r| r.read >= seq).count() as u64;
            (read, of) != counts.at(seq) || self.readers_at(seq) != (read, of)
        })
    }

    fn readers_at(&self, seq: u64) -> (u64, u64) {
        let mut visits = 0;
        self.readers.peek(seq, &mut visits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_stretches_and_the_reads() {
        let mut r = Readers::default();
        // a: member from 1, read to 4. b: 2..5 (removed at 5), read to 9 in a later stretch from 8.
        r.user(&[Span { joined: 1, until: None }], 4, true);
        r.user(&[Span { joined: 2, until: Some(5) }, Span { joined: 8, until: None }], 9, true);
        let counts: Vec<(u64, u64)> = (1..=10).map(|s| r.at(s)).collect();
        assert_eq!(counts, vec![(1, 1), (2, 2), (2, 2), (2, 2), (0, 1), (0, 1), (0, 1), (1, 2), (1, 2), (0, 2)]);
        r.user(&[Span { joined: 1, until: None }], 4, false);
        assert_eq!(r.at(3), (1, 1));
    }
}
