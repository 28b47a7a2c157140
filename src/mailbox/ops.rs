//! Edits and deletes in a mailbox: finding the message in the log, the
//! decision ([`crate::edits::decide`]), and the entry (and delivery) that
//! carry it. The entries then take the path of a chat: the peer's log
//! first, then the sender's, each rewriting the message as it stores the op.

use super::{send, Error, Io, Mailbox, Mode, Remote, SendPlan, Sockets};
use crate::edits::{self, EditOp, EditRefusal, Target};
use crate::internal::{Delivery, Outcome};
use crate::log::{NewEntry, Rewrite, Sql};
use crate::message::Kind;
use crate::metrics::{incr, Counter};
use crate::protocol::v1 as wire;
use crate::user::UserId;

/// What a backend edit or delete needs next.
#[derive(Debug, PartialEq)]
pub enum ApiEditStep {
    /// The answer, with nothing to carry out.
    Answer(Outcome),
    Plan(Box<SendPlan>),
    /// Not a chat but a message the user sent to `group`: the group's
    /// object moderates it ([`crate::group::Group::moderate`]).
    Group {
        group: crate::group::GroupId,
        op: EditOp,
    },
}

impl Mailbox {
    /// Plans an op on the owner's message `target`, with the op's own `id`
    /// made at `now`. A planned remote op counts as a send in flight until
    /// [`Mailbox::hop_answered`].
    pub fn plan_edit<S: Sql, W>(
        &mut self,
        io: &Io<S, W>,
        target: &str,
        op: EditOp,
        id: &str,
        cmid: Option<&str>,
        backend: bool,
    ) -> Result<SendPlan, EditRefusal> {
        let unavailable = |_| EditRefusal::Send(crate::message::Refusal::Unavailable);
        let owner = self.life().map_err(unavailable)?.owner.clone();
        let found = io.log.find(target).map_err(|e| unavailable(Error::Store(e)))?;
        let target_row = found.map(|f| Target {
            mid: target.to_owned(),
            kind: f.kind,
            peer: f.peer.and_then(|p| UserId::parse(&p).ok()),
            time_ms: f.time_ms,
            body: f.body,
        });
        let window = self.config.limits.edit_window_ms;
        let decided = edits::decide(&owner, target_row, op, io.now, window, backend).inspect_err(|r| {
            if *r == EditRefusal::TooLate {
                incr(Counter::RefusedEditWindow);
            }
        })?;
        let rewrite = Some(Rewrite { target: target.to_owned(), body: decided.rewrite });
        let cmid = cmid.map(str::to_owned);
        let entry = NewEntry {
            id: id.to_owned(),
            kind: decided.kind,
            peer: decided.peer.clone(),
            time_ms: io.now,
            body: decided.body,
            peer_state: None,
            cmid,
            dedup: false,
            rewrite,
        };
        let (Some(to), true) = (decided.peer, decided.to_peer) else { return Ok(SendPlan::Local(entry)) };
        if self.sends_waiting >= self.config.limits.inflight_sends {
            incr(Counter::RefusedBusy);
            let retry_after_ms = super::BUSY_RETRY_MS;
            return Err(EditRefusal::Send(crate::message::Refusal::RateLimited { retry_after_ms }));
        }
        self.sends_waiting += 1;
        let delivery = Delivery {
            owner: to.clone(),
            kind: entry.kind.mirror(),
            id: entry.id,
            time_ms: entry.time_ms,
            peer: Some(owner),
            dedup: entry.cmid.is_some(),
            backend,
            key: None,
        };
        Ok(SendPlan::Remote(Remote { to, delivery, body: entry.body, cmid: entry.cmid, rewrite: entry.rewrite }))
    }

