//! The D1 gateway: the only code that talks to the history databases, one
//! per shard (`DB_0` … `DB_<N-1>`). It runs the statements `history`
//! defines and nothing else, and counts what D1 reports they read and wrote.

use std::collections::BTreeSet;

use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Env};

use crate::archive::{Partition, Partitioning};
use crate::cold::{export_sql, Exported, EXPORTED_SQL, EXPORT_CONVS, TO_EXPORT_SQL};
use crate::history::{
    delivered_sql, drop_sql, is_partition_table, page_sql, partition_ddl, Bind, Delivered, OwnerRow, PageQuery,
    PageRow, Query, Shape, EXPIRED_SQL, OWNER_ROWS_SQL, OWNER_TABLE_SQL, PARTITIONS_SQL, REGISTER_SQL, UNREGISTER_SQL,
};
use crate::metrics::{add, incr, Counter};
use crate::user::UserId;

thread_local! {
    static SHARDS: std::cell::OnceCell<u32> = const { std::cell::OnceCell::new() };
}

/// How many history shards the deployment binds: `DB_0`, `DB_1`, … up to
/// the first one missing (at least one). Fixed while an isolate lives.
pub fn shards(env: &Env) -> u32 {
    SHARDS.with(|s| *s.get_or_init(|| (0..).take_while(|k| env.d1(&binding(*k)).is_ok()).count().max(1) as u32))
}

fn binding(shard: u32) -> String {
    format!("DB_{shard}")
}

fn db(env: &Env, shard: u32) -> worker::Result<D1Database> {
    env.d1(&binding(shard))
}

/// Counts a statement and the rows D1 reports it read and wrote; its error
/// (D1 answers some failures in the result) becomes ours.
fn counted(result: D1Result) -> worker::Result<D1Result> {
    incr(Counter::D1Queries);
    if let Ok(Some(meta)) = result.meta() {
        add(Counter::D1RowsRead, meta.rows_read.unwrap_or(0) as u64);
        add(Counter::D1RowsWritten, meta.rows_written.unwrap_or(0) as u64);
    }
    match result.error() {
        Some(e) => Err(worker::Error::RustError(format!("D1: {e}"))),
        None => Ok(result),
    }
}

fn prepare(db: &D1Database, q: Query) -> worker::Result<D1PreparedStatement> {
    let binds: Vec<JsValue> = q
        .binds
        .into_iter()
        .map(|b| match b {
            Bind::Text(s) => JsValue::from(s),
            Bind::Int(n) => JsValue::from(n as f64),
        })
        .collect();
    db.prepare(q.sql).bind(&binds)
}

fn query(sql: impl Into<String>, binds: Vec<Bind>) -> Query {
    Query { sql: sql.into(), binds }
}

/// Runs statements in one round trip, as one transaction.
async fn batch(env: &Env, shard: u32, queries: Vec<Query>) -> worker::Result<()> {
    let db = db(env, shard)?;
    let statements = queries.into_iter().map(|q| prepare(&db, q)).collect::<worker::Result<Vec<_>>>()?;
    for result in db.batch(statements).await? {
        counted(result)?;
    }
    Ok(())
}

async fn all<T: serde::de::DeserializeOwned>(env: &Env, shard: u32, q: Query) -> worker::Result<Vec<T>> {
    let db = db(env, shard)?;
    counted(prepare(&db, q)?.all().await?)?.results()
}

/// Writes one flush's rows of one partition in one statement.
pub async fn write(env: &Env, shard: u32, table: &str, rows: &str) -> worker::Result<()> {
    let db = db(env, shard)?;
    counted(prepare(&db, query(crate::history::write_sql(table), vec![Bind::Text(rows.to_owned())]))?.run().await?)?;
    Ok(())
}

/// Creates and lists a partition (idempotent), then drops the partitions
/// past retention: whole tables, never rows one by one.
pub async fn open_partition(
    env: &Env,
    shard: u32,
    part: &Partition,
    p: &Partitioning,
    now_ms: u64,
) -> worker::Result<()> {
    let table = part.table();
    batch(
        env,
        shard,
        vec![
            query(partition_ddl(&table), vec![]),
            query(REGISTER_SQL, vec![Bind::Text(table), Bind::Int(part.first_day), Bind::Int(part.end_day)]),
        ],
    )
    .await?;
    let expired: Vec<Listed> = all(env, shard, query(EXPIRED_SQL, vec![Bind::Int(p.expired_before(now_ms))])).await?;
    for old in expired {
        drop_partition(env, shard, &old.tbl).await?;
        incr(Counter::PartitionsDropped);
    }
    Ok(())
}

