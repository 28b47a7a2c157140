//! Operation counters: each billable platform operation, counted where it
//! happens (and row counts as the runtime reports them), so the benchmark's
//! cost model multiplies measured counts by list prices instead of guessing.
//!
//! The counters live in the wasm instance: they cover every request and
//! object served by one isolate since it started (one process locally).
//! `/api/metrics` shows them; for the fleet, [`due`] turns what was counted
//! since the last flush into Analytics Engine data points, one per [`Set`],
//! each counter always in the same `doubleN` column (docs/operations.md
//! lists them, and a test holds the list to this file).

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
    /// Delivery hops from groups' objects to members' objects (each carries
    /// every entry owed to that member, up to a batch).
    GroupDeliveries,
    /// Messages stored by groups' objects (each then delivered to every member).
    GroupMessages,
    /// Deliveries straight to a user's object, batches from inbox shards
    /// to one, and deliveries taken by shards (a hot recipient's senders).
    DeliverHops,
    InboxBatches,
    InboxHops,
}

/// The data point a counter goes in: its `blob1` and `index1`. A point holds
/// at most 20 doubles, so a set that outgrows it is split into a new set,
/// and a counter never moves to another column once deployed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    /// What the platform bills (requests, rows, alarms), and the messages
    /// they carried, for cost per message.
    Billable,
    /// Work refused or dropped at a limit, one column per limit.
    Refusals,
    /// Everything else worth a trend: retention, presence, edits.
    Events,
}

impl Set {
    pub const ALL: [Set; 3] = [Set::Billable, Set::Refusals, Set::Events];

    pub fn name(self) -> &'static str {
        match self {
            Set::Billable => "billable",
            Set::Refusals => "refusals",
            Set::Events => "events",
        }
    }
}

/// How often an isolate flushes unless `METRICS_FLUSH_S` says otherwise.
pub const DEFAULT_FLUSH_MS: u64 = 10_000;

/// Analytics Engine's most doubles per data point.
pub const DOUBLES_MAX: usize = 20;

const ALL: [(Counter, &str, Set); 45] = [
    (Counter::WorkerRequests, "worker_requests", Set::Billable),
    (Counter::DoFetches, "do_fetches", Set::Billable),
    (Counter::DoWsMessages, "do_ws_messages", Set::Billable),
    (Counter::DoAlarms, "do_alarms", Set::Billable),
    (Counter::AlarmsSet, "alarms_set", Set::Billable),
    (Counter::SqlRowsRead, "sql_rows_read", Set::Billable),
    (Counter::SqlRowsWritten, "sql_rows_written", Set::Billable),
    (Counter::D1Queries, "d1_queries", Set::Billable),
    (Counter::D1RowsRead, "d1_rows_read", Set::Billable),
    (Counter::D1RowsWritten, "d1_rows_written", Set::Billable),
    (Counter::MessagesStored, "messages_stored", Set::Billable),
    (Counter::FramesOut, "frames_out", Set::Billable),
    (Counter::RefusedRate, "refused_rate", Set::Refusals),
    (Counter::RefusedRead, "refused_read", Set::Refusals),
    (Counter::DroppedTyping, "dropped_typing", Set::Refusals),
    (Counter::RefusedBusy, "refused_busy", Set::Refusals),
    (Counter::RefusedFrame, "refused_frame", Set::Refusals),
    (Counter::RefusedBody, "refused_body", Set::Refusals),
    (Counter::RefusedBatch, "refused_batch", Set::Refusals),
    (Counter::RefusedPage, "refused_page", Set::Refusals),
    (Counter::RefusedSockets, "refused_sockets", Set::Refusals),
    (Counter::RefusedQueueFull, "refused_queue_full", Set::Refusals),
    (Counter::RefusedSenderFull, "refused_sender_full", Set::Refusals),
    (Counter::RefusedOrigin, "refused_origin", Set::Refusals),
    (Counter::QueueExpired, "queue_expired", Set::Refusals),
    (Counter::Handoffs, "handoffs", Set::Billable),
    (Counter::WriterFlushes, "writer_flushes", Set::Billable),
    (Counter::PartitionsDropped, "partitions_dropped", Set::Events),
    (Counter::PartitionsExported, "partitions_exported", Set::Events),
    (Counter::ColdObjectsWritten, "cold_objects_written", Set::Billable),
    (Counter::ColdObjectsRead, "cold_objects_read", Set::Billable),
    (Counter::DroppedBlocked, "dropped_blocked", Set::Refusals),
    (Counter::RefusedBlocks, "refused_blocks", Set::Refusals),
    (Counter::PushesSent, "pushes_sent", Set::Billable),
    (Counter::PushRetries, "push_retries", Set::Billable),
    (Counter::PushesDropped, "pushes_dropped", Set::Refusals),
    (Counter::Edits, "edits", Set::Events),
    (Counter::RefusedEditWindow, "refused_edit_window", Set::Refusals),
    (Counter::PresenceHops, "presence_hops", Set::Billable),
    (Counter::Watches, "watches", Set::Events),
    (Counter::GroupDeliveries, "group_deliveries", Set::Billable),
    (Counter::GroupMessages, "group_messages", Set::Events),
    (Counter::DeliverHops, "deliver_hops", Set::Events),
    (Counter::InboxBatches, "inbox_batches", Set::Events),
    (Counter::InboxHops, "inbox_hops", Set::Events),
];

