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
    /// `setAlarm` calls: each is billed as one row written.
    AlarmsSet,
    SqlRowsRead,
    SqlRowsWritten,
    D1Queries,
    D1RowsRead,
    D1RowsWritten,
    /// Entries stored in a recipient's log (chats received, system messages).
    MessagesStored,
    /// Text frames written to client sockets.
    FramesOut,
    /// Refusals at a limit, one counter per limit.
    RefusedRate,
    /// History and conversation reads over `READ_RATE`.
    RefusedRead,
    /// Typing indicators dropped: to a stranger, or too often to one peer.
    DroppedTyping,
    RefusedBusy,
    RefusedFrame,
    RefusedBody,
    RefusedBatch,
    RefusedPage,
    RefusedSockets,
    RefusedQueueFull,
    /// Chats refused because their sender has `QUEUE_PER_SENDER` waiting.
    RefusedSenderFull,
    RefusedOrigin,
    /// Queued entries dropped from the offline queue by `QUEUE_TTL_S` (they
    /// stay in history).
    QueueExpired,
    /// Hand-offs from users' archive passes to history writers (DO requests).
    Handoffs,
    /// Writer flushes (each one statement per partition it holds).
    WriterFlushes,
    /// Time partitions dropped by retention (`HISTORY_RETENTION_DAYS`).
    PartitionsDropped,
    /// Time partitions moved to cold storage, and the objects that took.
    PartitionsExported,
    ColdObjectsWritten,
    /// Cold objects read for history pages.
    ColdObjectsRead,
    /// Chats from a blocked sender, answered as usual and stored nowhere.
    DroppedBlocked,
    /// Block or mute changes refused at `BLOCKS_MAX`.
    RefusedBlocks,
    /// Push webhook calls answered 2xx, tried again, and given up on (a 4xx
    /// other than 408/429, or past `PUSH_TTL_S`).
    PushesSent,
    PushRetries,
    PushesDropped,
    /// Edits and deletes stored (in the log of the user who made them).
    Edits,
    /// Edits and deletes for everyone refused past `EDIT_WINDOW_S`.
    RefusedEditWindow,
    /// Presence changes told to watchers (one hop each), and watches kept.
    PresenceHops,
    Watches,
}

const ALL: [(Counter, &str); 40] = [
    (Counter::WorkerRequests, "worker_requests"),
    (Counter::DoFetches, "do_fetches"),
    (Counter::DoWsMessages, "do_ws_messages"),
    (Counter::DoAlarms, "do_alarms"),
    (Counter::AlarmsSet, "alarms_set"),
    (Counter::SqlRowsRead, "sql_rows_read"),
    (Counter::SqlRowsWritten, "sql_rows_written"),
    (Counter::D1Queries, "d1_queries"),
    (Counter::D1RowsRead, "d1_rows_read"),
    (Counter::D1RowsWritten, "d1_rows_written"),
    (Counter::MessagesStored, "messages_stored"),
    (Counter::FramesOut, "frames_out"),
    (Counter::RefusedRate, "refused_rate"),
    (Counter::RefusedRead, "refused_read"),
    (Counter::DroppedTyping, "dropped_typing"),
    (Counter::RefusedBusy, "refused_busy"),
    (Counter::RefusedFrame, "refused_frame"),
    (Counter::RefusedBody, "refused_body"),
    (Counter::RefusedBatch, "refused_batch"),
    (Counter::RefusedPage, "refused_page"),
    (Counter::RefusedSockets, "refused_sockets"),
    (Counter::RefusedQueueFull, "refused_queue_full"),
    (Counter::RefusedSenderFull, "refused_sender_full"),
    (Counter::RefusedOrigin, "refused_origin"),
    (Counter::QueueExpired, "queue_expired"),
    (Counter::Handoffs, "handoffs"),
    (Counter::WriterFlushes, "writer_flushes"),
    (Counter::PartitionsDropped, "partitions_dropped"),
    (Counter::PartitionsExported, "partitions_exported"),
    (Counter::ColdObjectsWritten, "cold_objects_written"),
    (Counter::ColdObjectsRead, "cold_objects_read"),
    (Counter::DroppedBlocked, "dropped_blocked"),
    (Counter::RefusedBlocks, "refused_blocks"),
    (Counter::PushesSent, "pushes_sent"),
    (Counter::PushRetries, "push_retries"),
    (Counter::PushesDropped, "pushes_dropped"),
    (Counter::Edits, "edits"),
    (Counter::RefusedEditWindow, "refused_edit_window"),
    (Counter::PresenceHops, "presence_hops"),
    (Counter::Watches, "watches"),
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
