//! A user's log in Durable Object SQLite: the one place its schema and
//! queries live.
//!
//! The log is at once the offline queue (owed entries with `sent = 0`), the
//! archive outbox (entries past the `archived` cursor) and the window a
//! reconnect can resume from. Writes are synchronous; the runtime's output gate
//! holds every socket send and response issued after a write until that write
//! is durable, which is what lets the object answer right after `append`.

use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue as V, Storage};

use crate::history::{ArchiveRow, IS_SEND_DELIVERED, IS_SEND_QUEUED};
use crate::inbox::Inbox;
use crate::message::Kind;
use crate::user::UserId;

const SCHEMA: [&str; 2] = [
    // meta.v has no declared type, so no affinity: "92" stays text, 5 stays a number.
    // kind: 1 received chat, 2 sent chat, 3 system (message::Kind).
    // sent: 1 once written to a socket, or never owed to one (kind 2).
    // peer_seq / peer_sent: for a sent chat, its place in the recipient's log
    // and whether it reached a socket there when it was stored.
    "CREATE TABLE IF NOT EXISTS log (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        kind INTEGER NOT NULL,
        peer TEXT,
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
}

/// What a log holds when the object wakes.
pub struct Restored {
    pub owner: Option<UserId>,
    pub inbox: Inbox,
}

fn int(n: u64) -> V {
    V::Integer(n as i64)
}

impl Store {
    pub fn open(storage: &Storage) -> worker::Result<Store> {
        let sql = storage.sql();
        for stmt in SCHEMA {
            sql.exec(stmt, None)?;
        }
        Ok(Store { sql })
    }

    pub fn restore(&self) -> worker::Result<Restored> {
        #[derive(Deserialize)]
        struct Row {
            head: Option<u64>,
            first_unsent: Option<u64>,
            archived: Option<u64>,
            owner: Option<String>,
        }
        let row: Row = self
            .sql
            .exec(
                "SELECT (SELECT MAX(seq) FROM log) AS head,
                        (SELECT MIN(seq) FROM log WHERE sent = 0) AS first_unsent,
                        (SELECT v FROM meta WHERE k = 'archived') AS archived,
                        (SELECT v FROM meta WHERE k = 'owner') AS owner",
                None,
            )?
            .one()?;
        let owner = row.owner.as_deref().map(UserId::parse).transpose().map_err(|e| worker::Error::RustError(e.to_string()))?;
        Ok(Restored {
            owner,
            inbox: Inbox::restore(row.head.unwrap_or(0), row.first_unsent, row.archived.unwrap_or(0)),
        })
    }

    pub fn set_owner(&self, owner: &UserId) -> worker::Result<()> {
        self.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('owner', ?)", vec![owner.as_str().into()])?;
        Ok(())
    }

    /// Appends a batch of entries, `(seq, entry, sent)`, in one statement:
    /// the rows travel as one JSON parameter, so a batch costs one call
    /// whatever its size.
    pub fn append(&self, rows: &[(u64, &NewEntry, bool)]) -> worker::Result<()> {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(seq, e, sent)| {
                serde_json::json!([
                    seq,
                    e.id,
                    e.kind.code(),
                    e.peer.as_ref().map(UserId::as_str),
                    e.time_ms,
                    e.body,
                    *sent as i64,
                    e.peer_state.map(|(s, _)| s),
                    e.peer_state.map(|(_, pushed)| pushed as i64),
                ])
            })
            .collect();
        self.sql.exec(
            "INSERT INTO log (seq, id, kind, peer, time, body, sent, peer_seq, peer_sent) \
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
             json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
             json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]') FROM json_each(?)",
            vec![serde_json::Value::Array(rows).to_string().into()],
        )?;
        Ok(())
    }

    /// Entries `from..=to` that are owed to the sockets go back to the queue.
    pub fn mark_unsent(&self, from: u64, to: u64) -> worker::Result<()> {
        self.sql.exec(
            "UPDATE log SET sent = 0 WHERE seq BETWEEN ? AND ? AND kind <> ?",
            vec![int(from), int(to), V::Integer(Kind::Sent.code())],
        )?;
        Ok(())
    }

    /// Queued entries from `from` on, oldest first.
    pub fn queued(&self, from: u64) -> worker::Result<Vec<(u64, String)>> {
        #[derive(Deserialize)]
        struct Row {
            seq: u64,
            body: String,
        }
        let rows: Vec<Row> = self
            .sql
            .exec("SELECT seq, body FROM log WHERE seq >= ? AND sent = 0 ORDER BY seq", vec![int(from)])?
            .to_array()?;
        Ok(rows.into_iter().map(|r| (r.seq, r.body)).collect())
    }

    pub fn mark_sent(&self, from: u64, to: u64) -> worker::Result<()> {
        self.sql.exec("UPDATE log SET sent = 1 WHERE seq BETWEEN ? AND ? AND sent = 0", vec![int(from), int(to)])?;
        Ok(())
    }

    /// Entries `from..=to` for D1, stopping early once `max_bytes` of bodies
    /// are collected (always at least one entry).
    pub fn archive_rows(&self, from: u64, to: u64, max_bytes: usize) -> worker::Result<Vec<ArchiveRow>> {
        #[derive(Deserialize)]
        struct Row {
            seq: u64,
            id: String,
            kind: i64,
            peer: Option<String>,
            time: u64,
            body: String,
            sent: i64,
            peer_seq: Option<u64>,
            peer_sent: Option<i64>,
        }
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT seq, id, kind, peer, time, body, sent, peer_seq, peer_sent FROM log WHERE seq BETWEEN ? AND ? ORDER BY seq",
                vec![int(from), int(to)],
            )?
            .to_array()?;
        let mut out = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for r in rows {
            if !out.is_empty() && bytes + r.body.len() > max_bytes {
                break;
            }
            bytes += r.body.len();
            let delivered = if r.kind == Kind::Sent.code() { r.peer_sent == Some(1) } else { r.sent == 1 };
            out.push(ArchiveRow {
                seq: r.seq,
                id: r.id,
                peer: r.peer.as_deref().and_then(|p| UserId::parse(p).ok()),
                kind: r.kind,
                time_ms: r.time,
                body: r.body,
                is_send: if delivered { IS_SEND_DELIVERED } else { IS_SEND_QUEUED },
                peer_seq: r.peer_seq,
            });
        }
        Ok(out)
    }

    pub fn set_archived(&self, upto: u64) -> worker::Result<()> {
        self.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('archived', ?)", vec![int(upto)])?;
        Ok(())
    }

    pub fn prune_below(&self, seq: u64) -> worker::Result<()> {
        self.sql.exec("DELETE FROM log WHERE seq < ?", vec![int(seq)])?;
        Ok(())
    }
}
