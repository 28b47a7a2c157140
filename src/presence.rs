//! Presence (sans-IO): what one user may see of another's, and when it
//! changes.
//!
//! Presence lives in the user's own object and reaches only its watchers:
//! a user's client `watch`es the peers it shows, and a change costs one hop
//! per live watcher, never one per contact. `online` comes from sockets
//! opening and closing (heartbeats never wake an object); the switch to
//! offline waits out a grace so a reconnect is no change.

use serde::Serialize;

/// The most watchers one user's object keeps at once; past it a watch is
/// answered but not kept (the watcher sees the state, not its changes).
pub const WATCHERS_MAX: usize = 1000;

/// A user's presence as another user may see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Presence {
    /// When the user was last online (ms since the epoch, rounded down to
    /// the minute); null: never, or not shown.
    pub last_seen: Option<u64>,
    /// At least one socket open (or closed less than `PRESENCE_GRACE_S` ago).
    pub online: bool,
}

impl Presence {
    /// What everyone sees of a user who hides their presence, of one who
    /// blocked them, or of one they have no conversation with: the same as
    /// a user never seen.
    pub const HIDDEN: Presence = Presence { last_seen: None, online: false };
}

/// `ms` rounded down to the minute: last seen is never more precise.
pub fn minute(ms: u64) -> u64 {
    ms - ms % 60_000
}

/// Whether `watcher` may see the user's presence: the user does not hide
/// it, did not block the watcher, and has a conversation with them.
pub fn visible(hide: bool, blocked: bool, has_conversation: bool) -> bool {
    !hide && !blocked && has_conversation
}

/// The user's presence at `now`: `online` with sockets open or within the
/// grace after the last one closed; `last_seen` the current minute then,
/// else the minute the last socket closed.
pub fn state(online: bool, last_seen: Option<u64>, now: u64) -> Presence {
    match online {
        true => Presence { last_seen: Some(minute(now)), online: true },
        false => Presence { last_seen: last_seen.map(minute), online: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_is_rounded_to_the_minute() {
        assert_eq!(minute(125_999), 120_000);
        assert_eq!(state(false, Some(61_000), 999_999), Presence { last_seen: Some(60_000), online: false });
        assert_eq!(state(true, Some(61_000), 185_000), Presence { last_seen: Some(180_000), online: true });
        assert_eq!(state(false, None, 5), Presence::HIDDEN, "never seen looks like hidden");
    }

    #[test]
    fn only_contacts_who_are_not_blocked_see_a_visible_presence() {
        assert!(visible(false, false, true));
        assert!(!visible(true, false, true), "hidden");
        assert!(!visible(false, true, true), "blocked");
        assert!(!visible(false, false, false), "a stranger");
    }
}
