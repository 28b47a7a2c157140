//! The log's generations: pruning drops a whole table once every entry in it
//! may go, never an entry that must stay, and a reopened log keeps writing to
//! the generation it was writing to.

mod support;

use edge_chat::log::{Log, NewEntry, Sql, SqlValue};
use edge_chat::message::Kind;
use edge_chat::user::UserId;
use rusqlite::Connection;
use support::sqlite::Lite;

fn owner() -> UserId {
    UserId::parse("bob").unwrap()
}

fn append(log: &Log<Lite>, seqs: std::ops::RangeInclusive<u64>) {
    append_from(log, seqs, Kind::System, None);
}

/// Entries of one kind, from or to `peer`.
fn append_from(log: &Log<Lite>, seqs: std::ops::RangeInclusive<u64>, kind: Kind, peer: Option<&str>) {
    let entries: Vec<NewEntry> = seqs
        .clone()
        .map(|seq| NewEntry {
            id: format!("m{seq}"),
            kind,
            peer: peer.map(|p| UserId::parse(p).unwrap()),
            time_ms: seq,
            body: "{}".into(),
            peer_state: None,
            cmid: None,
            dedup: false,
            rewrite: None,
        })
        .collect();
    let rows: Vec<(u64, &NewEntry, bool)> = seqs.zip(&entries).map(|(seq, e)| (seq, e, true)).collect();
    log.append(&owner(), &rows, false).unwrap();
}

fn seqs(log: &Log<Lite>, table: &str) -> Vec<u64> {
    let mut out = Vec::new();
    log.sql()
        .run(&format!("SELECT seq FROM {table} ORDER BY seq"), &[], &mut |r| {
            if let SqlValue::Int(n) = r[0] {
                out.push(n as u64);
            }
            true
        })
        .unwrap();
    out
}

#[test]
fn pruning_drops_whole_generations_and_nothing_that_must_stay() {
    let log = Lite::log();
    append(&log, 1..=10);
    // Generation a is full (4 or more): new entries go to b; nothing goes yet.
    assert_eq!(log.prune_below(3, 0, 4).unwrap(), Some(1));
    append(&log, 11..=12);
    assert_eq!((seqs(&log, "log_a").len(), seqs(&log, "log_b")), (10, vec![11, 12]));
    // a still holds entries at or above the prune point: it stays whole.
    assert_eq!(log.prune_below(10, 0, 4).unwrap(), Some(1));
    assert_eq!(seqs(&log, "log").len(), 12);
    // Every entry of a is below it now: a goes, b (2 entries) stays current.
    assert_eq!(log.prune_below(11, 0, 4).unwrap(), Some(11));
    assert_eq!((seqs(&log, "log_a"), seqs(&log, "log")), (vec![], vec![11, 12]));
    append(&log, 13..=14);
    assert_eq!(seqs(&log, "log_b"), vec![11, 12, 13, 14]);
    assert_eq!(log.oldest().unwrap(), Some(11));
    assert_eq!(log.restore().unwrap().inbox.head(), 14);

    // b is full: the next entries go to a, also after the object restarts.
    assert_eq!(log.prune_below(12, 0, 4).unwrap(), Some(11));
    let conn: Connection = log.into_sql().0;
    let log = Log::open(Lite(conn)).unwrap();
    append(&log, 15..=15);
    assert_eq!((seqs(&log, "log_a"), seqs(&log, "log_b").len()), (vec![15], 4));
    assert_eq!(log.restore().unwrap().inbox.head(), 15);
}

#[test]
fn the_conversation_list_outlives_the_entries_it_was_derived_from() {
    let log = Lite::log();
    append_from(&log, 1..=3, Kind::Received, Some("amy"));
    append_from(&log, 4..=4, Kind::Sent, Some("cat"));
    assert_eq!(log.mark_read("amy", 1).unwrap(), Some((2, 1)), "2 and 3 unread");
    assert_eq!(log.mark_read("nobody", 1).unwrap(), None, "no such conversation");
    let list = |log: &Log<Lite>| {
        log.conversations(&edge_chat::user::UserId::parse("me").unwrap(), u64::MAX >> 11, 10)
            .unwrap()
            .into_iter()
            .map(|c| (c.peer, c.last_seq, c.last_mid, c.unread, c.read_up_to))
            .collect::<Vec<_>>()
    };
    let before = list(&log);
    assert_eq!(before, vec![("cat".into(), 4, "m4".into(), 0, 0), ("amy".into(), 3, "m3".into(), 2, 1)]);

    // Generation a (entries 1-4) is dropped once everything in it may go.
    assert_eq!(log.prune_below(1, 0, 4).unwrap(), Some(1));
    append_from(&log, 5..=5, Kind::Received, Some("cat"));
    assert_eq!(log.prune_below(5, 0, 4).unwrap(), Some(5));
    assert_eq!(seqs(&log, "log"), vec![5]);
    assert_eq!(
        list(&log),
        vec![("cat".into(), 5, "m5".into(), 1, 0), ("amy".into(), 3, "m3".into(), 2, 1)],
        "amy's conversation and its unread count survive the drop"
    );
    assert_eq!(log.mark_read("amy", 3).unwrap(), Some((0, 3)), "reading past the pruned entries reads them");
    assert_eq!(log.mark_read("cat", 5).unwrap(), Some((0, 5)));
}

#[test]
fn a_burst_past_the_cap_is_cut_even_inside_one_generation() {
    let log = Lite::log();
    append_from(&log, 1..=1, Kind::Received, Some("amy"));
    // The first pass starts generation b; then a burst of 20 lands in it.
    assert_eq!(log.prune_below(1, 0, 1).unwrap(), Some(1));
    append_from(&log, 2..=21, Kind::Received, Some("amy"));
    // Generation a (entry 1) goes whole; b holds the burst, and everything
    // below the hard bound goes from it too, row by row.
    assert_eq!(log.prune_below(17, 15, 1).unwrap(), Some(15));
    assert_eq!(seqs(&log, "log"), (15..=21).collect::<Vec<_>>());
    let amy = &log.conversations(&edge_chat::user::UserId::parse("me").unwrap(), u64::MAX >> 11, 10).unwrap()[0];
    assert_eq!((amy.last_seq, amy.unread), (21, 21), "the deleted entries' unread count is kept");
}
