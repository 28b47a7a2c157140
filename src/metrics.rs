//! Operation counters: each billable platform operation, counted where it
//! happens (and row counts as the runtime reports them), so the benchmark's
//! cost model multiplies measured counts by list prices instead of guessing.
//!
//! The counters live in the wasm instance: they cover every request and
//! object served by one isolate since it started (one process locally).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Invocations of the Worker entry.
    WorkerRequests,
    /// HTTP requests to Durable Objects (upgrades, hops, API sends, history).
    DoFetches,
    /// WebSocket messages received by Durable Objects (billed 20:1).
    DoWsMessages,
    /// Alarm invocations.
    DoAlarms,
    SqlRowsRead,
    SqlRowsWritten,
    D1Queries,
    D1RowsRead,
    D1RowsWritten,
    /// Entries stored in a recipient's log (chats received, system messages).
    MessagesStored,
    /// Text frames written to client sockets.
    FramesOut,
}

const ALL: [(Counter, &str); 11] = [
    (Counter::WorkerRequests, "worker_requests"),
    (Counter::DoFetches, "do_fetches"),
    (Counter::DoWsMessages, "do_ws_messages"),
    (Counter::DoAlarms, "do_alarms"),
    (Counter::SqlRowsRead, "sql_rows_read"),
    (Counter::SqlRowsWritten, "sql_rows_written"),
    (Counter::D1Queries, "d1_queries"),
    (Counter::D1RowsRead, "d1_rows_read"),
    (Counter::D1RowsWritten, "d1_rows_written"),
    (Counter::MessagesStored, "messages_stored"),
    (Counter::FramesOut, "frames_out"),
];

static COUNTS: [AtomicU64; ALL.len()] = [const { AtomicU64::new(0) }; ALL.len()];

pub fn add(counter: Counter, n: u64) {
    COUNTS[counter as usize].fetch_add(n, Ordering::Relaxed);
}

pub fn incr(counter: Counter) {
    add(counter, 1);
}

/// All counters as a JSON object, by name.
pub fn snapshot() -> serde_json::Value {
    let map = ALL
        .iter()
        .map(|(c, name)| ((*name).to_owned(), serde_json::Value::from(COUNTS[*c as usize].load(Ordering::Relaxed))))
        .collect();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_declaration_order_and_counts_add_up() {
        for (i, (c, _)) in ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        let before = snapshot()["frames_out"].as_u64().unwrap();
        add(Counter::FramesOut, 3);
        incr(Counter::FramesOut);
        assert_eq!(snapshot()["frames_out"].as_u64().unwrap(), before + 4);
    }
}
