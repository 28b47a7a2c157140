//! History: what goes to D1 and how pages come back (the SQL lives here).
//!
//! Each user's object archives its own log to D1 in batches, one row per
//! log entry keyed by (owner, seq), so a user only ever reads rows they own and
//! pages follow their own sequence numbers. Every row also carries its
//! conversation id, the key for spreading history over several databases
//! later. The schema is in `migrations/`; the only code that talks to D1 is
//! `edge::d1`, which runs the statements defined here.

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
pub const ARCHIVE_DELAY_MS: u64 = 5000;
pub fn retry_delay_ms(base_ms: u64, attempt: u32) -> u64 {
    base_ms.saturating_mul(1u64 << attempt.min(6)).min(60_000)
}

/// An archive batch is a JSON array of rows, each row an array in this
/// column order. The user's object builds it in its own SQLite (one query,
/// no per-row work in wasm) and [`ARCHIVE_SQL`] reads it back by position.
pub const ARCHIVE_ROW: [&str; 9] = ["seq", "id", "conv", "peer", "kind", "time", "body", "is_send", "peer_seq"];

/// One batch, as a single statement: the rows travel as one JSON array
/// parameter, which keeps D1 statements per message far below one and stays
/// under D1's limit of 100 bound parameters. Idempotent: a retried batch
/// writes nothing new, and a row whose delivery state changed is updated.
pub const ARCHIVE_SQL: &str = "INSERT INTO messages (owner, seq, id, conv, peer, kind, time, body, is_send, peer_seq) \
SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]') \
FROM json_each(?2) WHERE true \
ON CONFLICT (owner, seq) DO UPDATE SET is_send = excluded.is_send WHERE messages.is_send <> excluded.is_send";

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

/// Columns every page query returns: kind, the item (body with `isSend`), seq.
/// A sent message shows the recipient's delivery state once their copy is
/// archived, and the state the sender learned at send time until then.
const PAGE_SELECT: &str = "SELECT m.kind AS kind, \
json_set(m.body, '$.isSend', CASE WHEN m.kind = 2 THEN COALESCE(r.is_send, m.is_send) ELSE m.is_send END) AS item, \
m.seq AS seq";
const PAGE_JOIN: &str = "LEFT JOIN messages r ON m.kind = 2 AND r.owner = m.peer AND r.seq = m.peer_seq";

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

/// Newest first, by the owner's sequence number; the primary key serves the
/// whole-log page, the (owner, conv, seq) index each half of a peer page.
/// Fetches one row more than the page, to tell whether another follows.
pub fn page_sql(owner: &UserId, q: &PageQuery) -> Query {
    // Above any sequence number, and exact as a JS number on its way to D1.
    let before = q.before.unwrap_or((1 << 53) - 1);
    let mut binds = vec![Bind::Text(owner.to_string()), Bind::Int(before), Bind::Int(q.limit as u64 + 1)];
    let sql = match &q.peer {
        None => format!(
            "{PAGE_SELECT} FROM messages m {PAGE_JOIN} WHERE m.owner = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3"
        ),
        Some(peer) => {
            binds.push(Bind::Text(conversation_id(owner, None)));
            binds.push(Bind::Text(conversation_id(owner, Some(peer))));
            // INDEXED BY: without statistics SQLite would rather walk the
            // primary key and filter on conv, which reads the owner's whole
            // log for a quiet conversation.
            let half = "SELECT * FROM (SELECT * FROM messages INDEXED BY messages_conv \
                        WHERE owner = ?1 AND conv = {C} AND seq < ?2 ORDER BY seq DESC LIMIT ?3)";
            format!(
                "{PAGE_SELECT} FROM ({} UNION ALL {}) m {PAGE_JOIN} ORDER BY m.seq DESC LIMIT ?3",
                half.replace("{C}", "?4"),
                half.replace("{C}", "?5")
            )
        }
    };
    Query { sql, binds }
}

