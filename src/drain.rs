//! Graceful drain: what this instance still has in flight, and the switch that makes
//! it stop taking on new sessions and send its SSE clients elsewhere.
//!
//! The layer counts three kinds of work that only this process can finish: pumps
//! (inner bodies being driven into the event log), readers (SSE connections attached
//! here) and waits for a client's answer to a server → client request. Each is tracked
//! by a [`Work`] guard, so a task that ends any way, aborted included, is counted out.
//! [`SessionManager::drain`](crate::SessionManager::drain) flips the switch and waits
//! for the counts to reach zero.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// What a drain found still running when it ended, as
/// [`SessionManager::drain`](crate::SessionManager::drain) reports it.
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session::McpSessionLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let manager = McpSessionLayer::new().manager();
/// let report = manager.drain(Duration::from_secs(30)).await;
/// assert!(report.is_complete());
/// assert_eq!(report.to_string(), "drained: nothing left in flight");
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DrainReport {
    /// Streamed answers whose inner body was still being read into the event log.
    pub pumps: usize,
    /// SSE connections still attached to this instance.
    pub connections: usize,
    /// Server → client requests still waiting here for the client's answer.
    pub client_requests: usize,
    /// How long the drain took.
    pub elapsed: Duration,
}

impl DrainReport {
    /// Whether nothing was left in flight: the drain ended before its deadline.
    pub fn is_complete(&self) -> bool {
        self.pumps == 0 && self.connections == 0 && self.client_requests == 0
    }
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_complete() {
            return f.write_str("drained: nothing left in flight");
        }
        write!(
            f,
            "drain deadline passed: {} pumps, {} SSE connections, {} client requests still in flight",
            self.pumps, self.connections, self.client_requests
        )
    }
}

/// Which kind of work a [`Work`] guard counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Pump,
    Reader,
    ClientRequest,
}

/// The drain switch and the in-flight counts of one layer.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    draining: AtomicBool,
    pumps: AtomicUsize,
    readers: AtomicUsize,
    client_requests: AtomicUsize,
    /// Woken when the drain begins: readers that must send their clients elsewhere.
    begun: Notify,
    /// Woken, while draining, whenever a piece of work ends.
    ended: Notify,
}

impl Drain {
    fn counter(&self, kind: Kind) -> &AtomicUsize {
        match kind {
            Kind::Pump => &self.pumps,
            Kind::Reader => &self.readers,
            Kind::ClientRequest => &self.client_requests,
        }
    }

    /// Count a piece of work until the guard is dropped.
    pub(crate) fn track(self: &Arc<Self>, kind: Kind) -> Work {
        self.counter(kind).fetch_add(1, Ordering::SeqCst);
        Work {
            drain: self.clone(),
            kind,
        }
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once the drain begins (arm it before looking at [`Self::is_draining`]).
    pub(crate) fn begun(&self) -> tokio::sync::futures::Notified<'_> {
        self.begun.notified()
    }

    /// Begin draining (again, harmlessly); whether this call was the first.
    pub(crate) fn begin(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::SeqCst);
        self.begun.notify_waiters();
        first
    }

    /// What is in flight now.
    pub(crate) fn in_flight(&self, elapsed: Duration) -> DrainReport {
        DrainReport {
            pumps: self.pumps.load(Ordering::SeqCst),
            connections: self.readers.load(Ordering::SeqCst),
            client_requests: self.client_requests.load(Ordering::SeqCst),
            elapsed,
        }
    }

    /// Wait until nothing is in flight or `deadline` has passed; what was left.
    /// `observe` sees the counts each time they are read: at the start, after each end
    /// of work, at the deadline; the last it sees is the report returned.
    pub(crate) async fn settle(&self, deadline: Duration, mut observe: impl FnMut(&DrainReport)) -> DrainReport {
        let start = tokio::time::Instant::now();
        let until = start + deadline;
        loop {
            // Armed before the counts are read, so an end in between is not missed.
            let ended = self.ended.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            let report = self.in_flight(start.elapsed());
            observe(&report);
            if report.is_complete() {
                return report;
            }
            if tokio::time::timeout_at(until, ended).await.is_err() {
                let last = self.in_flight(start.elapsed());
                observe(&last);
                return last;
            }
        }
    }
}

/// One piece of work in flight; dropping it counts it out.
#[derive(Debug)]
pub(crate) struct Work {
    drain: Arc<Drain>,
    kind: Kind,
}

impl Work {
    /// The drain state this work is counted in.
    pub(crate) fn drain(&self) -> &Arc<Drain> {
        &self.drain
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        self.drain.counter(self.kind).fetch_sub(1, Ordering::SeqCst);
        // Only a drain waits for the counts; outside one, ending work costs one atomic.
        if self.drain.is_draining() {
            self.drain.ended.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn settle_waits_for_work_and_reports_what_is_left_at_the_deadline() {
        let drain = Arc::new(Drain::default());
        let pump = drain.track(Kind::Pump);
        let reader = drain.track(Kind::Reader);
        assert!(drain.begin(), "the first begin");
        assert!(!drain.begin(), "and only the first");
        assert!(drain.is_draining());
        let mut seen = Vec::new();
        let left = drain
            .settle(Duration::from_secs(1), |r| seen.push(r.pumps + r.connections))
            .await;
        assert_eq!(seen, [2, 2], "read at the start and at the deadline");
        assert_eq!((left.pumps, left.connections, left.client_requests), (1, 1, 0));
        assert!(!left.is_complete());
        assert!(left.to_string().contains("1 pumps"), "{left}");

        drop(reader);
        let settling = tokio::spawn({
            let drain = drain.clone();
            async move { drain.settle(Duration::from_secs(60), |_| {}).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(pump);
        let done = settling.await.unwrap();
        assert!(done.is_complete(), "{done}");
        assert!(done.elapsed < Duration::from_secs(60));
    }
}
