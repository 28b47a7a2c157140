//! The push webhook of a mailbox: the push state loaded with the log, the
//! next call to make (a retry, a silent `read`, or a plan over the log), and
//! what its answer changes. The platform makes the call and signs it
//! ([`crate::push::signature`]); every decision is here.

use super::{Error, Io, Job, Mailbox};
use crate::group::GroupId;
use crate::log::{Log, PushCall, PushState, Sql};
use crate::metrics::{incr, Counter};
use crate::push::{self, Retry, CANDIDATES};
use crate::user::UserId;

/// A conversation whose read is told by a silent `read` push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ReadConv {
    Chat(UserId),
    Group(GroupId),
}

impl Mailbox {
    /// The push state of a log being loaded. The first load with push
    /// configured stores the cursor at the head (one row, once): what came
    /// before push was turned on is not pushed, and what comes after is,
    /// even across an eviction.
    pub(super) fn restore_push<S: Sql>(&self, log: &Log<S>) -> Result<Option<PushState>, Error> {
        if self.config.push.is_none() {
            return Ok(None);
        }
        if let Some(state) = log.push_state()? {
            return Ok(Some(state));
        }
        let state = PushState { cursor: log.newest()?, call: None };
        log.save_push(&state)?;
        Ok(Some(state))
    }

    /// Whether a push may be waiting for an ack (so an ack is saved at once:
    /// an eviction must not forget it and push what the user saw). After a
    /// wake from eviction that is not known, so it may.
    pub(super) fn push_pending(&self) -> bool {
        self.config.push.is_some() && (self.wake.wanted(Job::Push) || !self.wake.known())
    }

    /// The next webhook call to make now, if any: a call in flight whose
    /// retry is due, a silent `read`, or a push the log's candidates make
    /// due. Schedules the next due push.
    ///
    /// A new call is not stored before it is made: its id derives from the
    /// user and the cursor it moves to, so one cut short by an eviction is
    /// planned again with the same id (the receiver drops repeats by it).
    /// Its answer stores the cursor, or the call for a retry: one row.
    pub fn push_next<S: Sql, W>(&mut self, io: &Io<S, W>) -> Result<Option<PushCall>, Error> {
        let Some(cfg) = self.config.push else { return Ok(None) };
        self.wake.clear(Job::Push);
        let (owner, state) = (self.life()?.owner.clone(), self.life()?.push.clone());
        let Some(mut state) = state else { return Ok(None) };
        if let Some(call) = &state.call {
            if call.next_at <= io.now {
                return Ok(Some(call.clone()));
            }
            self.want(io.now, Job::Push, call.next_at);
            return Ok(None);
        }
        if let Some(conv) = self.reads_to_push.pop() {
            return self.start_read(io, &owner, state, &conv).map(Some);
        }
        let cands = io.log.push_candidates(&owner, state.cursor, CANDIDATES)?;
        let life = self.life()?;
        let acked = life.devices.values().map(|d| d.acked).max().unwrap_or(0);
        let plan = push::plan(&cands, io.now, &cfg, acked, |p, time| {
            // A group (`g:team`) is muted under its object name (`gteam`).
            crate::group::GroupId::mute_peer(p).is_some_and(|p| life.blocks.is_muted(&p, time))
        });
        if let Some(at) = plan.next_due {
            self.want(io.now, Job::Push, at);
        }
        if cands.len() as u32 == CANDIDATES {
            // More past this batch: look again right after this call.
            self.want(io.now, Job::Push, io.now);
        }
        let Some(upto) = plan.upto else { return Ok(None) };
        // Moving the cursor over entries that need no push is kept in memory:
        // after an eviction the same plan cancels them again.
        state.cursor = upto;
        if plan.waiting.is_empty() {
            self.life_mut()?.push = Some(state);
            return Ok(None);
        }
        let id = push::webhook_id(owner.as_str(), upto);
        let body = push::message_body(&id, owner.as_str(), &plan.waiting, io.log.total_unread()?, cfg.preview_chars);
        self.start(io, state, id, body).map(Some)
    }

    fn start_read<S: Sql, W>(
        &mut self,
        io: &Io<S, W>,
        owner: &UserId,
        state: PushState,
        conv: &ReadConv,
    ) -> Result<PushCall, Error> {
        // A group is named as clients know it (`g:team`), never as a user.
        let (name, conv_unread) = match conv {
            ReadConv::Chat(peer) => (peer.as_str().to_string(), io.log.conversation_unread(peer.as_str())?),
            ReadConv::Group(group) => (group.wire(), io.log.group_unread(group.as_str())?),
        };
        let id = push::webhook_id(owner.as_str(), io.now) + "r";
        let body = push::read_body(&id, owner.as_str(), &name, conv_unread, io.log.total_unread()?);
        self.start(io, state, id, body)
    }

    fn start<S: Sql, W>(
        &mut self,
        io: &Io<S, W>,
        mut state: PushState,
        id: String,
        body: String,
    ) -> Result<PushCall, Error> {
        let call = PushCall { id, body, attempt: 0, first_at: io.now, next_at: io.now };
        state.call = Some(call.clone());
        self.life_mut()?.push = Some(state);
        Ok(call)
    }

    /// The answer to the call in flight (`None`: a network error); `jitter`
    /// in [0, 1). Returns whether another call may follow at once.
    pub fn push_done<S: Sql, W>(&mut self, io: &Io<S, W>, status: Option<u16>, jitter: f64) -> Result<bool, Error> {
        let Some(cfg) = self.config.push else { return Ok(false) };
        let Some(mut state) = self.life()?.push.clone() else { return Ok(false) };
        let Some(mut call) = state.call.take() else { return Ok(false) };
        let next = match push::retry_after(status, call.attempt, call.first_at, io.now, cfg.ttl_ms, jitter) {
            Retry::Done => {
                incr(Counter::PushesSent);
                true
            }
            Retry::Drop => {
                incr(Counter::PushesDropped);
                true
            }
            Retry::After(ms) => {
                incr(Counter::PushRetries);
                call.attempt += 1;
                call.next_at = io.now.saturating_add(ms);
                self.want(io.now, Job::Push, call.next_at);
                state.call = Some(call);
                false
            }
        };
        io.log.save_push(&state)?;
        self.life_mut()?.push = Some(state);
        Ok(next)
    }

    /// A conversation was read on a device: a silent `read` push follows,
    /// so the app can clear its notification and badge.
    pub(super) fn push_read(&mut self, now: u64, conv: ReadConv) {
        if self.config.push.is_none() {
            return;
        }
        if !self.reads_to_push.contains(&conv) {
            self.reads_to_push.push(conv);
        }
        self.wake.note(Job::Push, now);
        self.effects.push(super::Effect::Push);
    }
}
