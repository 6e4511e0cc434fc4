//! The global quota's state: governor's GCRA over one atomic, with a dry run.
//!
//! With both quotas set, a request refused by its per-key quota must not use up a
//! global cell, and the reverse. governor's checks always consume on success, so the
//! global state is a tiny [`StateStore`] whose key says whether to store the outcome.
//! Every decision is still governor's: `measure_and_replace` only hands it the stored
//! theoretical arrival time and keeps (or, for a dry run, drops) the new one.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter, clock::DefaultClock};

/// Whether a check stores its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Probe {
    /// Decide, but leave the state as it was.
    DryRun,
    /// Decide and, when allowed, take the cell.
    Take,
}

/// The theoretical arrival time in nanoseconds since the limiter's start, 0 for "fresh"
/// (the same encoding as governor's own `InMemoryState`).
#[derive(Debug, Default)]
pub(crate) struct PeekableState(AtomicU64);

impl StateStore for PeekableState {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, key: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut prev = self.0.load(Ordering::Acquire);
        loop {
            let (outcome, next) = f(NonZeroU64::new(prev).map(|n| Nanos::new(n.get())))?;
            if *key == Probe::DryRun {
                return Ok(outcome);
            }
            match self
                .0
                .compare_exchange_weak(prev, next.as_u64(), Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return Ok(outcome),
                // Someone else moved the state: decide again on what they left.
                Err(actual) => prev = actual,
            }
        }
    }
}

pub(crate) type GlobalLimiter = RateLimiter<Probe, PeekableState, DefaultClock>;

pub(crate) fn limiter(quota: Quota) -> GlobalLimiter {
    RateLimiter::new(quota, PeekableState::default(), DefaultClock::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn dry_run_never_consumes() {
        let g = limiter(Quota::per_hour(NonZeroU32::new(2).unwrap()));
        for _ in 0..10 {
            assert!(g.check_key(&Probe::DryRun).is_ok());
        }
        assert!(g.check_key(&Probe::Take).is_ok());
        assert!(g.check_key(&Probe::DryRun).is_ok());
        assert!(g.check_key(&Probe::Take).is_ok());
        assert!(g.check_key(&Probe::DryRun).is_err());
        assert!(g.check_key(&Probe::Take).is_err());
    }
}
