//! A user's log in SQLite: the one place its schema and queries live.
//!
//! The log is at once the offline queue (owed entries with `sent = 0`), the
//! archive outbox (entries past the `archived` cursor) and the window a
//! reconnect can resume from. [`Log`] runs every statement through the
//! synchronous [`Sql`] port: Durable Object SQLite in the worker
//! (`edge::sql`), `rusqlite` in the native tests, so the same SQL text and the
//! same row decoding are tested natively and run in production.
//!
//! The entries live in two generation tables under the view `log`; pruning
//! drops a whole generation (see [`Log::prune_below`]), because a dropped
//! table is not billed and each deleted row is.
//!
//! On the platform, writes are synchronous and the runtime's output gate holds
//! every socket send and response issued after a write until it is durable,
//! which is what lets the object answer right after [`Log::append`].

use crate::group::GroupId;
use crate::history::{PageQuery, PageRow, Shape, IS_SEND_DELIVERED, IS_SEND_QUEUED, ROW, ROW_CHAT, ROW_SYSTEM};
use crate::inbox::Inbox;
use crate::message::{conversation_id, Kind};
use crate::push::Candidate;
use crate::user::UserId;

mod groups;
use groups::group_unread_from;

/// A value bound to or read from a statement.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// A statement the storage refused; the message is the platform's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storage: {}", self.0)
    }
}

/// The storage port: runs one statement with positional parameters and hands
/// each result row to `row` until it returns false. Synchronous, as Durable
/// Object SQLite is.
pub trait Sql {
    fn run(&self, sql: &str, params: &[SqlValue], row: &mut dyn FnMut(&[SqlValue]) -> bool) -> Result<(), StoreError>;

    /// Runs a statement whose rows nobody reads (a write). A port may skip
    /// reading its cursor: on the platform that saves a crossing per statement.
    fn exec(&self, sql: &str, params: &[SqlValue]) -> Result<(), StoreError> {
        self.run(sql, params, &mut |_| false)
    }
}

/// Schema versions, in order: each object upgrades its own database the first
/// time a newer deployment opens it (the version is kept in `meta.schema`).
/// A change to the schema is a new entry here, never an edit of an old one,
/// and the same change in [`FRESH`].
pub const MIGRATIONS: [(i64, &[&str]); 7] = [
    (1, &SCHEMA_V1),
    (2, &SCHEMA_V2),
    (3, &SCHEMA_V3),
    (4, &SCHEMA_V4),
    (5, &SCHEMA_V5),
    (6, &SCHEMA_V6),
    (7, &SCHEMA_V7),
];

const SCHEMA_V1: [&str; 6] = [
    // meta.v has no declared type, so no affinity: "92" stays text, 5 stays a number.
    // kind: 1 received chat, 2 sent chat, 3 system (message::Kind).
    // sent: 1 once written to a socket, or never owed to one (kind 2).
    // conv: message::conversation_id, kept so archiving needs no wasm per row.
    // peer_seq / peer_sent: for a sent chat, its place in the recipient's log
    // and whether it reached a socket there when it was stored.
    "CREATE TABLE IF NOT EXISTS log (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        kind INTEGER NOT NULL,
        peer TEXT,
        conv TEXT NOT NULL,
        time INTEGER NOT NULL,
        body TEXT NOT NULL,
        sent INTEGER NOT NULL,
        peer_seq INTEGER,
        peer_sent INTEGER
    )",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v)",
    // v1 devices and how far each acknowledged the log.
    "CREATE TABLE IF NOT EXISTS devices (device TEXT PRIMARY KEY, acked INTEGER NOT NULL, seen INTEGER NOT NULL)",
    // One row per conversation: its newest entry, unread count, read cursor,
    // and how far the peer received and read this user's messages (own seqs).
    "CREATE TABLE IF NOT EXISTS convs (
        peer TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        last_kind INTEGER NOT NULL,
        last_mid TEXT NOT NULL,
        last_body TEXT NOT NULL,
        unread INTEGER NOT NULL DEFAULT 0,
        read_up_to INTEGER NOT NULL DEFAULT 0,
        peer_delivered INTEGER NOT NULL DEFAULT 0,
        peer_read INTEGER NOT NULL DEFAULT 0
    )",
    // Idempotency, kept 24 h: client message ids this user sent, and derived
    // message ids this log already holds.
    "CREATE TABLE IF NOT EXISTS sends (cmid TEXT PRIMARY KEY, mid TEXT NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS seen (mid TEXT PRIMARY KEY, seq INTEGER NOT NULL, pushed INTEGER NOT NULL, time INTEGER NOT NULL)",
];

/// v2: the text-keyed tables become `WITHOUT ROWID`, rebuilt with their
/// rows. On a rowid table a TEXT primary key is a second b-tree, so each
/// insert, and each `INSERT OR REPLACE` of a key already there, was two
/// billed rows written (measured in workerd); now it is one. Keys are never
/// NULL as we write them; a NULL one could not be copied and is left out.
const SCHEMA_V2: [&str; 20] = [
    "CREATE TABLE meta_v2 (k TEXT PRIMARY KEY, v) WITHOUT ROWID",
    "INSERT INTO meta_v2 (k, v) SELECT k, v FROM meta WHERE k IS NOT NULL",
    "DROP TABLE meta",
    "ALTER TABLE meta_v2 RENAME TO meta",
    "CREATE TABLE devices_v2 (device TEXT PRIMARY KEY, acked INTEGER NOT NULL, seen INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO devices_v2 (device, acked, seen) SELECT device, acked, seen FROM devices WHERE device IS NOT NULL",
    "DROP TABLE devices",
    "ALTER TABLE devices_v2 RENAME TO devices",
    "CREATE TABLE convs_v2 (
        peer TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        last_kind INTEGER NOT NULL,
        last_mid TEXT NOT NULL,
        last_body TEXT NOT NULL,
        unread INTEGER NOT NULL DEFAULT 0,
        read_up_to INTEGER NOT NULL DEFAULT 0,
        peer_delivered INTEGER NOT NULL DEFAULT 0,
        peer_read INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID",
    "INSERT INTO convs_v2 (peer, last_seq, last_kind, last_mid, last_body, unread, read_up_to, peer_delivered, peer_read) \
     SELECT peer, last_seq, last_kind, last_mid, last_body, unread, read_up_to, peer_delivered, peer_read \
     FROM convs WHERE peer IS NOT NULL",
    "DROP TABLE convs",
    "ALTER TABLE convs_v2 RENAME TO convs",
    "CREATE TABLE sends_v2 (cmid TEXT PRIMARY KEY, mid TEXT NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO sends_v2 (cmid, mid, seq, time) SELECT cmid, mid, seq, time FROM sends WHERE cmid IS NOT NULL",
    "DROP TABLE sends",
    "ALTER TABLE sends_v2 RENAME TO sends",
    "CREATE TABLE seen_v2 (mid TEXT PRIMARY KEY, seq INTEGER NOT NULL, pushed INTEGER NOT NULL, time INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO seen_v2 (mid, seq, pushed, time) SELECT mid, seq, pushed, time FROM seen WHERE mid IS NOT NULL",
    "DROP TABLE seen",
    "ALTER TABLE seen_v2 RENAME TO seen",
];

/// A generation table of the log as v3 defines it (`log_a` or `log_b`, the
/// columns of v1's `log`). Frozen like every migration: a later change to
/// the log is a new migration (and the same change in [`FRESH`]).
macro_rules! generation_table {
    ($name:literal) => {
        concat!(
            "CREATE TABLE ",
            $name,
            " (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, kind INTEGER NOT NULL, peer TEXT, conv TEXT NOT NULL, \
             time INTEGER NOT NULL, body TEXT NOT NULL, sent INTEGER NOT NULL, peer_seq INTEGER, peer_sent INTEGER)"
        )
    };
}

/// v3: the log becomes two generation tables under a view, so pruning drops
/// a whole generation (no billed row) instead of deleting entries one by one
/// (a billed row each, as much as writing them). Existing entries become
/// generation `a`, which keeps taking new ones until it is full.
const SCHEMA_V3: [&str; 4] = [
    "ALTER TABLE log RENAME TO log_a",
    generation_table!("log_b"),
    "CREATE VIEW log AS SELECT * FROM log_a UNION ALL SELECT * FROM log_b",
    "INSERT OR REPLACE INTO meta (k, v) VALUES ('gen', 'a')",
];

/// The conversation table as v4 defines it: what outlives the log (the
/// newest entry and the unread count of entries already pruned, folded in
/// when a generation is dropped) and the read and receipt cursors. Frozen
/// like every migration.
macro_rules! convs_table {
    ($name:literal) => {
        concat!(
            "CREATE TABLE ",
            $name,
            " (peer TEXT PRIMARY KEY, last_seq INTEGER, last_kind INTEGER, last_mid TEXT, last_body TEXT, \
             unread INTEGER NOT NULL DEFAULT 0, read_up_to INTEGER NOT NULL DEFAULT 0, \
             peer_delivered INTEGER NOT NULL DEFAULT 0, peer_read INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
        )
    };
}

