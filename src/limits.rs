//! Operator limits: every bound on what one client, user or call may use,
//! read from `wrangler.toml` vars with safe defaults.
//!
//! A var that is set but invalid is a broken deploy, so it is an error that
//! names the var (the entry answers 500), never a silent default.

use crate::archive::Partitioning;
use crate::consent::GroupAdds;
use crate::ratelimit::Rate;

/// The one var that is a word: who may add a user to groups by default.
const GROUP_ADDS_VAR: &str = "GROUP_ADDS_DEFAULT";

/// The most a Workers WebSocket message may carry; no configured frame limit
/// can go past it.
pub const FRAME_CEILING: usize = 1024 * 1024;

/// Most messages one backend API call may carry whatever `API_MAX_BATCH`
/// says; the configured bound ([`Limits::api_batch`]) is checked by the entry.
pub const MAX_BATCH: usize = 10_000;

/// The highest `GROUP_MAX_MEMBERS` may go: the group core's work per
/// answer no longer grows with the membership (`group::schedule`), and a
/// native test fans out to a group this size (`tests/large_groups.rs`).
pub const MAX_GROUP_MEMBERS: u32 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest client text frame (`FRAME_MAX_BYTES`).
    pub frame_bytes: usize,
    /// Largest backend API request body (`BODY_MAX_BYTES`).
    pub body_bytes: usize,
    /// Most messages in one backend API call (`API_MAX_BATCH`).
    pub api_batch: usize,
    /// Largest history or conversation page (`HISTORY_PAGE_MAX`).
    pub history_page: u32,
    /// Most open sockets of one user, over all protocols (`SOCKETS_PER_USER`).
    pub sockets_per_user: usize,
    /// Most entries waiting for a user no socket has received
    /// (`QUEUE_MAX`); further messages to them are refused.
    pub queue_max: u64,
    /// Most entries one sender may have waiting in one user's queue
    /// (`QUEUE_PER_SENDER`), so no sender can take the whole queue.
    pub queue_per_sender: u64,
    /// How long an entry no socket received stays queued (`QUEUE_TTL_S`).
    pub queue_ttl_ms: u64,
    /// Bound of a user's log whatever their devices acked (`LOG_CAP`).
    pub log_cap: u64,
    /// Sends of one user's object waiting for a recipient (`INFLIGHT_SENDS`).
    pub inflight_sends: usize,
    /// Sends per second of one user over all their sockets (`SEND_RATE`,
    /// `SEND_BURST`): far above what a person types, far below a flood.
    pub send_rate: Rate,
    /// History and conversation reads per second of one user, over HTTP and
    /// every socket (`READ_RATE`, `READ_BURST`): each may be a D1 query.
    pub read_rate: Rate,
    /// How history is cut in time (`HISTORY_PARTITION_DAYS`) and kept
    /// (`HISTORY_RETENTION_DAYS`): whole partitions past it are dropped.
    pub partitioning: Partitioning,
    /// Longest a history writer holds a batch for more rows (`HISTORY_FLUSH_MS`).
    pub history_flush_ms: u64,
    /// Most peers one user may block or mute (`BLOCKS_MAX`).
    pub blocks_max: usize,
    /// How long after a send its sender may edit it or delete it for
    /// everyone (`EDIT_WINDOW_S`).
    pub edit_window_ms: u64,
    /// How long a `watch` lasts unless renewed (`WATCH_TTL_S`).
    pub watch_ttl_ms: u64,
    /// How long after a user's last socket closed they are still online
    /// (`PRESENCE_GRACE_S`): a reconnect within it is no change.
    pub presence_grace_ms: u64,
    /// How often an isolate writes its counters to the Analytics Engine
    /// dataset (`METRICS_FLUSH_S`; 0: at every event, for tests).
    pub metrics_flush_ms: u64,
    /// Most members of one group (`GROUP_MAX_MEMBERS`): each message is one
    /// hop and one log entry per member.
    pub group_max_members: u32,
    /// Who may add a user to groups until they choose (`GROUP_ADDS_DEFAULT`):
    /// `contacts` unless the operator says otherwise.
    pub group_adds_default: GroupAdds,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            frame_bytes: 64 * 1024,
            body_bytes: 1024 * 1024,
            api_batch: 1000,
            history_page: 200,
            sockets_per_user: 32,
            queue_max: 10_000,
            queue_per_sender: 1_000,
            queue_ttl_ms: 30 * 24 * 3600 * 1000,
            log_cap: 10_000,
            inflight_sends: 256,
            send_rate: Rate { per_second: 20, burst: 60 },
            read_rate: Rate { per_second: 5, burst: 30 },
            partitioning: Partitioning { days: 30, hot_days: 365, retention_days: 365 },
            history_flush_ms: 2000,
            blocks_max: 1000,
            edit_window_ms: 24 * 3600 * 1000,
            watch_ttl_ms: 60_000,
            presence_grace_ms: 10_000,
            metrics_flush_ms: crate::metrics::DEFAULT_FLUSH_MS,
            group_max_members: crate::group::DEFAULT_MAX_MEMBERS,
            group_adds_default: GroupAdds::Contacts,
        }
    }
}

