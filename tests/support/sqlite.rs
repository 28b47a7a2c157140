//! The storage port over `rusqlite`: the log's own SQL text and row decoding
//! (`edge_chat::log`), run natively against an in-memory SQLite.

use edge_chat::log::{Log, Sql, SqlValue, StoreError};
use rusqlite::types::ValueRef;
use rusqlite::Connection;

pub struct Lite(pub Connection);

impl Lite {
    /// A fresh in-memory database holding an opened (migrated) log.
    pub fn log() -> Log<Lite> {
        let conn = Connection::open_in_memory().expect("in-memory SQLite");
        Log::open(Lite(conn)).expect("the schema applies")
    }
}

fn error(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

impl Sql for Lite {
    fn run(&self, sql: &str, params: &[SqlValue], row: &mut dyn FnMut(&[SqlValue]) -> bool) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(error)?;
        let binds: Vec<rusqlite::types::Value> = params
            .iter()
            .map(|p| match p {
                SqlValue::Null => rusqlite::types::Value::Null,
                SqlValue::Int(n) => rusqlite::types::Value::Integer(*n),
                SqlValue::Real(f) => rusqlite::types::Value::Real(*f),
                SqlValue::Text(s) => rusqlite::types::Value::Text(s.clone()),
            })
            .collect();
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(binds)).map_err(error)?;
        let mut values = Vec::with_capacity(columns);
        while let Some(r) = rows.next().map_err(error)? {
            values.clear();
            for i in 0..columns {
                values.push(match r.get_ref(i).map_err(error)? {
                    ValueRef::Null | ValueRef::Blob(_) => SqlValue::Null,
                    ValueRef::Integer(n) => SqlValue::Int(n),
                    ValueRef::Real(f) => SqlValue::Real(f),
                    ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                });
            }
            if !row(&values) {
                break;
            }
        }
        Ok(())
    }
}