/// v4: the conversation list is derived from the log, so appending an entry
/// no longer rewrites its conversation's row (a billed row per entry).
/// `convs.unread` becomes the unread entries no longer in the log: those
/// still in it are counted when the list is read.
const SCHEMA_V4: [&str; 4] = [
    convs_table!("convs_v4"),
    "INSERT INTO convs_v4 (peer, last_seq, last_kind, last_mid, last_body, unread, read_up_to, peer_delivered, peer_read) \
     SELECT peer, last_seq, last_kind, last_mid, last_body, \
     max(0, unread - (SELECT COUNT(*) FROM log WHERE kind = 1 AND log.peer = convs.peer AND seq > convs.read_up_to)), \
     read_up_to, peer_delivered, peer_read FROM convs",
    "DROP TABLE convs",
    "ALTER TABLE convs_v4 RENAME TO convs",
];

/// The block and mute lists as v5 defines them: one row per peer the user
/// blocked or muted (`muted_until` in ms, 0 for not muted). Frozen like
/// every migration.
const BLOCKS_TABLE: &str =
    "CREATE TABLE blocks (peer TEXT PRIMARY KEY, blocked INTEGER NOT NULL, muted_until INTEGER NOT NULL) WITHOUT ROWID";

/// The push webhook's state as v5 defines it: one row (`k` = 1) with the
/// cursor (every owed entry up to it is pushed or needs no push) and the
/// call in flight, if any. Frozen like every migration.
const PUSH_TABLE: &str = "CREATE TABLE push (k INTEGER PRIMARY KEY, cursor INTEGER NOT NULL, id TEXT, body TEXT, \
     attempt INTEGER NOT NULL DEFAULT 0, first_at INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0)";

/// v5: block and mute lists, and the push webhook's state.
const SCHEMA_V5: [&str; 2] = [BLOCKS_TABLE, PUSH_TABLE];

/// Entries the user deleted for themself alone (`mid`; `at` in ms): pages
/// of history show them as tombstones to this user only. Frozen like every
/// migration.
const HIDDEN_TABLE: &str = "CREATE TABLE hidden (mid TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID";

/// Who watches this user's presence, and until when (ms). Frozen like
/// every migration.
const WATCHERS_TABLE: &str = "CREATE TABLE watchers (user TEXT PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID";

/// v6: deletes for oneself, and presence watchers.
const SCHEMA_V6: [&str; 2] = [HIDDEN_TABLE, WATCHERS_TABLE];

/// Per group the user is in, the highest `group_seq` this log applied
/// (see [`crate::group::accept`]): a group delivery applies only what is
/// above it, so a retried fan-out never duplicates; and how far the user
/// read the group (its unread count). Frozen like every migration.
const GROUP_CURSOR_TABLE: &str = "CREATE TABLE group_cursor (grp TEXT PRIMARY KEY, applied INTEGER NOT NULL, \
                                  read INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID";

/// v7: group conversations' cursors.
const SCHEMA_V7: [&str; 1] = [GROUP_CURSOR_TABLE];

/// The version a fresh database starts at.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The schema at [`LATEST`], for a database that has none yet: the tables the
/// migrations build step by step, in one go (`tests/upgrade.rs` checks that
/// both ways give the same tables).
pub const FRESH: [&str; 14] = [
    generation_table!("log_a"),
    generation_table!("log_b"),
    "CREATE VIEW log AS SELECT * FROM log_a UNION ALL SELECT * FROM log_b",
    "CREATE TABLE meta (k TEXT PRIMARY KEY, v) WITHOUT ROWID",
    "INSERT INTO meta (k, v) VALUES ('gen', 'a')",
    "CREATE TABLE devices (device TEXT PRIMARY KEY, acked INTEGER NOT NULL, seen INTEGER NOT NULL) WITHOUT ROWID",
    convs_table!("convs"),
    "CREATE TABLE sends (cmid TEXT PRIMARY KEY, mid TEXT NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE seen (mid TEXT PRIMARY KEY, seq INTEGER NOT NULL, pushed INTEGER NOT NULL, time INTEGER NOT NULL) WITHOUT ROWID",
    BLOCKS_TABLE,
    PUSH_TABLE,
    HIDDEN_TABLE,
    WATCHERS_TABLE,
    GROUP_CURSOR_TABLE,
];

/// One entry about to be written to the log.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEntry {
    pub id: String,
    pub kind: Kind,
    pub peer: Option<UserId>,
    pub time_ms: u64,
    pub body: String,
    /// For a sent chat: (seq in the recipient's log, pushed live there).
    pub peer_state: Option<(u64, bool)>,
    /// The client message id of the send that made this entry (v1, API key).
    pub cmid: Option<String>,
    /// The id is derived from an idempotency key: remember it in `seen`.
    pub dedup: bool,
    /// For an op (edit, delete): the message it changes and that message's
    /// new body, written in the same statement batch as the op.
    pub rewrite: Option<Rewrite>,
}

/// What an op does to the message it names (see [`crate::edits`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub target: String,
    pub body: String,
}

/// A conversation as the conversation list shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub peer: String,
    pub last_seq: u64,
    pub last_kind: Kind,
    pub last_mid: String,
    pub last_body: String,
    pub unread: u64,
    pub read_up_to: u64,
    pub peer_delivered: u64,
    pub peer_read: u64,
    /// A group's conversation: `peer` is the group id.
    pub group: bool,
}

/// The push webhook's state (see [`crate::push`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushState {
    pub cursor: u64,
    pub call: Option<PushCall>,
}

/// A push call waiting for a 2xx: sent again with the same id until then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushCall {
    pub id: String,
    pub body: String,
    pub attempt: u32,
    pub first_at: u64,
    pub next_at: u64,
}

/// A log entry as a v1 replay sends it.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub seq: u64,
    pub kind: Kind,
    pub peer: Option<String>,
    pub id: String,
    pub body: String,
}

/// What a log holds when the object wakes.
pub struct Restored {
    pub owner: Option<UserId>,
    pub inbox: Inbox,
    /// When the user was last online (ms), once they went offline.
    pub last_seen: Option<u64>,
    pub hide_presence: bool,
    /// The `group_adds` setting as stored (`None`: never set).
    pub group_adds: Option<String>,
}

/// The stored key of the group a group entry's `body` names (its object
/// name, `gteam`), whichever form the body holds: `g:team` (written since
/// group ids have their namespace) or `gteam` (before). Names never start
/// with `:`.
const GROUP_KEY_BODY: &str = "('g' || ltrim(substr(json_extract(body, '$.group'), 2), ':'))";
/// [`GROUP_KEY_BODY`] of the entry `g`.
const GROUP_KEY_G: &str = "('g' || ltrim(substr(json_extract(g.body, '$.group'), 2), ':'))";
/// The wire form (`g:team`) of the group the entry `g` names.
const GROUP_WIRE_G: &str = "('g:' || ltrim(substr(json_extract(g.body, '$.group'), 2), ':'))";

/// A message of the log that an op may change.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub kind: Kind,
    pub peer: Option<String>,
    pub time_ms: u64,
    pub body: String,
}

/// A v1 device as the log keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedDevice {
    pub device: String,
    pub acked: u64,
    pub seen: u64,
}

fn int(n: u64) -> SqlValue {
    SqlValue::Int(n as i64)
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

/// Column `i` of a row as a non-negative integer (`None` for NULL).
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

fn col_kind(row: &[SqlValue], i: usize) -> Kind {
    match row.get(i) {
        Some(SqlValue::Int(n)) => Kind::from_code(*n).unwrap_or(Kind::Received),
        _ => Kind::Received,
    }
}

/// A row that does not have the shape its query promises: the database was
/// changed under us.
fn malformed(what: &str) -> StoreError {
    StoreError(format!("malformed row from {what}"))
}

/// One of the two tables the log's entries live in. New entries go to the
/// current one; the other holds older entries until all of them may be
/// pruned, and is then dropped whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Generation {
    A,
    B,
}

impl Generation {
    fn other(self) -> Generation {
        match self {
            Generation::A => Generation::B,
            Generation::B => Generation::A,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Generation::A => "a",
            Generation::B => "b",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Generation::A => "log_a",
            Generation::B => "log_b",
        }
    }

    fn insert(self) -> &'static str {
        match self {
            Generation::A => append_sql!("log_a"),
            Generation::B => append_sql!("log_b"),
        }
    }
}

