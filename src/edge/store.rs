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

const SCHEMA: [&str; 2] = [
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
        for stmt in SCHEMA {
            sql.exec(stmt, None)?;
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
                        (SELECT MIN(seq) FROM log WHERE sent = 0) AS first_unsent,
                        (SELECT v FROM meta WHERE k = 'archived') AS archived,
                        (SELECT v FROM meta WHERE k = 'owner') AS owner",
                None,
            )?;
        let row: Row = cursor.one()?;
        count(&cursor);
        let owner = row.owner.as_deref().map(UserId::parse).transpose().map_err(|e| worker::Error::RustError(e.to_string()))?;
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
    pub fn append(&self, owner: &UserId, rows: &[(u64, &NewEntry, bool)]) -> worker::Result<()> {
        let rows: Vec<serde_json::Value> = rows
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
    pub fn queued(&self, from: u64) -> worker::Result<Vec<(u64, String)>> {
        #[derive(Deserialize)]
        struct Row {
            seq: u64,
            body: String,
        }
        let cursor = self.sql.exec("SELECT seq, body FROM log WHERE seq >= ? AND sent = 0 ORDER BY seq", vec![int(from)])?;
        let rows: Vec<Row> = cursor.to_array()?;
        count(&cursor);
        Ok(rows.into_iter().map(|r| (r.seq, r.body)).collect())
    }

    pub fn mark_sent(&self, from: u64, to: u64) -> worker::Result<()> {
        count(&self.sql.exec("UPDATE log SET sent = 1 WHERE seq BETWEEN ? AND ? AND sent = 0", vec![int(from), int(to)])?);
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
