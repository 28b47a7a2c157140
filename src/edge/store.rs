//! A user's log in Durable Object SQLite: the one place its schema and
//! queries live.
//!
//! The log is at once the offline queue (owed entries with `sent = 0`), the
//! archive outbox (entries past the `archived` cursor) and the window a
//! reconnect can resume from. Writes are synchronous; the runtime's output gate
//! holds every socket send and response issued after a write until that write
//! is durable, which is what lets the object answer right after `append`.

use serde::Deserialize;
use worker::{SqlCursor, SqlStorage, SqlStorageValue as V, Storage};

use crate::history::{ARCHIVE_ROW, IS_SEND_DELIVERED, IS_SEND_QUEUED};
use crate::inbox::Inbox;
use crate::message::{conversation_id, Kind};
use crate::metrics::{add, Counter};
use crate::user::UserId;

/// Schema versions, in order: each object upgrades its own database the first
/// time a newer deployment opens it (the version is kept in `meta.schema`).
/// A change to the schema is a new entry here, never an edit of an old one.
const MIGRATIONS: [(i64, &[&str]); 1] = [(1, &SCHEMA_V1)];

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

/// One entry about to be written to the log.
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
}

/// A conversation as the conversation list shows it.
#[derive(Clone, Debug, Deserialize)]
pub struct Conversation {
    pub peer: String,
    pub last_seq: u64,
    pub last_kind: i64,
    pub last_mid: String,
    pub last_body: String,
    pub unread: u64,
    pub read_up_to: u64,
    pub peer_delivered: u64,
    pub peer_read: u64,
}

/// A log entry as a v1 replay sends it.
#[derive(Clone, Debug, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    pub kind: i64,
    pub peer: Option<String>,
    pub id: String,
    pub body: String,
}

pub struct Store {
    sql: SqlStorage,
    archive_query: String,
}

/// What a log holds when the object wakes.
pub struct Restored {
    pub owner: Option<UserId>,
    pub inbox: Inbox,
}

fn int(n: u64) -> V {
    V::Integer(n as i64)
}

/// Counts the rows a finished statement read and wrote, as the runtime bills them.
fn count(cursor: &SqlCursor) {
    add(Counter::SqlRowsRead, cursor.rows_read() as u64);
    add(Counter::SqlRowsWritten, cursor.rows_written() as u64);
}