/// The statement that appends a batch (one JSON array parameter) to a
/// generation table.
macro_rules! append_sql {
    ($table:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " (seq, id, kind, peer, conv, time, body, sent, peer_seq, peer_sent) \
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
             json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
             json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'), \
             json_extract(value, '$[9]') FROM json_each(?)"
        )
    };
}
use append_sql;

/// Whether the entry of table alias `g` is shown as a message to the
/// user: not deleted for everyone, nor by them for themself. Unread counts
/// and pushes count only these.
fn shown(g: &str) -> String {
    format!("(json_extract({g}.body, '$.deleted_at') IS NULL AND {g}.id NOT IN (SELECT mid FROM hidden))")
}

/// The kinds a conversation's newest message and unread count come from:
/// chats (ops neither count nor move a conversation up).
const CHATS: &str = "(1, 2)";

/// Above every seq (seqs are bound as SQL integers; 2^53 is where a double
/// stops counting exactly).
const EVERY_SEQ: u64 = 1 << 53;

/// The range, conversation filter and order of a page over the log, and
/// its parameters `?1` (before), `?2` (after), `?3` (limit + 1), `?4`
/// (the peer), `?5` (whether system messages belong: the legacy page).
fn page_range(shape: Shape, q: &PageQuery) -> (String, &'static str, Vec<SqlValue>) {
    let system = Kind::System.code();
    // Ops are not history items: their messages show the current state.
    let filter = match q.peer {
        Some(_) => format!("AND (peer = ?4 AND kind IN {CHATS} OR ?5 AND kind = {system})"),
        None => format!("AND kind <= {system} AND ?4 IS NULL AND ?5 IN (0, 1)"),
    };
    let order = if shape.ascending(q) { "ASC" } else { "DESC" };
    let params = vec![
        int(q.before.unwrap_or(EVERY_SEQ)),
        int(q.after.unwrap_or(0)),
        int(u64::from(q.limit) + 1),
        q.peer.as_ref().map_or(SqlValue::Null, |p| text(p.as_str())),
        SqlValue::Int((shape == Shape::Legacy) as i64),
    ];
    (filter, order, params)
}

/// `sent` of an entry that reached a socket from the offline queue (1: at
/// once; 0: still queued).
const SENT_FROM_QUEUE: i64 = 2;
/// `sent` of an owed entry written live to a legacy socket (no ack will
/// follow, so it needs no push); anything else treats it as 1.
const SENT_LEGACY: i64 = 3;
/// `sent` of an entry the queue does not hold (a group's) that no socket
/// took when it was stored: never queued (anything but a push treats it as
/// 1), and its push is due at once, not after `PUSH_DELAY_S`.
const SENT_UNSEEN: i64 = 4;

impl Pass {
    /// Later than any time, and exact as a JS number (binds cross as f64).
    pub const NONE_RECEIVED: u64 = (1 << 53) - 1;
}

/// Whose pass it is, and what it carries (see [`archive_query`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    pub owner: UserId,
    /// Received chats stored from this time (ms) on go too ([`Pass::NONE_RECEIVED`]: none).
    pub received_from_ms: u64,
    /// `HISTORY_PARTITION_DAYS`: the partition each row is tagged with.
    pub partition_days: u64,
}

/// The newest and the oldest seq in the log: each generation answers from
/// its key (the view would be scanned).
const HEAD_SQL: &str = "(SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM log_a UNION ALL SELECT MAX(seq) FROM log_b))";
const OLDEST_SQL: &str = "SELECT MIN(m) FROM (SELECT MIN(seq) AS m FROM log_a UNION ALL SELECT MIN(seq) FROM log_b)";

/// The log over a [`Sql`] port.
pub struct Log<S> {
    sql: S,
    archive_query: String,
    generation: std::cell::Cell<Generation>,
}

impl<S: Sql> Log<S> {
    /// Opens the log, upgrading its schema to the newest version first.
    pub fn open(sql: S) -> Result<Log<S>, StoreError> {
        let log = Log { sql, archive_query: archive_query(), generation: std::cell::Cell::new(Generation::A) };
        let has_meta = log.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'", &[])?.is_some();
        if !has_meta {
            // A new user: the newest schema at once, not every step to it
            // (each step's statements are billed rows).
            for stmt in FRESH {
                log.exec(stmt, &[])?;
            }
            log.set_schema(LATEST)?;
            return Ok(log);
        }
        let current = log.one("SELECT (SELECT v FROM meta WHERE k = 'schema')", &[])?.and_then(|r| col_u64(&r, 0));
        let current = current.unwrap_or(0) as i64;
        for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            for stmt in *statements {
                log.exec(stmt, &[])?;
            }
            log.set_schema(*version)?;
        }
        let current = log.one("SELECT v FROM meta WHERE k = 'gen'", &[])?.and_then(|r| col_text(&r, 0));
        log.generation.set(if current.as_deref() == Some("b") { Generation::B } else { Generation::A });
        Ok(log)
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

    /// The first row of a query, if any.
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

    pub fn restore(&self) -> Result<Restored, StoreError> {
        let row = self
            .one(
                &format!(
                    "SELECT {HEAD_SQL},
                        (SELECT MIN(seq) FROM log WHERE sent = 0
                           AND seq >= COALESCE((SELECT v FROM meta WHERE k = 'queue_floor'), 0)),
                        (SELECT v FROM meta WHERE k = 'archived'),
                        (SELECT v FROM meta WHERE k = 'owner'),
                        (SELECT v FROM meta WHERE k = 'last_seen'),
                        (SELECT v FROM meta WHERE k = 'hide_presence'),
                        (SELECT v FROM meta WHERE k = 'group_adds')"
                ),
                &[],
            )?
            .ok_or_else(|| malformed("restore"))?;
        let owner = match col_text(&row, 3) {
            Some(o) => Some(UserId::parse(&o).map_err(|e| StoreError(format!("stored owner: {e}")))?),
            None => None,
        };
        let inbox = Inbox::restore(col_u64(&row, 0).unwrap_or(0), col_u64(&row, 1), col_u64(&row, 2).unwrap_or(0));
        Ok(Restored {
            owner,
            inbox,
            last_seen: col_u64(&row, 4),
            hide_presence: col_u64(&row, 5) == Some(1),
            group_adds: col_text(&row, 6),
        })
    }

    pub fn set_owner(&self, owner: &UserId) -> Result<(), StoreError> {
        self.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('owner', ?)", &[text(owner.as_str())])
    }

    /// The highest `group_seq` of `group` this log applied (0: none).
    pub fn group_applied(&self, group: &GroupId) -> Result<u64, StoreError> {
        let row = self.one("SELECT applied FROM group_cursor WHERE grp = ?", &[text(group.as_str())])?;
        Ok(row.and_then(|r| col_u64(&r, 0)).unwrap_or(0))
    }

    /// The highest `group_seq` of `group` among the entries after `seq`.
    pub fn group_applied_since(&self, group: &GroupId, seq: u64) -> Result<u64, StoreError> {
        let row = self.one(
            &format!(
                "SELECT MAX(json_extract(body, '$.group_seq')) FROM log WHERE seq > ?1 AND kind = {} \
                 AND {GROUP_KEY_BODY} = ?2",
                Kind::Group.code()
            ),
            &[int(seq), text(group.as_str())],
        )?;
        Ok(row.and_then(|r| col_u64(&r, 0)).unwrap_or(0))
    }

    /// Stores the cursor of every group with entries in `from..to` (seqs) as
    /// the highest `group_seq` among them (kept if the stored one is
    /// higher): written as the archive cursor passes them, so a wake needs
    /// to recount only the entries past it. One row per group so passed.
    pub fn save_group_cursors(&self, from: u64, to: u64) -> Result<(), StoreError> {
        self.exec(
            &format!(
                "INSERT INTO group_cursor (grp, applied) \
                 SELECT {GROUP_KEY_BODY}, MAX(json_extract(body, '$.group_seq')) FROM log \
                 WHERE seq >= ?1 AND seq < ?2 AND kind = {} GROUP BY 1 \
                 ON CONFLICT (grp) DO UPDATE SET applied = MAX(applied, excluded.applied)",
                Kind::Group.code()
            ),
            &[int(from), int(to)],
        )
    }

