//! A user's log and the groups they are in: the others' unread messages of
//! a group, the group of an own message, and the groups the log knows.

use super::{col_text, col_u64, shown, text, Log, Sql, StoreError, GROUP_KEY_G};
use crate::group::GroupId;
use crate::message::Kind;
use crate::user::UserId;

/// The join and filter that leave, of the log `g` (either form of a group
/// id, [`GROUP_KEY_G`]), the group messages the
/// user has not read: others' messages (the owner is in `meta`) past the
/// user's read cursor of their group, not deleted.
pub(super) fn group_unread_from() -> String {
    let g = "g";
    format!(
        "LEFT JOIN group_cursor gc ON gc.grp = {GROUP_KEY_G} \
         WHERE {g}.kind = {} AND json_extract({g}.body, '$.type') IS NULL \
         AND CAST(json_extract({g}.body, '$.fromUser') AS TEXT) IS NOT (SELECT v FROM meta WHERE k = 'owner') \
         AND json_extract({g}.body, '$.group_seq') > COALESCE(gc.read, 0) AND {}",
        Kind::Group.code(),
        shown(g)
    )
}

impl<S: Sql> Log<S> {
    /// The others' messages of `group` the user has not read (0 for no such group).
    pub fn group_unread(&self, group: &str) -> Result<u64, StoreError> {
        let row = self.one(
            &format!("SELECT COUNT(*) FROM log g {} AND {} = ?", group_unread_from(), GROUP_KEY_G),
            &[text(group)],
        )?;
        Ok(row.and_then(|r| col_u64(&r, 0)).unwrap_or(0))
    }

    /// The group of the message `mid`, if it is one `owner` sent to a group
    /// and the log still holds it.
    pub fn own_group_message(&self, mid: &str, owner: &UserId) -> Result<Option<GroupId>, StoreError> {
        let row = self.one(
            &format!(
                "SELECT json_extract(body, '$.group') FROM log WHERE id = ? AND kind = {} AND peer = ?",
                Kind::Group.code()
            ),
            &[text(mid), text(owner.as_str())],
        )?;
        Ok(row.and_then(|r| col_text(&r, 0)).and_then(|g| GroupId::parse(&g).ok()))
    }

    /// Every group this log has entries of, or a cursor of (left ones too).
    pub fn group_ids(&self) -> Result<Vec<GroupId>, StoreError> {
        let ids = self.all(
            &format!(
                "SELECT grp FROM group_cursor UNION SELECT {GROUP_KEY_G} FROM log g WHERE kind = {}",
                Kind::Group.code()
            ),
            &[],
            |r| Some(col_text(r, 0)),
        )?;
        Ok(ids.into_iter().flatten().filter_map(|g| GroupId::parse(&g).ok()).collect())
    }
}
