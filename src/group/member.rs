//! The member's side of the fan-out: whether a group delivery that reaches a
//! user's object is new, so that a retry never duplicates and order holds.
//!
//! The user's log keeps, per group, the highest `group_seq` applied
//! (`group_cursor`, [`crate::log::Log::group_applied`]). A [`Delivery`]
//! carries `since`, the group's fan-out cursor for this member: the member
//! has acknowledged everything owed to them up to it, so it holds every
//! entry of the batch's prefix that is not in the batch. The member applies
//! the entries above its own cursor, in order, and answers how far it got.

use super::{Answer, Delivery};

/// What a member's object does with a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Append `entries[skip..]` to the log, in order, with the cursor
    /// moved to `up_to` in the same write; then answer [`Answer::Applied`].
    New { skip: usize, up_to: u64 },
    /// Everything in it was applied before (a retry): store nothing.
    Already { applied: u64 },
    /// Entries between the member's cursor and the batch are missing here
    /// (the group's cursor is ahead of this log's): store nothing, and say
    /// where this log is, so the group delivers again from there.
    Gap { applied: u64 },
    /// Empty, or not in increasing `group_seq` order after `since`: a bug
    /// of the sender, refused whole.
    Malformed,
}

impl Accept {
    /// The answer the group object gets once the decision is carried out
    /// (`None` for a malformed delivery).
    pub fn answer(self) -> Option<Answer> {
        match self {
            Accept::New { up_to, .. } => Some(Answer::Applied(up_to)),
            Accept::Already { applied } => Some(Answer::Applied(applied)),
            Accept::Gap { applied } => Some(Answer::Gap(applied)),
            Accept::Malformed => None,
        }
    }
}

/// Decides a delivery against the member's cursor for its group (`applied`:
/// the highest `group_seq` this user's log holds of it, 0 for none).
pub fn accept(applied: u64, d: &Delivery) -> Accept {
    let Some(last) = d.entries.last() else { return Accept::Malformed };
    let mut prev = d.since;
    for e in &d.entries {
        if e.seq <= prev {
            return Accept::Malformed;
        }
        prev = e.seq;
    }
    if d.since > applied {
        return Accept::Gap { applied };
    }
    let skip = d.entries.iter().take_while(|e| e.seq <= applied).count();
    if skip == d.entries.len() {
        return Accept::Already { applied };
    }
    Accept::New { skip, up_to: last.seq }
}