    /// Moves the group's cursor.
    pub fn set_group_applied(&self, group: &GroupId, applied: u64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO group_cursor (grp, applied) VALUES (?1, ?2) \
             ON CONFLICT (grp) DO UPDATE SET applied = excluded.applied",
            &[text(group.as_str()), int(applied)],
        )
    }

    /// The user read the group up to `group_seq` (a cursor only moves forward).
    pub fn set_group_read(&self, group: &GroupId, read: u64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO group_cursor (grp, applied, read) VALUES (?1, 0, ?2) \
             ON CONFLICT (grp) DO UPDATE SET read = MAX(read, excluded.read)",
            &[text(group.as_str()), int(read)],
        )
    }

    /// Appends a batch of entries, `(seq, entry, sent)`, in one statement:
    /// the rows travel as one JSON parameter, so a batch costs one call
    /// whatever its size.
    /// `legacy`: the entries written live went to a legacy socket too.
    pub fn append(&self, owner: &UserId, rows_in: &[(u64, &NewEntry, bool)], legacy: bool) -> Result<(), StoreError> {
        let rows: Vec<serde_json::Value> = rows_in
            .iter()
            .map(|(seq, e, sent)| {
                let sent = match (*sent, legacy && e.kind.owed_to_owner()) {
                    (false, _) if !e.kind.owed_to_owner() => SENT_UNSEEN,
                    (false, _) => 0,
                    (true, true) => SENT_LEGACY,
                    (true, false) => 1,
                };
                serde_json::json!([
                    seq,
                    e.id,
                    e.kind.code(),
                    e.peer.as_ref().map(UserId::as_str),
                    conversation_id(owner, e.peer.as_ref()),
                    e.time_ms,
                    e.body,
                    sent,
                    e.peer_state.map(|(s, _)| s),
                    e.peer_state.map(|(_, pushed)| pushed as i64),
                ])
            })
            .collect();
        self.exec(self.generation.get().insert(), &[SqlValue::Text(serde_json::Value::Array(rows).to_string())])?;
        self.index_entries(rows_in)?;
        for (_, e, _) in rows_in {
            if let Some(r) = &e.rewrite {
                self.rewrite(e, r)?;
            }
        }
        Ok(())
    }

    /// An op's change to its message: the message's body in this log takes
    /// the new one (a delete for oneself only marks it hidden, so the body
    /// that goes to history stays the one both users share).
    fn rewrite(&self, op: &NewEntry, r: &Rewrite) -> Result<(), StoreError> {
        if op.kind == Kind::DeleteMine {
            return self
                .exec("INSERT OR REPLACE INTO hidden (mid, at) VALUES (?, ?)", &[text(&r.target), int(op.time_ms)]);
        }
        if op.peer.is_none() {
            // A group's op (the backend's moderation): its message is a group entry.
            return self.each_generation(
                &format!("SET body = ? WHERE id = ? AND kind = {}", Kind::Group.code()),
                &[text(&r.body), text(&r.target)],
            );
        }
        // Only a chat of this conversation: an op names a message of its own peer.
        self.each_generation(
            &format!(
                "SET body = ? WHERE id = ? AND peer IS ? AND kind IN ({}, {})",
                Kind::Received.code(),
                Kind::Sent.code()
            ),
            &[text(&r.body), text(&r.target), op.peer.as_ref().map_or(SqlValue::Null, |p| text(p.as_str()))],
        )
    }

    /// The message `mid` (not an op), if the log still holds it.
    pub fn find(&self, mid: &str) -> Result<Option<Found>, StoreError> {
        let row = self.one(
            "SELECT kind, peer, time, body FROM log WHERE id = ? AND kind IN (?, ?, ?) ORDER BY seq DESC LIMIT 1",
            &[
                text(mid),
                SqlValue::Int(Kind::Received.code()),
                SqlValue::Int(Kind::Sent.code()),
                SqlValue::Int(Kind::System.code()),
            ],
        )?;
        let Some(r) = row else { return Ok(None) };
        let found = (|| {
            Some(Found {
                kind: col_kind(&r, 0),
                peer: col_text(&r, 1),
                time_ms: col_u64(&r, 2)?,
                body: col_text(&r, 3)?,
            })
        })();
        found.map(Some).ok_or_else(|| malformed("log"))
    }

    /// Of `mids`, those the user deleted for themself, with when (ms).
    pub fn hidden(&self, mids: &[&str]) -> Result<Vec<(String, u64)>, StoreError> {
        if mids.is_empty() {
            return Ok(Vec::new());
        }
        self.all(
            "SELECT mid, at FROM hidden WHERE mid IN (SELECT value FROM json_each(?))",
            &[text(&serde_json::Value::from(mids.to_vec()).to_string())],
            |r| Some((col_text(r, 0)?, col_u64(r, 1)?)),
        )
    }

    /// Shows the rows of a page the user deleted for themself as tombstones.
    pub fn hide_in(&self, rows: &mut [PageRow]) -> Result<(), StoreError> {
        let mids: Vec<&str> = rows.iter().map(|r| r.mid.as_str()).collect();
        let hidden = self.hidden(&mids)?;
        crate::history::hide(rows, &hidden);
        Ok(())
    }

    /// Stores a meta value (one row written).
    fn set_meta(&self, key: &str, value: SqlValue) -> Result<(), StoreError> {
        self.exec("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", &[text(key), value])
    }

    pub fn set_last_seen(&self, ms: u64) -> Result<(), StoreError> {
        self.set_meta("last_seen", int(ms))
    }

    pub fn set_hide_presence(&self, hide: bool) -> Result<(), StoreError> {
        self.set_meta("hide_presence", SqlValue::Int(hide as i64))
    }

    pub fn set_group_adds(&self, adds: crate::consent::GroupAdds) -> Result<(), StoreError> {
        self.set_meta("group_adds", text(adds.as_str()))
    }

    /// Whether the owner sent `peer` a 1:1 message: a sent chat in the log,
    /// or, once those were pruned, a receipt of one kept in `convs`.
    pub fn is_contact(&self, peer: &str) -> Result<bool, StoreError> {
        let row = self.one(
            "SELECT EXISTS (SELECT 1 FROM log WHERE kind = ?2 AND peer = ?1) \
             OR EXISTS (SELECT 1 FROM convs WHERE peer = ?1 AND (peer_delivered > 0 OR peer_read > 0))",
            &[text(peer), SqlValue::Int(Kind::Sent.code())],
        )?;
        Ok(row.and_then(|r| col_u64(&r, 0)) == Some(1))
    }

    /// Keeps `user` as a watcher until `until` (ms): one row written.
    pub fn watch(&self, user: &UserId, until: u64) -> Result<(), StoreError> {
        self.exec("INSERT OR REPLACE INTO watchers (user, until) VALUES (?, ?)", &[text(user.as_str()), int(until)])
    }

    /// The watchers whose watch lives at `now`; the others are forgotten
    /// (rows deleted only when there are some).
    pub fn watchers(&self, now: u64) -> Result<Vec<UserId>, StoreError> {
        let all = self.all("SELECT user, until FROM watchers", &[], |r| Some((col_text(r, 0)?, col_u64(r, 1)?)))?;
        if all.iter().any(|(_, until)| *until < now) {
            self.exec("DELETE FROM watchers WHERE until < ?", &[int(now)])?;
        }
        Ok(all.into_iter().filter(|(_, until)| *until >= now).filter_map(|(u, _)| UserId::parse(&u).ok()).collect())
    }

    /// How many watchers are kept (live or not yet forgotten).
    pub fn watcher_count(&self) -> Result<u64, StoreError> {
        Ok(self.one("SELECT COUNT(*) FROM watchers", &[])?.and_then(|r| col_u64(&r, 0)).unwrap_or(0))
    }

    /// The side tables a batch of entries updates: sent client ids and
    /// derived ids. Same event as the log write, so they commit together.
    /// (Conversations are derived from the log; see [`Log::conversations`].)
    fn index_entries(&self, rows: &[(u64, &NewEntry, bool)]) -> Result<(), StoreError> {
        for (seq, e, sent) in rows {
            if let Some(cmid) = &e.cmid {
                self.exec(
                    "INSERT OR REPLACE INTO sends (cmid, mid, seq, time) VALUES (?, ?, ?, ?)",
                    &[text(cmid), text(&e.id), int(*seq), int(e.time_ms)],
                )?;
            }
            if e.dedup {
                self.exec(
                    "INSERT OR REPLACE INTO seen (mid, seq, pushed, time) VALUES (?, ?, ?, ?)",
                    &[text(&e.id), int(*seq), SqlValue::Int(*sent as i64), int(e.time_ms)],
                )?;
            }
        }
        Ok(())
    }

    /// The original result of a send with this client message id: (mid, seq).
    pub fn sent_before(&self, cmid: &str) -> Result<Option<(String, u64)>, StoreError> {
        let row = self.one("SELECT mid, seq FROM sends WHERE cmid = ?", &[text(cmid)])?;
        row.map(|r| col_text(&r, 0).zip(col_u64(&r, 1)).ok_or_else(|| malformed("sends"))).transpose()
    }

    /// The row of a backend call's item, found by the item key of `bound`
    /// whatever request it is bound to ([`crate::idempotency::lookup_range`]):
    /// (the stored key, seq). Two primary-key probes, at most two rows read.
    pub fn sent_under_key(&self, bound: &str) -> Result<Option<(String, u64)>, StoreError> {
        let (exact, low, high) = crate::idempotency::lookup_range(bound);
        let row = self.one(
            "SELECT cmid, seq FROM sends WHERE cmid = ? OR (cmid >= ? AND cmid < ?) LIMIT 1",
            &[text(&exact), text(&low), text(&high)],
        )?;
        row.map(|r| col_text(&r, 0).zip(col_u64(&r, 1)).ok_or_else(|| malformed("sends"))).transpose()
    }

    /// Where a message with this derived id already is: (seq, pushed live).
    pub fn seen(&self, mid: &str) -> Result<Option<(u64, bool)>, StoreError> {
        let row = self.one("SELECT seq, pushed FROM seen WHERE mid = ?", &[text(mid)])?;
        row.map(|r| col_u64(&r, 0).zip(col_u64(&r, 1)).map(|(s, p)| (s, p == 1)).ok_or_else(|| malformed("seen")))
            .transpose()
    }

    /// Calls `each` for every entry after `since`, oldest first (a v1
    /// replay), reading one row at a time, until it returns false. An edit
    /// of a message the user deleted for themself carries their tombstone
    /// ([`crate::edits::hidden_edit`]).
    pub fn entries_after(&self, since: u64, mut each: impl FnMut(LogEntry) -> bool) -> Result<(), StoreError> {
        let mut bad = false;
        let sql = format!(
            "SELECT seq, kind, peer, id, body, CASE WHEN kind IN ({}, {}) THEN \
               (SELECT at FROM hidden WHERE mid = json_extract(l.body, '$.target')) END \
             FROM log AS l WHERE seq > ? ORDER BY seq",
            Kind::EditOut.code(),
            Kind::EditIn.code()
        );
        self.sql.run(&sql, &[int(since)], &mut |r| match (col_u64(r, 0), col_text(r, 3), col_text(r, 4)) {
            (Some(seq), Some(id), Some(body)) => {
                let body = match col_u64(r, 5) {
                    Some(at) => crate::edits::hidden_edit(&body, at),
                    None => body,
                };
                each(LogEntry { seq, kind: col_kind(r, 1), peer: col_text(r, 2), id, body })
            }
            _ => {
                bad = true;
                false
            }
        })?;
        if bad {
            return Err(malformed("log"));
        }
        Ok(())
    }

    /// When the user deleted `mid` for themself, if they did.
    pub fn hidden_at(&self, mid: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.hidden(&[mid])?.first().map(|(_, at)| *at))
    }

    /// The oldest entry still kept, if any.
    pub fn oldest(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.one(OLDEST_SQL, &[])?.and_then(|r| col_u64(&r, 0)))
    }

    /// v1 devices and their acknowledged cursors.
    pub fn devices(&self) -> Result<Vec<SavedDevice>, StoreError> {
        self.all("SELECT device, acked, seen FROM devices", &[], |r| {
            Some(SavedDevice { device: col_text(r, 0)?, acked: col_u64(r, 1)?, seen: col_u64(r, 2)? })
        })
    }

    pub fn save_device(&self, device: &str, acked: u64, seen: u64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO devices (device, acked, seen) VALUES (?1, ?2, ?3) \
             ON CONFLICT (device) DO UPDATE SET acked = max(acked, ?2), seen = ?3",
            &[text(device), int(acked), int(seen)],
        )
    }

    /// The block and mute lists (read once per wake).
    pub fn blocks(&self) -> Result<Vec<crate::blocks::Entry>, StoreError> {
        self.all("SELECT peer, blocked, muted_until FROM blocks", &[], |r| {
            let peer = UserId::parse(&col_text(r, 0)?).ok()?;
            Some(crate::blocks::Entry { peer, blocked: col_u64(r, 1)? != 0, muted_until: col_u64(r, 2)? })
        })
    }

    /// Stores one peer's row of the lists: one row written, or deleted when
    /// it says nothing any more.
    pub fn save_block(&self, e: &crate::blocks::Entry) -> Result<(), StoreError> {
        if !e.is_set() {
            return self.exec("DELETE FROM blocks WHERE peer = ?", &[text(e.peer.as_str())]);
        }
        self.exec(
            "INSERT OR REPLACE INTO blocks (peer, blocked, muted_until) VALUES (?, ?, ?)",
            &[text(e.peer.as_str()), int(e.blocked as u64), int(e.muted_until)],
        )
    }

    /// The push state: the cursor and the call in flight; `None` before the
    /// first push of this user.
    pub fn push_state(&self) -> Result<Option<PushState>, StoreError> {
        let row = self.one("SELECT cursor, id, body, attempt, first_at, next_at FROM push WHERE k = 1", &[])?;
        Ok(row.map(|r| PushState {
            cursor: col_u64(&r, 0).unwrap_or(0),
            call: col_text(&r, 1).zip(col_text(&r, 2)).map(|(id, body)| PushCall {
                id,
                body,
                attempt: col_u64(&r, 3).unwrap_or(0) as u32,
                first_at: col_u64(&r, 4).unwrap_or(0),
                next_at: col_u64(&r, 5).unwrap_or(0),
            }),
        }))
    }

    /// Stores the push state: one row written.
    pub fn save_push(&self, state: &PushState) -> Result<(), StoreError> {
        let c = state.call.as_ref();
        self.exec(
            "INSERT OR REPLACE INTO push (k, cursor, id, body, attempt, first_at, next_at) VALUES (1, ?, ?, ?, ?, ?, ?)",
            &[
                int(state.cursor),
                c.map_or(SqlValue::Null, |c| text(&c.id)),
                c.map_or(SqlValue::Null, |c| text(&c.body)),
                int(c.map_or(0, |c| c.attempt.into())),
                int(c.map_or(0, |c| c.first_at)),
                int(c.map_or(0, |c| c.next_at)),
            ],
        )
    }

    /// Entries after `after` owed to the user that no legacy socket took,
    /// past their conversation's read cursor, and not the user's own chats
    /// to themselves, oldest first: the push candidates.
    pub fn push_candidates(&self, owner: &UserId, after: u64, limit: u32) -> Result<Vec<Candidate>, StoreError> {
        self.all(
            &format!(
                "SELECT g.seq, CASE WHEN g.kind = {group} THEN {GROUP_WIRE_G} ELSE g.peer END, \
                        g.id, g.time, g.sent, g.body \
                 FROM log g LEFT JOIN convs c ON c.peer = g.peer AND g.kind <> {group} \
                 LEFT JOIN group_cursor gc ON g.kind = {group} AND gc.grp = {GROUP_KEY_G} \
                 WHERE g.seq > ?1 AND g.sent <> {SENT_LEGACY} AND g.peer IS NOT ?2 \
                 AND (g.kind IN ({received}, {system}) AND g.seq > COALESCE(c.read_up_to, 0) \
                      OR g.kind = {group} AND json_extract(g.body, '$.type') IS NULL \
                         AND json_extract(g.body, '$.group_seq') > COALESCE(gc.read, 0)) \
                 AND {} ORDER BY g.seq LIMIT ?3",
                shown("g"),
                received = Kind::Received.code(),
                system = Kind::System.code(),
                group = Kind::Group.code(),
            ),
            &[int(after), text(owner.as_str()), int(limit.into())],
            |r| {
                Some(Candidate {
                    seq: col_u64(r, 0)?,
                    peer: col_text(r, 1),
                    mid: col_text(r, 2)?,
                    time: col_u64(r, 3)?,
                    live: col_u64(r, 4)? == 1,
                    body: col_text(r, 5)?,
                })
            },
        )
    }

    /// The user's unread messages over every conversation (as the conversation
    /// list counts them): chats, and the others' messages in groups past the
    /// user's read cursor of each.
    pub fn total_unread(&self) -> Result<u64, StoreError> {
        let row = self.one(
            &format!(
                "SELECT (SELECT COALESCE(SUM(unread), 0) FROM convs) + (SELECT COUNT(*) FROM log g \
                 LEFT JOIN convs c ON c.peer = g.peer WHERE g.kind = ? AND g.seq > COALESCE(c.read_up_to, 0) AND {}) \
                 + (SELECT COUNT(*) FROM log g {})",
                shown("g"),
                group_unread_from()
            ),
            &[SqlValue::Int(Kind::Received.code())],
        )?;
        Ok(row.and_then(|r| col_u64(&r, 0)).unwrap_or(0))
    }

    /// The unread chats of the conversation with `peer`.
    pub fn conversation_unread(&self, peer: &str) -> Result<u64, StoreError> {
        Ok(self.unread_state(peer)?.0)
    }

    /// The conversation with `peer`: its unread chats and read cursor.
    pub fn unread_state(&self, peer: &str) -> Result<(u64, u64), StoreError> {
        let row = self.one(
            &format!(
                "SELECT COALESCE((SELECT unread FROM convs WHERE peer = ?1), 0) + (SELECT COUNT(*) FROM log g \
                 WHERE g.peer = ?1 AND g.kind = ?2 AND g.seq > COALESCE((SELECT read_up_to FROM convs WHERE peer = ?1), 0) \
                 AND {}), COALESCE((SELECT read_up_to FROM convs WHERE peer = ?1), 0)",
                shown("g")
            ),
            &[text(peer), SqlValue::Int(Kind::Received.code())],
        )?;
        Ok(row.map(|r| (col_u64(&r, 0).unwrap_or(0), col_u64(&r, 1).unwrap_or(0))).unwrap_or((0, 0)))
    }

    /// The newest seq of the log (0 when empty).
    pub fn newest(&self) -> Result<u64, StoreError> {
        Ok(self.one("SELECT MAX(seq) FROM log", &[])?.and_then(|r| col_u64(&r, 0)).unwrap_or(0))
    }

    pub fn forget_devices_unseen_since(&self, time: u64) -> Result<(), StoreError> {
        self.exec("DELETE FROM devices WHERE seen < ?", &[int(time)])
    }

    /// For each peer with received chats in `(from, to]`: the newest such seq.
    pub fn received_by_peer(&self, from: u64, to: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.all(
            "SELECT peer, MAX(seq) FROM log WHERE kind = ? AND seq > ? AND seq <= ? AND peer IS NOT NULL GROUP BY peer",
            &[SqlValue::Int(Kind::Received.code()), int(from), int(to)],
            |r| Some((col_text(r, 0)?, col_u64(r, 1)?)),
        )
    }

    /// Marks the conversation with `peer` read up to `up_to` and recounts its
    /// unread chats. Returns (unread, read_up_to), or None for no such conversation.
    pub fn mark_read(&self, peer: &str, up_to: u64) -> Result<Option<(u64, u64)>, StoreError> {
        let known = self
            .one(
                "SELECT EXISTS (SELECT 1 FROM log WHERE peer = ?1 AND kind <> ?2) \
                 OR EXISTS (SELECT 1 FROM convs WHERE peer = ?1)",
                &[text(peer), SqlValue::Int(Kind::System.code())],
            )?
            .and_then(|r| col_u64(&r, 0));
        if known != Some(1) {
            return Ok(None);
        }
        // Pruned unread entries are all at or before `last_seq`: reading past
        // it reads them all.
        let rows = self.all(
            "INSERT INTO convs (peer, read_up_to) VALUES (?1, ?2) ON CONFLICT (peer) DO UPDATE SET \
             unread = CASE WHEN ?2 >= COALESCE(last_seq, 0) THEN 0 ELSE unread END, \
             read_up_to = max(read_up_to, ?2) \
             RETURNING unread + (SELECT COUNT(*) FROM log g WHERE g.kind = ?3 AND g.peer = ?1 AND g.seq > convs.read_up_to \
             AND (json_extract(g.body, '$.deleted_at') IS NULL AND g.id NOT IN (SELECT mid FROM hidden))), read_up_to",
            &[text(peer), int(up_to), SqlValue::Int(Kind::Received.code())],
            |r| Some((col_u64(r, 0)?, col_u64(r, 1)?)),
        )?;
        Ok(rows.into_iter().next())
    }

    /// Records that `peer` received or read this user's messages up to their
    /// seq `peer_seq`; returns the matching seq of this log, if it has one.
    pub fn peer_receipt(&self, peer: &str, read: bool, peer_seq: u64) -> Result<Option<u64>, StoreError> {
        let up_to = self
            .one(
                "SELECT MAX(seq) FROM log WHERE kind = ? AND peer = ? AND peer_seq <= ?",
                &[SqlValue::Int(Kind::Sent.code()), text(peer), int(peer_seq)],
            )?
            .and_then(|r| col_u64(&r, 0));
        let Some(up_to) = up_to else { return Ok(None) };
        let column = if read { "peer_read" } else { "peer_delivered" };
        self.exec(
            &format!(
                "INSERT INTO convs (peer, {column}) VALUES (?1, ?2) \
                 ON CONFLICT (peer) DO UPDATE SET {column} = max({column}, excluded.{column})"
            ),
            &[text(peer), int(up_to)],
        )?;
        Ok(Some(up_to))
    }

    /// Conversations by newest activity, `limit` from before `before` (a last_seq).
    /// Each conversation's newest entry and unread count come from the log
    /// (one pass over it), and from `convs` for what was pruned.
    /// `owner`'s conversations, newest activity first: chats by peer and
    /// groups (a group's unread count: messages of others past the user's
    /// read cursor of it, [`Log::set_group_read`]).
    pub fn conversations(&self, owner: &UserId, before: u64, limit: u32) -> Result<Vec<Conversation>, StoreError> {
        let group = Kind::Group.code();
        self.all(
            &format!("WITH live AS (SELECT g.peer AS peer, g.seq AS seq, g.kind AS kind, g.id AS id, g.body AS body, \
                    ROW_NUMBER() OVER (PARTITION BY g.peer ORDER BY g.seq DESC) AS rn, \
                    SUM(g.kind = ?3 AND g.seq > COALESCE(c.read_up_to, 0) AND {}) OVER (PARTITION BY g.peer) AS unread \
                  FROM log g LEFT JOIN convs c ON c.peer = g.peer WHERE g.peer IS NOT NULL AND g.kind IN {CHATS} AND ?4), \
             newest AS (SELECT * FROM live WHERE rn = 1), \
             grp AS (SELECT {GROUP_WIRE_G} AS peer, g.seq AS seq, g.kind AS kind, g.id AS id, \
                    g.body AS body, COALESCE(gc.read, 0) AS read_up_to, \
                    ROW_NUMBER() OVER (PARTITION BY {GROUP_KEY_G} ORDER BY g.seq DESC) AS rn, \
                    SUM(json_extract(g.body, '$.type') IS NULL \
                        AND CAST(json_extract(g.body, '$.fromUser') AS TEXT) IS NOT ?5 \
                        AND json_extract(g.body, '$.group_seq') > COALESCE(gc.read, 0) AND {shown}) \
                      OVER (PARTITION BY {GROUP_KEY_G}) AS unread \
                  FROM log g LEFT JOIN group_cursor gc ON gc.grp = {GROUP_KEY_G} \
                  WHERE g.kind = {group}) \
             SELECT * FROM ( \
               SELECT l.peer, l.seq AS last_seq, l.kind, l.id, l.body, COALESCE(c.unread, 0) + l.unread, \
                      COALESCE(c.read_up_to, 0), COALESCE(c.peer_delivered, 0), COALESCE(c.peer_read, 0), 0 \
               FROM newest l LEFT JOIN convs c ON c.peer = l.peer \
               UNION ALL \
               SELECT c.peer, c.last_seq AS last_seq, c.last_kind, c.last_mid, c.last_body, c.unread, \
                      c.read_up_to, c.peer_delivered, c.peer_read, 0 \
               FROM convs c WHERE c.last_seq IS NOT NULL AND c.peer NOT IN (SELECT peer FROM newest) \
               UNION ALL \
               SELECT peer, seq AS last_seq, kind, id, body, unread, read_up_to, 0, 0, 1 FROM grp WHERE rn = 1) \
             WHERE last_seq < ?1 ORDER BY last_seq DESC LIMIT ?2", shown("g"), shown = shown("g")),
            &[
                int(before),
                int(limit as u64),
                SqlValue::Int(Kind::Received.code()),
                SqlValue::Int(1),
                text(owner.as_str()),
            ],
            |r| {
                Some(Conversation {
                    peer: col_text(r, 0)?,
                    last_seq: col_u64(r, 1)?,
                    last_kind: col_kind(r, 2),
                    last_mid: col_text(r, 3)?,
                    last_body: col_text(r, 4)?,
                    unread: col_u64(r, 5)?,
                    read_up_to: col_u64(r, 6)?,
                    peer_delivered: col_u64(r, 7)?,
                    peer_read: col_u64(r, 8)?,
                    group: col_u64(r, 9)? == 1,
                })
            },
        )
    }

    /// Forgets idempotency records older than `time`.
    pub fn expire_idempotency(&self, time: u64) -> Result<(), StoreError> {
        self.exec("DELETE FROM sends WHERE time < ?", &[int(time)])?;
        self.exec("DELETE FROM seen WHERE time < ?", &[int(time)])
    }

    /// Entries `from..=to` that are owed to the sockets go back to the queue.
    pub fn mark_unsent(&self, from: u64, to: u64) -> Result<(), StoreError> {
        self.each_generation(
            "SET sent = 0 WHERE seq BETWEEN ? AND ? AND kind IN (?, ?)",
            &[int(from), int(to), SqlValue::Int(Kind::Received.code()), SqlValue::Int(Kind::System.code())],
        )
    }

    /// `UPDATE <generation> <rest>` on both generations (a view takes no writes).
    fn each_generation(&self, rest: &str, params: &[SqlValue]) -> Result<(), StoreError> {
        for g in [Generation::A, Generation::B] {
            self.exec(&format!("UPDATE {} {rest}", g.table()), params)?;
        }
        Ok(())
    }

    /// Calls `each(seq, body)` for the queued entries from `from` on, oldest
    /// first, until it returns false. Rows are read one at a time, so a long
    /// queue never sits in wasm memory at once (linear memory never shrinks).
    pub fn queued(&self, from: u64, mut each: impl FnMut(u64, &str) -> bool) -> Result<(), StoreError> {
        let mut bad = false;
        self.sql.run("SELECT seq, body FROM log WHERE seq >= ? AND sent = 0 ORDER BY seq", &[int(from)], &mut |r| {
            match (col_u64(r, 0), r.get(1)) {
                (Some(seq), Some(SqlValue::Text(body))) => each(seq, body),
                _ => {
                    bad = true;
                    false
                }
            }
        })?;
        if bad {
            return Err(malformed("log"));
        }
        Ok(())
    }

    /// Expires the queue from `first` (its oldest entry) if that entry is
    /// older than `cutoff`: the queue then starts at the first entry of
    /// `cutoff` or later, which is kept as `meta.queue_floor` so a restart
    /// does not bring the expired entries back. Returns the new oldest queued
    /// entry and how many queued entries expired; `None` (one row read) when
    /// nothing has expired.
    pub fn expire_queue(&self, first: u64, cutoff: u64) -> Result<Option<(Option<u64>, u64)>, StoreError> {
        let expired = self
            .one("SELECT time < ? FROM log WHERE seq = ?", &[int(cutoff), int(first)])?
            .and_then(|r| col_u64(&r, 0));
        if expired != Some(1) {
            return Ok(None);
        }
        let row = self
            .one(
                &format!(
                    "SELECT f.floor, (SELECT COUNT(*) FROM log WHERE seq >= ?1 AND seq < f.floor AND sent = 0)
                     FROM (SELECT COALESCE((SELECT MIN(seq) FROM log WHERE seq > ?1 AND time >= ?2),
                                           {HEAD_SQL} + 1) AS floor) AS f"
                ),
                &[int(first), int(cutoff)],
            )?
            .ok_or_else(|| malformed("queue floor"))?;
        let (floor, dropped) = col_u64(&row, 0).zip(col_u64(&row, 1)).ok_or_else(|| malformed("queue floor"))?;
        self.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('queue_floor', ?)", &[int(floor)])?;
        Ok(Some((self.first_unsent_from(floor)?, dropped)))
    }

    /// The oldest queued entry from `from` on.
    pub fn first_unsent_from(&self, from: u64) -> Result<Option<u64>, StoreError> {
        Ok(self.one("SELECT MIN(seq) FROM log WHERE seq >= ? AND sent = 0", &[int(from)])?.and_then(|r| col_u64(&r, 0)))
    }

    /// Queued entries `from..=to` reached a socket (marked as delivered from
    /// the queue, which history must learn from this user's side).
    pub fn mark_sent(&self, from: u64, to: u64) -> Result<(), StoreError> {
        self.each_generation(
            &format!("SET sent = {SENT_FROM_QUEUE} WHERE seq BETWEEN ? AND ? AND sent = 0"),
            &[int(from), int(to)],
        )
    }

    /// What of entries `from..=to` this user's archive pass hands to
    /// history (see [`archive_query`]), as a JSON array of
    /// `[conv, first day of its partition, row]` in the `history::ROW`
    /// layout, stopping early once `max_bytes` of bodies are in (always at
    /// least one entry). Returns the rows and the last seq the pass covered
    /// (entries it skipped included).
    pub fn archive_batch(
        &self,
        from: u64,
        to: u64,
        max_bytes: usize,
        pass: &Pass,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let params = [
            int(from),
            int(to),
            int(max_bytes as u64),
            text(pass.owner.as_str()),
            int(pass.received_from_ms),
            int(pass.partition_days.max(1)),
        ];
        let row = self.one(&self.archive_query, &params)?.ok_or_else(|| malformed("archive batch"))?;
        Ok(col_u64(&row, 1).and_then(|upto| col_text(&row, 0).map(|rows| (rows, upto))))
    }

    /// The first seq of the entries stored at or after `time_ms` (a
    /// reader's pass goes back to it).
    pub fn first_since(&self, time_ms: u64) -> Result<Option<u64>, StoreError> {
        Ok(self.one("SELECT MIN(seq) FROM log WHERE time >= ?", &[int(time_ms)])?.and_then(|r| col_u64(&r, 0)))
    }

    /// A page of the log itself, as rows of a history page (as D1 would
    /// answer it): entries in
    /// the page's range (and conversation) in its order, at most one more
    /// than the page. `delivered`: sent chats the recipient got after all
    /// (from history), for the legacy `isSend`.
    pub fn page(&self, shape: Shape, q: &PageQuery, delivered: &[String]) -> Result<Vec<PageRow>, StoreError> {
        let sent = Kind::Sent.code();
        let is_send = format!(
            "CASE WHEN kind = {sent} THEN (CASE WHEN peer_sent = 1 OR id IN (SELECT value FROM json_each(?6)) THEN 1 ELSE 2 END) \
             WHEN sent <> 0 THEN 1 ELSE 2 END"
        );
        let (filter, order, params) = page_range(shape, q);
        let sql = format!(
            "SELECT seq, kind, peer, id, body, json_set(body, '$.isSend', {is_send}) FROM log \
             WHERE seq < ?1 AND seq > ?2 {filter} ORDER BY seq {order} LIMIT ?3"
        );
        let mut params = params;
        params.push(text(&serde_json::Value::from(delivered.to_vec()).to_string()));
        self.all(&sql, &params, |r| {
            Some(PageRow {
                seq: col_u64(r, 0)?,
                kind: Kind::from_code(col_u64(r, 1)? as i64)?.code(),
                peer: col_text(r, 2),
                mid: col_text(r, 3)?,
                body: col_text(r, 4)?,
                item: col_text(r, 5)?,
            })
        })
    }

    /// The sent chats of a page of the log that were queued at the
    /// recipient when sent (their `isSend` is history's to tell), as
    /// `(conv, id)`: a superset of those on the page, never fewer.
    pub fn page_queued_sends(&self, shape: Shape, q: &PageQuery) -> Result<Vec<(String, String)>, StoreError> {
        let (filter, order, params) = page_range(shape, q);
        let sql = format!(
            "SELECT conv, id FROM (SELECT seq, conv, id, kind, peer_sent FROM log \
             WHERE seq < ?1 AND seq > ?2 {filter} ORDER BY seq {order} LIMIT ?3) \
             WHERE kind = {} AND COALESCE(peer_sent, 0) = 0",
            Kind::Sent.code()
        );
        self.all(&sql, &params, |r| Some((col_text(r, 0)?, col_text(r, 1)?)))
    }

    /// How many entries of `from..=to` wait in the offline queue (owed and
    /// not yet on a socket): what `QUEUE_MAX` bounds.
    pub fn count_queued(&self, from: u64, to: u64) -> Result<u64, StoreError> {
        let row = self.one("SELECT COUNT(*) FROM log WHERE seq BETWEEN ? AND ? AND sent = 0", &[int(from), int(to)])?;
        row.and_then(|r| col_u64(&r, 0)).ok_or_else(|| malformed("queue count"))
    }

    /// Chats waiting in the offline queue (from `first_unsent` on), by sender.
    pub fn queued_by_sender(&self, first_unsent: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.all(
            &format!(
                "SELECT peer, COUNT(*) FROM log WHERE seq >= ? AND sent = 0 AND kind = {} AND peer IS NOT NULL GROUP BY peer",
                Kind::Received.code()
            ),
            &[int(first_unsent)],
            |r| Some((col_text(r, 0)?, col_u64(r, 1)?)),
        )
    }

    /// Whether the owner has a conversation with `peer`: an entry with them
    /// in the log, or their row in the conversation list.
    pub fn has_conversation(&self, peer: &str) -> Result<bool, StoreError> {
        let row = self.one(
            "SELECT EXISTS (SELECT 1 FROM convs WHERE peer = ?1) OR EXISTS (SELECT 1 FROM log WHERE peer = ?1)",
            &[text(peer)],
        )?;
        Ok(row.and_then(|r| col_u64(&r, 0)) == Some(1))
    }

    /// Every conversation of the owner the log or the conversation list knows.
    pub fn conversation_ids(&self, owner: &UserId) -> Result<Vec<String>, StoreError> {
        let peers = self.all(
            "SELECT peer FROM log WHERE peer IS NOT NULL UNION SELECT peer FROM convs WHERE peer IS NOT NULL",
            &[],
            |r| col_text(r, 0),
        )?;
        let mut convs: Vec<String> = peers
            .into_iter()
            .filter_map(|p| UserId::parse(&p).ok())
            .map(|p| conversation_id(owner, Some(&p)))
            .collect();
        convs.push(conversation_id(owner, None));
        Ok(convs)
    }

    pub fn set_archived(&self, upto: u64) -> Result<(), StoreError> {
        self.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('archived', ?)", &[int(upto)])
    }

    /// Prunes what it can below `below`: the older generation goes once all
    /// of it is below, and the current one becomes the older once it holds
    /// `generation` entries. Entries are pruned later than they may be, never
    /// earlier, except that everything below `hard` goes now (deleted row by
    /// row if it must: only after a burst). Returns the oldest seq still in
    /// the log (`None`: it is empty).
    pub fn prune_below(&self, below: u64, hard: u64, generation: u64) -> Result<Option<u64>, StoreError> {
        let current = self.generation.get();
        let older = current.other();
        let span = |g: Generation| {
            let row = self.one(&format!("SELECT MIN(seq), MAX(seq) FROM {}", g.table()), &[])?;
            Ok::<_, StoreError>(row.and_then(|r| col_u64(&r, 0).zip(col_u64(&r, 1))))
        };
        let rotate = match span(older)? {
            Some((_, newest)) if newest >= below => false,
            Some(_) => {
                self.fold_conversations(older, EVERY_SEQ)?;
                self.drop_generation(older)?;
                true
            }
            None => true,
        };
        // Seqs are contiguous, so a generation's span is its size.
        if rotate && span(current)?.is_some_and(|(first, last)| last - first + 1 >= generation.max(1)) {
            self.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('gen', ?)", &[text(older.name())])?;
            self.generation.set(older);
        }
        if self.oldest()?.is_some_and(|oldest| oldest < hard) {
            for g in [Generation::A, Generation::B] {
                self.fold_conversations(g, hard)?;
                self.exec(&format!("DELETE FROM {} WHERE seq < ?", g.table()), &[int(hard)])?;
            }
        }
        self.oldest()
    }

    /// Keeps what the conversation list needs of a generation about to be
    /// dropped: per peer, its newest entry and its unread entries (one row
    /// written per conversation in it, not per entry).
    fn fold_conversations(&self, g: Generation, below: u64) -> Result<(), StoreError> {
        self.exec(
            &format!(
                "INSERT INTO convs (peer, last_seq, last_kind, last_mid, last_body, unread) \
                 SELECT peer, seq, kind, id, body, unread FROM ( \
                   SELECT g.peer AS peer, g.seq AS seq, g.kind AS kind, g.id AS id, g.body AS body, \
                     ROW_NUMBER() OVER (PARTITION BY g.peer ORDER BY g.seq DESC) AS rn, \
                     SUM(g.kind = ?1 AND g.seq > COALESCE(c.read_up_to, 0) AND {}) OVER (PARTITION BY g.peer) AS unread \
                   FROM {} g LEFT JOIN convs c ON c.peer = g.peer \
                   WHERE g.peer IS NOT NULL AND g.kind IN {CHATS} AND ?2 AND g.seq < ?3) \
                 WHERE rn = 1 \
                 ON CONFLICT (peer) DO UPDATE SET last_seq = excluded.last_seq, last_kind = excluded.last_kind, \
                 last_mid = excluded.last_mid, last_body = excluded.last_body, unread = unread + excluded.unread",
                shown("g"),
                g.table()
            ),
            &[SqlValue::Int(Kind::Received.code()), SqlValue::Int(1), int(below)],
        )
    }

    /// Empties a generation by dropping its table and creating it again from
    /// its own definition, so it matches whatever schema version made it.
    fn drop_generation(&self, g: Generation) -> Result<(), StoreError> {
        let create = self
            .one("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", &[text(g.table())])?
            .and_then(|r| col_text(&r, 0))
            .ok_or_else(|| malformed("generation table"))?;
        self.exec(&format!("DROP TABLE {}", g.table()), &[])?;
        self.exec(&create, &[])
    }
}