/// A var that is set but not a number in its range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitError {
    pub var: &'static str,
    pub min: u64,
    pub max: u64,
}

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.var == GROUP_ADDS_VAR {
            return write!(f, "var {} must be everyone, contacts or nobody", self.var);
        }
        // A range of nothing: the one var that is not a number (a URL).
        if self.max == 0 {
            return write!(f, "var {} must be an http(s) URL", self.var);
        }
        write!(f, "var {} must be a whole number from {} to {}", self.var, self.min, self.max)
    }
}

impl Limits {
    /// Reads the limits through `var` (the vars as strings; `None` when unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Limits, LimitError> {
        let d = Limits::default();
        let num = |name: &'static str, default: u64, min: u64, max: u64| match var(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(LimitError { var: name, min, max }),
            },
        };
        let ttl_s = num("QUEUE_TTL_S", d.queue_ttl_ms / 1000, 1, 365 * 24 * 3600)?;
        let log_cap = num("LOG_CAP", d.log_cap, 1, 10_000_000)?;
        let partition_days = num("HISTORY_PARTITION_DAYS", d.partitioning.days, 1, 366)?;
        Ok(Limits {
            frame_bytes: num("FRAME_MAX_BYTES", d.frame_bytes as u64, 256, FRAME_CEILING as u64)? as usize,
            body_bytes: num("BODY_MAX_BYTES", d.body_bytes as u64, 1024, 100 * 1024 * 1024)? as usize,
            api_batch: num("API_MAX_BATCH", d.api_batch as u64, 1, MAX_BATCH as u64)? as usize,
            history_page: num("HISTORY_PAGE_MAX", d.history_page.into(), 1, 1000)? as u32,
            sockets_per_user: num("SOCKETS_PER_USER", d.sockets_per_user as u64, 1, 1000)? as usize,
            // A queue longer than the log would lose its oldest entries to the cap.
            queue_max: num("QUEUE_MAX", d.queue_max.min(log_cap), 1, log_cap)?,
            queue_per_sender: num("QUEUE_PER_SENDER", d.queue_per_sender, 1, 10_000_000)?,
            queue_ttl_ms: ttl_s * 1000,
            log_cap,
            inflight_sends: num("INFLIGHT_SENDS", d.inflight_sends as u64, 1, 100_000)? as usize,
            send_rate: Rate {
                per_second: num("SEND_RATE", d.send_rate.per_second.into(), 1, u32::MAX.into())? as u32,
                burst: num("SEND_BURST", d.send_rate.burst.into(), 1, u32::MAX.into())? as u32,
            },
            read_rate: Rate {
                per_second: num("READ_RATE", d.read_rate.per_second.into(), 1, u32::MAX.into())? as u32,
                burst: num("READ_BURST", d.read_rate.burst.into(), 1, u32::MAX.into())? as u32,
            },
            partitioning: {
                // Never shorter than a partition: the newest one is never dropped.
                let retention_days =
                    num("HISTORY_RETENTION_DAYS", d.partitioning.retention_days, partition_days, 36_500)?;
                Partitioning {
                    days: partition_days,
                    hot_days: num("HISTORY_HOT_DAYS", retention_days, partition_days, retention_days)?,
                    retention_days,
                }
            },
            history_flush_ms: num("HISTORY_FLUSH_MS", d.history_flush_ms, 0, 60_000)?,
            blocks_max: num("BLOCKS_MAX", d.blocks_max as u64, 0, 100_000)? as usize,
            edit_window_ms: num("EDIT_WINDOW_S", d.edit_window_ms / 1000, 0, 365 * 24 * 3600)? * 1000,
            watch_ttl_ms: num("WATCH_TTL_S", d.watch_ttl_ms / 1000, 1, 3600)? * 1000,
            presence_grace_ms: num("PRESENCE_GRACE_S", d.presence_grace_ms / 1000, 0, 3600)? * 1000,
            metrics_flush_ms: num("METRICS_FLUSH_S", d.metrics_flush_ms / 1000, 0, 3600)? * 1000,
            group_max_members: num("GROUP_MAX_MEMBERS", d.group_max_members.into(), 2, MAX_GROUP_MEMBERS.into())?
                as u32,
            group_adds_default: match var(GROUP_ADDS_VAR) {
                None => d.group_adds_default,
                Some(v) => {
                    GroupAdds::parse(v.trim()).map_err(|_| LimitError { var: GROUP_ADDS_VAR, min: 0, max: 0 })?
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Limits, LimitError> {
        Limits::from_vars(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn unset_vars_give_the_defaults() {
        assert_eq!(with(&[]), Ok(Limits::default()));
    }

    #[test]
    fn set_vars_override_their_limit_only() {
        let l = with(&[("FRAME_MAX_BYTES", "1024"), ("QUEUE_TTL_S", "2"), ("SEND_BURST", " 7 ")]).unwrap();
        assert_eq!((l.frame_bytes, l.queue_ttl_ms, l.send_rate.burst), (1024, 2000, 7));
        assert_eq!(l.queue_max, Limits::default().queue_max);
    }

    #[test]
    fn the_queue_never_outgrows_the_log() {
        assert_eq!(with(&[("LOG_CAP", "500")]).unwrap().queue_max, 500, "the default queue bound follows the cap");
        let e = with(&[("LOG_CAP", "500"), ("QUEUE_MAX", "501")]).unwrap_err();
        assert_eq!((e.var, e.max), ("QUEUE_MAX", 500));
    }

    #[test]
    fn a_bad_value_names_its_var_and_range() {
        for (name, value) in [("QUEUE_MAX", "lots"), ("FRAME_MAX_BYTES", "2000000"), ("SOCKETS_PER_USER", "0")] {
            let e = with(&[(name, value)]).unwrap_err();
            assert_eq!(e.var, name);
            assert!(e.to_string().starts_with(&format!("var {name} must be a whole number from")));
        }
    }

    #[test]
    fn who_may_add_to_groups_is_contacts_unless_set() {
        assert_eq!(with(&[]).unwrap().group_adds_default, GroupAdds::Contacts);
        assert_eq!(with(&[("GROUP_ADDS_DEFAULT", " everyone")]).unwrap().group_adds_default, GroupAdds::Everyone);
        let e = with(&[("GROUP_ADDS_DEFAULT", "friends")]).unwrap_err();
        assert_eq!(e.to_string(), "var GROUP_ADDS_DEFAULT must be everyone, contacts or nobody");
    }
}
