//! Cold history: time partitions older than `HISTORY_HOT_DAYS` move from D1
//! to R2, one object per conversation and partition, and pages older than
//! D1 holds read them from there.
//!
//! D1 costs $0.75 per GB-month and a database holds at most 10 GB; R2 costs
//! $0.015 per GB-month with no such bound. A writer exports a partition of
//! its shard a hundred conversations at a time (the cursor is kept in
//! `partitions.exported`, so an evicted writer resumes), and drops the table
//! once every conversation is in R2. Objects are JSON lines of
//! [`ColdRow`]s; a conversation's objects are listed by their prefix, so no
//! index object needs updating. Past `HISTORY_RETENTION_DAYS` the bucket's
//! own lifecycle rule deletes them (README).

use serde::Deserialize;

use crate::history::{is_partition_table, PageQuery, PageRow, Shape, ROW_SYSTEM};
use crate::message::Kind;
use crate::user::UserId;

/// Conversations per export step.
pub const EXPORT_CONVS: u64 = 100;

/// The next conversations of a partition after `?1`, each with all of its
/// rows as JSON lines (SQLite builds them; the legacy item is computed here,
/// as a page from D1 would show it).
pub fn export_sql(table: &str) -> Option<String> {
    is_partition_table(table).then(|| {
        format!(
            "SELECT conv, group_concat(json_object('id', id, 'sender', sender, 'recipient', recipient, 'kind', kind, \
             'time', time, 'body', body, 'item', json_set(body, '$.isSend', is_send), 'sseq', sseq, 'rseq', rseq), \
             char(10)) AS rows FROM {table} WHERE conv > ?1 GROUP BY conv ORDER BY conv LIMIT ?2"
        )
    })
}

/// Records how far the export of a partition got.
pub const EXPORTED_SQL: &str = "UPDATE partitions SET exported = ?2 WHERE tbl = ?1";
/// Partitions wholly before a day that are still in D1, with their export cursor.
pub const TO_EXPORT_SQL: &str =
    "SELECT tbl, first_day, end_day, COALESCE(exported, '') AS exported FROM partitions WHERE end_day <= ?1";

/// One exported conversation's rows of one partition.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Exported {
    pub conv: String,
    pub rows: String,
}

/// The object of a conversation's rows of the partition starting on `first_day`.
pub fn key(conv: &str, first_day: u64) -> String {
    format!("{}{first_day:010}", prefix(conv))
}

/// Every object of a conversation starts with this; partitions sort by day.
pub fn prefix(conv: &str) -> String {
    format!("history/{conv}/")
}

/// A history row as exported.
#[derive(Clone, Debug, Deserialize)]
pub struct ColdRow {
    pub id: String,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub kind: i64,
    pub time: u64,
    /// The stored body, as text (byte for byte).
    pub body: String,
    /// The legacy item (`json_set(body, '$.isSend', is_send)`, computed by
    /// SQLite as a page from D1 computes it).
    pub item: Box<serde_json::value::RawValue>,
    pub sseq: Option<u64>,
    pub rseq: Option<u64>,
}

impl ColdRow {
    /// Its place in `owner`'s log and its kind and peer as they see it (as
    /// `history::page_sql` computes them in D1).
    fn as_seen_by(&self, owner: &UserId) -> Option<(u64, Kind, Option<String>)> {
        let me = Some(owner.as_str());
        let mine = self.sender.as_deref() == me;
        let seq = if mine { self.sseq } else { self.rseq }?;
        let kind = if self.kind == ROW_SYSTEM {
            Kind::System
        } else if mine && self.recipient.as_deref() != me {
            Kind::Sent
        } else {
            Kind::Received
        };
        let peer = match kind {
            Kind::System => None,
            _ if mine => self.recipient.clone(),
            _ => self.sender.clone(),
        };
        Some((seq, kind, peer))
    }
}

/// A cold row as one user sees it: the row, their seq, kind and peer.
pub type ColdEntry = (ColdRow, u64, Kind, Option<String>);

/// The rows of exported objects (JSON lines) that belong on `owner`'s page
/// `q`, in its shape and order, at most one more than the page.
pub fn page(objects: &[String], owner: &UserId, shape: Shape, q: &PageQuery) -> Vec<PageRow> {
    let before = q.before.unwrap_or(u64::MAX);
    let after = q.after.unwrap_or(0);
    // Plain loops: an iterator chain here cost the wasm several KB.
    let mut rows: Vec<PageRow> = Vec::new();
    for object in objects {
        for line in object.lines() {
            let Ok(r) = serde_json::from_str::<ColdRow>(line) else { continue };
            let Some((seq, kind, peer)) = r.as_seen_by(owner) else { continue };
            if seq < before && seq > after {
                rows.push(PageRow::from((r, seq, kind, peer)));
            }
        }
    }
    let ascending = shape.ascending(q);
    rows.sort_by_key(|r| if ascending { r.seq as i128 } else { -(r.seq as i128) });
    rows.truncate(q.limit as usize + 1);
    rows
}

impl From<ColdEntry> for PageRow {
    fn from((r, seq, kind, peer): ColdEntry) -> PageRow {
        PageRow { seq, kind: kind.code(), peer, mid: r.id, body: r.body, item: r.item.get().to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{partition_ddl, write_sql};

    #[test]
    fn an_exported_partition_pages_as_d1_did() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(&partition_ddl("history_30")).unwrap();
        let rows = serde_json::json!([
            ["u:a|b", "m1", "a", "b", 1, 5, "{\"t\":1}", 1, 7, 3],
            ["u:a|b", "m2", "b", "a", 1, 6, "{\"t\":2}", 2, 4, 8],
            ["s:a", "s1", null, "a", 3, 7, "{\"type\":\"x\"}", 1, null, 9],
        ]);
        db.execute(&write_sql("history_30"), [rows.to_string()]).unwrap();
        let sql = export_sql("history_30").unwrap();
        let mut stmt = db.prepare(&sql).unwrap();
        let exported: Vec<(String, String)> = stmt
            .query_map(rusqlite::params!["", 100], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(exported.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), vec!["s:a", "u:a|b"]);
        let objects: Vec<String> = exported.into_iter().map(|e| e.1).collect();
        let a = UserId::parse("a").unwrap();
        let q = PageQuery { limit: 10, before: None, after: None, peer: None };
        let legacy = page(&objects, &a, Shape::Legacy, &q);
        assert_eq!(
            legacy.iter().map(|r| (r.seq, r.kind, r.item.as_str())).collect::<Vec<_>>(),
            vec![
                (9, 3, r#"{"type":"x","isSend":1}"#),
                (8, 1, r#"{"t":2,"isSend":2}"#),
                (7, 2, r#"{"t":1,"isSend":1}"#),
            ]
        );
        let b = UserId::parse("b").unwrap();
        let v1 = page(&objects, &b, Shape::V1, &PageQuery { before: Some(4), ..q.clone() });
        assert_eq!(v1.iter().map(|r| (r.seq, r.kind, r.peer.as_deref())).collect::<Vec<_>>(), vec![(3, 1, Some("a"))]);
        assert!(export_sql("history_1; DROP TABLE x").is_none());
        assert_eq!(key("u:a|b", 30), "history/u:a|b/0000000030");
    }
}
