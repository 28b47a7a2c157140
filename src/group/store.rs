//! A group object's SQLite: the one place its schema and queries live, over
//! the same synchronous [`Sql`] port as a user's log (DO SQLite on the
//! platform, `rusqlite` in the native tests).
//!
//! Tables (all but the log itself keyed by text, so `WITHOUT ROWID`: on a
//! rowid table a text key is a second b-tree and every write two billed
//! rows):
//!
//! - `entries`: the group log, one row per `group_seq` (a message, a
//!   membership change, or the backend's edit or delete of a message), with
//!   the body every member receives (a message's current body: edited, or
//!   a tombstone).
//! - `members`: one row per user who ever was a member: the role (NULL once
//!   they left or were removed), the `group_seq` of their current join, the
//!   fan-out cursor (`delivered`: their object applied every entry owed to
//!   them up to it), the retry state of their deliveries, and their read
//!   cursor. A former member's row stays (it is their cursor, and deleting
//!   it would be a billed row).
//! - `spans`: every stretch of membership, `joined..=until` (`until`: the
//!   removal's or leave's own `group_seq`, NULL while a member): what each
//!   user is owed, and who was a member when a message was sent.
//! - `cmids`: client message ids per sender, 24 h, for idempotent sends.
//! - `meta`: the schema version and the group's id; and a key
//!   `hide_read:<user>` per member who hides their presence
//!   (`hide_presence`), whose read position only they see (a row per
//!   change, none per read; no migration: the table holds any key).

use crate::log::{Sql, SqlValue, StoreError};
use crate::user::UserId;

use super::{EntryKind, GroupEntry, GroupId, Role};

/// Schema versions, in order, as in [`crate::log::MIGRATIONS`]: a change is
/// a new entry here, never an edit of an old one, and the same change in
/// [`FRESH`].
pub const MIGRATIONS: [(i64, &[&str]); 1] = [(1, &SCHEMA_V1)];

const SCHEMA_V1: [&str; 5] = [
    "CREATE TABLE meta (k TEXT PRIMARY KEY, v) WITHOUT ROWID",
    // kind: 1 message, 2 membership change (EntryKind); sender NULL: the backend.
    "CREATE TABLE entries (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, kind INTEGER NOT NULL, sender TEXT, \
     time INTEGER NOT NULL, body TEXT NOT NULL)",
    // role: 1 owner, 2 admin, 3 member (Role), NULL for a former member.
    "CREATE TABLE members (user TEXT PRIMARY KEY, role INTEGER, joined INTEGER NOT NULL, \
     delivered INTEGER NOT NULL, attempt INTEGER NOT NULL, next_at INTEGER NOT NULL, read INTEGER NOT NULL) \
     WITHOUT ROWID",
    "CREATE TABLE spans (user TEXT NOT NULL, joined INTEGER NOT NULL, until INTEGER, PRIMARY KEY (user, joined)) \
     WITHOUT ROWID",
    "CREATE TABLE cmids (sender TEXT NOT NULL, cmid TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, \
     time INTEGER NOT NULL, PRIMARY KEY (sender, cmid)) WITHOUT ROWID",
];

/// The version a fresh database starts at.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The schema at [`LATEST`] for a new group, in one go.
pub const FRESH: [&str; 5] = SCHEMA_V1;

/// A member's row as stored (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    pub user: UserId,
    /// `None`: no longer a member (the row stays as their cursor).
    pub role: Option<Role>,
    pub joined: u64,
    pub delivered: u64,
    pub attempt: u32,
    pub next_at: u64,
    pub read: u64,
}

/// One stretch of a user's membership, `joined..=until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub joined: u64,
    /// The `group_seq` of the removal or leave (which they still receive);
    /// `None` while a member.
    pub until: Option<u64>,
}

