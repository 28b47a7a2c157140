//! History in D1: the statements the history writers and readers run (all
//! of the D1 SQL), and history pages.
//!
//! History is kept by conversation: one row per message, written once
//! whatever its number of recipients, in the shard of its conversation
//! ([`crate::archive::shard_of`]) and the time partition of its server time
//! (tables listed in `partitions`; the schema is in `migrations/`). A row
//! carries each side's log seq, so every user still pages their history by
//! their own sequence numbers. The only code that talks to D1 is `edge::d1`.

use crate::message::conversation_id;
use crate::user::UserId;

/// Page size when the client names none. The most a page may hold is the
/// operator's `HISTORY_PAGE_MAX` ([`crate::limits::Limits::history_page`]).
pub const DEFAULT_LIMIT: u32 = 50;

/// Upper bounds for one archive batch: rows, and bytes of message bodies
/// (the whole batch is one bound parameter of one D1 statement).
pub const BATCH_ROWS: u64 = 500;
pub const BATCH_BYTES: usize = 512 * 1024;

/// How long a new entry may wait before its batch is archived, and how long
/// to wait after D1 failed, by attempt (capped).
pub const ARCHIVE_DELAY_MS: u64 = 30_000;
pub fn retry_delay_ms(base_ms: u64, attempt: u32) -> u64 {
    base_ms.saturating_mul(1u64 << attempt.min(6)).min(60_000)
}

/// The columns of a history row, in the order an archive row (a JSON array)
/// carries them: users' objects build rows in their own SQLite (one query,
/// no per-row work in wasm) and [`write_sql`] reads them back by position.
pub const ROW: [&str; 10] = ["conv", "id", "sender", "recipient", "kind", "time", "body", "is_send", "sseq", "rseq"];

/// A history row's kind.
pub const ROW_CHAT: i64 = 1;
pub const ROW_SYSTEM: i64 = 3;

/// The DDL of one time partition (`migrations/partition.sql.in`), for `table`.
pub fn partition_ddl(table: &str) -> String {
    include_str!("../migrations/partition.sql.in")
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default().trim_end())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        .replace("{table}", table)
}

/// Whether `name` is a partition table's name (they are interpolated into SQL).
pub fn is_partition_table(name: &str) -> bool {
    name.strip_prefix("history_").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Lists a partition (once, whoever writes it first).
pub const REGISTER_SQL: &str = "INSERT OR IGNORE INTO partitions (tbl, first_day, end_day) VALUES (?1, ?2, ?3)";
/// Every partition of a database, newest first.
pub const PARTITIONS_SQL: &str = "SELECT tbl, first_day, end_day FROM partitions ORDER BY first_day DESC";
/// Partitions wholly before a day (past retention).
pub const EXPIRED_SQL: &str = "SELECT tbl, first_day, end_day FROM partitions WHERE end_day <= ?1";
pub const UNREGISTER_SQL: &str = "DELETE FROM partitions WHERE tbl = ?1";
pub fn drop_sql(table: &str) -> String {
    format!("DROP TABLE IF EXISTS {table}")
}

/// One statement for the rows every user handed a writer for one
/// partition: the rows travel as one JSON array parameter, which keeps D1
/// statements per message far below one and stays under D1's limit of 100
/// bound parameters. Idempotent: a row handed in again writes nothing, and a
/// second side of the same message only fills in what it knows better (its
/// own seq, a later delivery), so a message is one row written unless it was
/// delivered after it was archived.
///
/// An edit or a delete arrives as the row of its message with the new body
/// ([`crate::edits`]): the body is replaced only by a newer one (a higher
/// `edit_version`, and a tombstone over any edit), so rows written in any
/// order, or again, end in the current state.
pub fn write_sql(table: &str) -> String {
    let cols = (0..ROW.len()).map(|i| format!("json_extract(value, '$[{i}]')")).collect::<Vec<_>>().join(", ");
    let (new, old) = (body_version("excluded.body"), body_version("body"));
    format!(
        "INSERT INTO {table} ({}) SELECT {cols} FROM json_each(?1) WHERE true \
         ON CONFLICT (conv, id) DO UPDATE SET is_send = min(is_send, excluded.is_send), \
         sseq = coalesce(sseq, excluded.sseq), rseq = coalesce(rseq, excluded.rseq), \
         body = CASE WHEN {new} > {old} THEN excluded.body ELSE body END \
         WHERE excluded.is_send < is_send OR (sseq IS NULL AND excluded.sseq IS NOT NULL) \
         OR (rseq IS NULL AND excluded.rseq IS NOT NULL) OR {new} > {old}",
        ROW.join(", ")
    )
}

/// How far a body has been changed: its `edit_version`, or above any for a
/// tombstone (0 for a body never edited, or not JSON).
fn body_version(body: &str) -> String {
    format!(
        "(CASE WHEN NOT json_valid({body}) THEN 0 WHEN json_extract({body}, '$.deleted_at') IS NOT NULL THEN 1000000000 \
         ELSE COALESCE(json_extract({body}, '$.edit_version'), 0) END)"
    )
}

/// A row of 0001's per-owner `messages` table, which deployments before
/// history by conversation wrote: the copy job (`POST /api/history/upgrade`)
/// reads them in `(owner, seq)` order and writes them in today's layout.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct OwnerRow {
    pub owner: String,
    pub seq: u64,
    pub id: String,
    pub conv: String,
    pub peer: Option<String>,
    pub kind: i64,
    pub time: u64,
    pub body: String,
    pub is_send: i64,
    pub peer_seq: Option<u64>,
}