    /// A backend edit or delete of `uid`'s chat: a repeat of an idempotent
    /// call is answered at once; a bad body is refused; otherwise the plan.
    pub fn api_edit<S: Sql, W>(
        &mut self,
        io: &Io<S, W>,
        e: &crate::internal::ApiEdit,
        body: &str,
    ) -> Result<ApiEditStep, Error> {
        self.load(io, &e.uid)?;
        // A repeat: the entry answers with the op's id, derived from the key.
        if let Some(cmid) = &e.cmid {
            match super::keyed::replay(io.log, cmid)?.0 {
                crate::idempotency::Replay::Same => return Ok(ApiEditStep::Answer(Outcome::Stored { pushed: true })),
                crate::idempotency::Replay::Reused => return Ok(ApiEditStep::Answer(Outcome::KeyReused)),
                crate::idempotency::Replay::New => {}
            }
        }
        let op = match e.delete {
            true => EditOp::Delete { everyone: true },
            false => match serde_json::from_str(body) {
                Ok(serde_json::Value::Object(fields))
                    if fields.get("message").and_then(|m| m.as_str()).is_some_and(|m| !m.is_empty()) =>
                {
                    EditOp::Edit(fields)
                }
                _ => return Ok(ApiEditStep::Answer(Outcome::Bad)),
            },
        };
        Ok(match self.plan_edit(io, &e.target, op.clone(), &e.id, e.cmid.as_deref(), true) {
            Ok(plan) => ApiEditStep::Plan(Box::new(plan)),
            // Not a chat of the user's: a group message they sent, maybe.
            Err(EditRefusal::NotFound) => match io.log.own_group_message(&e.target, &e.uid)? {
                Some(group) => ApiEditStep::Group { group, op },
                None => ApiEditStep::Answer(Outcome::NotFound),
            },
            Err(r) => ApiEditStep::Answer(api_edit_outcome(r)),
        })
    }

    /// A delete of an unread message lowers the unread count: every device
    /// learns it, and the push webhook sends the silent `read` update.
    pub(super) fn deleted_unread<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, op: &NewEntry) -> Result<(), Error> {
        let (Some(peer), Some(r)) = (&op.peer, &op.rewrite) else { return Ok(()) };
        let Some(found) = io.log.find(&r.target)? else { return Ok(()) };
        if found.kind != Kind::Received {
            return Ok(());
        }
        let (count, read_up_to) = io.log.unread_state(peer.as_str())?;
        let frame = wire::unread(peer.as_str(), count, read_up_to);
        for ws in io.sockets.open(Mode::V1) {
            send(io.sockets, &ws, &frame);
        }
        self.push_read(io.now, super::push::ReadConv::Chat(peer.clone()));
        Ok(())
    }
}

/// The body each entry's v1 frame carries in this log, where it is not the
/// entry's own: an edit of a message the user deleted for themself carries
/// their tombstone (the stored op keeps the shared body, which history
/// takes). Read before the write, so a failed read writes nothing.
pub(super) fn shown_bodies<S: Sql, W>(io: &Io<S, W>, batch: &[NewEntry]) -> Result<Vec<Option<String>>, Error> {
    batch
        .iter()
        .map(|e| match (&e.rewrite, e.kind) {
            (Some(r), Kind::EditOut | Kind::EditIn) => {
                Ok(io.log.hidden_at(&r.target)?.map(|at| edits::hidden_edit(&e.body, at)))
            }
            _ => Ok(None),
        })
        .collect()
}

/// How a refused backend edit is answered.
pub fn api_edit_outcome(r: EditRefusal) -> Outcome {
    use crate::message::Refusal;
    match r {
        EditRefusal::NotFound | EditRefusal::NotYours => Outcome::NotFound,
        EditRefusal::Deleted | EditRefusal::TooLate => Outcome::Conflict,
        EditRefusal::Send(Refusal::RecipientFull) => Outcome::Full,
        EditRefusal::Send(Refusal::Unavailable | Refusal::RateLimited { .. }) => Outcome::Unavailable,
        EditRefusal::Send(_) => Outcome::Bad,
    }
}
