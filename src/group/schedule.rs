//! The fan-out outbox's index of members by what they wait for, kept in
//! memory beside the members (rebuilt when the object opens), so that an
//! answer, a failure or a send looks only at the members it concerns, never
//! at the whole membership (issue 25: `pump()` walked every member per
//! answer, M² work per unbatched message).
//!
//! Each member owed something, or who could become owed, has one place:
//!
//! - *waiting*: owed entries, no delivery in flight; keyed by `next_at`
//!   (0 once due), so the members due now are the front of the set;
//! - *flying*: owed entries, a delivery in flight; keyed by its answer's
//!   deadline, so the earliest timeout is the front;
//! - *idle*: a current member owed nothing (in flight or not): what a new
//!   entry of the log makes owed, so each new entry moves only these.
//!
//! A former member owed nothing has no place: no entry can be owed to them.
//! Every deadline of a flight, owed or not, is also kept apart for the
//! alarm's timeouts. [`Group::schedule_mismatch`] checks the index against a
//! walk of every member (what `pump()` used to do), for the tests.

use std::collections::{BTreeSet, HashMap};

use super::store::MemberRow;
use super::{Flight, Group, State};
use crate::log::Sql;
use crate::user::UserId;

/// Where a member is in the index, with the key it is filed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Waiting(u64),
    Flying(u64),
    Idle,
}

/// The index (see the module doc).
#[derive(Debug, Default)]
pub(super) struct Schedule {
    slots: HashMap<UserId, Slot>,
    waiting: BTreeSet<(u64, UserId)>,
    flying: BTreeSet<(u64, UserId)>,
    idle: BTreeSet<UserId>,
    /// Every flight by its deadline: `(sent_at + ack timeout, member)`.
    deadlines: BTreeSet<(u64, UserId)>,
    /// The head the idle members were owed up to when last filed.
    pub(super) head: u64,
    /// Members looked at so far (filed, or taken as due): the work the
    /// fan-out's bookkeeping does, for tests.
    pub(super) visits: u64,
}

/// Where `row`'s member belongs (`None`: nowhere).
pub(super) fn slot_of(state: &State, row: &MemberRow, flight: Option<&Flight>, timeout: u64) -> Option<Slot> {
    let owed = row.delivered < state.owed_up_to(&row.user);
    match (owed, flight) {
        (true, Some(f)) => Some(Slot::Flying(f.sent_at + timeout)),
        (true, None) => Some(Slot::Waiting(row.next_at)),
        (false, _) if row.role.is_some() => Some(Slot::Idle),
        (false, _) => None,
    }
}

impl Schedule {
    /// Files `user` under `slot` (or nowhere), out of wherever it was.
    pub(super) fn file(&mut self, user: &UserId, slot: Option<Slot>) {
        self.visits += 1;
        let old = self.slots.get(user).copied();
        if old == slot {
            return;
        }
        match old {
            Some(Slot::Waiting(at)) => self.waiting.remove(&(at, user.clone())),
            Some(Slot::Flying(at)) => self.flying.remove(&(at, user.clone())),
            Some(Slot::Idle) => self.idle.remove(user),
            None => false,
        };
        let Some(slot) = slot else {
            self.slots.remove(user);
            return;
        };
        match slot {
            Slot::Waiting(at) => self.waiting.insert((at, user.clone())),
            Slot::Flying(at) => self.flying.insert((at, user.clone())),
            Slot::Idle => self.idle.insert(user.clone()),
        };
        self.slots.insert(user.clone(), slot);
    }

    pub(super) fn slot(&self, user: &UserId) -> Option<Slot> {
        self.slots.get(user).copied()
    }

    /// The idle members, taken out to be filed again (a new entry).
    pub(super) fn take_idle(&mut self) -> Vec<UserId> {
        let idle = std::mem::take(&mut self.idle);
        for u in &idle {
            self.slots.remove(u);
        }
        idle.into_iter().collect()
    }

    /// The waiting members due at `now`, taken out, by user id (the order
    /// the walk of every member sent them in).
    pub(super) fn take_due(&mut self, now: u64) -> Vec<UserId> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.waiting.first() {
            if *at > now {
                break;
            }
            let Some((_, user)) = self.waiting.pop_first() else { break };
            self.slots.remove(&user);
            self.visits += 1;
            due.push(user);
        }
        due.sort();
        due
    }

    /// When the fan-out next needs the alarm: the first retry to come or
    /// the first answer's deadline of a member still owed.
    pub(super) fn next_wake(&self) -> Option<u64> {
        let retry = self.waiting.first().map(|(at, _)| *at);
        let timeout = self.flying.first().map(|(at, _)| *at);
        retry.into_iter().chain(timeout).min()
    }

    pub(super) fn flight_out(&mut self, user: &UserId, deadline: u64) {
        self.deadlines.insert((deadline, user.clone()));
    }

    pub(super) fn flight_back(&mut self, user: &UserId, deadline: u64) {
        self.deadlines.remove(&(deadline, user.clone()));
    }

    /// The members whose flight's deadline passed at `now`, by user id.
    pub(super) fn overdue(&self, now: u64) -> Vec<UserId> {
        let mut lost: Vec<UserId> =
            self.deadlines.iter().take_while(|(at, _)| *at <= now).map(|(_, u)| u.clone()).collect();
        lost.sort();
        lost
    }
}

impl<S: Sql> Group<S> {
    /// Members looked at by the fan-out's bookkeeping so far (a count for
    /// tests: it grows with the deliveries made, not with the membership).
    pub fn fanout_visits(&self) -> u64 {
        self.schedule.visits
    }

    /// Files `user` again after their cursor, retry state, flight or
    /// membership changed.
    pub(super) fn refile(&mut self, user: &UserId) {
        let Some(state) = self.state.as_ref() else { return };
        let slot = state
            .members
            .get(user)
            .and_then(|row| slot_of(state, row, self.flights.get(user), self.config.ack_timeout_ms));
        self.schedule.file(user, slot);
    }

    /// Every member filed from scratch (the object opened, the group was created).
    pub(super) fn refile_all(&mut self) {
        self.schedule = Schedule::default();
        let Some(state) = self.state.as_ref() else { return };
        for row in state.members.values() {
            let slot = slot_of(state, row, self.flights.get(&row.user), self.config.ack_timeout_ms);
            self.schedule.file(&row.user, slot);
        }
        self.schedule.head = state.head;
    }

    /// The first member whose place in the index is not what a walk of
    /// every member finds (`None`: the index is right), for the tests.
    /// Right after any call of the group the two agree.
    pub fn schedule_mismatch(&self) -> Option<UserId> {
        let state = self.state.as_ref()?;
        if let Some(u) = self.schedule.slots.keys().find(|u| !state.members.contains_key(*u)) {
            return Some(u.clone());
        }
        let timeout = self.config.ack_timeout_ms;
        let flights_ok =
            self.flights.iter().all(|(u, f)| self.schedule.deadlines.contains(&(f.sent_at + timeout, u.clone())))
                && self.schedule.deadlines.len() == self.flights.len();
        if !flights_ok {
            return self.flights.keys().min().cloned();
        }
        state
            .members
            .values()
            .find(|row| slot_of(state, row, self.flights.get(&row.user), timeout) != self.schedule.slot(&row.user))
            .map(|row| row.user.clone())
    }
}
