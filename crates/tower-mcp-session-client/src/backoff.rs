//! Exponential backoff with jitter, shared by stream resumption, reconnection and retry.

use std::time::Duration;

/// Exponential backoff with "equal jitter": attempt `n` (from 1) waits a random time
/// between half and all of `min(max, base × factorⁿ⁻¹)`.
///
/// Half the delay is random so that many clients cut off by the same outage do not all
/// come back at the same instant; the other half is kept so a client never hammers a
/// server that is down.
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session_client::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
/// let d = backoff.delay(3); // nominal 400 ms
/// assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
/// assert!(backoff.delay(50) <= Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    factor: f64,
    jitter: bool,
}

impl Backoff {
    /// Doubling backoff from `base`, capped at `max`, with jitter.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            factor: 2.0,
            jitter: true,
        }
    }

    /// Grow by `factor` per attempt instead of 2 (values below 1 count as 1).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session_client::Backoff;
    ///
    /// let b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1)).factor(3.0).without_jitter();
    /// assert_eq!(b.delay(3), Duration::from_millis(90));
    /// ```
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() { factor.max(1.0) } else { 2.0 };
        self
    }

    /// Wait exactly the nominal delay (for tests and for callers adding their own jitter).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session_client::Backoff;
    ///
    /// let b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1)).without_jitter();
    /// assert_eq!(b.delay(1), Duration::from_millis(10));
    /// assert_eq!(b.delay(2), Duration::from_millis(20));
    /// ```
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The nominal (un-jittered) delay before attempt `attempt` (counted from 1).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session_client::Backoff;
    ///
    /// let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(250));
    /// assert_eq!(b.nominal(1), Duration::from_millis(100));
    /// assert_eq!(b.nominal(3), Duration::from_millis(250));
    /// ```
    pub fn nominal(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(63) as i32;
        let secs = self.base.as_secs_f64() * self.factor.powi(exp);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The delay to wait before attempt `attempt` (counted from 1), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = self.nominal(attempt);
        if !self.jitter || nominal.is_zero() {
            return nominal;
        }
        let half = nominal / 2;
        half + half.mul_f64(unit_random())
    }
}

impl Default for Backoff {
    /// 100 ms doubling to at most 5 s, with jitter.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// A uniform random number in `[0, 1]`; the OS generator, falling back to the clock.
fn unit_random() -> f64 {
    let bits = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .unwrap_or(0)
    });
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_full() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for attempt in 1..8 {
            let nominal = b.nominal(attempt);
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            }
        }
    }

    #[test]
    fn huge_attempts_saturate_at_max() {
        let b = Backoff::new(Duration::from_millis(1), Duration::from_secs(3)).without_jitter();
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(3));
        assert_eq!(b.delay(0), Duration::from_millis(1));
    }
}
