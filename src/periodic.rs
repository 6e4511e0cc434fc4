//! The one way the crate runs background work: a job repeated on the Tokio runtime for
//! as long as its owner lives, started lazily from inside a runtime. The engine's
//! keep-alive, expiry sweep and local-state sweep, and the rate limiter's sweep, all
//! use it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

/// One run of a job.
pub(crate) type JobFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A job that runs every `every` while its owner lives. The task holds the owner
/// weakly and only for the length of one run; a `Periodic` is a field of its owner, so
/// dropping the owner drops it, which wakes the task to end at once.
pub(crate) struct Periodic<T> {
    started: AtomicBool,
    every: Duration,
    job: fn(Arc<T>) -> JobFuture,
    stop: Arc<Notify>,
}

impl<T: Send + Sync + 'static> Periodic<T> {
    pub(crate) fn new(every: Duration, job: fn(Arc<T>) -> JobFuture) -> Self {
        Self {
            started: AtomicBool::new(false),
            every: every.max(Duration::from_millis(1)),
            job,
            stop: Arc::new(Notify::new()),
        }
    }

    pub(crate) fn every(&self) -> Duration {
        self.every
    }

    /// Start the job for `owner` unless it runs already. Outside a runtime nothing can
    /// run it: that is said and the next call tries again, so the work is never skipped
    /// without a word.
    pub(crate) fn ensure(&self, owner: &Arc<T>) {
        // The common case, on hot paths: one load, the job runs already.
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            #[cfg(feature = "tracing")]
            tracing::warn!("no Tokio runtime: background maintenance is not running yet");
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(run(Arc::downgrade(owner), self.every, self.job, Arc::clone(&self.stop)));
    }

    #[cfg(test)]
    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Alive exactly as long as the task (and the `Periodic`): for tests that check the
    /// task ends with its owner.
    #[cfg(test)]
    pub(crate) fn stop_signal(&self) -> Weak<Notify> {
        Arc::downgrade(&self.stop)
    }
}

async fn run<T>(owner: Weak<T>, every: Duration, job: fn(Arc<T>) -> JobFuture, stop: Arc<Notify>) {
    loop {
        // Woken early only when the owner (and so the `Periodic`) is dropped; the
        // stored permit means a drop between two polls is not missed.
        if tokio::time::timeout(every, stop.notified()).await.is_ok() {
            return;
        }
        let Some(owner) = owner.upgrade() else { return };
        job(owner).await;
    }
}

impl<T> Drop for Periodic<T> {
    fn drop(&mut self) {
        self.stop.notify_one();
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
