//! A user's block and mute lists: whose chats they refuse, and whose they
//! want no push for.
//!
//! The lists belong to the user's own object: read once when it wakes, then
//! kept in memory, so checking a message costs no storage read. One row per
//! peer in the object's SQLite (`Log::save_block`); a change writes that row
//! only.
//!
//! A block is private: the blocked sender is answered as usual and nothing
//! tells them (`docs/protocol.md`, "Blocks and mutes").

use serde_json::{json, Value};

use crate::user::UserId;

/// A mute without an end, as stored (ms since the epoch, exact in JSON).
pub const FOREVER: u64 = (1 << 53) - 1;

/// One peer's row: blocked, muted until (ms; 0: not muted), or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub peer: UserId,
    pub blocked: bool,
    pub muted_until: u64,
}

impl Entry {
    /// Whether the row says anything (a row saying nothing is deleted).
    pub fn is_set(&self) -> bool {
        self.blocked || self.muted_until != 0
    }
}

/// A change a user (or the backend, for them) makes to their lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Block(UserId),
    Unblock(UserId),
    /// Until `until` (ms since the epoch); `None`: until unmuted.
    Mute(UserId, Option<u64>),
    Unmute(UserId),
}

impl Change {
    pub fn peer(&self) -> &UserId {
        match self {
            Change::Block(p) | Change::Unblock(p) | Change::Mute(p, _) | Change::Unmute(p) => p,
        }
    }
}

/// Why a change was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The lists hold `BLOCKS_MAX` peers already.
    Full { max: usize },
    /// One cannot block or mute oneself.
    Yourself,
}

impl BlockError {
    pub fn message(self) -> String {
        match self {
            BlockError::Full { max } => format!("too many blocked or muted peers (at most {max}, BLOCKS_MAX)"),
            BlockError::Yourself => "you cannot block or mute yourself".to_owned(),
        }
    }
}

/// Both lists of one user, sorted by peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blocks {
    entries: Vec<Entry>,
}

impl Blocks {
    /// The lists from their stored rows (any order).
    pub fn from_rows(rows: Vec<Entry>) -> Blocks {
        let mut b = Blocks::default();
        // Inserted one by one rather than sorted: a sort is several KB of wasm.
        for row in rows.into_iter().filter(Entry::is_set) {
            if let Err(at) = b.find(&row.peer) {
                b.entries.insert(at, row);
            }
        }
        b
    }

