//! Counters a user can read: sessions created, active and closed by reason, requests
//! rejected by kind, streams resumed. Plain atomics, cheap enough for the hot path.
//! With feature `metrics`, the same events (and a few more) also go to the `metrics`
//! facade (`facade.rs`), and store calls are timed (`store.rs`).

#[cfg(feature = "metrics")]
pub(crate) mod facade;
#[cfg(any(feature = "tracing", feature = "metrics"))]
pub(crate) mod labels;
#[cfg(feature = "metrics")]
pub(crate) mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::rejection::RejectionKind;
use crate::session::{CloseReason, SessionId, SessionRecord};

pub(crate) struct Counters {
    created: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    rejected: [AtomicU64; RejectionKind::ALL.len()],
    resumed: AtomicU64,
    modern_passed_through: AtomicU64,
    #[cfg(feature = "metrics")]
    births: facade::Births,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").finish_non_exhaustive()
    }
}

impl Counters {
    /// Counters for sessions that live at most `lifetime`.
    pub(crate) fn new(lifetime: Duration) -> Self {
        let _ = lifetime;
        Self {
            created: AtomicU64::new(0),
            closed: Default::default(),
            rejected: Default::default(),
            resumed: AtomicU64::new(0),
            modern_passed_through: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            births: facade::Births::new(lifetime),
        }
    }

    pub(crate) fn session_created(&self, record: &SessionRecord) {
        self.created.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.births.created(record);
        let _ = record;
    }

    pub(crate) fn session_closed(&self, id: &SessionId, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.births.closed(id, reason);
        let _ = id;
    }

    pub(crate) fn rejected(&self, kind: RejectionKind) {
        self.rejected[kind.index()].fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        facade::rejected(kind);
    }

    pub(crate) fn resumed(&self) {
        self.resumed.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        facade::resumed();
    }

    pub(crate) fn modern(&self) {
        self.modern_passed_through.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, with_local_streams: usize) -> Metrics {
        let created = self.created.load(Ordering::Relaxed);
        let closed: u64 = self.closed.iter().map(|n| n.load(Ordering::Relaxed)).sum();
        Metrics {
            active_sessions: Some(usize::try_from(created.saturating_sub(closed)).unwrap_or(usize::MAX)),
            sessions_with_local_streams: with_local_streams,
            sessions_created: self.created.load(Ordering::Relaxed),
            sessions_closed: CloseReason::ALL
                .map(|r| (r, self.closed[r.index()].load(Ordering::Relaxed)))
                .to_vec(),
            rejected: RejectionKind::ALL
                .iter()
                .map(|k| (*k, self.rejected[k.index()].load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            streams_resumed: self.resumed.load(Ordering::Relaxed),
            modern_requests: self.modern_passed_through.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of the layer's counters, from
/// [`SessionManager::metrics`](crate::SessionManager::metrics).
///
/// ```
/// use tower_mcp_session::McpSessionLayer;
///
/// let layer = McpSessionLayer::new();
/// let m = layer.manager().metrics();
/// assert_eq!(m.sessions_created, 0);
/// assert_eq!(m.active_sessions, Some(0));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Live sessions, when the store can tell cheaply (the memory store can).
    pub active_sessions: Option<usize>,
    /// Sessions for which this instance holds stream state (running pumps, readers, GET
    /// stream cursors).
    pub sessions_with_local_streams: usize,
    /// Sessions created by this layer since it was built.
    pub sessions_created: u64,
    /// Sessions ended, by reason (every reason listed, zeros included).
    pub sessions_closed: Vec<(CloseReason, u64)>,
    /// Requests refused, by kind (kinds with a zero count are left out).
    pub rejected: Vec<(RejectionKind, u64)>,
    /// Successful `Last-Event-ID` resumptions.
    pub streams_resumed: u64,
    /// 2026-07-28-era requests passed through untouched.
    pub modern_requests: u64,
}

impl Metrics {
    /// How many sessions ended for `reason`.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.sessions_closed
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// How many requests were refused as `kind`.
    pub fn rejected(&self, kind: RejectionKind) -> u64 {
        self.rejected.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
    }
}
