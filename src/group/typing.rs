//! Typing indicators of a group's members, each within [`TYPING_RATE`] (as
//! a user's typing to one peer is): one member's flood of them never fans
//! out to the whole group. Kept in the group object's memory, a hint as
//! typing is: an eviction forgets it (each member starts full again).

use std::collections::HashMap;

use crate::mailbox::TYPING_RATE;
use crate::ratelimit::Bucket;
use crate::user::UserId;

/// Members remembered at once (bounded memory): past it all are forgotten.
const MAX_TYPISTS: usize = 1024;

/// Each member's typing bucket.
#[derive(Debug, Default)]
pub struct Typists(HashMap<UserId, Bucket>);

impl Typists {
    /// Whether an indicator of `from` may go out at `now` (taking a token).
    pub fn allow(&mut self, from: &UserId, now: u64) -> bool {
        if !self.0.contains_key(from) && self.0.len() >= MAX_TYPISTS {
            self.0.clear();
        }
        self.0.entry(from.clone()).or_insert_with(|| Bucket::full(TYPING_RATE, now)).take(TYPING_RATE, now).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_member_has_the_one_to_one_rate() {
        let (a, b) = (UserId::parse("a").unwrap(), UserId::parse("b").unwrap());
        let mut t = Typists::default();
        let burst = TYPING_RATE.burst as usize;
        assert_eq!((0..10).filter(|_| t.allow(&a, 0)).count(), burst);
        assert!(t.allow(&b, 0), "another member's bucket is their own");
        assert!(t.allow(&a, 1000), "refilled a second later");
    }
}
