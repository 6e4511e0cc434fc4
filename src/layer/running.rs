//! A translated request's cancellation, wherever the client's `notifications/cancelled`
//! lands. The instance that runs the request holds its inner call, so only it can end
//! it. A cancellation that finds the request running here ends it at once (through
//! [`InFlight`](crate::translate::in_flight::InFlight)); one that does not is left as a
//! marker in the shared event log, on a stream every instance derives from the session
//! and the request id, and the instance running the request looks for it while the
//! request lasts.
//!
//! Looking costs one event-log read per [`CHECK_EVERY`] per request, and only for
//! requests still running after that long: the short requests that are most of the
//! traffic never look. A cancellation from another instance therefore takes effect
//! within about [`CHECK_EVERY`]. Markers are finished streams, so the log's retention
//! drops them; a request id is never reused within a session (MCP forbids it), so a
//! marker can only name the request it was left for.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::SessionId;
use crate::engine::Engine;
use crate::event_log::{EventLog, ReadOutcome, StreamKey};
use crate::translate::in_flight::{InFlight, Registration};

/// How often a running translated request looks for a cancellation left by another
/// instance, starting this long after it began.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A translated request running here: [`cancelled`](Self::cancelled) completes when the
/// client cancels it, on this instance or another.
pub(super) struct Running {
    local: Registration,
    log: Arc<dyn EventLog>,
}

impl Running {
    /// Note the request `id` (raw JSON) of `session` as running here.
    pub(super) fn register(engine: &Engine, session: &SessionId, id: &str) -> Self {
        Self {
            local: engine.in_flight().register(session, id),
            log: Arc::clone(engine.log()),
        }
    }

    /// Completes when the client cancels the request.
    pub(super) async fn cancelled(&self) {
        let elsewhere = async {
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + CHECK_EVERY, CHECK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            // Made only now: the requests over within a second never need it.
            let Some(marker) = self.local.marker() else {
                return std::future::pending().await;
            };
            loop {
                if is_marked(&*self.log, &marker).await {
                    return;
                }
                every.tick().await;
            }
        };
        tokio::select! {
            () = self.local.cancelled() => {}
            () = elsewhere => {}
        }
    }
}

/// The client cancelled its request `id` (raw JSON): end it if it runs here, else
/// leave the marker the instance running it looks for. A request that already ended
/// is not told apart from one running elsewhere; its marker harms nothing.
pub(super) async fn cancel(engine: &Engine, session: &SessionId, id: &str) {
    if engine.in_flight().cancel(session, id) {
        return;
    }
    let Some(marker) = InFlight::marker(session, id) else {
        return;
    };
    let log = engine.log();
    // Best effort, as cancellation is: a log that cannot take the marker (unavailable,
    // the session's streams at their bound) leaves the request to finish.
    if log.open(&marker).await.is_ok() {
        let _ = log.append_last(&marker, Bytes::from_static(b"{}")).await;
    }
}

/// Whether a cancellation marker was left at `marker`.
async fn is_marked(log: &dyn EventLog, marker: &StreamKey) -> bool {
    match log.read_after(marker, 0, 1).await {
        Ok(ReadOutcome::Events { events, .. }) => !events.is_empty(),
        // Once there and dropped by retention: it was left.
        Ok(ReadOutcome::Evicted { .. }) => true,
        Ok(ReadOutcome::UnknownStream) | Err(_) => false,
    }
}
