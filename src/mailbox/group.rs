//! Group entries in a member's mailbox: a group object's delivery becomes
//! entries of the member's log (kind `group`, under the member's own seqs),
//! applied once and in order however often it is retried ([`group::accept`]).

use super::push::ReadConv;
use super::{send, Error, Io, Mailbox, Mode, Sockets};
use crate::consent;
use crate::edits;
use crate::group::{self, Accept, Answer, Delivery, GroupId};
use crate::log::{NewEntry, Rewrite, Sql};
use crate::message::Kind;
use crate::metrics::{self, Counter};
use crate::user::UserId;

impl Mailbox {
    /// Applies a delivery: the entries this log lacks are appended (each
    /// carries its `group_seq`, which is how a wake finds the cursor again)
    /// and pushed to the v1 devices. `None`: a malformed delivery, refused
    /// whole.
    pub fn group_delivery<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, d: &Delivery) -> Result<Option<Answer>, Error> {
        let applied = self.group_applied(io, &d.group)?;
        let decision = group::accept(applied, d);
        if let Accept::New { skip, up_to } = decision {
            let blocks = &self.life()?.blocks;
            let entries: Vec<NewEntry> = d.entries[skip..]
                .iter()
                // A message of someone the user blocked is not kept (as the
                // big messengers hide it); the cursor still passes it.
                .filter(|e| {
                    !(e.kind == group::EntryKind::Message && e.sender.as_ref().is_some_and(|s| blocks.is_blocked(s)))
                })
                .map(member_entry)
                .collect();
            // Not through the group commit: the cursor must land with them.
            let n = entries.len() as u64;
            let ops = entries.iter().any(|e| e.kind.is_op());
            let deletes = entries.iter().any(|e| e.kind == Kind::DeleteIn);
            if n > 0 {
                self.write(io, entries)?;
            }
            if ops {
                // A wake recounts the cursor from group entries only, not
                // ops: stored now (moderation is rare, so is this row).
                io.log.set_group_applied(&d.group, up_to)?;
            }
            if deletes {
                // The deleted message may have been unread: the app learns
                // the new counts, as after a chat's delete.
                self.push_read(io.now, ReadConv::Group(d.group.clone()));
            }
            metrics::add(Counter::MessagesStored, n);
            self.life_mut()?.groups.insert(d.group.clone(), up_to);
        }
        Ok(decision.answer())
    }

    /// The highest `group_seq` of `group` this log applied. A row written
    /// per delivery would be half of what a member's copy costs, so the
    /// cursor is kept in memory and stored as the archive cursor passes the
    /// entries ([`crate::log::Log::save_group_cursors`]); after a wake it is
    /// the stored one or, if newer, the highest `group_seq` among the
    /// entries past the archive cursor (the entries say how far the log got).
    fn group_applied<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, group: &GroupId) -> Result<u64, Error> {
        if let Some(applied) = self.life()?.groups.get(group) {
            return Ok(*applied);
        }
        let archived = self.life()?.inbox.archived();
        let applied = io.log.group_applied(group)?.max(io.log.group_applied_since(group, archived)?);
        self.life_mut()?.groups.insert(group.clone(), applied);
        Ok(applied)
    }

    /// Whether the user accepts being put in a group by `by`: their
    /// `group_adds` setting, blocks and contacts decide ([`consent::may_add`]).
    pub fn may_add_to_group<S: Sql, W: Sockets>(
        &mut self,
        io: &Io<S, W>,
        owner: &UserId,
        by: &UserId,
    ) -> Result<bool, Error> {
        self.load(io, owner)?;
        let life = self.life()?;
        if by == owner {
            return Ok(true);
        }
        let blocked = life.blocks.is_blocked(by);
        let setting = self.settings().group_adds;
        // The contact read only when the setting needs it.
        let contact = !blocked && setting == consent::GroupAdds::Contacts && io.log.is_contact(by.as_str())?;
        Ok(consent::may_add(setting, consent::Adder { blocked, contact }))
    }

    /// The user read `group` up to `read` (as its object confirmed): the
    /// cursor their conversation list counts unread messages from.
    /// A silent `read` push follows, as for a chat, so the app can clear the
    /// group's notification and badge.
    pub fn group_read<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, group: &GroupId, read: u64) -> Result<(), Error> {
        io.log.set_group_read(group, read)?;
        self.push_read(io.now, ReadConv::Group(group.clone()));
        Ok(())
    }

    /// A frame another object wants on this user's live v1 sockets (a
    /// group's typing, read counts): shown if one is open, else dropped.
    pub fn relay<S: Sql, W: Sockets>(&mut self, io: &Io<S, W>, frame: &str) {
        for ws in io.sockets.open(Mode::V1) {
            send(io.sockets, &ws, frame);
        }
    }
}

/// A group entry as the member's log stores it: a message or a change as a
/// group entry; the backend's edit or delete of a message as the op a chat's
/// edit or delete is (`msg {kind:"edit"|"delete"}` on the devices), with no
/// peer (that is what marks it a group's, for the rewrite and the archive pass),
/// rewriting the member's copy of the message.
fn member_entry(e: &group::GroupEntry) -> NewEntry {
    let (kind, rewrite) = match e.kind {
        group::EntryKind::Message | group::EntryKind::Change => (Kind::Group, None),
        group::EntryKind::Edit => (Kind::EditIn, edits::rewrite_of(&e.body)),
        group::EntryKind::Delete => (Kind::DeleteIn, edits::rewrite_of(&e.body)),
    };
    NewEntry {
        id: e.id.clone(),
        kind,
        // A message's sender (a change has none): no push for
        // one's own, and a muted sender's start none.
        peer: e.sender.clone().filter(|_| e.kind == group::EntryKind::Message),
        time_ms: e.time_ms,
        body: e.body.clone(),
        peer_state: None,
        cmid: None,
        dedup: false,
        rewrite: rewrite.map(|(target, body)| Rewrite { target, body }),
    }
}