/// What an archive row's column is, from the log of the owner (`?4`).
/// A chat is one history row, written by its sender's pass (who knows both
/// seqs); see [`archive_query`] for which entries a pass carries.
fn archive_column(col: &str) -> String {
    let (received, sent, system) = (Kind::Received.code(), Kind::Sent.code(), Kind::System.code());
    match col {
        "sender" => format!("CASE kind WHEN {sent} THEN ?4 WHEN {received} THEN peer END"),
        "recipient" => format!("CASE kind WHEN {sent} THEN peer ELSE ?4 END"),
        "kind" => format!("CASE kind WHEN {system} THEN {ROW_SYSTEM} ELSE {ROW_CHAT} END"),
        "is_send" => format!(
            "CASE WHEN COALESCE(CASE WHEN kind = {sent} THEN peer_sent ELSE sent END, 0) = 0 \
             THEN {IS_SEND_QUEUED} ELSE {IS_SEND_DELIVERED} END"
        ),
        // An op's row is its message's: the seqs are the message's, which
        // the op does not know (the message's own row fills them in).
        "sseq" => format!(
            "CASE WHEN op > {system} THEN NULL WHEN kind = {sent} OR (kind = {received} AND peer = ?4) THEN seq END"
        ),
        "rseq" => format!("CASE WHEN op > {system} THEN NULL WHEN kind = {sent} THEN NULLIF(peer_seq, 0) ELSE seq END"),
        other => other.to_string(),
    }
}