/// Whether the per-owner table of deployments before history by
/// conversation exists (a deployment that never had it has nothing to copy).
pub const OWNER_TABLE_SQL: &str = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'messages'";

/// The next `?3` rows of the per-owner table after `(?1, ?2)` (its primary key).
pub const OWNER_ROWS_SQL: &str = "SELECT owner, seq, id, conv, peer, kind, time, body, is_send, peer_seq \
FROM messages WHERE (owner, seq) > (?1, ?2) ORDER BY owner, seq LIMIT ?3";

/// Old per-owner rows as hand-offs in today's layout: each side's row of a
/// chat becomes the same history row (its `(conv, id)`), which learns both
/// seqs as the two are written.
pub fn from_owner_rows(
    rows: &[OwnerRow],
    shards: u32,
    p: &crate::archive::Partitioning,
) -> Vec<crate::archive::Handoff> {
    use crate::message::Kind;
    let tagged: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let kind = Kind::from_code(r.kind);
            let (sender, recipient, sseq, rseq) = match kind {
                Some(Kind::Sent) => {
                    (Some(r.owner.as_str()), r.peer.as_deref(), Some(r.seq), r.peer_seq.filter(|&s| s > 0))
                }
                Some(Kind::Received) => {
                    let own = r.peer.as_deref() == Some(r.owner.as_str());
                    (r.peer.as_deref(), Some(r.owner.as_str()), own.then_some(r.seq), Some(r.seq))
                }
                _ => (None, Some(r.owner.as_str()), None, Some(r.seq)),
            };
            let row_kind = if kind == Some(Kind::System) { ROW_SYSTEM } else { ROW_CHAT };
            let row =
                serde_json::json!([r.conv, r.id, sender, recipient, row_kind, r.time, r.body, r.is_send, sseq, rseq]);
            serde_json::json!([r.conv, p.of(r.time).first_day, row])
        })
        .collect();
    // Our own JSON: it always splits.
    crate::archive::split(&serde_json::Value::from(tagged).to_string(), shards).unwrap_or_default()
}

/// Whether an archived message reached a socket, as the legacy history shows it.
pub const IS_SEND_DELIVERED: i64 = 1;
pub const IS_SEND_QUEUED: i64 = 2;

/// A client's history request, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: u32,
    /// Only entries with a lower sequence number; `None` for the newest page.
    pub before: Option<u64>,
    /// Only entries with a higher sequence number (v1), oldest first.
    pub after: Option<u64>,
    /// Narrows user messages to the conversation with this peer.
    pub peer: Option<UserId>,
}

/// A query-string parameter that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadParam {
    pub param: &'static str,
    pub problem: &'static str,
}

