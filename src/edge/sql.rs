//! The [`Sql`] port over Durable Object SQLite. Every statement of the
//! user's log is in [`crate::log`]; this file only moves values across and
//! counts the rows each statement read and wrote, as the runtime bills them.

use worker::wasm_bindgen::JsValue;
use worker::{SqlCursor, SqlStorage, SqlStorageValue as V};

use crate::log::{Sql, SqlValue, StoreError};
use crate::metrics::{add, Counter};

pub struct DoSql(pub SqlStorage);

fn store_error(e: worker::Error) -> StoreError {
    StoreError(e.to_string())
}

fn binds(params: &[SqlValue]) -> Vec<JsValue> {
    params
        .iter()
        .map(|p| match p {
            SqlValue::Null => JsValue::NULL,
            // Sequence numbers and times stay far below 2^53.
            SqlValue::Int(n) => JsValue::from(*n as f64),
            SqlValue::Real(f) => JsValue::from(*f),
            SqlValue::Text(s) => JsValue::from(s.as_str()),
        })
        .collect()
}

/// Counts the rows a finished statement read and wrote, as the runtime bills them.
fn count(cursor: &SqlCursor) {
    add(Counter::SqlRowsRead, cursor.rows_read() as u64);
    add(Counter::SqlRowsWritten, cursor.rows_written() as u64);
}

impl Sql for DoSql {
    /// The statement runs when it is issued; its cursor is not read.
    fn exec(&self, sql: &str, params: &[SqlValue]) -> Result<(), StoreError> {
        count(&self.0.exec_raw(sql, binds(params)).map_err(store_error)?);
        Ok(())
    }

    fn run(&self, sql: &str, params: &[SqlValue], row: &mut dyn FnMut(&[SqlValue]) -> bool) -> Result<(), StoreError> {
        let cursor = self.0.exec_raw(sql, binds(params)).map_err(store_error)?;
        let mut values = Vec::new();
        for r in cursor.raw() {
            values.clear();
            values.extend(r.map_err(store_error)?.into_iter().map(|v| match v {
                V::Null | V::Blob(_) => SqlValue::Null,
                V::Boolean(b) => SqlValue::Int(b as i64),
                V::Integer(n) => SqlValue::Int(n),
                V::Float(f) => SqlValue::Real(f),
                V::String(s) => SqlValue::Text(s),
            }));
            if !row(&values) {
                break;
            }
        }
        count(&cursor);
        Ok(())
    }
}
