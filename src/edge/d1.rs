//! The D1 gateway: the only code that talks to the history database. It
//! runs the statements `history` defines and nothing else, so moving history
//! to several databases (by owner or conversation) changes this file alone.

use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1Result, Env};

use crate::history::{log_page_sql, page_sql, Bind, LogRow, PageQuery, PageRow, Query, ARCHIVE_SQL};
use crate::metrics::{add, incr, Counter};
use crate::user::UserId;

const BINDING: &str = "DB";

fn db(env: &Env) -> worker::Result<D1Database> {
    env.d1(BINDING)
}

/// Counts a query and the rows D1 reports it read and wrote.
fn count(result: &D1Result) {
    incr(Counter::D1Queries);
    if let Ok(Some(meta)) = result.meta() {
        add(Counter::D1RowsRead, meta.rows_read.unwrap_or(0) as u64);
        add(Counter::D1RowsWritten, meta.rows_written.unwrap_or(0) as u64);
    }
}

/// Writes one batch of `owner`'s log (a JSON array in the
/// `history::ARCHIVE_ROW` layout) in a single statement.
pub async fn archive(env: &Env, owner: &UserId, batch: &str) -> worker::Result<()> {
    let result =
        db(env)?.prepare(ARCHIVE_SQL).bind(&[JsValue::from(owner.as_str()), JsValue::from(batch)])?.run().await?;
    count(&result);
    match result.error() {
        Some(e) => Err(worker::Error::RustError(format!("D1 archive: {e}"))),
        None => Ok(()),
    }
}

/// One page of `owner`'s history (legacy shape), newest first, with one
/// extra row when another page follows.
pub async fn page(env: &Env, owner: &UserId, q: &PageQuery) -> worker::Result<Vec<PageRow>> {
    run(env, page_sql(owner, q)).await
}

/// One page of `owner`'s log as v1 entries, with one extra row when another
/// page follows.
pub async fn log_page(env: &Env, owner: &UserId, q: &PageQuery) -> worker::Result<Vec<LogRow>> {
    run(env, log_page_sql(owner, q)).await
}

async fn run<T: serde::de::DeserializeOwned>(env: &Env, q: Query) -> worker::Result<Vec<T>> {
    let binds: Vec<JsValue> = q
        .binds
        .into_iter()
        .map(|b| match b {
            Bind::Text(s) => JsValue::from(s),
            Bind::Int(n) => JsValue::from(n as f64),
        })
        .collect();
    let result = db(env)?.prepare(q.sql).bind(&binds)?.all().await?;
    count(&result);
    result.results()
}
