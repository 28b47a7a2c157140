//! A token bucket: how many sends a user may make, and for how long one who
//! made too many must wait. Kept in the user's object, so it covers every
//! socket and device of that user. Integer arithmetic in thousandths of a
//! token, so the wasm carries no float formatting or parsing for it.

/// Refill rate (tokens per second) and capacity (tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Thousandths of a token.
    milli: u64,
    last_ms: u64,
}

impl Bucket {
    pub fn full(rate: Rate, now_ms: u64) -> Bucket {
        Bucket { milli: rate.burst as u64 * 1000, last_ms: now_ms }
    }

    /// Takes one token, or says how many milliseconds until one is there.
    pub fn take(&mut self, rate: Rate, now_ms: u64) -> Result<(), u64> {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        // tokens/s × ms = thousandths of a token
        let refill = elapsed.saturating_mul(rate.per_second as u64);
        self.milli = self.milli.saturating_add(refill).min(rate.burst as u64 * 1000);
        self.last_ms = self.last_ms.max(now_ms);
        if self.milli >= 1000 {
            self.milli -= 1000;
            Ok(())
        } else if rate.per_second == 0 {
            Err(u64::MAX)
        } else {
            Err((1000 - self.milli).div_ceil(rate.per_second as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate { per_second: 2, burst: 3 };

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = Bucket::full(RATE, 0);
        for _ in 0..3 {
            assert_eq!(b.take(RATE, 0), Ok(()));
        }
        assert_eq!(b.take(RATE, 0), Err(500));
        assert_eq!(b.take(RATE, 499), Err(1));
        assert_eq!(b.take(RATE, 500), Ok(()));
        assert_eq!(b.take(RATE, 500), Err(500));
    }

    #[test]
    fn idle_time_refills_up_to_the_burst_only() {
        let mut b = Bucket::full(RATE, 0);
        for _ in 0..3 {
            b.take(RATE, 0).unwrap();
        }
        for _ in 0..3 {
            assert_eq!(b.take(RATE, 60_000), Ok(()));
        }
        assert!(b.take(RATE, 60_000).is_err());
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut b = Bucket::full(RATE, 1000);
        for _ in 0..3 {
            b.take(RATE, 1000).unwrap();
        }
        assert!(b.take(RATE, 10).is_err());
    }
}