    fn find(&self, peer: &UserId) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.peer.cmp(peer))
    }

    fn get(&self, peer: &UserId) -> Option<&Entry> {
        self.find(peer).ok().map(|i| &self.entries[i])
    }

    pub fn is_blocked(&self, peer: &UserId) -> bool {
        self.get(peer).is_some_and(|e| e.blocked)
    }

    pub fn is_muted(&self, peer: &UserId, now: u64) -> bool {
        self.get(peer).is_some_and(|e| e.muted_until > now)
    }

    /// Applies a change from `owner`, with at most `max` peers listed. Returns
    /// the row to store (deleted when it says nothing), or `None` when the
    /// change changes nothing (a repeat): nothing to write.
    pub fn apply(&mut self, owner: &UserId, change: Change, max: usize, now: u64) -> Result<Option<Entry>, BlockError> {
        if change.peer() == owner {
            return Err(BlockError::Yourself);
        }
        let i = self.find(change.peer());
        let old = i.ok().map(|i| self.entries[i].clone());
        let mut row = old.clone().unwrap_or(Entry { peer: change.peer().clone(), blocked: false, muted_until: 0 });
        match change {
            Change::Block(_) => row.blocked = true,
            Change::Unblock(_) => row.blocked = false,
            Change::Mute(_, until) => row.muted_until = until.unwrap_or(FOREVER).min(FOREVER),
            Change::Unmute(_) => row.muted_until = 0,
        }
        // A mute that ended already is no mute.
        if row.muted_until <= now {
            row.muted_until = 0;
        }
        if Some(&row) == old.as_ref() || (old.is_none() && !row.is_set()) {
            return Ok(None);
        }
        match i {
            Ok(i) if row.is_set() => self.entries[i] = row.clone(),
            Ok(i) => {
                self.entries.remove(i);
            }
            Err(_) => {
                // Mutes that ended make room first.
                if self.entries.len() >= max {
                    self.entries.retain(|e| e.blocked || e.muted_until > now);
                }
                if self.entries.len() >= max {
                    return Err(BlockError::Full { max });
                }
                let at = self.find(&row.peer).unwrap_or_else(|at| at);
                self.entries.insert(at, row.clone());
            }
        }
        Ok(Some(row))
    }

    /// The blocked peers, sorted.
    pub fn blocked(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter(|e| e.blocked).map(|e| e.peer.as_str())
    }

    /// The peers muted at `now`, sorted, with when each mute ends.
    pub fn muted(&self, now: u64) -> impl Iterator<Item = (&str, u64)> {
        self.entries.iter().filter(move |e| e.muted_until > now).map(|e| (e.peer.as_str(), e.muted_until))
    }

    /// One peer as `GET /v1/blocks/<peer>` (`kind` = block) or
    /// `/v1/mutes/<peer>` answers it.
    pub fn one_json(&self, peer: &UserId, mute: bool, now: u64) -> Value {
        if mute {
            let until = self.get(peer).map_or(0, |e| e.muted_until);
            let until = (until > now).then_some(until);
            json!({ "peer": peer.as_str(), "muted": until.is_some(), "until": until.filter(|&u| u != FOREVER) })
        } else {
            json!({ "user": peer.as_str(), "blocked": self.is_blocked(peer) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn a_block_is_a_row_and_a_repeat_writes_nothing() {
        let mut b = Blocks::default();
        let row = b.apply(&u("a"), Change::Block(u("b")), 10, 0).unwrap();
        assert_eq!(row, Some(Entry { peer: u("b"), blocked: true, muted_until: 0 }));
        assert!(b.is_blocked(&u("b")) && !b.is_blocked(&u("c")));
        assert_eq!(b.apply(&u("a"), Change::Block(u("b")), 10, 0), Ok(None));
        // Unblocking what was never blocked writes nothing either.
        assert_eq!(b.apply(&u("a"), Change::Unblock(u("z")), 10, 0), Ok(None));
        let row = b.apply(&u("a"), Change::Unblock(u("b")), 10, 0).unwrap().unwrap();
        assert!(!row.is_set(), "the row is deleted");
        assert_eq!(b, Blocks::default());
    }

    #[test]
    fn nobody_blocks_themself() {
        let mut b = Blocks::default();
        assert_eq!(b.apply(&u("a"), Change::Block(u("a")), 10, 0), Err(BlockError::Yourself));
        assert_eq!(b.apply(&u("a"), Change::Mute(u("a"), None), 10, 0), Err(BlockError::Yourself));
    }

    #[test]
    fn mutes_end_and_ended_ones_make_room() {
        let mut b = Blocks::default();
        b.apply(&u("a"), Change::Mute(u("m"), Some(1000)), 2, 0).unwrap();
        b.apply(&u("a"), Change::Block(u("x")), 2, 0).unwrap();
        assert!(b.is_muted(&u("m"), 999) && !b.is_muted(&u("m"), 1000));
        assert_eq!(b.apply(&u("a"), Change::Block(u("y")), 2, 10), Err(BlockError::Full { max: 2 }));
        // Once the mute ended it no longer counts.
        assert!(b.apply(&u("a"), Change::Block(u("y")), 2, 1000).unwrap().is_some());
        assert_eq!(b.blocked().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(b.muted(1000).count(), 0);
        // A mute that ends in the past is no change at all.
        assert_eq!(b.apply(&u("a"), Change::Mute(u("q"), Some(5)), 9, 1000), Ok(None));
    }

    #[test]
    fn block_and_mute_share_a_peer_row() {
        let mut b = Blocks::default();
        b.apply(&u("a"), Change::Mute(u("p"), None), 10, 0).unwrap();
        let row = b.apply(&u("a"), Change::Block(u("p")), 10, 0).unwrap().unwrap();
        assert_eq!(row, Entry { peer: u("p"), blocked: true, muted_until: FOREVER });
        assert_eq!(b.blocked().collect::<Vec<_>>(), ["p"]);
        assert_eq!(b.muted(0).collect::<Vec<_>>(), [("p", FOREVER)]);
        let row = b.apply(&u("a"), Change::Unblock(u("p")), 10, 0).unwrap().unwrap();
        assert!(row.is_set(), "still muted: the row stays");
        assert_eq!(b.one_json(&u("p"), true, 0), json!({ "peer": "p", "muted": true, "until": null }));
        assert_eq!(b.one_json(&u("p"), false, 0), json!({ "user": "p", "blocked": false }));
    }

    #[test]
    fn rows_load_sorted_and_the_list_stays_sorted() {
        let rows = ["m", "c", "x"].map(|p| Entry { peer: u(p), blocked: true, muted_until: 0 }).to_vec();
        let mut b = Blocks::from_rows(rows);
        b.apply(&u("a"), Change::Block(u("d")), 10, 0).unwrap();
        b.apply(&u("a"), Change::Block(u("b")), 10, 0).unwrap();
        assert_eq!(b.blocked().collect::<Vec<_>>(), ["b", "c", "d", "m", "x"]);
        for p in ["b", "c", "d", "m", "x"] {
            assert!(b.is_blocked(&u(p)), "{p}");
        }
    }
}
