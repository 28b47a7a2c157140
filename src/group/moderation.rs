//! The backend's moderation of a group message: an edit or a delete for
//! everyone, stored as the message's new body and as an op entry of the
//! group's log that the fan-out carries to every member (see
//! [`Group::moderate`]).

use serde_json::Value;

use super::{EntryKind, Group, GroupEntry, GroupError};
use crate::edits::{group_op, EditOp};
use crate::log::Sql;
use crate::user::UserId;

/// The answer to a moderation call ([`Group::moderate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moderated {
    /// The op's entry: its `group_seq` and id.
    pub seq: u64,
    pub id: String,
    /// A repeat of an idempotent call (the op's id was stored before):
    /// nothing stored.
    pub duplicate: bool,
}

impl<S: Sql> Group<S> {
    /// The backend edits or deletes the message `target` for everyone
    /// (moderation, no time window): the message's entry takes its new body
    /// (pages show it from then on), and an op entry (`id`) under the next
    /// `group_seq` carries the change to every member's log as an edit or a
    /// delete. `sender`, when named, must be the message's. A repeat (an
    /// entry `id` exists: the id derives from the call's idempotency key)
    /// answers the first op and stores nothing.
    ///
    /// Finding the message reads the group's entries (no index on ids: one
    /// would cost a row written per message, and moderation is rare).
    pub fn moderate(
        &mut self,
        target: &str,
        sender: Option<&UserId>,
        op: EditOp,
        id: &str,
        now: u64,
    ) -> Result<Moderated, GroupError> {
        let state = self.state()?;
        let found = self.store.entries_with_ids(&[target, id])?;
        if let Some(done) = found.iter().find(|e| e.id == id && matches!(e.kind, EntryKind::Edit | EntryKind::Delete)) {
            return Ok(Moderated { seq: done.seq, id: done.id.clone(), duplicate: true });
        }
        let message = found
            .iter()
            .find(|e| e.id == target && e.kind == EntryKind::Message)
            .filter(|e| sender.is_none() || e.sender.as_ref() == sender)
            .ok_or(GroupError::NoSuchEntry)?;
        let kind = match op {
            EditOp::Edit(_) => EntryKind::Edit,
            EditOp::Delete { .. } => EntryKind::Delete,
        };
        if let EditOp::Edit(fields) = &op {
            if !matches!(fields.get("message"), Some(Value::String(m)) if !m.is_empty()) {
                return Err(GroupError::EmptyMessage);
            }
        }
        let (body, rewrite) = group_op(target, &message.body, op, now).map_err(|_| GroupError::Deleted)?;
        let seq = state.head + 1;
        let entry = GroupEntry { seq, id: id.to_owned(), kind, sender: None, time_ms: now, body };
        self.store.append(&entry, None)?;
        self.store.set_body(message.seq, &rewrite)?;
        if let Some(s) = self.state.as_mut() {
            s.head = seq;
        }
        self.pump(now)?;
        Ok(Moderated { seq, id: id.to_owned(), duplicate: false })
    }
}
