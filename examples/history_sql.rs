//! Prints what the benchmark needs to fill and page one conversation's
//! history without restating the SQL: the partition's table and DDL, the
//! shard of the conversation, the write statement, and the page queries.
//! `cargo run --example history_sql -- <shards> <time_ms> <partition_days>`.

use edge_chat::archive::{shard_of, Partitioning};
use edge_chat::history::{page_convs, page_sql, partition_ddl, write_sql, Bind, PageQuery, Shape};
use edge_chat::user::UserId;

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (shards, now, days) = match args[..] {
        [s, t, d] => (s as u32, t, d),
        _ => (2, 1_800_000_000_000, 30),
    };
    let owner = UserId::parse("h1").expect("valid id");
    let part = Partitioning { days, hot_days: 36_500, retention_days: 36_500 }.of(now);
    let table = part.table();
    let conv = edge_chat::message::conversation_id(&owner, UserId::parse("h2").ok().as_ref());
    let shapes = [
        ("all", PageQuery { limit: 50, before: Some(95_051), after: None, peer: None }),
        ("peer", PageQuery { limit: 50, before: Some(95_051), after: None, peer: UserId::parse("h2").ok() }),
    ];
    let pages: Vec<serde_json::Value> = shapes
        .iter()
        .filter_map(|(name, q)| {
            let convs = page_convs(&owner, Shape::Legacy, q, || vec![conv.clone()]);
            let p = page_sql(Shape::Legacy, &owner, &convs, std::slice::from_ref(&table), q)?;
            let binds: Vec<serde_json::Value> = p
                .binds
                .into_iter()
                .map(|b| match b {
                    Bind::Text(s) => s.into(),
                    Bind::Int(n) => n.into(),
                })
                .collect();
            Some(serde_json::json!({ "name": name, "sql": p.sql, "binds": binds }))
        })
        .collect();
    let out = serde_json::json!({
        "conv": conv,
        "shard": shard_of(&conv, shards),
        "table": table,
        "first_day": part.first_day,
        "end_day": part.end_day,
        "ddl": partition_ddl(&table),
        "write": write_sql(&table),
        "pages": pages,
    });
    println!("{out}");
}
