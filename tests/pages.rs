//! History pages served from the user's own log as far as it reaches, and
//! from D1 below it, are the pages D1 alone gives: same rows, same order,
//! same cursors, for both shapes, every page size and range, with and
//! without a peer, before and after the log is pruned.

mod support;

use edge_chat::archive::split;
use edge_chat::history::{
    d1_part, merge, page_convs, page_sql, partition_ddl, write_sql, Bind, PageQuery, PageRow, Shape,
};
use edge_chat::log::{Log, NewEntry, Pass};
use edge_chat::message::Kind;
use edge_chat::user::UserId;
use rusqlite::Connection;
use support::sqlite::Lite;

const TABLE: &str = "history_0";

fn owner() -> UserId {
    UserId::parse("bob").unwrap()
}

/// Bob's log: chats with two peers both ways, system messages, a chat to
/// himself; every tenth sent chat was queued at its recipient.
fn fill(log: &Log<Lite>, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        let peer = ["amy", "cat", "bob"][(seq % 3) as usize];
        let kind = match seq % 4 {
            0 => Kind::System,
            1 if peer != "bob" => Kind::Sent,
            _ => Kind::Received,
        };
        let entry = NewEntry {
            id: format!("m{seq}"),
            kind,
            peer: (kind != Kind::System).then(|| UserId::parse(peer).unwrap()),
            time_ms: seq,
            body: format!(r#"{{"n":{seq}}}"#),
            peer_state: (kind == Kind::Sent).then_some((100 + seq, seq % 10 != 1)),
            cmid: None,
            dedup: false,
            rewrite: None,
        };
        log.append(&owner(), &[(seq, &entry, seq % 7 != 0)], false).unwrap();
    }
}

/// Everything in the log, as history holds it (the received chats as their
/// senders' passes would write them).
fn archive(log: &Log<Lite>, d1: &Connection, n: u64) {
    let pass = Pass { owner: owner(), received_from_ms: 0, partition_days: 30 };
    let (tagged, upto) = log.archive_batch(1, n, 1 << 30, &pass).unwrap().unwrap();
    assert_eq!(upto, n);
    for h in split(&tagged, 1).unwrap() {
        d1.execute(&write_sql(TABLE), [h.rows]).unwrap();
    }
}

fn d1_page(d1: &Connection, log: &Log<Lite>, shape: Shape, q: &PageQuery) -> Vec<PageRow> {
    let convs = page_convs(&owner(), shape, q, || log.conversation_ids(&owner()).unwrap());
    let Some(query) = page_sql(shape, &owner(), &convs, &[TABLE.to_string()], q) else { return vec![] };
    let binds: Vec<rusqlite::types::Value> = query
        .binds
        .iter()
        .map(|b| match b {
            Bind::Text(s) => rusqlite::types::Value::Text(s.clone()),
            Bind::Int(n) => rusqlite::types::Value::Integer(*n as i64),
        })
        .collect();
    let mut stmt = d1.prepare(&query.sql).unwrap();
    let rows = stmt.query_map(rusqlite::params_from_iter(binds), |r| Ok(row(r))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// What the user's object does: the log first, D1 for what is below it.
fn served(d1: &Connection, log: &Log<Lite>, shape: Shape, q: &PageQuery) -> Vec<PageRow> {
    let from_log = log.page(shape, q, &[]).unwrap();
    let below = d1_part(shape, q, log.oldest().unwrap(), from_log.len());
    let mut parts = vec![from_log];
    if let Some(below) = below {
        parts.push(d1_page(d1, log, shape, &below));
    }
    merge(parts, shape, q)
}

/// A page row as the page query returns it: seq, kind, peer, mid, body, item.
fn row(r: &rusqlite::Row) -> PageRow {
    PageRow {
        seq: r.get::<_, i64>(0).unwrap() as u64,
        kind: r.get(1).unwrap(),
        peer: r.get(2).unwrap(),
        mid: r.get(3).unwrap(),
        body: r.get(4).unwrap(),
        item: r.get(5).unwrap(),
    }
}

fn queries(n: u64) -> Vec<PageQuery> {
    let mut out = Vec::new();
    for limit in [1, 3, 10, 200] {
        for peer in [None, Some("amy"), Some("bob"), Some("zed")] {
            let peer = peer.map(|p| UserId::parse(p).unwrap());
            for (before, after) in [
                (None, None),
                (Some(n / 2), None),
                (Some(5), None),
                (None, Some(n / 3)),
                (None, Some(0)),
                (Some(n - 2), Some(n / 4)),
            ] {
                out.push(PageQuery { limit, before, after, peer: peer.clone() });
            }
        }
    }
    out
}

fn assert_same_pages(log: &Log<Lite>, d1: &Connection, n: u64, when: &str) {
    let mut compared = 0;
    for q in queries(n) {
        let q_legacy = PageQuery { after: None, ..q.clone() };
        let legacy = served(d1, log, Shape::Legacy, &q_legacy);
        assert_eq!(legacy, d1_page(d1, log, Shape::Legacy, &q_legacy), "{when}: legacy {q_legacy:?}");
        assert_eq!(served(d1, log, Shape::V1, &q), d1_page(d1, log, Shape::V1, &q), "{when}: v1 {q:?}");
        compared += 2;
    }
    assert!(compared > 100);
}

#[test]
fn pages_from_the_log_and_d1_are_the_pages_of_d1_alone() {
    let n = 60;
    let log = Lite::log();
    fill(&log, 1..=n);
    let d1 = Connection::open_in_memory().unwrap();
    d1.execute_batch(&partition_ddl(TABLE)).unwrap();
    archive(&log, &d1, n);
    assert_same_pages(&log, &d1, n, "whole log");

    // A log pruned by generations as it grew: the older pages come from D1.
    let log = Lite::log();
    for chunk in 0..6 {
        fill(&log, chunk * 10 + 1..=chunk * 10 + 10);
        log.prune_below((chunk * 10).saturating_sub(5), 0, 8).unwrap();
    }
    let oldest = log.oldest().unwrap().unwrap();
    assert!(oldest > 8 && oldest < n, "part of the history is only in D1 (oldest {oldest})");
    assert_same_pages(&log, &d1, n, "pruned log");
}

#[test]
fn a_sent_chat_delivered_after_all_shows_it_from_the_log_too() {
    let log = Lite::log();
    fill(&log, 1..=12);
    let q = PageQuery { limit: 50, before: None, after: None, peer: None };
    let queued: Vec<(String, String)> = log.page_queued_sends(Shape::Legacy, &q).unwrap();
    assert_eq!(queued, vec![("u:bob|cat".to_string(), "m1".to_string())], "m1 was queued at cat");
    let item = |rows: Vec<PageRow>| rows.into_iter().find(|r| r.seq == 1).unwrap().item;
    assert_eq!(item(log.page(Shape::Legacy, &q, &[]).unwrap()), r#"{"n":1,"isSend":2}"#);
    assert_eq!(item(log.page(Shape::Legacy, &q, &["m1".to_string()]).unwrap()), r#"{"n":1,"isSend":1}"#);
}
