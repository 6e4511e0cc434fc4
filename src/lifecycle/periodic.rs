//! One way to run background work: a job repeated on the Tokio runtime for as long as
//! its owner lives, started lazily from inside a runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::store::BoxFuture;

/// A job that runs every `every` while its owner lives; the task holds the owner weakly,
/// so dropping the last strong handle stops it at its next tick.
pub(crate) struct Periodic<T> {
    started: AtomicBool,
    every: Duration,
    job: fn(Arc<T>) -> BoxFuture<'static, ()>,
}

impl<T: Send + Sync + 'static> Periodic<T> {
    pub(crate) fn new(every: Duration, job: fn(Arc<T>) -> BoxFuture<'static, ()>) -> Self {
        Self {
            started: AtomicBool::new(false),
            every: every.max(Duration::from_millis(10)),
            job,
        }
    }

    pub(crate) fn every(&self) -> Duration {
        self.every
    }

    /// Start the job for `owner` unless it runs already. Outside a runtime nothing can
    /// run it: that is said (once per attempt) and the next call tries again, so the
    /// work is never skipped without a word.
    pub(crate) fn ensure(&self, owner: &Arc<T>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            #[cfg(feature = "tracing")]
            tracing::warn!("no Tokio runtime: background session maintenance is not running yet");
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(run(Arc::downgrade(owner), self.every, self.job));
    }
}

async fn run<T>(owner: Weak<T>, every: Duration, job: fn(Arc<T>) -> BoxFuture<'static, ()>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Strong only for the length of one run, so the task never keeps its owner alive.
        let Some(owner) = owner.upgrade() else { return };
        job(owner).await;
    }
}

impl<T> std::fmt::Debug for Periodic<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Periodic")
            .field("every", &self.every)
            .field("started", &self.started.load(Ordering::Relaxed))
            .finish()
    }
}
