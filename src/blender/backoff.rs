//! Capped exponential backoff between connect attempts.
//!
//! After a failed attempt the next one is not made before a delay that starts at
//! 100 ms and doubles up to 5 s (with ±20% jitter so many sessions do not retry in
//! step). A success resets it. While the delay runs, commands fail at once with a
//! message saying when the next attempt is due, instead of queueing behind a Blender
//! that is known to be away.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            failures: 0,
            next_attempt: None,
        }
    }

    /// `Err(wait)` while an attempt now would come too early.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.next_attempt {
            Some(at) if at > now => Err(at - now),
            _ => Ok(()),
        }
    }

    pub fn record_failure(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(16);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let jitter = rand::random_range(0.8..1.2);
        let delay = raw.mul_f64(jitter).min(self.cap);
        self.next_attempt = Some(now + delay);
        delay
    }

    pub fn record_success(&mut self) {
        self.failures = 0;
        self.next_attempt = None;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let now = Instant::now();
        assert!(b.check(now).is_ok());
        let mut last = Duration::ZERO;
        for i in 0..10 {
            let d = b.record_failure(now);
            assert!(d <= Duration::from_secs(5), "{d:?}");
            if i < 4 {
                assert!(d > last.mul_f64(1.3), "attempt {i}: {d:?} after {last:?}");
            }
            last = d;
            assert!(b.check(now).is_err());
            assert!(b.check(now + d).is_ok());
        }
        assert!(last >= Duration::from_secs(4));
        b.record_success();
        assert!(b.check(now).is_ok());
        assert_eq!(b.failures(), 0);
    }
}