/// What a group object holds when it wakes: small (members are capped), so
/// it is read whole and decisions are made in memory.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub id: Option<GroupId>,
    pub head: u64,
    pub members: Vec<MemberRow>,
    /// `(user, span)`, by user then `joined`.
    pub spans: Vec<(UserId, Span)>,
}

fn int(n: u64) -> SqlValue {
    SqlValue::Int(n as i64)
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

fn col_u64(row: &[SqlValue], i: usize) -> Option<u64> {
    match row.get(i) {
        Some(SqlValue::Int(n)) => u64::try_from(*n).ok(),
        Some(SqlValue::Real(f)) if *f >= 0.0 => Some(*f as u64),
        Some(SqlValue::Text(s)) => s.parse().ok(),
        _ => None,
    }
}

fn col_text(row: &[SqlValue], i: usize) -> Option<String> {
    match row.get(i) {
        Some(SqlValue::Text(s)) => Some(s.clone()),
        Some(SqlValue::Int(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn col_user(row: &[SqlValue], i: usize) -> Option<UserId> {
    col_text(row, i).and_then(|s| UserId::parse(&s).ok())
}

fn malformed(what: &str) -> StoreError {
    StoreError(format!("malformed row from {what}"))
}

/// The group object's storage over a [`Sql`] port.
pub struct Store<S> {
    sql: S,
}

impl<S: Sql> Store<S> {
    /// Opens the store, creating or upgrading its schema first.
    pub fn open(sql: S) -> Result<Store<S>, StoreError> {
        let store = Store { sql };
        let has_meta = store.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'", &[])?.is_some();
        if !has_meta {
            for stmt in FRESH {
                store.exec(stmt, &[])?;
            }
            return store.set_schema(LATEST).map(|_| store);
        }
        let current = store.one("SELECT (SELECT v FROM meta WHERE k = 'schema')", &[])?.and_then(|r| col_u64(&r, 0));
        let current = current.unwrap_or(0) as i64;
        for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            for stmt in *statements {
                store.exec(stmt, &[])?;
            }
            store.set_schema(*version)?;
        }
        Ok(store)
    }

    fn set_schema(&self, version: i64) -> Result<(), StoreError> {
        self.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('schema', ?)", &[SqlValue::Int(version)])
    }

    /// The port, for tests that look at the tables directly.
    pub fn sql(&self) -> &S {
        &self.sql
    }

    /// The port back, for tests that open the same database again.
    pub fn into_sql(self) -> S {
        self.sql
    }

    fn exec(&self, sql: &str, params: &[SqlValue]) -> Result<(), StoreError> {
        self.sql.exec(sql, params)
    }

    fn one(&self, sql: &str, params: &[SqlValue]) -> Result<Option<Vec<SqlValue>>, StoreError> {
        let mut first = None;
        self.sql.run(sql, params, &mut |row| {
            first = Some(row.to_vec());
            false
        })?;
        Ok(first)
    }

    fn all<T>(
        &self,
        sql: &str,
        params: &[SqlValue],
        mut each: impl FnMut(&[SqlValue]) -> Option<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut bad = false;
        self.sql.run(sql, params, &mut |row| match each(row) {
            Some(t) => {
                out.push(t);
                true
            }
            None => {
                bad = true;
                false
            }
        })?;
        if bad {
            return Err(malformed(sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ").as_str()));
        }
        Ok(out)
    }

    /// Everything the object keeps in memory: id, head, members, spans.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let row = self
            .one("SELECT (SELECT v FROM meta WHERE k = 'group'), (SELECT MAX(seq) FROM entries)", &[])?
            .ok_or_else(|| malformed("load"))?;
        let id = match col_text(&row, 0) {
            Some(g) => Some(GroupId::parse(&g).map_err(|e| StoreError(format!("stored group id: {e}")))?),
            None => None,
        };
        let members = self.all(
            "SELECT user, role, joined, delivered, attempt, next_at, read FROM members ORDER BY user",
            &[],
            |r| {
                Some(MemberRow {
                    user: col_user(r, 0)?,
                    role: match r.get(1) {
                        Some(SqlValue::Null) => None,
                        _ => Some(Role::from_code(col_u64(r, 1)?)?),
                    },
                    joined: col_u64(r, 2)?,
                    delivered: col_u64(r, 3)?,
                    attempt: u32::try_from(col_u64(r, 4)?).ok()?,
                    next_at: col_u64(r, 5)?,
                    read: col_u64(r, 6)?,
                })
            },
        )?;
        let spans = self.all("SELECT user, joined, until FROM spans ORDER BY user, joined", &[], |r| {
            Some((col_user(r, 0)?, Span { joined: col_u64(r, 1)?, until: col_u64(r, 2) }))
        })?;
        Ok(Loaded { id, head: col_u64(&row, 1).unwrap_or(0), members, spans })
    }

    /// The members whose read position is hidden (see the module doc).
    pub fn hidden_readers(&self) -> Result<Vec<UserId>, StoreError> {
        self.all("SELECT substr(k, 11) FROM meta WHERE k >= 'hide_read:' AND k < 'hide_read;'", &[], |r| col_user(r, 0))
    }

    /// Hides `user`'s read position, or shows it again (one row).
    pub fn set_hidden_reader(&self, user: &UserId, hidden: bool) -> Result<(), StoreError> {
        let key = text(&format!("hide_read:{}", user.as_str()));
        match hidden {
            true => self.exec("INSERT OR REPLACE INTO meta (k, v) VALUES (?, 1)", &[key]),
            false => self.exec("DELETE FROM meta WHERE k = ?", &[key]),
        }
    }

    pub fn set_group(&self, id: &GroupId) -> Result<(), StoreError> {
        self.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('group', ?)", &[text(id.as_str())])
    }

    /// Stores one entry of the group log, and the client message id of the
    /// send that made it (one row each).
    pub fn append(&self, e: &GroupEntry, cmid: Option<&str>) -> Result<(), StoreError> {
        let sender = e.sender.as_ref().map_or(SqlValue::Null, |u| text(u.as_str()));
        self.exec(
            "INSERT INTO entries (seq, id, kind, sender, time, body) VALUES (?, ?, ?, ?, ?, ?)",
            &[int(e.seq), text(&e.id), int(e.kind.code()), sender.clone(), int(e.time_ms), text(&e.body)],
        )?;
        if let Some(cmid) = cmid {
            self.exec(
                "INSERT OR REPLACE INTO cmids (sender, cmid, seq, id, time) VALUES (?, ?, ?, ?, ?)",
                &[sender, text(cmid), int(e.seq), text(&e.id), int(e.time_ms)],
            )?;
        }
        Ok(())
    }

    /// The entry a send with this client message id stored, if it was
    /// stored at `since` (ms) or later: `(group_seq, message id)`.
    pub fn sent_before(&self, sender: &UserId, cmid: &str, since: u64) -> Result<Option<(u64, String)>, StoreError> {
        let row = self.one(
            "SELECT seq, id FROM cmids WHERE sender = ? AND cmid = ? AND time >= ?",
            &[text(sender.as_str()), text(cmid), int(since)],
        )?;
        Ok(row.and_then(|r| col_u64(&r, 0).zip(col_text(&r, 1))))
    }

    /// Forgets client message ids stored before `before` (ms).
    pub fn expire_cmids(&self, before: u64) -> Result<(), StoreError> {
        self.exec("DELETE FROM cmids WHERE time < ?", &[int(before)])
    }

    /// Writes a member's row whole (a join, a role change, a removal).
    pub fn save_member(&self, m: &MemberRow) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO members (user, role, joined, delivered, attempt, next_at, read) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                text(m.user.as_str()),
                m.role.map_or(SqlValue::Null, |r| int(r.code())),
                int(m.joined),
                int(m.delivered),
                int(u64::from(m.attempt)),
                int(m.next_at),
                int(m.read),
            ],
        )
    }

    /// The fan-out cursor moved (and the retries start over).
    pub fn set_delivered(&self, user: &UserId, delivered: u64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE members SET delivered = ?, attempt = 0, next_at = 0 WHERE user = ?",
            &[int(delivered), text(user.as_str())],
        )
    }

    /// The fan-out cursor as answers moved it (retries untouched).
    pub fn set_cursor(&self, user: &UserId, delivered: u64) -> Result<(), StoreError> {
        self.exec("UPDATE members SET delivered = ? WHERE user = ?", &[int(delivered), text(user.as_str())])
    }

    /// A delivery failed: the next one waits until `next_at` (ms).
    pub fn set_retry(&self, user: &UserId, attempt: u32, next_at: u64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE members SET attempt = ?, next_at = ? WHERE user = ?",
            &[int(u64::from(attempt)), int(next_at), text(user.as_str())],
        )
    }

    pub fn set_read(&self, user: &UserId, read: u64) -> Result<(), StoreError> {
        self.exec("UPDATE members SET read = ? WHERE user = ?", &[int(read), text(user.as_str())])
    }

    /// A stretch of membership starts (`until` NULL) or ends.
    pub fn save_span(&self, user: &UserId, span: Span) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO spans (user, joined, until) VALUES (?, ?, ?)",
            &[text(user.as_str()), int(span.joined), span.until.map_or(SqlValue::Null, int)],
        )
    }

    /// Entries `from..=to` in order, at most `limit`.
    pub fn entries(&self, from: u64, to: u64, limit: usize) -> Result<Vec<GroupEntry>, StoreError> {
        self.all(
            "SELECT seq, id, kind, sender, time, body FROM entries WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?",
            &[int(from), int(to), int(limit as u64)],
            entry,
        )
    }

    /// A page, newest first: messages and changes from `from` on, before
    /// `before` (edits and deletes are not items: their messages show the
    /// current state).
    pub fn page(&self, from: u64, before: u64, limit: u32) -> Result<Vec<GroupEntry>, StoreError> {
        self.all(
            "SELECT seq, id, kind, sender, time, body FROM entries WHERE seq >= ? AND seq < ? AND kind IN (1, 2) \
             ORDER BY seq DESC LIMIT ?",
            &[int(from), int(before), int(u64::from(limit))],
            entry,
        )
    }

    /// The entries with these ids (a scan: ids have no index).
    pub fn entries_with_ids(&self, ids: &[&str]) -> Result<Vec<GroupEntry>, StoreError> {
        self.all(
            "SELECT seq, id, kind, sender, time, body FROM entries WHERE id IN (SELECT value FROM json_each(?)) \
             ORDER BY seq",
            &[text(&serde_json::Value::from(ids.to_vec()).to_string())],
            entry,
        )
    }

    /// An entry's body becomes `body` (a message edited or deleted).
    pub fn set_body(&self, seq: u64, body: &str) -> Result<(), StoreError> {
        self.exec("UPDATE entries SET body = ? WHERE seq = ?", &[text(body), int(seq)])
    }

    /// The entry at `seq`, if any.
    pub fn entry(&self, seq: u64) -> Result<Option<GroupEntry>, StoreError> {
        Ok(self.entries(seq, seq, 1)?.pop())
    }
}

fn entry(r: &[SqlValue]) -> Option<GroupEntry> {
    Some(GroupEntry {
        seq: col_u64(r, 0)?,
        id: col_text(r, 1)?,
        kind: EntryKind::from_code(col_u64(r, 2)?)?,
        sender: match r.get(3) {
            Some(SqlValue::Null) => None,
            _ => Some(col_user(r, 3)?),
        },
        time_ms: col_u64(r, 4)?,
        body: col_text(r, 5)?,
    })
}