/// The next rows of 0001's per-owner table (in `DB_0`, where deployments
/// before history by conversation kept it) after `(owner, seq)`.
pub async fn owner_rows(env: &Env, after: (&str, u64), limit: u32) -> worker::Result<Vec<OwnerRow>> {
    // A deployment that never had the table has nothing to copy.
    let table: Vec<TableName> = all(env, 0, query(OWNER_TABLE_SQL, Vec::new())).await?;
    if table.is_empty() {
        return Ok(Vec::new());
    }
    let binds = vec![Bind::Text(after.0.to_owned()), Bind::Int(after.1), Bind::Int(limit.into())];
    all(env, 0, query(OWNER_ROWS_SQL, binds)).await
}

#[derive(serde::Deserialize)]
struct TableName {
    #[allow(dead_code)]
    name: String,
}

/// A partition to export to cold storage, and how far its export got.
#[derive(serde::Deserialize)]
pub struct ToExport {
    pub tbl: String,
    pub first_day: u64,
    pub exported: String,
}

/// The partitions of `shard` wholly before `day` still in D1.
pub async fn to_export(env: &Env, shard: u32, day: u64) -> worker::Result<Vec<ToExport>> {
    let listed: Vec<ToExport> = all(env, shard, query(TO_EXPORT_SQL, vec![Bind::Int(day)])).await?;
    Ok(listed.into_iter().filter(|l| is_partition_table(&l.tbl)).collect())
}

/// The next conversations of a partition after `after`, with their rows.
pub async fn export_step(env: &Env, shard: u32, table: &str, after: &str) -> worker::Result<Vec<Exported>> {
    let Some(sql) = export_sql(table) else { return Ok(Vec::new()) };
    all(env, shard, query(sql, vec![Bind::Text(after.to_owned()), Bind::Int(EXPORT_CONVS)])).await
}

/// Records that a partition's conversations up to `conv` are in R2.
pub async fn exported(env: &Env, shard: u32, table: &str, conv: &str) -> worker::Result<()> {
    let binds = vec![Bind::Text(table.to_owned()), Bind::Text(conv.to_owned())];
    batch(env, shard, vec![query(EXPORTED_SQL, binds)]).await
}

/// Drops a partition as a table and delists it.
pub async fn drop_partition(env: &Env, shard: u32, table: &str) -> worker::Result<()> {
    if !is_partition_table(table) {
        return Ok(());
    }
    let drop = query(drop_sql(table), vec![]);
    batch(env, shard, vec![drop, query(UNREGISTER_SQL, vec![Bind::Text(table.to_owned())])]).await
}

/// A row of `partitions`.
#[derive(serde::Deserialize)]
struct Listed {
    tbl: String,
    end_day: u64,
}

/// The partitions of a shard still within retention, newest first.
async fn live_partitions(env: &Env, shard: u32, (p, now_ms): (Partitioning, u64)) -> worker::Result<Vec<String>> {
    let cutoff = p.expired_before(now_ms);
    let listed: Vec<Listed> = all(env, shard, query(PARTITIONS_SQL, vec![])).await?;
    let tables: BTreeSet<String> = listed.into_iter().filter(|l| l.end_day > cutoff).map(|l| l.tbl).collect();
    Ok(tables.into_iter().rev().collect())
}

/// One shard's part of a page of `owner`'s history over `convs`: the
/// partitions still within retention, then one query over them.
pub async fn page(
    env: &Env,
    shard: u32,
    shape: Shape,
    owner: &UserId,
    convs: &[String],
    q: &PageQuery,
    partitions: (Partitioning, u64),
) -> worker::Result<Vec<PageRow>> {
    let tables = live_partitions(env, shard, partitions).await?;
    match page_sql(shape, owner, convs, &tables, q) {
        Some(q) => all(env, shard, q).await,
        None => Ok(Vec::new()),
    }
}

/// Of the sent chats `(conv, id)` of one shard, the ids history knows reached
/// their recipient.
pub async fn delivered(
    env: &Env,
    shard: u32,
    pairs: &[(String, String)],
    partitions: (Partitioning, u64),
) -> worker::Result<Vec<String>> {
    let tables = live_partitions(env, shard, partitions).await?;
    match delivered_sql(pairs, &tables) {
        Some(q) => Ok(all::<Delivered>(env, shard, q).await?.into_iter().map(|d| d.id).collect()),
        None => Ok(Vec::new()),
    }
}