/// A v1 page: the owner's log entries as `msg` frames, newest first, or
/// oldest first after `after`. With `peer`, one conversation (index
/// `(owner, conv, seq)`); without, the whole log (primary key).
pub fn log_page_sql(owner: &UserId, q: &PageQuery) -> Query {
    let before = q.before.unwrap_or((1 << 53) - 1);
    let order = if q.after.is_some() && q.before.is_none() { "ASC" } else { "DESC" };
    let mut binds = vec![
        Bind::Text(owner.to_string()),
        Bind::Int(before),
        Bind::Int(q.limit as u64 + 1),
        Bind::Int(q.after.unwrap_or(0)),
    ];
    let (index, conv) = match &q.peer {
        Some(p) => {
            binds.push(Bind::Text(conversation_id(owner, Some(p))));
            (" INDEXED BY messages_conv", " AND conv = ?5")
        }
        None => ("", ""),
    };
    Query {
        sql: format!(
            "SELECT seq, kind, peer, id AS mid, body FROM messages{index} \
             WHERE owner = ?1 AND seq < ?2 AND seq > ?4{conv} ORDER BY seq {order} LIMIT ?3"
        ),
        binds,
    }
}

/// One row of a v1 page.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct LogRow {
    pub seq: u64,
    pub kind: i64,
    pub peer: Option<String>,
    pub mid: String,
    pub body: String,
}

/// One row of a page result.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct PageRow {
    pub kind: i64,
    pub item: String,
    pub seq: u64,
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

    #[test]
    fn page_json_splits_and_sets_the_cursor() {
        let rows = vec![
            PageRow { kind: 1, item: r#"{"a":3}"#.into(), seq: 30 },
            PageRow { kind: 3, item: r#"{"a":2}"#.into(), seq: 20 },
            PageRow { kind: 2, item: r#"{"a":1}"#.into(), seq: 10 },
        ];
        assert_eq!(page_json(&rows, 2), r#"{"sys":[{"a":2}],"usr":[{"a":3}],"next":20}"#);
        assert_eq!(page_json(&rows, 3), r#"{"sys":[{"a":2}],"usr":[{"a":3},{"a":1}],"next":null}"#);
        assert_eq!(page_json(&[], 3), r#"{"sys":[],"usr":[],"next":null}"#);
    }

    #[test]
    fn archive_sql_reads_every_column_of_the_row_layout() {
        let insert_cols = "owner, seq, id, conv, peer, kind, time, body, is_send, peer_seq";
        assert!(ARCHIVE_SQL.contains(insert_cols));
        assert_eq!(insert_cols, format!("owner, {}", ARCHIVE_ROW.join(", ")));
        for i in 0..ARCHIVE_ROW.len() {
            assert!(ARCHIVE_SQL.contains(&format!("'$[{i}]'")), "position {i}");
        }
    }

    #[test]
    fn v1_pages_go_both_ways() {
        let owner = UserId::parse("1").unwrap();
        let newest = log_page_sql(&owner, &q("peer=2&limit=10").unwrap());
        assert!(newest.sql.contains("ORDER BY seq DESC") && newest.sql.contains("conv = ?5"));
        let forward = log_page_sql(&owner, &q("after=7").unwrap());
        assert!(forward.sql.contains("ORDER BY seq ASC") && !forward.sql.contains("conv"));
        let rows: Vec<LogRow> = (1..=3)
            .map(|seq| LogRow { seq, kind: 2, peer: Some("2".into()), mid: format!("m{seq}"), body: "{}".into() })
            .collect();
        let (items, next) = crate::protocol::v1::page_items(&rows, 2);
        assert_eq!((items.len(), next), (2, Some(2)));
        assert!(items[0].as_str().contains(r#""kind":"out""#));
    }

    #[test]
    fn retries_back_off_and_cap() {
        assert_eq!(retry_delay_ms(1000, 0), 1000);
        assert_eq!(retry_delay_ms(1000, 3), 8000);
        assert_eq!(retry_delay_ms(1000, 30), 60_000);
    }
}