static COUNTS: [AtomicU64; ALL.len()] = [const { AtomicU64::new(0) }; ALL.len()];
/// The counts as of the last flush, and when it was (ms; 0: never).
static FLUSHED: [AtomicU64; ALL.len()] = [const { AtomicU64::new(0) }; ALL.len()];
static FLUSHED_AT: AtomicU64 = AtomicU64::new(0);

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
        .map(|(c, name, _)| ((*name).to_owned(), serde_json::Value::from(COUNTS[*c as usize].load(Ordering::Relaxed))))
        .collect();
    serde_json::Value::Object(map)
}

/// One Analytics Engine data point: what one set's counters grew by since
/// the last flush, each in its column (`doubles[0]` is `double1`).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub set: Set,
    pub doubles: Vec<f64>,
}

/// The counters of `set` with their names, in column order.
pub fn columns(set: Set) -> impl Iterator<Item = &'static str> {
    ALL.iter().filter(move |(_, _, s)| *s == set).map(|(_, name, _)| *name)
}

/// The data points due at `now` (ms) when points are written every
/// `every_ms`: none before that has passed since the last flush, otherwise
/// one per set that counted anything since (all its columns, zeros
/// included), and the flush recorded. An isolate evicted between flushes
/// loses what it counted since the last one; that is the price of not
/// writing a point per event.
pub fn due(now: u64, every_ms: u64) -> Vec<Point> {
    let last = FLUSHED_AT.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < every_ms {
        return Vec::new();
    }
    FLUSHED_AT.store(now.max(1), Ordering::Relaxed);
    let mut points: Vec<Point> = Set::ALL.iter().map(|&set| Point { set, doubles: Vec::new() }).collect();
    let mut counted = [false; Set::ALL.len()];
    for (i, (_, _, set)) in ALL.iter().enumerate() {
        let now_count = COUNTS[i].load(Ordering::Relaxed);
        let delta = now_count.saturating_sub(FLUSHED[i].swap(now_count, Ordering::Relaxed));
        let k = *set as usize;
        counted[k] |= delta > 0;
        points[k].doubles.push(delta as f64);
    }
    points.into_iter().zip(counted).filter_map(|(p, c)| c.then_some(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_declaration_order_and_counts_add_up() {
        for (i, (c, _, _)) in ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        let before = snapshot()["frames_out"].as_u64().unwrap();
        add(Counter::FramesOut, 3);
        incr(Counter::FramesOut);
        assert_eq!(snapshot()["frames_out"].as_u64().unwrap(), before + 4);
    }

    #[test]
    fn every_set_fits_a_data_point() {
        for set in Set::ALL {
            let n = columns(set).count();
            assert!(n > 0 && n <= DOUBLES_MAX, "{} has {n} columns", set.name());
        }
        assert_eq!(Set::ALL.iter().map(|&s| columns(s).count()).sum::<usize>(), ALL.len());
    }

    #[test]
    fn points_carry_what_was_counted_since_the_last_flush_in_fixed_columns() {
        // The counters are global to the process: one test owns the flush.
        due(1, 0);
        let col = |set: Set, name: &str| columns(set).position(|n| n == name).unwrap();
        add(Counter::MessagesStored, 5);
        incr(Counter::RefusedRate);
        assert!(due(1_000, 10_000).is_empty(), "not due before the interval");
        add(Counter::MessagesStored, 2);
        let points = due(11_000, 10_000);
        let billable = points.iter().find(|p| p.set == Set::Billable).unwrap();
        let refusals = points.iter().find(|p| p.set == Set::Refusals).unwrap();
        assert_eq!(billable.doubles.len(), columns(Set::Billable).count());
        assert!(billable.doubles[col(Set::Billable, "messages_stored")] >= 7.0);
        assert!(refusals.doubles[col(Set::Refusals, "refused_rate")] >= 1.0);
        // Just flushed: nothing is due again within the interval.
        add(Counter::MessagesStored, 1);
        assert!(due(15_000, 10_000).is_empty());
    }

    #[test]
    fn the_operators_column_tables_match_the_code() {
        let doc = include_str!("../docs/operations.md");
        for set in Set::ALL {
            let heading = format!("### `{}`", set.name());
            let section = doc.split(&heading).nth(1).unwrap_or_else(|| panic!("no section {heading}"));
            let section = section.split("\n### ").next().unwrap_or(section);
            let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| double")).collect();
            let names: Vec<&str> = columns(set).collect();
            assert_eq!(rows.len(), names.len(), "{heading}: rows vs counters");
            for (k, (row, name)) in rows.iter().zip(&names).enumerate() {
                assert!(row.starts_with(&format!("| double{} | `{name}` |", k + 1)), "{heading}: {row}");
            }
        }
    }
}
