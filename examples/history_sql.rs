//! Prints the history page queries, so the benchmark can ask D1 for their
//! query plans without restating the SQL: `cargo run --example history_sql`.

use edge_chat::history::{page_sql, Bind, PageQuery};
use edge_chat::user::UserId;

fn main() {
    let owner = UserId::parse("h1").expect("valid id");
    let shapes = [
        ("all", PageQuery { limit: 50, before: Some(95_051), after: None, peer: None }),
        ("peer", PageQuery { limit: 50, before: Some(95_051), after: None, peer: UserId::parse("h2").ok() }),
    ];
    let out: Vec<serde_json::Value> = shapes
        .iter()
        .map(|(name, q)| {
            let p = page_sql(&owner, q);
            let binds: Vec<serde_json::Value> = p
                .binds
                .into_iter()
                .map(|b| match b {
                    Bind::Text(s) => s.into(),
                    Bind::Int(n) => n.into(),
                })
                .collect();
            serde_json::json!({ "name": name, "sql": p.sql, "binds": binds })
        })
        .collect();
    println!("{}", serde_json::Value::Array(out));
}
