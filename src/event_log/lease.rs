//! Producer leases: how a reader on any instance tells a stream whose producer is
//! working slowly from one whose producer is gone.
//!
//! The producer of a request's stream (the pump) opens it with a [`ProducerLease`] and
//! renews the lease while it runs; finishing the stream clears it. A reader tailing an
//! unfinished stream asks the log for the [`ProducerState`] now and then; once the lease
//! has lapsed it ends the stream with
//! [`EventLog::end_abandoned`](super::EventLog::end_abandoned), which appends a final
//! event and finishes the stream in one atomic step, so of several readers racing (on
//! several instances) exactly one writes it.
//!
//! A stream opened without a lease (the standalone `GET` stream, every stream of a
//! backend that does not keep leases) is never abandoned.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, interval_at, timeout};

use super::{EventLog, StreamKey};

/// A producer's claim on a stream it opens: live for `duration` after the open and after
/// each renewal.
///
/// The `note` is kept with the lease and handed to whoever finds it lapsed, so that a
/// reader on another instance can write the stream's last word without knowing the
/// request: the layer stores the JSON-RPC id of the request the stream answers.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use tower_mcp_session::event_log::ProducerLease;
///
/// let lease = ProducerLease::new(Duration::from_secs(10), Bytes::from_static(b"7"));
/// assert_eq!(lease.duration(), Duration::from_secs(10));
/// assert_eq!(lease.note(), &Bytes::from_static(b"7"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerLease {
    duration: Duration,
    note: Bytes,
}

impl ProducerLease {
    /// A lease of `duration` (at least a millisecond) carrying `note`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use tower_mcp_session::event_log::ProducerLease;
    ///
    /// let lease = ProducerLease::new(Duration::ZERO, Bytes::new());
    /// assert_eq!(lease.duration(), Duration::from_millis(1));
    /// ```
    pub fn new(duration: Duration, note: Bytes) -> Self {
        Self {
            duration: duration.max(Duration::from_millis(1)),
            note,
        }
    }

    /// How long the lease lives without a renewal.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_session::event_log::ProducerLease;
    /// let lease = ProducerLease::new(Duration::from_secs(3), bytes::Bytes::new());
    /// assert_eq!(lease.duration().as_secs(), 3);
    /// ```
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// What the producer left for whoever finds the lease lapsed.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_session::event_log::ProducerLease;
    /// let lease = ProducerLease::new(Duration::from_secs(3), bytes::Bytes::from_static(b"\"a\""));
    /// assert_eq!(&lease.note()[..], b"\"a\"");
    /// ```
    pub fn note(&self) -> &Bytes {
        &self.note
    }
}

/// What the log knows of a stream's producer
/// ([`EventLog::producer`](super::EventLog::producer)).
///
/// ```
/// use tower_mcp_session::event_log::ProducerState;
///
/// assert!(!ProducerState::Unleased.is_lapsed());
/// assert!(ProducerState::Lapsed { note: bytes::Bytes::new() }.is_lapsed());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProducerState {
    /// No lease: the stream was opened without one, has finished (which clears it), or
    /// is unknown. Such a stream is never abandoned.
    Unleased,
    /// The producer renewed its lease in time.
    Live,
    /// The lease ran out on an unfinished stream: its producer stopped renewing it.
    Lapsed {
        /// The lease's [`note`](ProducerLease::note).
        note: Bytes,
    },
}

impl ProducerState {
    /// Whether the lease ran out.
    ///
    /// ```
    /// use tower_mcp_session::event_log::ProducerState;
    ///
    /// assert!(!ProducerState::Live.is_lapsed());
    /// ```
    pub fn is_lapsed(&self) -> bool {
        matches!(self, Self::Lapsed { .. })
    }
}

/// How often a producer renews a lease of `lease`: three times per lease, so two
/// renewals in a row may be late or lost before it lapses.
pub(crate) fn renew_every(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(1))
}

/// Run `work` (a pump) while renewing the lease of `key` every third of `lease`. The
/// renewals live in the same task as the work: a task that is aborted, or an instance
/// that dies, stops both, and the lease lapses.
pub(crate) async fn renewing(work: impl Future<Output = ()>, log: Arc<dyn EventLog>, key: StreamKey, lease: Duration) {
    let every = renew_every(lease);
    let renewals = async {
        let mut tick = interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A renewal that fails or hangs is tried again at the next tick; the lease
            // has room for two lost ones.
            let _ = timeout(every, log.renew_lease(&key, lease)).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = renewals => {}
    }
}

/// If the producer of `key` is gone (its lease lapsed), end the stream with the event
/// `last(note)` makes of the lease's note; [`EventLog::end_abandoned`] checks again and
/// writes at most once, however many readers race here. Returns what was found: a log
/// that failed or did not answer in `wait` counts as [`ProducerState::Live`] (look
/// again later).
pub(crate) async fn end_if_abandoned(
    log: &dyn EventLog,
    key: &StreamKey,
    wait: Duration,
    last: impl FnOnce(&Bytes) -> Bytes,
) -> ProducerState {
    match timeout(wait, log.producer(key)).await {
        Ok(Ok(ProducerState::Lapsed { note })) => {
            let _ = timeout(wait, log.end_abandoned(key, last(&note))).await;
            ProducerState::Lapsed { note }
        }
        Ok(Ok(state)) => state,
        _ => ProducerState::Live,
    }
}