impl PageQuery {
    /// Reads `limit`, `before` and `peer`; other parameters are ignored.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<PageQuery, BadParam> {
        PageQuery::parse_within(pairs, u32::MAX)
    }

    /// As [`PageQuery::parse`], refusing a page larger than `max` (the
    /// operator's page limit): a client asking for more learns the bound
    /// instead of getting a short page. Without a `limit`, the default page
    /// is lowered to `max`.
    pub fn parse_within<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        max: u32,
    ) -> Result<PageQuery, BadParam> {
        let mut q = PageQuery { limit: page_limit(None, max)?, before: None, after: None, peer: None };
        for (k, v) in pairs {
            match k {
                "limit" => {
                    let n =
                        v.parse().map_err(|_| BadParam { param: "limit", problem: "must be a positive integer" })?;
                    q.limit = page_limit(Some(n), max)?;
                }
                "before" => {
                    let n: u64 =
                        v.parse().map_err(|_| BadParam { param: "before", problem: "must be a cursor from `next`" })?;
                    q.before = Some(n);
                }
                "after" => {
                    let n: u64 =
                        v.parse().map_err(|_| BadParam { param: "after", problem: "must be a sequence number" })?;
                    q.after = Some(n);
                }
                "peer" => {
                    q.peer = Some(
                        UserId::parse(v).map_err(|_| BadParam { param: "peer", problem: "must be a valid user id" })?,
                    );
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// The page size of a request (`None`: it named none) under a page limit of
/// `max`, over HTTP and over the socket alike.
pub fn page_limit(asked: Option<u32>, max: u32) -> Result<u32, BadParam> {
    match asked {
        None => Ok(DEFAULT_LIMIT.min(max)),
        Some(0) => Err(BadParam { param: "limit", problem: "must be a positive integer" }),
        Some(n) if n > max => Err(BadParam { param: "limit", problem: "over the page limit (HISTORY_PAGE_MAX)" }),
        Some(n) => Ok(n),
    }
}

/// The shape of a page: the legacy document's items, or v1 `msg` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Legacy,
    V1,
}

impl Shape {
    /// Oldest first: a v1 page with `after` alone. Every other page is newest first.
    pub fn ascending(self, q: &PageQuery) -> bool {
        self == Shape::V1 && q.after.is_some() && q.before.is_none()
    }
}

/// What a page needs from D1, given what the user's own log gave: the log
/// holds every entry from `oldest` to its head (contiguous seqs), so a page
/// within that range is whole without D1. `None`: the log's part is the page.
/// Rows from both are merged by [`merge`] (the log's first).
pub fn d1_part(shape: Shape, q: &PageQuery, oldest: Option<u64>, from_log: usize) -> Option<PageQuery> {
    let below = |oldest: u64| PageQuery { before: Some(q.before.map_or(oldest, |b| b.min(oldest))), ..q.clone() };
    match oldest {
        // An empty log: history has it all.
        None => Some(q.clone()),
        Some(oldest) if shape.ascending(q) => {
            // Oldest first from `after`: D1 for what is below the log.
            (q.after.unwrap_or(0) + 1 < oldest).then(|| q.clone())
        }
        Some(_) if from_log > q.limit as usize => None,
        Some(1) => None,
        Some(oldest) => (q.after.unwrap_or(0) + 1 < oldest).then(|| below(oldest)),
    }
}

/// The conversations a page of `owner`'s history reads: with a peer, that
/// conversation (and, for the legacy document, the system channel, which it
/// always showed); without, every conversation `all` names and the system
/// channel.
pub fn page_convs(owner: &UserId, shape: Shape, q: &PageQuery, all: impl FnOnce() -> Vec<String>) -> Vec<String> {
    let system = conversation_id(owner, None);
    let mut convs = match (&q.peer, shape) {
        (Some(peer), Shape::V1) => return vec![conversation_id(owner, Some(peer))],
        (Some(peer), Shape::Legacy) => vec![conversation_id(owner, Some(peer))],
        (None, _) => all(),
    };
    if !convs.contains(&system) {
        convs.push(system);
    }
    convs
}

/// A bound value of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    Text(String),
    Int(u64),
}

/// A query and its bindings (`?1`, `?2`, … in order), for `edge::d1` to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// The row's place in `owner`'s own log (`?1`), and its kind as `owner` sees it.
const OWNER_SEQ: &str = "CASE WHEN sender = ?1 THEN sseq ELSE rseq END";
const OWNER_KIND: &str = "CASE WHEN kind = 3 THEN 3 WHEN sender = ?1 AND recipient <> ?1 THEN 2 ELSE 1 END";

/// One shard's part of a page of `owner`'s history: the rows of `convs` in
/// the partitions `tables` (newest first), by `owner`'s own seq, newest
/// first or (v1 `after` alone) oldest first, one more than the page to tell
/// whether another follows. Each conversation is a range of the primary
/// key; the rows of the conversations are sorted by owner seq (an older
/// page reads the conversations' rows down to it), and only the page's
/// rows are shaped. `None` without partitions.
pub fn page_sql(shape: Shape, owner: &UserId, convs: &[String], tables: &[String], q: &PageQuery) -> Option<Query> {
    let tables: Vec<&String> = tables.iter().filter(|t| is_partition_table(t)).collect();
    if tables.is_empty() || convs.is_empty() {
        return None;
    }
    let union = tables
        .iter()
        .map(|t| {
            format!(
                "SELECT kind, sender, recipient, id, body, is_send, {OWNER_SEQ} AS oseq FROM {t} \
                 WHERE conv IN (SELECT value FROM json_each(?2))"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    // Both shapes' columns (one row type, so one page path in the wasm);
    // the shaping functions run only on the page's rows.
    let columns = format!(
        "oseq AS seq, {OWNER_KIND} AS kind, \
         CASE WHEN kind = 3 THEN NULL WHEN sender = ?1 THEN recipient ELSE sender END AS peer, id AS mid, body, \
         json_set(body, '$.isSend', is_send) AS item"
    );
    let order = if shape.ascending(q) { "ASC" } else { "DESC" };
    // Above any sequence number, and exact as a JS number on its way to D1.
    let before = q.before.unwrap_or((1 << 53) - 1);
    Some(Query {
        sql: format!(
            "SELECT {columns} FROM (SELECT * FROM ({union}) WHERE oseq < ?3 AND oseq > ?4 \
             ORDER BY oseq {order} LIMIT ?5) ORDER BY oseq {order}"
        ),
        binds: vec![
            Bind::Text(owner.to_string()),
            Bind::Text(serde_json::Value::from(convs.to_vec()).to_string()),
            Bind::Int(before),
            Bind::Int(q.after.unwrap_or(0)),
            Bind::Int(u64::from(q.limit) + 1),
        ],
    })
}

/// The page from each part (the log's, then each shard's), merged in the
/// page's order, each seq once (the first part's row wins), and cut to one
/// more than `limit` (so the caller can tell whether another follows).
pub fn merge(parts: Vec<Vec<PageRow>>, shape: Shape, q: &PageQuery) -> Vec<PageRow> {
    let ascending = shape.ascending(q);
    let mut rows: Vec<PageRow> = Vec::new();
    for part in parts {
        rows.extend(part);
    }
    // A stable sort keeps the parts' order among equal seqs.
    rows.sort_by_key(|r| if ascending { r.seq as i128 } else { -(r.seq as i128) });
    rows.dedup_by_key(|r| r.seq);
    rows.truncate(q.limit as usize + 1);
    rows
}

/// Of the `(conv, id)` pairs (`?1`, a JSON array), the messages history
/// knows were delivered after all, over the partitions `tables`: primary
/// key lookups. `None` without partitions or pairs.
pub fn delivered_sql(pairs: &[(String, String)], tables: &[String]) -> Option<Query> {
    let tables: Vec<&String> = tables.iter().filter(|t| is_partition_table(t)).collect();
    if tables.is_empty() || pairs.is_empty() {
        return None;
    }
    let union = tables
        .iter()
        .map(|t| {
            format!(
                "SELECT id FROM {t} WHERE is_send = 1 AND (conv, id) IN \
                 (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ");
    let pairs: Vec<serde_json::Value> = pairs.iter().map(|(c, i)| serde_json::json!([c, i])).collect();
    Some(Query { sql: union, binds: vec![Bind::Text(serde_json::Value::from(pairs).to_string())] })
}

/// A row of [`delivered_sql`].
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct Delivered {
    pub id: String,
}

/// One row of a history page, whatever its source (the user's log, D1, R2)
/// and shape: v1 frames use `seq`, `kind`, `peer`, `mid` and `body`; the
/// legacy document `kind` and `item` (the body with `isSend`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct PageRow {
    pub seq: u64,
    pub kind: i64,
    pub peer: Option<String>,
    pub mid: String,
    pub body: String,
    pub item: String,
}

/// Shows the rows their user deleted for themself (`hidden`: mid and when)
/// as tombstones, to them alone: the rows themselves are both users'.
pub fn hide(rows: &mut [PageRow], hidden: &[(String, u64)]) {
    if hidden.is_empty() {
        return;
    }
    for r in rows.iter_mut() {
        let Some((_, at)) = hidden.iter().find(|(mid, _)| *mid == r.mid) else { continue };
        r.body = crate::edits::hidden_body(&r.body, *at);
        if r.item.is_empty() {
            continue;
        }
        // The legacy item is the body with `isSend`, which it keeps.
        let is_send = serde_json::from_str::<serde_json::Value>(&r.item).ok().and_then(|v| v.get("isSend").cloned());
        let mut item: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&r.body).unwrap_or_default();
        if let Some(v) = is_send {
            item.insert("isSend".into(), v);
        }
        r.item = serde_json::Value::Object(item).to_string();
    }
}

/// The legacy history document `{"sys":[…],"usr":[…],"next":…}` from rows
/// fetched with [`page_sql`] (newest first, at most limit + 1 of them).
pub fn page_json(rows: &[PageRow], limit: u32) -> String {
    let page = &rows[..rows.len().min(limit as usize)];
    let next = (rows.len() > limit as usize).then(|| page.last().map(|r| r.seq)).flatten();
    let join = |sys: bool| {
        page.iter()
            .filter(|r| (r.kind == crate::message::Kind::System.code()) == sys)
            .map(|r| r.item.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let next = next.map_or("null".to_string(), |n| n.to_string());
    format!(r#"{{"sys":[{}],"usr":[{}],"next":{next}}}"#, join(true), join(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<PageQuery, BadParam> {
        PageQuery::parse(s.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))))
    }

    #[test]
    fn page_query_defaults_and_bounds() {
        assert_eq!(q("").unwrap(), PageQuery { limit: 50, before: None, after: None, peer: None });
        assert_eq!(q("after=4").unwrap().after, Some(4));
        let within = |s: &str, max| PageQuery::parse_within(s.split('&').filter_map(|kv| kv.split_once('=')), max);
        assert_eq!(within("limit=200", 200).unwrap().limit, 200);
        assert_eq!(within("limit=201", 200).unwrap_err().param, "limit");
        assert_eq!(within("", 10).unwrap().limit, 10, "the default page fits the limit");
        assert_eq!(q("limit=0").unwrap_err().param, "limit");
        assert_eq!(q("limit=x").unwrap_err().param, "limit");
        assert_eq!(q("before=-1").unwrap_err().param, "before");
        assert_eq!(q("peer=a%20b").unwrap_err().param, "peer");
        assert_eq!(q("before=9&peer=2&token=t").unwrap().before, Some(9));
    }

    fn page_row(kind: i64, item: &str, seq: u64) -> PageRow {
        PageRow { seq, kind, peer: None, mid: String::new(), body: String::new(), item: item.into() }
    }

    #[test]
    fn page_json_splits_and_sets_the_cursor() {
        let rows = vec![page_row(1, r#"{"a":3}"#, 30), page_row(3, r#"{"a":2}"#, 20), page_row(2, r#"{"a":1}"#, 10)];
        assert_eq!(page_json(&rows, 2), r#"{"sys":[{"a":2}],"usr":[{"a":3}],"next":20}"#);
        assert_eq!(page_json(&rows, 3), r#"{"sys":[{"a":2}],"usr":[{"a":3},{"a":1}],"next":null}"#);
        assert_eq!(page_json(&[], 3), r#"{"sys":[],"usr":[],"next":null}"#);
    }

    /// A shard database in SQLite, with `tables` partitions.
    fn shard(tables: &[&str]) -> rusqlite::Connection {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        for t in tables {
            db.execute_batch(&partition_ddl(t)).unwrap();
        }
        db
    }

    fn write(db: &rusqlite::Connection, table: &str, rows: &str) -> usize {
        db.execute(&write_sql(table), [rows]).unwrap()
    }

    fn page(
        db: &rusqlite::Connection,
        shape: Shape,
        owner: &str,
        convs: &[&str],
        tables: &[&str],
        query: &str,
    ) -> Vec<(u64, i64, String)> {
        let owner = UserId::parse(owner).unwrap();
        let convs: Vec<String> = convs.iter().map(|c| c.to_string()).collect();
        let tables: Vec<String> = tables.iter().map(|c| c.to_string()).collect();
        let Some(query) = page_sql(shape, &owner, &convs, &tables, &q(query).unwrap()) else { return vec![] };
        let binds: Vec<rusqlite::types::Value> = query
            .binds
            .iter()
            .map(|b| match b {
                Bind::Text(s) => rusqlite::types::Value::Text(s.clone()),
                Bind::Int(n) => rusqlite::types::Value::Integer(*n as i64),
            })
            .collect();
        let mut stmt = db.prepare(&query.sql).unwrap();
        // seq, kind, peer, mid, body, item: the legacy item, the v1 body.
        let (seq_col, kind_col, text_col) = if shape == Shape::Legacy { (0, 1, 5) } else { (0, 1, 4) };
        stmt.query_map(rusqlite::params_from_iter(binds), |r| {
            Ok((r.get::<_, i64>(seq_col)? as u64, r.get::<_, i64>(kind_col)?, r.get::<_, String>(text_col)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// `[conv, id, sender, recipient, kind, time, body, is_send, sseq, rseq]`
    fn row(
        conv: &str,
        id: &str,
        from: Option<&str>,
        to: &str,
        is_send: i64,
        sseq: Option<u64>,
        rseq: Option<u64>,
    ) -> serde_json::Value {
        let kind = if from.is_some() { ROW_CHAT } else { ROW_SYSTEM };
        serde_json::json!([conv, id, from, to, kind, 1, format!("{{\"m\":\"{id}\"}}"), is_send, sseq, rseq])
    }

    #[test]
    fn the_partition_ddl_and_the_write_read_the_row_layout() {
        let ddl = partition_ddl("history_7");
        assert!(ddl.starts_with("CREATE TABLE IF NOT EXISTS history_7 (") && !ddl.contains("--"));
        for (i, col) in ROW.iter().enumerate() {
            assert!(ddl.contains(&format!("  {col} ")), "{col}");
            assert!(write_sql("t").contains(&format!("'$[{i}]'")), "position {i}");
        }
        assert!(is_partition_table("history_20400"));
        for bad in ["history_", "history_1; DROP TABLE x", "messages", "history_1a"] {
            assert!(!is_partition_table(bad), "{bad}");
        }
    }

    #[test]
    fn a_message_is_one_row_and_each_side_fills_in_what_it_knows() {
        let db = shard(&["history_1"]);
        // The sender's pass: its seq 7, the recipient's 3, queued.
        let sent = serde_json::json!([row("u:a|b", "m1", Some("a"), "b", 2, Some(7), Some(3))]).to_string();
        assert_eq!(write(&db, "history_1", &sent), 1);
        assert_eq!(write(&db, "history_1", &sent), 0, "handed in again: nothing written");
        // The recipient delivered it from its queue later: one more row written.
        let delivered = serde_json::json!([row("u:a|b", "m1", Some("a"), "b", 1, None, Some(3))]).to_string();
        assert_eq!(write(&db, "history_1", &delivered), 1);
        assert_eq!(write(&db, "history_1", &sent), 0, "an older state never wins");
        let n: i64 = db.query_row("SELECT COUNT(*) FROM history_1", [], |r| r.get(0)).unwrap();
        let state: (i64, i64, i64) = db
            .query_row("SELECT is_send, sseq, rseq FROM history_1", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        assert_eq!((n, state), (1, (1, 7, 3)));
        // The other order: the recipient first, then the sender's seq.
        write(&db, "history_1", &serde_json::json!([row("u:a|b", "m2", Some("a"), "b", 1, None, Some(4))]).to_string());
        write(
            &db,
            "history_1",
            &serde_json::json!([row("u:a|b", "m2", Some("a"), "b", 2, Some(8), Some(4))]).to_string(),
        );
        let m2: (i64, i64) = db
            .query_row("SELECT is_send, sseq FROM history_1 WHERE id = 'm2'", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(m2, (1, 8));
    }

    #[test]
    fn each_side_pages_by_its_own_seqs_across_partitions() {
        let db = shard(&["history_1", "history_2"]);
        write(
            &db,
            "history_1",
            &serde_json::json!([
                row("u:a|b", "m1", Some("a"), "b", 1, Some(1), Some(10)),
                row("u:a|b", "m2", Some("b"), "a", 2, Some(11), Some(2)),
                row("s:a", "s1", None, "a", 1, None, Some(3)),
            ])
            .to_string(),
        );
        write(
            &db,
            "history_2",
            &serde_json::json!([
                row("u:a|b", "m3", Some("a"), "b", 1, Some(4), Some(12)),
                row("u:a|c", "m4", Some("c"), "a", 1, Some(1), Some(5)),
            ])
            .to_string(),
        );
        let tables = ["history_2", "history_1"];
        let all = ["u:a|b", "u:a|c", "s:a"];
        let seqs = |rows: Vec<(u64, i64, String)>| rows.iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(seqs(page(&db, Shape::V1, "a", &all, &tables, "")), vec![5, 4, 3, 2, 1]);
        assert_eq!(seqs(page(&db, Shape::V1, "a", &all, &tables, "before=4&limit=2")), vec![3, 2, 1], "limit + 1 rows");
        assert_eq!(seqs(page(&db, Shape::V1, "a", &all, &tables, "after=2")), vec![3, 4, 5]);
        assert_eq!(seqs(page(&db, Shape::V1, "b", &["u:a|b"], &tables, "")), vec![12, 11, 10]);
        let kinds: Vec<i64> = page(&db, Shape::V1, "a", &all, &tables, "").iter().map(|r| r.1).collect();
        assert_eq!(kinds, vec![1, 2, 3, 1, 2], "in, out, system, in, out as a sees them");
        let legacy = page(&db, Shape::Legacy, "b", &["u:a|b"], &tables, "");
        assert_eq!(legacy[2].2, r#"{"m":"m1","isSend":1}"#);
        assert!(page(&db, Shape::V1, "a", &all, &[], "").is_empty(), "no partitions yet");
    }

    #[test]
    fn old_owner_rows_become_one_row_per_message() {
        let owner_row = |owner: &str, seq, kind, peer: Option<&str>, is_send, peer_seq| OwnerRow {
            owner: owner.into(),
            seq,
            id: format!("m{}", if kind == 3 { 100 + seq } else { 1 }),
            conv: if kind == 3 { format!("s:{owner}") } else { "u:a|b".into() },
            peer: peer.map(str::to_string),
            kind,
            time: 86_400_000 * 40,
            body: "{}".into(),
            is_send,
            peer_seq,
        };
        let rows = [
            owner_row("a", 1, 2, Some("b"), 2, Some(5)),
            owner_row("b", 5, 1, Some("a"), 1, None),
            owner_row("b", 6, 3, None, 2, None),
        ];
        let p = crate::archive::Partitioning { days: 30, hot_days: 365, retention_days: 365 };
        let handoffs = from_owner_rows(&rows, 1, &p);
        assert_eq!(handoffs.len(), 1);
        assert_eq!(handoffs[0].first_day, 30);
        let db = shard(&["history_30"]);
        write(&db, "history_30", &handoffs[0].rows);
        let chat: (String, String, i64, i64, i64) = db
            .query_row("SELECT sender, recipient, is_send, sseq, rseq FROM history_30 WHERE id = 'm1'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap();
        assert_eq!(chat, ("a".into(), "b".into(), 1, 1, 5));
        let sys: (Option<String>, i64, i64) = db
            .query_row("SELECT sender, kind, rseq FROM history_30 WHERE conv = 's:b'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(sys, (None, ROW_SYSTEM, 6));
    }

    #[test]
    fn pages_from_several_shards_merge_in_order() {
        let rows = |seqs: &[u64]| seqs.iter().map(|&seq| page_row(1, "", seq)).collect::<Vec<_>>();
        let merged = merge(vec![rows(&[9, 5, 1]), rows(&[8, 7])], Shape::Legacy, &q("limit=3").unwrap());
        assert_eq!(merged.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![9, 8, 7, 5]);
        let up = merge(vec![rows(&[2, 6]), rows(&[3])], Shape::V1, &q("after=1&limit=5").unwrap());
        assert_eq!(up.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3, 6]);
        let me = UserId::parse("1").unwrap();
        let legacy_peer = page_convs(&me, Shape::Legacy, &q("peer=2").unwrap(), Vec::new);
        assert_eq!(legacy_peer, vec!["u:1|2".to_string(), "s:1".to_string()]);
        assert_eq!(page_convs(&me, Shape::V1, &q("peer=2").unwrap(), Vec::new), vec!["u:1|2".to_string()]);
        assert_eq!(page_convs(&me, Shape::V1, &q("").unwrap(), || vec!["u:1|3".into()]).len(), 2);
    }

    #[test]
    fn retries_back_off_and_cap() {
        assert_eq!(retry_delay_ms(1000, 0), 1000);
        assert_eq!(retry_delay_ms(1000, 3), 8000);
        assert_eq!(retry_delay_ms(1000, 30), 60_000);
    }
}
