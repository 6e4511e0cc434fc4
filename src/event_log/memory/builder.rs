//! Settings of a [`MemoryEventLog`](super::MemoryEventLog).

use std::sync::Arc;
use std::time::Duration;

use super::{Inner, MemoryEventLog};
use crate::util::FastDashMap;

/// Settings for a [`MemoryEventLog`]; see its documentation for what each bound does.
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session::event_log::MemoryEventLog;
///
/// let log = MemoryEventLog::builder()
///     .max_events_per_stream(256)
///     .max_bytes_per_session(16 << 20)
///     .finished_retention(Duration::from_secs(60))
///     .build();
/// # drop(log);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryEventLogBuilder {
    pub(super) limits: Limits,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) total_bytes: usize,
    pub(super) stream_events: usize,
    pub(super) stream_bytes: usize,
    pub(super) session_bytes: usize,
    pub(super) session_streams: usize,
    pub(super) finished_retention: Duration,
    pub(super) idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            total_bytes: 256 << 20,
            stream_events: 1024,
            stream_bytes: 1 << 20,
            session_bytes: 4 << 20,
            session_streams: 64,
            finished_retention: Duration::from_secs(5 * 60),
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

impl MemoryEventLogBuilder {
    /// Events one stream keeps (default 1024, at least 1); older ones are dropped.
    ///
    /// ```
    /// # use tower_mcp_session::event_log::MemoryEventLog;
    /// let log = MemoryEventLog::builder().max_events_per_stream(100).build();
    /// # drop(log);
    /// ```
    pub fn max_events_per_stream(mut self, events: usize) -> Self {
        self.limits.stream_events = events.max(1);
        self
    }

    /// Payload bytes one stream keeps (default 1 MiB); older events are dropped.
    ///
    /// ```
    /// # use tower_mcp_session::event_log::MemoryEventLog;
    /// let log = MemoryEventLog::builder().max_bytes_per_stream(256 << 10).build();
    /// # drop(log);
    /// ```
    pub fn max_bytes_per_stream(mut self, bytes: usize) -> Self {
        self.limits.stream_bytes = bytes;
        self
    }

    /// Payload bytes the whole log keeps, across every session (default 256 MiB). When
    /// an append would cross it, events are dropped down to a sixteenth below it:
    /// finished streams' first (longest finished first), then the oldest of unfinished
    /// streams (each keeps its newest event); if that is not enough, the append (or an
    /// `open`) fails with
    /// [`EventLogError::Full`](crate::event_log::EventLogError::Full), which the layer answers
    /// with 503 `event_log_full`.
    ///
    /// ```
    /// # use tower_mcp_session::event_log::MemoryEventLog;
    /// let log = MemoryEventLog::builder().max_total_bytes(64 << 20).build();
    /// # drop(log);
    /// ```
    pub fn max_total_bytes(mut self, bytes: usize) -> Self {
        self.limits.total_bytes = bytes;
        self
    }

    /// Payload bytes all streams of one session keep together (default 4 MiB).
    ///
    /// ```
    /// # use tower_mcp_session::event_log::MemoryEventLog;
    /// let log = MemoryEventLog::builder().max_bytes_per_session(8 << 20).build();
    /// # drop(log);
    /// ```
    pub fn max_bytes_per_session(mut self, bytes: usize) -> Self {
        self.limits.session_bytes = bytes;
        self
    }

    /// Streams one session may hold (default 64, at least 1). Opening one more drops
    /// the longest-finished stream, or fails with [`EventLogError::TooManyStreams`](crate::event_log::EventLogError::TooManyStreams) if none finished.
    ///
    /// ```
    /// # use tower_mcp_session::event_log::MemoryEventLog;
    /// let log = MemoryEventLog::builder().max_streams_per_session(16).build();
    /// # drop(log);
    /// ```
    pub fn max_streams_per_session(mut self, streams: usize) -> Self {
        self.limits.session_streams = streams.max(1);
        self
    }

    /// How long a finished stream stays readable (default 5 minutes), for clients that
    /// reconnect after the response was written.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_session::event_log::MemoryEventLog;
    /// let log = MemoryEventLog::builder().finished_retention(Duration::from_secs(60)).build();
    /// # drop(log);
    /// ```
    pub fn finished_retention(mut self, retention: Duration) -> Self {
        self.limits.finished_retention = retention;
        self
    }

    /// How long an unfinished stream lives without an append (default 30 minutes).
    /// Readers do not keep a stream alive; only its producer does.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_session::event_log::MemoryEventLog;
    /// let log = MemoryEventLog::builder().idle_timeout(Duration::from_secs(600)).build();
    /// # drop(log);
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// The log.
    ///
    /// ```
    /// # use tower_mcp_session::event_log::MemoryEventLog;
    /// let log = MemoryEventLog::builder().build();
    /// # drop(log);
    /// ```
    pub fn build(self) -> MemoryEventLog {
        MemoryEventLog {
            inner: Arc::new(Inner {
                limits: self.limits,
                sessions: FastDashMap::default(),
                total: Arc::default(),
            }),
        }
    }
}

impl Default for MemoryEventLogBuilder {
    fn default() -> Self {
        MemoryEventLog::builder()
    }
}