impl Store {
    pub fn open(storage: &Storage) -> worker::Result<Store> {
        let sql = storage.sql();
        sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v)", None)?;
        #[derive(Deserialize)]
        struct Row {
            version: Option<i64>,
        }
        let row: Row = sql.exec("SELECT (SELECT v FROM meta WHERE k = 'schema') AS version", None)?.one()?;
        let current = row.version.unwrap_or(0);
        for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            for stmt in *statements {
                sql.exec(stmt, None)?;
            }
            sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('schema', ?)", vec![V::Integer(*version)])?;
        }
        Ok(Store { sql, archive_query: archive_query() })
    }

    pub fn restore(&self) -> worker::Result<Restored> {
        #[derive(Deserialize)]
        struct Row {
            head: Option<u64>,
            first_unsent: Option<u64>,
            archived: Option<u64>,
            owner: Option<String>,
        }
        let cursor = self.sql.exec(
            "SELECT (SELECT MAX(seq) FROM log) AS head,
                        (SELECT MIN(seq) FROM log WHERE sent = 0
                           AND seq >= COALESCE((SELECT v FROM meta WHERE k = 'queue_floor'), 0)) AS first_unsent,
                        (SELECT v FROM meta WHERE k = 'archived') AS archived,
                        (SELECT v FROM meta WHERE k = 'owner') AS owner",
            None,
        )?;
        let row: Row = cursor.one()?;
        count(&cursor);
        let owner =
            row.owner.as_deref().map(UserId::parse).transpose().map_err(|e| worker::Error::RustError(e.to_string()))?;
        Ok(Restored {
            owner,
            inbox: Inbox::restore(row.head.unwrap_or(0), row.first_unsent, row.archived.unwrap_or(0)),
        })
    }

    pub fn set_owner(&self, owner: &UserId) -> worker::Result<()> {
        count(&self.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('owner', ?)", vec![owner.as_str().into()])?);
        Ok(())
    }

    /// Appends a batch of entries, `(seq, entry, sent)`, in one statement:
    /// the rows travel as one JSON parameter, so a batch costs one call
    /// whatever its size.
    pub fn append(&self, owner: &UserId, rows_in: &[(u64, &NewEntry, bool)]) -> worker::Result<()> {
        let rows: Vec<serde_json::Value> = rows_in
            .iter()
            .map(|(seq, e, sent)| {
                serde_json::json!([
                    seq,
                    e.id,
                    e.kind.code(),
                    e.peer.as_ref().map(UserId::as_str),
                    conversation_id(owner, e.peer.as_ref()),
                    e.time_ms,
                    e.body,
                    *sent as i64,
                    e.peer_state.map(|(s, _)| s),
                    e.peer_state.map(|(_, pushed)| pushed as i64),
                ])
            })
            .collect();
        count(&self.sql.exec(
            "INSERT INTO log (seq, id, kind, peer, conv, time, body, sent, peer_seq, peer_sent) \
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
             json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
             json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'), \
             json_extract(value, '$[9]') FROM json_each(?)",
            vec![serde_json::Value::Array(rows).to_string().into()],
        )?);
        self.index_entries(rows_in)?;
        Ok(())
    }

    /// The side tables a batch of entries updates: conversations (newest
    /// entry, unread), sent client ids and derived ids. Same event as the log
    /// write, so they commit together.
    fn index_entries(&self, rows: &[(u64, &NewEntry, bool)]) -> worker::Result<()> {
        // One row per conversation per batch (rows written are billed): its
        // newest entry, and how many received chats the batch adds to unread.
        let mut latest: Vec<(&UserId, u64, &NewEntry, u64)> = Vec::new();
        for (seq, e, _) in rows.iter().filter(|(_, e, _)| e.kind != Kind::System) {
            let Some(peer) = e.peer.as_ref() else { continue };
            let unread = (e.kind == Kind::Received) as u64;
            match latest.iter_mut().find(|(p, ..)| *p == peer) {
                Some(c) => *c = (peer, *seq, *e, c.3 + unread),
                None => latest.push((peer, *seq, *e, unread)),
            }
        }
        let convs: Vec<serde_json::Value> = latest
            .iter()
            .map(|(peer, seq, e, unread)| serde_json::json!([peer.as_str(), seq, e.kind.code(), e.id, e.body, unread]))
            .collect();
        if !convs.is_empty() {
            count(&self.sql.exec(
                "INSERT INTO convs (peer, last_seq, last_kind, last_mid, last_body, unread) \
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
                 json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]') FROM json_each(?) WHERE true \
                 ON CONFLICT (peer) DO UPDATE SET last_seq = excluded.last_seq, last_kind = excluded.last_kind, \
                 last_mid = excluded.last_mid, last_body = excluded.last_body, unread = unread + excluded.unread",
                vec![serde_json::Value::Array(convs).to_string().into()],
            )?);
        }
        for (seq, e, sent) in rows {
            if let Some(cmid) = &e.cmid {
                count(&self.sql.exec(
                    "INSERT OR REPLACE INTO sends (cmid, mid, seq, time) VALUES (?, ?, ?, ?)",
                    vec![cmid.as_str().into(), e.id.as_str().into(), int(*seq), int(e.time_ms)],
                )?);
            }
            if e.dedup {
                count(&self.sql.exec(
                    "INSERT OR REPLACE INTO seen (mid, seq, pushed, time) VALUES (?, ?, ?, ?)",
                    vec![e.id.as_str().into(), int(*seq), V::Integer(*sent as i64), int(e.time_ms)],
                )?);
            }
        }
        Ok(())
    }

    /// The original result of a send with this client message id: (mid, seq).
    pub fn sent_before(&self, cmid: &str) -> worker::Result<Option<(String, u64)>> {
        #[derive(Deserialize)]
        struct Row {
            mid: String,
            seq: u64,
        }
        let cursor = self.sql.exec("SELECT mid, seq FROM sends WHERE cmid = ?", vec![cmid.into()])?;
        let rows: Vec<Row> = cursor.to_array()?;
        count(&cursor);
        Ok(rows.into_iter().next().map(|r| (r.mid, r.seq)))
    }

    /// Where a message with this derived id already is: (seq, pushed live).
    pub fn seen(&self, mid: &str) -> worker::Result<Option<(u64, bool)>> {
        #[derive(Deserialize)]
        struct Row {
            seq: u64,
            pushed: i64,
        }
        let cursor = self.sql.exec("SELECT seq, pushed FROM seen WHERE mid = ?", vec![mid.into()])?;
        let rows: Vec<Row> = cursor.to_array()?;
        count(&cursor);
        Ok(rows.into_iter().next().map(|r| (r.seq, r.pushed == 1)))
    }

    /// Calls `each` for every entry after `since`, oldest first (a v1
    /// replay), reading one row at a time.
    pub fn entries_after(
        &self,
        since: u64,
        mut each: impl FnMut(LogEntry) -> worker::Result<()>,
    ) -> worker::Result<()> {
        let cursor =
            self.sql.exec("SELECT seq, kind, peer, id, body FROM log WHERE seq > ? ORDER BY seq", vec![int(since)])?;
        for row in cursor.next::<LogEntry>() {
            each(row?)?;
        }
        count(&cursor);
        Ok(())
    }

    /// The oldest entry still kept, if any.
    pub fn oldest(&self) -> worker::Result<Option<u64>> {
        #[derive(Deserialize)]
        struct Row {
            oldest: Option<u64>,
        }
        let cursor = self.sql.exec("SELECT MIN(seq) AS oldest FROM log", None)?;
        let row: Row = cursor.one()?;
        count(&cursor);
        Ok(row.oldest)
    }

    /// v1 devices and their acknowledged cursors.
    pub fn devices(&self) -> worker::Result<Vec<(String, u64, u64)>> {
        #[derive(Deserialize)]
        struct Row {
            device: String,
            acked: u64,
            seen: u64,
        }
        let cursor = self.sql.exec("SELECT device, acked, seen FROM devices", None)?;
        let rows: Vec<Row> = cursor.to_array()?;
        count(&cursor);
        Ok(rows.into_iter().map(|r| (r.device, r.acked, r.seen)).collect())
    }

    pub fn save_device(&self, device: &str, acked: u64, seen: u64) -> worker::Result<()> {
        count(&self.sql.exec(
            "INSERT INTO devices (device, acked, seen) VALUES (?1, ?2, ?3) \
             ON CONFLICT (device) DO UPDATE SET acked = max(acked, ?2), seen = ?3",
            vec![device.into(), int(acked), int(seen)],
        )?);
        Ok(())
    }

    pub fn forget_devices_unseen_since(&self, time: u64) -> worker::Result<()> {
        count(&self.sql.exec("DELETE FROM devices WHERE seen < ?", vec![int(time)])?);
        Ok(())
    }

    /// For each peer with received chats in `(from, to]`: the newest such seq.
    pub fn received_by_peer(&self, from: u64, to: u64) -> worker::Result<Vec<(String, u64)>> {
        #[derive(Deserialize)]
        struct Row {
            peer: String,
            up_to: u64,
        }
        let cursor = self.sql.exec(
            "SELECT peer, MAX(seq) AS up_to FROM log WHERE kind = ? AND seq > ? AND seq <= ? AND peer IS NOT NULL GROUP BY peer",
            vec![V::Integer(Kind::Received.code()), int(from), int(to)],
        )?;
        let rows: Vec<Row> = cursor.to_array()?;
        count(&cursor);
        Ok(rows.into_iter().map(|r| (r.peer, r.up_to)).collect())
    }

    /// Marks the conversation with `peer` read up to `up_to` and recounts its
    /// unread chats. Returns (unread, read_up_to), or None for no such conversation.
    pub fn mark_read(&self, peer: &str, up_to: u64) -> worker::Result<Option<(u64, u64)>> {
        #[derive(Deserialize)]
        struct Row {
            unread: u64,
            read_up_to: u64,
        }
        let cursor = self.sql.exec(
            "UPDATE convs SET read_up_to = max(read_up_to, ?2), \
             unread = (SELECT COUNT(*) FROM log WHERE kind = ?3 AND peer = ?1 AND seq > max(convs.read_up_to, ?2)) \
             WHERE peer = ?1 RETURNING unread, read_up_to",
            vec![peer.into(), int(up_to), V::Integer(Kind::Received.code())],
        )?;
        let rows: Vec<Row> = cursor.to_array()?;
        count(&cursor);
        Ok(rows.into_iter().next().map(|r| (r.unread, r.read_up_to)))
    }

    /// Records that `peer` received or read this user's messages up to their
    /// seq `peer_seq`; returns the matching seq of this log, if it has one.
    pub fn peer_receipt(&self, peer: &str, read: bool, peer_seq: u64) -> worker::Result<Option<u64>> {
        #[derive(Deserialize)]
        struct Row {
            up_to: Option<u64>,
        }
        let cursor = self.sql.exec(
            "SELECT MAX(seq) AS up_to FROM log WHERE kind = ? AND peer = ? AND peer_seq <= ?",
            vec![V::Integer(Kind::Sent.code()), peer.into(), int(peer_seq)],
        )?;
        let row: Row = cursor.one()?;
        count(&cursor);
        let Some(up_to) = row.up_to else { return Ok(None) };
        let column = if read { "peer_read" } else { "peer_delivered" };
        count(&self.sql.exec(
            &format!("UPDATE convs SET {column} = max({column}, ?2) WHERE peer = ?1"),
            vec![peer.into(), int(up_to)],
        )?);
        Ok(Some(up_to))
    }

    /// Conversations by newest activity, `limit` from before `before` (a last_seq).
    pub fn conversations(&self, before: u64, limit: u32) -> worker::Result<Vec<Conversation>> {
        let cursor = self.sql.exec(
            "SELECT peer, last_seq, last_kind, last_mid, last_body, unread, read_up_to, peer_delivered, peer_read \
             FROM convs WHERE last_seq < ? ORDER BY last_seq DESC LIMIT ?",
            vec![int(before), int(limit as u64)],
        )?;
        let rows = cursor.to_array()?;
        count(&cursor);
        Ok(rows)
    }

    /// Forgets idempotency records older than `time`.
    pub fn expire_idempotency(&self, time: u64) -> worker::Result<()> {
        count(&self.sql.exec("DELETE FROM sends WHERE time < ?", vec![int(time)])?);
        count(&self.sql.exec("DELETE FROM seen WHERE time < ?", vec![int(time)])?);
        Ok(())
    }

    /// Entries `from..=to` that are owed to the sockets go back to the queue.
    pub fn mark_unsent(&self, from: u64, to: u64) -> worker::Result<()> {
        count(&self.sql.exec(
            "UPDATE log SET sent = 0 WHERE seq BETWEEN ? AND ? AND kind <> ?",
            vec![int(from), int(to), V::Integer(Kind::Sent.code())],
        )?);
        Ok(())
    }

    /// Queued entries from `from` on, oldest first.
    /// Calls `each(seq, body)` for the queued entries from `from` on, oldest
    /// first, until it returns false. Rows are read one at a time, so a long
    /// queue never sits in wasm memory at once (linear memory never shrinks).
    pub fn queued(&self, from: u64, mut each: impl FnMut(u64, &str) -> bool) -> worker::Result<()> {
        #[derive(Deserialize)]
        struct Row {
            seq: u64,
            body: String,
        }
        let cursor =
            self.sql.exec("SELECT seq, body FROM log WHERE seq >= ? AND sent = 0 ORDER BY seq", vec![int(from)])?;
        for row in cursor.next::<Row>() {
            let row = row?;
            if !each(row.seq, &row.body) {
                break;
            }
        }
        count(&cursor);
        Ok(())
    }

    /// Expires the queue from `first` (its oldest entry) if that entry is
    /// older than `cutoff`: the queue then starts at the first entry of
    /// `cutoff` or later, which is kept as `meta.queue_floor` so a restart
    /// does not bring the expired entries back. Returns the new oldest queued
    /// entry and how many queued entries expired; `None` (one row read) when
    /// nothing has expired.
    pub fn expire_queue(&self, first: u64, cutoff: u64) -> worker::Result<Option<(Option<u64>, u64)>> {
        #[derive(Deserialize)]
        struct Row {
            expired: Option<i64>,
        }
        let cursor =
            self.sql.exec("SELECT time < ? AS expired FROM log WHERE seq = ?", vec![int(cutoff), int(first)])?;
        let rows: Vec<Row> = cursor.to_array()?;
        count(&cursor);
        if rows.first().and_then(|r| r.expired) != Some(1) {
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct Floor {
            floor: u64,
            dropped: u64,
        }
        let cursor = self.sql.exec(
            "SELECT f.floor AS floor, (SELECT COUNT(*) FROM log WHERE seq >= ?1 AND seq < f.floor AND sent = 0) AS dropped
             FROM (SELECT COALESCE((SELECT MIN(seq) FROM log WHERE seq > ?1 AND time >= ?2),
                                   (SELECT MAX(seq) FROM log) + 1) AS floor) AS f",
            vec![int(first), int(cutoff)],
        )?;
        let f: Floor = cursor.one()?;
        count(&cursor);
        count(&self.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('queue_floor', ?)", vec![int(f.floor)])?);
        Ok(Some((self.first_unsent_from(f.floor)?, f.dropped)))
    }

    /// The oldest queued entry from `from` on.
    pub fn first_unsent_from(&self, from: u64) -> worker::Result<Option<u64>> {
        #[derive(Deserialize)]
        struct Next {
            next: Option<u64>,
        }
        let cursor = self.sql.exec("SELECT MIN(seq) AS next FROM log WHERE seq >= ? AND sent = 0", vec![int(from)])?;
        let next: Next = cursor.one()?;
        count(&cursor);
        Ok(next.next)
    }

    pub fn mark_sent(&self, from: u64, to: u64) -> worker::Result<()> {
        count(
            &self
                .sql
                .exec("UPDATE log SET sent = 1 WHERE seq BETWEEN ? AND ? AND sent = 0", vec![int(from), int(to)])?,
        );
        Ok(())
    }

    /// Entries `from..=to` as an archive batch (`history::ARCHIVE_ROW`
    /// layout), stopping early once `max_bytes` of bodies are in (always at
    /// least one entry). Returns the batch and the last seq it holds.
    pub fn archive_batch(&self, from: u64, to: u64, max_bytes: usize) -> worker::Result<Option<(String, u64)>> {
        #[derive(Deserialize)]
        struct Row {
            rows: String,
            upto: Option<u64>,
        }
        let cursor = self.sql.exec(&self.archive_query, vec![int(from), int(to), int(max_bytes as u64)])?;
        let row: Row = cursor.one()?;
        count(&cursor);
        Ok(row.upto.map(|upto| (row.rows, upto)))
    }

    pub fn set_archived(&self, upto: u64) -> worker::Result<()> {
        count(&self.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('archived', ?)", vec![int(upto)])?);
        Ok(())
    }

    pub fn prune_below(&self, seq: u64) -> worker::Result<()> {
        count(&self.sql.exec("DELETE FROM log WHERE seq < ?", vec![int(seq)])?);
        Ok(())
    }
}

/// The query behind [`Store::archive_batch`]: SQLite builds the whole JSON
/// batch itself, so archiving costs no per-row crossing into wasm.
fn archive_query() -> String {
    let is_send = format!(
        "CASE WHEN (CASE WHEN kind = {} THEN peer_sent ELSE sent END) = 1 THEN {IS_SEND_DELIVERED} ELSE {IS_SEND_QUEUED} END",
        Kind::Sent.code()
    );
    let columns: Vec<&str> = ARCHIVE_ROW.iter().map(|c| if *c == "is_send" { is_send.as_str() } else { c }).collect();
    format!(
        "SELECT json_group_array(json(row)) AS rows, MAX(seq) AS upto FROM (\
         SELECT seq, json_array({}) AS row, SUM(length(body)) OVER (ORDER BY seq) AS acc \
         FROM log WHERE seq BETWEEN ?1 AND ?2) WHERE acc <= ?3 OR seq = ?1",
        columns.join(", ")
    )
}
