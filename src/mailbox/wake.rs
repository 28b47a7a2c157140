//! When a user's object should wake: one platform alarm serves every timed
//! job of the mailbox (the archive pass, the push webhook, closing sockets
//! whose token expired, the end of a presence grace), set for the
//! earliest of them. A job that comes due earlier than the alarm sets it
//! earlier; when the alarm fires, the jobs due run and the rest set it again.

/// A timed job of the mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Archive,
    Push,
    /// Close the sockets whose token expired.
    Expiry,
    /// The grace after the last socket closed ends: offline, if none opened.
    Presence,
}

/// What an alarm found due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    pub archive: bool,
    pub push: bool,
    pub expiry: bool,
    pub presence: bool,
}

#[derive(Debug, Default)]
pub struct Wake {
    /// The time the platform alarm is set for, as far as this instance knows.
    armed: Option<u64>,
    archive: Option<u64>,
    push: Option<u64>,
    expiry: Option<u64>,
    presence: Option<u64>,
    /// This instance set the alarm at least once: before that, an alarm is
    /// one a previous instance (evicted since) set, for jobs it cannot name.
    set_here: bool,
}

impl Wake {
    fn slot(&mut self, job: Job) -> &mut Option<u64> {
        match job {
            Job::Archive => &mut self.archive,
            Job::Push => &mut self.push,
            Job::Expiry => &mut self.expiry,
            Job::Presence => &mut self.presence,
        }
    }

    /// Whether `job` is scheduled.
    pub fn wanted(&self, job: Job) -> bool {
        match job {
            Job::Archive => self.archive.is_some(),
            Job::Push => self.push.is_some(),
            Job::Expiry => self.expiry.is_some(),
            Job::Presence => self.presence.is_some(),
        }
    }

    /// Whether this instance knows what the alarm is for (it set it, or
    /// none was set before it woke).
    pub fn known(&self) -> bool {
        self.set_here
    }

    /// Schedules `job` at `at` unless it is scheduled no later already.
    /// Returns the time to set the alarm for, when it must move earlier.
    pub fn want(&mut self, job: Job, at: u64) -> Option<u64> {
        let slot = self.slot(job);
        if slot.is_some_and(|t| t <= at) {
            return None;
        }
        *slot = Some(at);
        self.arm(at)
    }

    /// Schedules `job` at `at` only if it is not scheduled at all.
    pub fn want_once(&mut self, job: Job, at: u64) -> Option<u64> {
        if self.wanted(job) {
            return None;
        }
        self.want(job, at)
    }

    /// Schedules `job` at `at` without moving the alarm: for a job run at
    /// once by other means, which the next alarm runs again should that
    /// have been cut short.
    pub fn note(&mut self, job: Job, at: u64) {
        let slot = self.slot(job);
        *slot = Some(slot.map_or(at, |t| t.min(at)));
    }

    /// Forgets `job`'s time (it is being run now, and schedules itself again).
    pub fn clear(&mut self, job: Job) {
        *self.slot(job) = None;
    }

    /// Sets `job`'s time to exactly `at` (none: not scheduled), without
    /// moving the alarm: for a job whose time is recomputed as the alarm
    /// runs (the next [`Wake::rearm`] sets it).
    pub fn reset(&mut self, job: Job, at: Option<u64>) {
        *self.slot(job) = at;
    }

    fn arm(&mut self, at: u64) -> Option<u64> {
        if self.armed.is_some_and(|a| a <= at) {
            return None;
        }
        self.armed = Some(at);
        self.set_here = true;
        Some(at)
    }

    /// The platform did not set the alarm: the next want sets it.
    pub fn not_set(&mut self) {
        self.armed = None;
    }

    /// The alarm fired at `now`: the jobs due, no longer scheduled. After an
    /// eviction every job is due (they are cheap when there is nothing to do).
    pub fn fired(&mut self, now: u64) -> Due {
        self.armed = None;
        if !self.set_here {
            (self.archive, self.push, self.expiry, self.presence) = (None, None, None, None);
            return Due { archive: true, push: true, expiry: true, presence: true };
        }
        let take = |slot: &mut Option<u64>| slot.take_if(|t| *t <= now).is_some();
        Due {
            archive: take(&mut self.archive),
            push: take(&mut self.push),
            expiry: take(&mut self.expiry),
            presence: take(&mut self.presence),
        }
    }

    /// After the jobs ran: the alarm for what is still scheduled, if it is
    /// not set for it already.
    pub fn rearm(&mut self) -> Option<u64> {
        let next = [self.archive, self.push, self.expiry, self.presence].into_iter().flatten().min()?;
        self.arm(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alarm_for_the_earliest_job() {
        let mut w = Wake::default();
        assert_eq!(w.want(Job::Archive, 30), Some(30));
        assert_eq!(w.want_once(Job::Archive, 40), None, "already scheduled");
        assert_eq!(w.want(Job::Push, 50), None, "the alarm comes first anyway");
        assert_eq!(w.want(Job::Push, 10), Some(10), "earlier: the alarm moves");
        assert_eq!(w.fired(10), Due { archive: false, push: true, expiry: false, presence: false });
        assert_eq!(w.rearm(), Some(30), "the archive pass is still due");
        w.want(Job::Expiry, 60);
        assert_eq!(w.fired(30), Due { archive: true, push: false, expiry: false, presence: false });
        assert_eq!(w.rearm(), Some(60), "the expiry is still to come");
        assert_eq!(w.fired(60), Due { archive: false, push: false, expiry: true, presence: false });
        assert_eq!(w.rearm(), None);
    }

    #[test]
    fn a_job_run_at_once_rides_on_the_next_alarm() {
        let mut w = Wake::default();
        assert_eq!(w.want_once(Job::Archive, 30), Some(30));
        w.note(Job::Push, 5);
        assert_eq!(
            w.fired(30),
            Due { archive: true, push: true, expiry: false, presence: false },
            "the push runs again with the archive pass"
        );
        w.note(Job::Push, 40);
        w.clear(Job::Push);
        assert_eq!(w.rearm(), None);
        w.want(Job::Expiry, 90);
        w.fired(90);
        w.reset(Job::Expiry, None);
        assert_eq!(w.rearm(), None, "no socket left to close");
    }

    #[test]
    fn an_alarm_from_an_evicted_instance_runs_everything() {
        let mut w = Wake::default();
        assert_eq!(w.fired(5), Due { archive: true, push: true, expiry: true, presence: true });
        assert_eq!(w.rearm(), None);
    }

    #[test]
    fn a_job_wanted_while_the_alarm_runs_sets_it_again() {
        let mut w = Wake::default();
        w.want(Job::Archive, 10);
        assert!(w.fired(10).archive);
        assert_eq!(w.want_once(Job::Archive, 40), Some(40), "a write during the pass");
        assert_eq!(w.rearm(), None, "already set for it");
        w.not_set();
        assert_eq!(w.rearm(), Some(40), "the platform refused: set it again");
    }
}
