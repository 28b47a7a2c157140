//! Upgrade in place: a user's SQLite written by the first schema (v1),
//! holding data, is opened by this build. Every row must survive the
//! migrations; the text-keyed tables must come out `WITHOUT ROWID` (one
//! billed row per write instead of two) and the log as two generation tables
//! under a view (pruning drops a table instead of deleting rows). The schema text is the log's own
//! (`log::MIGRATIONS`), run by real SQLite through the same port the object
//! uses.

mod support;

use edge_chat::log::{Log, SavedDevice, Sql, SqlValue, LATEST, MIGRATIONS};
use edge_chat::user::UserId;
use rusqlite::Connection;
use support::sqlite::Lite;

/// A database exactly as a v1 deployment left it: v1's statements, then rows.
fn v1_database() -> Lite {
    let db = Lite(Connection::open_in_memory().expect("in-memory SQLite"));
    db.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v)", &[]).unwrap();
    let (version, v1) = MIGRATIONS[0];
    assert_eq!(version, 1);
    for stmt in v1 {
        db.exec(stmt, &[]).unwrap();
    }
    let rows = [
        "INSERT INTO meta (k, v) VALUES ('schema', 1), ('owner', 'bob'), ('archived', 2), ('queue_floor', 1)",
        "INSERT INTO log (seq, id, kind, peer, conv, time, body, sent, peer_seq, peer_sent) VALUES \
         (1, 'm1', 1, 'amy', 'u:amy|bob', 10, '{\"message\":\"one\"}', 1, NULL, NULL), \
         (2, 'm2', 2, 'amy', 'u:amy|bob', 11, '{\"message\":\"two\"}', 1, 7, 1), \
         (3, 'm3', 1, 'amy', 'u:amy|bob', 12, '{\"message\":\"three\"}', 0, NULL, NULL), \
         (4, 'm4', 3, NULL, 's:bob', 13, '{\"type\":\"notice\"}', 0, NULL, NULL)",
        "INSERT INTO devices (device, acked, seen) VALUES ('phone', 2, 1000), ('laptop', 1, 900)",
        "INSERT INTO convs (peer, last_seq, last_kind, last_mid, last_body, unread, read_up_to, peer_delivered, peer_read) \
         VALUES ('amy', 3, 1, 'm3', '{\"message\":\"three\"}', 1, 1, 2, 2)",
        "INSERT INTO sends (cmid, mid, seq, time) VALUES ('c-2', 'm2', 2, 11)",
        "INSERT INTO seen (mid, seq, pushed, time) VALUES ('m4', 4, 0, 13)",
    ];
    for stmt in rows {
        db.exec(stmt, &[]).unwrap();
    }
    db
}

fn table_sql(log: &Log<Lite>, table: &str) -> String {
    let mut sql = String::new();
    log.sql()
        .run(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
            &[SqlValue::Text(table.into())],
            &mut |r| {
                if let SqlValue::Text(t) = &r[0] {
                    sql = t.clone();
                }
                false
            },
        )
        .unwrap();
    sql
}

fn view_sql(log: &Log<Lite>) -> String {
    let mut sql = String::new();
    log.sql()
        .run("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'log'", &[], &mut |r| {
            if let SqlValue::Text(t) = &r[0] {
                sql = t.clone();
            }
            false
        })
        .unwrap();
    sql
}

fn count(log: &Log<Lite>, table: &str) -> i64 {
    let mut n = -1;
    log.sql()
        .run(&format!("SELECT COUNT(*) FROM {table}"), &[], &mut |r| {
            if let SqlValue::Int(c) = r[0] {
                n = c;
            }
            false
        })
        .unwrap();
    n
}

