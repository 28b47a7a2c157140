//! The backend's idempotency keys in a mailbox: whether a keyed item was
//! stored before, under the same request or another ([`crate::idempotency`]).

use super::Error;
use crate::idempotency::{self, Replay};
use crate::log::{Log, Sql};

/// What an item bound to `bound` is here, with the seq of the entry it
/// stored the first time (for [`Replay::Same`]).
pub(super) fn replay<S: Sql>(log: &Log<S>, bound: &str) -> Result<(Replay, Option<u64>), Error> {
    let stored = log.sent_under_key(bound)?;
    let seq = stored.as_ref().map(|(_, seq)| *seq);
    Ok((idempotency::replay(stored.as_ref().map(|(k, _)| k.as_str()), bound), seq))
}
