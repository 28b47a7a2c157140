//! The archive path from users' logs to D1: which history shard holds a
//! conversation, which time partition holds a message, how a user's archive
//! pass becomes hand-offs to the shards' writers, and when a writer flushes.
//!
//! Each shard has one writer object. Users' objects hand it their new log
//! entries; it gathers what many users handed in and writes it with one
//! statement per partition, at most every `HISTORY_FLUSH_MS` or at once when
//! the batch is full or a reader waits. It answers each hand-off only after
//! D1 confirmed, so the user's archive cursor moves only then, and a writer
//! evicted with a batch in memory loses nothing: those users hand it in again.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

const DAY_MS: u64 = 86_400_000;

/// The shard of a conversation among `shards`: FNV-1a of its id, mixed
/// (FNV's low bits alone spread similar ids badly). Fixed forever for a
/// given count, since rows are never moved between shards.
pub fn shard_of(conv: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in conv.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h % u64::from(shards.max(1))) as u32
}

/// How history is cut into time partitions (`HISTORY_PARTITION_DAYS`), how
/// long it stays in D1 (`HISTORY_HOT_DAYS`; older partitions move to R2 when
/// a bucket is bound) and how long it is kept (`HISTORY_RETENTION_DAYS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partitioning {
    pub days: u64,
    pub hot_days: u64,
    pub retention_days: u64,
}

/// One time partition: its first day and the first day past it (days since
/// the epoch), and its table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Partition {
    pub first_day: u64,
    pub end_day: u64,
}

impl Partition {
    pub fn table(&self) -> String {
        format!("history_{}", self.first_day)
    }
}

impl Partitioning {
    /// The partition of a message stored at `time_ms`.
    pub fn of(&self, time_ms: u64) -> Partition {
        let days = self.days.max(1);
        let first_day = time_ms / DAY_MS / days * days;
        Partition { first_day, end_day: first_day + days }
    }

    /// Partitions whose last day is before this one are past retention.
    pub fn expired_before(&self, now_ms: u64) -> u64 {
        (now_ms / DAY_MS).saturating_sub(self.retention_days)
    }

    /// Partitions whose last day is before this one belong in cold storage
    /// (`None`: there is no cold tier).
    pub fn cold_before(&self, now_ms: u64) -> Option<u64> {
        (self.hot_days < self.retention_days).then(|| (now_ms / DAY_MS).saturating_sub(self.hot_days))
    }
}

/// One hand-off: the rows of a user's pass that belong to one shard and
/// partition, as a JSON array in the `history::ROW` layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    pub shard: u32,
    pub first_day: u64,
    pub rows: String,
}

/// A row of an archive pass as the log's query returns it:
/// `[conv, first day of its partition, row]`.
#[derive(Deserialize)]
struct Tagged<'a>(String, u64, #[serde(borrow)] &'a RawValue);

/// Splits the rows of a pass (a JSON array of tagged rows, see
/// [`crate::log::Log::archive_batch`]) into one hand-off per shard and
/// partition, in order.
pub fn split(tagged: &str, shards: u32) -> Result<Vec<Handoff>, serde_json::Error> {
    let rows: Vec<Tagged> = serde_json::from_str(tagged)?;
    let mut by: BTreeMap<(u32, u64), String> = BTreeMap::new();
    for Tagged(conv, first_day, row) in rows {
        let rows = by.entry((shard_of(&conv, shards), first_day)).or_insert_with(|| String::from("["));
        if rows.len() > 1 {
            rows.push(',');
        }
        rows.push_str(row.get());
    }
    Ok(by
        .into_iter()
        .map(|((shard, first_day), mut rows)| {
            rows.push(']');
            Handoff { shard, first_day, rows }
        })
        .collect())
}

/// A writer's bounds: how long a hand-off may wait for company, and how
/// much one statement carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterConfig {
    pub flush_ms: u64,
    pub max_rows: usize,
    pub max_bytes: usize,
}

/// Who waits for a flush (the platform maps it to its waiting request).
pub type Ticket = u64;

/// What the writer's platform side does after a hand-off.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Flush now.
    Flush,
    /// Start the flush timer (none was running).
    Schedule { delay_ms: u64 },
    /// A flush is already due; nothing to do.
    Wait,
}

/// One flush: a statement's rows per partition, and who to answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flush {
    pub parts: BTreeMap<u64, String>,
    pub tickets: Vec<Ticket>,
}

/// The writer's batch: hand-offs since the last flush.
#[derive(Debug)]
pub struct Batcher {
    config: WriterConfig,
    pending: Flush,
    rows: usize,
    bytes: usize,
    scheduled: bool,
    next_ticket: Ticket,
}

/// How many rows a JSON array of rows holds, without parsing the bodies:
/// each row is an array, so rows are the top-level `[` after the first.
fn count_rows(rows: &str) -> Result<usize, serde_json::Error> {
    Ok(serde_json::from_str::<Vec<&RawValue>>(rows)?.len())
}

impl Batcher {
    pub fn new(config: WriterConfig) -> Batcher {
        Batcher { config, pending: Flush::default(), rows: 0, bytes: 0, scheduled: false, next_ticket: 0 }
    }