#[test]
fn a_v1_log_with_data_upgrades_in_place_and_loses_nothing() {
    let log = Log::open(v1_database()).expect("the upgrade applies");

    let restored = log.restore().unwrap();
    assert_eq!(restored.owner, Some(UserId::parse("bob").unwrap()));
    assert_eq!(restored.inbox.head(), 4);
    assert_eq!(restored.inbox.first_unsent(), Some(3), "the offline queue is where it was");
    assert_eq!(restored.inbox.archived(), 2, "the archive cursor is where it was");

    let mut devices = log.devices().unwrap();
    devices.sort_by(|a, b| a.device.cmp(&b.device));
    assert_eq!(
        devices,
        vec![
            SavedDevice { device: "laptop".into(), acked: 1, seen: 900 },
            SavedDevice { device: "phone".into(), acked: 2, seen: 1000 },
        ]
    );
    let convs = log.conversations(&edge_chat::user::UserId::parse("me").unwrap(), u64::MAX >> 11, 10).unwrap();
    assert_eq!(convs.len(), 1);
    let c = &convs[0];
    assert_eq!((c.peer.as_str(), c.last_seq, c.last_mid.as_str(), c.unread), ("amy", 3, "m3", 1));
    assert_eq!((c.read_up_to, c.peer_delivered, c.peer_read), (1, 2, 2));
    assert_eq!(log.sent_before("c-2").unwrap(), Some(("m2".into(), 2)), "idempotency records survive");
    assert_eq!(log.seen("m4").unwrap(), Some((4, false)));

    let mut queued = Vec::new();
    log.queued(1, |seq, body| {
        queued.push((seq, body.to_owned()));
        true
    })
    .unwrap();
    assert_eq!(queued, vec![(3, r#"{"message":"three"}"#.into()), (4, r#"{"type":"notice"}"#.into())]);
    assert_eq!(count(&log, "log"), 4);

    for table in ["meta", "devices", "convs", "sends", "seen"] {
        assert!(table_sql(&log, table).ends_with("WITHOUT ROWID"), "{table}: {}", table_sql(&log, table));
    }
    for generation in ["log_a", "log_b"] {
        assert!(table_sql(&log, generation).ends_with(')'), "{generation} keeps its integer key");
    }
    assert_eq!(view_sql(&log), "CREATE VIEW log AS SELECT * FROM log_a UNION ALL SELECT * FROM log_b");
    for leftover in ["meta_v2", "devices_v2", "convs_v2", "sends_v2", "seen_v2"] {
        assert_eq!(table_sql(&log, leftover), "", "{leftover} left behind");
    }

    // Writes keep working on the new tables, and opening again changes nothing.
    log.set_archived(3).unwrap();
    log.save_device("phone", 3, 1100).unwrap();
    let again = Log::open(Lite(reopen(log))).expect("opening an upgraded log");
    assert_eq!(again.restore().unwrap().inbox.archived(), 3);
    assert_eq!(count(&again, "meta"), 5, "schema, owner, archived, queue_floor, gen");
    assert_eq!(count(&again, "devices"), 2);
}

#[test]
fn a_fresh_log_gets_the_newest_schema() {
    let log = Lite::log();
    let mut version = None;
    log.sql()
        .run("SELECT v FROM meta WHERE k = 'schema'", &[], &mut |r| {
            version = Some(r[0].clone());
            false
        })
        .unwrap();
    assert_eq!(version, Some(SqlValue::Int(LATEST)));
    assert!(table_sql(&log, "meta").ends_with("WITHOUT ROWID"));
}

/// Every table as SQLite describes it: columns (name, type, not null,
/// default, key position) and whether it has a rowid.
fn tables(log: &Log<Lite>) -> Vec<(String, bool, Vec<Vec<SqlValue>>)> {
    let mut names = Vec::new();
    log.sql()
        .run("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", &[], &mut |r| {
            if let SqlValue::Text(t) = &r[0] {
                names.push(t.clone());
            }
            true
        })
        .unwrap();
    names
        .into_iter()
        .map(|name| {
            let mut columns = Vec::new();
            log.sql()
                .run(
                    &format!("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('{name}')"),
                    &[],
                    &mut |r| {
                        columns.push(r.to_vec());
                        true
                    },
                )
                .unwrap();
            let without_rowid = table_sql(log, &name).ends_with("WITHOUT ROWID");
            (name, without_rowid, columns)
        })
        .collect()
}

#[test]
fn a_fresh_log_and_an_upgraded_one_have_the_same_tables() {
    let fresh = Lite::log();
    let upgraded = Log::open(v1_database()).unwrap();
    assert_eq!(tables(&fresh), tables(&upgraded));
    assert_eq!(
        tables(&fresh).len(),
        12,
        "log_a, log_b, meta, devices, convs, sends, seen, blocks, push, hidden, watchers, group_cursor"
    );
    assert_eq!(view_sql(&fresh), view_sql(&upgraded));
}

/// The connection under a log, to open it again as a new object would.
fn reopen(log: Log<Lite>) -> Connection {
    log.into_sql().0
}