/// The query behind [`Log::archive_batch`]: SQLite builds the whole JSON
/// batch itself (rows tagged with conversation and partition), so archiving
/// costs no per-row crossing into wasm.
///
/// A pass carries the owner's sent chats and system messages, chats to
/// themselves, received chats delivered from the queue (the sender's row
/// says "queued"; this fixes it), and received chats stored from `?5` (ms)
/// on: a reader's pass sets it, so a page never waits for a sender's pass.
/// Other received chats are the sender's to write.
///
/// An op (edit, delete for everyone) is carried as the row of its message
/// with the message's new body, by the same rule as a chat of its direction
/// (the editor's pass writes it): the row takes the body if it is newer
/// ([`crate::history::write_sql`]). Its partition is the message's, from the
/// message's `time` (always the server's, for a chat). A delete for oneself
/// never goes to history.
fn archive_query() -> String {
    let (received, sent, system) = (Kind::Received.code(), Kind::Sent.code(), Kind::System.code());
    let (edit_in, delete_in, mine) = (Kind::EditIn.code(), Kind::DeleteIn.code(), Kind::DeleteMine.code());
    // A group's entries go to history once, from the group's object; so do
    // its ops (received ops with no peer: a chat's op always has one).
    let group = Kind::Group.code();
    let row: Vec<String> = ROW.iter().map(|c| archive_column(c)).collect();
    let target_ms = "CAST(round((julianday(json_extract(body, '$.body.time')) - 2440587.5) * 86400000) AS INTEGER)";
    format!(
        "SELECT json_group_array(json_array(conv, part, json(row))) FILTER (WHERE inc), MAX(seq) FROM ( \
           SELECT seq, conv, part, row, inc, SUM(CASE WHEN inc THEN length(body) ELSE 0 END) OVER (ORDER BY seq) AS acc \
           FROM (SELECT seq, conv, body, CAST(time AS INTEGER) / (86400000 * CAST(?6 AS INTEGER)) * CAST(?6 AS INTEGER) AS part, json_array({}) AS row, \
                   (op NOT IN ({mine}, {group}) AND NOT (op IN ({edit_in}, {delete_in}) AND peer IS NULL) \
                    AND (kind <> {received} OR peer = ?4 OR sent = {SENT_FROM_QUEUE} OR optime >= ?5)) AS inc \
                 FROM (SELECT seq, conv, peer, sent, peer_seq, peer_sent, kind AS op, time AS optime, \
                         CASE WHEN kind <= {system} THEN kind WHEN kind IN ({edit_in}, {delete_in}) THEN {received} ELSE {sent} END AS kind, \
                         CASE WHEN kind <= {system} THEN id ELSE json_extract(body, '$.target') END AS id, \
                         CASE WHEN kind <= {system} THEN body ELSE json_extract(body, '$.body') END AS body, \
                         CASE WHEN kind <= {system} THEN time ELSE COALESCE({target_ms}, time) END AS time \
                       FROM log WHERE seq BETWEEN ?1 AND ?2))) \
         WHERE acc <= ?3 OR seq = ?1",
        row.join(", ")
    )
}