    /// A user's object hands in `rows` (a JSON array) for the partition
    /// starting on `first_day`; `urgent` when a reader waits for them.
    pub fn add(&mut self, first_day: u64, rows: &str, urgent: bool) -> Result<(Ticket, Next), serde_json::Error> {
        let n = count_rows(rows)?;
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.tickets.push(ticket);
        let rows = rows.trim();
        let inner = rows.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(rows).trim();
        if !inner.is_empty() {
            let part = self.pending.parts.entry(first_day).or_insert_with(|| String::from("["));
            if part.len() > 1 {
                part.push(',');
            }
            part.push_str(inner);
        }
        self.rows += n;
        self.bytes += inner.len();
        let next = if urgent || self.rows >= self.config.max_rows || self.bytes >= self.config.max_bytes {
            Next::Flush
        } else if !std::mem::replace(&mut self.scheduled, true) {
            Next::Schedule { delay_ms: self.config.flush_ms }
        } else {
            Next::Wait
        };
        Ok((ticket, next))
    }

    /// What to write now; the batch starts again empty. A timer still
    /// running finds nothing (or a later batch) when it fires.
    pub fn take(&mut self) -> Flush {
        self.rows = 0;
        self.bytes = 0;
        self.scheduled = false;
        let mut flush = std::mem::take(&mut self.pending);
        for rows in flush.parts.values_mut() {
            rows.push(']');
        }
        flush
    }

    /// Whether hand-offs wait for a flush.
    pub fn is_empty(&self) -> bool {
        self.pending.tickets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("u:1|2", 1), 0);
        assert_eq!(shard_of("u:1|2", 2), shard_of("u:1|2", 2));
        let mut seen = [0u32; 4];
        for i in 0..400 {
            seen[shard_of(&format!("u:{i}|{}", i + 1), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
    }

    #[test]
    fn partitions_align_on_their_length() {
        let p = Partitioning { days: 30, hot_days: 365, retention_days: 365 };
        assert_eq!(p.cold_before(0), None, "hot for all of the retention: no cold tier");
        let day = 20_424;
        let cold = Partitioning { hot_days: 2, ..p };
        assert_eq!(cold.cold_before(day * DAY_MS), Some(day - 2));
        let part = p.of(day * DAY_MS + 5);
        assert_eq!(part, Partition { first_day: 20_400, end_day: 20_430 });
        assert_eq!(part.table(), "history_20400");
        assert_eq!(p.of(20_429 * DAY_MS + DAY_MS - 1), part);
        assert_eq!(p.expired_before(day * DAY_MS), day - 365);
    }

    #[test]
    fn a_pass_splits_by_shard_and_partition_in_order() {
        let tagged = r#"[["u:1|2",10,[1]],["s:1",10,[2]],["u:1|2",20,[3]],["u:1|2",10,[4,"x"]]]"#;
        let out = split(tagged, 1).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], Handoff { shard: 0, first_day: 10, rows: r#"[[1],[2],[4,"x"]]"#.into() });
        assert_eq!(out[1].rows, "[[3]]");
        let spread = split(tagged, 64).unwrap();
        let total: usize = spread.iter().map(|h| count_rows(&h.rows).unwrap()).sum();
        assert_eq!(total, 4);
        assert!(split("[]", 2).unwrap().is_empty());
        assert!(split("nope", 2).is_err());
    }

    fn batcher() -> Batcher {
        Batcher::new(WriterConfig { flush_ms: 1000, max_rows: 3, max_bytes: 1 << 20 })
    }

    #[test]
    fn hand_offs_wait_for_the_timer_then_flush_together() {
        let mut b = batcher();
        assert_eq!(b.add(10, "[[1]]", false).unwrap(), (0, Next::Schedule { delay_ms: 1000 }));
        assert_eq!(b.add(20, "[[2]]", false).unwrap(), (1, Next::Wait));
        let f = b.take();
        assert_eq!(f.tickets, vec![0, 1]);
        assert_eq!(f.parts.get(&10).map(String::as_str), Some("[[1]]"));
        assert_eq!(f.parts.get(&20).map(String::as_str), Some("[[2]]"));
        assert!(b.is_empty());
        assert_eq!(b.add(10, "[[3]]", false).unwrap().1, Next::Schedule { delay_ms: 1000 }, "a new timer");
    }

    #[test]
    fn a_full_batch_or_a_waiting_reader_flushes_at_once() {
        let mut b = batcher();
        b.add(10, "[[1],[2]]", false).unwrap();
        assert_eq!(b.add(10, "[[3]]", false).unwrap().1, Next::Flush);
        assert_eq!(b.take().parts[&10], "[[1],[2],[3]]");
        assert_eq!(b.add(10, "[[4]]", true).unwrap().1, Next::Flush);
        let f = b.take();
        assert_eq!(f.parts[&10], "[[4]]");
        assert!(b.add(10, "{", false).is_err());
    }

    #[test]
    fn an_empty_hand_off_is_answered_with_the_next_flush() {
        let mut b = batcher();
        let (t, _) = b.add(10, "[]", false).unwrap();
        let f = b.take();
        assert_eq!((f.tickets, f.parts.len()), (vec![t], 0));
    }
}
