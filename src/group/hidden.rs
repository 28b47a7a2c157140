//! Read positions of members who hide their presence (`hide_presence`):
//! the group keeps who hides, as each member's object says with every
//! read, and shows their read position to them alone.

use super::{Actor, Group, GroupError, Member};
use crate::log::{Sql, StoreError};
use crate::user::UserId;

impl<S: Sql> Group<S> {
    /// Whether `member` hides their presence, as their object last said:
    /// stored only when it changes (a row per change, none per read). Not a
    /// member: nothing to keep.
    pub fn set_hidden(&mut self, member: &UserId, hidden: bool) -> Result<(), StoreError> {
        let known = self.state.as_ref().is_some_and(|s| s.role(member).is_some());
        if !known || self.hidden.contains(member) == hidden {
            return Ok(());
        }
        self.store.set_hidden_reader(member, hidden)?;
        match hidden {
            true => self.hidden.insert(member.clone()),
            false => self.hidden.remove(member),
        };
        Ok(())
    }

    /// The current members as `by` sees them: a member who hides their
    /// presence shows a read position of 0 (as one who never read) to
    /// everyone but themself.
    pub fn members_seen_by(&self, by: &Actor) -> Result<Vec<Member>, GroupError> {
        let mut members = self.members()?;
        for m in &mut members {
            if self.hidden.contains(&m.user) && by.user() != Some(&m.user) {
                m.read = 0;
            }
        }
        Ok(members)
    }
}
