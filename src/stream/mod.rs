//! Resumable SSE streams for legacy sessions.
//!
//! One mechanism serves every case. A *producer* appends events to the
//! [`EventLog`](crate::event_log::EventLog): the [`pump`] that drives an inner
//! service's SSE response body to its end (so disconnect is not cancellation), or
//! [`SessionManager::send`](crate::SessionManager::send) for the session's GET stream.
//! A *reader* ([`reader::Reader`]) tails one stream of the log from a cursor: the POST
//! response itself (cursor 0), a `GET` with `Last-Event-ID` (cursor = that id), or a
//! plain `GET` (the standalone stream, from its current end). Since every reader only
//! reads the log, a slow client never slows a producer or another stream.

mod body;
pub(crate) mod decode;
pub(crate) mod outbox;
pub(crate) mod policy;
pub(crate) mod pump;
pub(crate) mod reader;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::util::{FastDashMap, FastHashMap};
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use body::{McpBody, WriteTimeout};

use crate::drain::{Drain, Kind};
pub(crate) use crate::event_log::standalone_stream;
use crate::event_log::{StreamId, StreamKey};
use crate::session::SessionId;
use crate::store::BoxFuture;

/// SSE behaviour, shared by all readers of one layer.
#[derive(Debug, Clone)]
pub(crate) struct SseConfig {
    /// The `retry` sent with priming events and before server-initiated closes.
    pub(crate) retry: Duration,
    /// Comment lines sent on an idle stream to keep proxies from timing it out.
    pub(crate) keep_alive: Option<Duration>,
    /// Close the connection (not the stream) after this long, making clients poll.
    pub(crate) poll_after: Option<Duration>,
    /// A reader that has caught up once and then falls this many events behind is
    /// disconnected; its events stay in the log for a resume.
    pub(crate) max_reader_lag: u64,
    /// How long a new POST stream waits for its first event so that headers, priming and
    /// first event leave in one write.
    pub(crate) first_event_wait: Duration,
    /// The largest single event the pump accepts from the inner service.
    pub(crate) max_event_bytes: usize,
    /// How long one event-log call may take before the reader gives up.
    pub(crate) log_timeout: Duration,
    /// Events per read from the log.
    pub(crate) read_batch: usize,
    /// How long a connection may hold unwritten frames without writing any before it
    /// is cut (see [`outbox`]).
    pub(crate) write_timeout: Duration,
    /// The lease a pump holds on its stream, renewed every third of it: a reader that
    /// finds it lapsed ends the stream with an error answer (see `event_log::lease`).
    pub(crate) producer_lease: Duration,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            retry: Duration::from_millis(1000),
            keep_alive: Some(Duration::from_secs(15)),
            poll_after: None,
            max_reader_lag: 512,
            first_event_wait: Duration::from_millis(20),
            max_event_bytes: 4 << 20,
            log_timeout: Duration::from_secs(1),
            read_batch: 256,
            write_timeout: Duration::from_secs(30),
            producer_lease: Duration::from_secs(10),
        }
    }
}

/// Per-stream state that lives on the instance serving the stream: who is attached,
/// and requests from the application to close the connection.
#[derive(Debug, Default)]
pub(crate) struct LiveStream {
    /// Bumped by every attaching reader; a reader whose number is stale was taken over.
    generation: AtomicU64,
    /// Bumped by [`SseControl::close_connection`].
    close_epoch: AtomicU64,
    attached: AtomicUsize,
    /// The highest sequence number sent to any reader on this instance: where a fresh
    /// `GET` (no `Last-Event-ID`) of the standalone stream starts.
    delivered: AtomicU64,
    signal: Notify,
}

impl LiveStream {
    /// Attach a new reader, taking over from any current one.
    pub(crate) fn attach(self: &Arc<Self>) -> Attachment {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.attached.fetch_add(1, Ordering::AcqRel);
        self.signal.notify_waiters();
        #[cfg(feature = "metrics")]
        crate::metrics::facade::stream_opened();
        Attachment {
            live: self.clone(),
            generation,
        }
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    pub(crate) fn mark_delivered(&self, seq: u64) {
        self.delivered.fetch_max(seq, Ordering::AcqRel);
    }

    pub(crate) fn close_epoch(&self) -> u64 {
        self.close_epoch.load(Ordering::Acquire)
    }
}

/// One reader's claim on a stream; dropping it detaches.
#[derive(Debug)]
pub(crate) struct Attachment {
    pub(crate) live: Arc<LiveStream>,
    pub(crate) generation: u64,
}

impl Attachment {
    pub(crate) fn taken_over(&self) -> bool {
        self.live.generation.load(Ordering::Acquire) != self.generation
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.live.attached.fetch_sub(1, Ordering::AcqRel);
        #[cfg(feature = "metrics")]
        crate::metrics::facade::stream_closed();
    }
}

/// Control over the SSE response stream of the current request, for the inner service.
///
/// [`McpSessionLayer`](crate::McpSessionLayer) puts one into the extensions of every
/// legacy request that belongs to a session. It matters when the inner service answers
/// with `text/event-stream`: the layer then makes that stream resumable, and the handler
/// can close the client's *connection* while the stream goes on (the SSE polling pattern
/// of 2025-11-25: the client reconnects with `Last-Event-ID` and gets the rest).
///
/// ```
/// use tower_mcp_session::SseControl;
///
/// fn long_running(req: &http::Request<()>) {
///     if let Some(control) = req.extensions().get::<SseControl>() {
///         // Free the connection; the client polls for the result later.
///         control.close_connection();
///     }
/// }
/// # long_running(&http::Request::new(()));
/// ```
#[derive(Debug, Clone)]
pub struct SseControl {
    pub(crate) live: Arc<LiveStream>,
    pub(crate) stream: StreamId,
}

impl SseControl {
    /// Close the client's connection after what has been sent so far (and a `retry`
    /// field); the stream stays resumable and keeps receiving events.
    pub fn close_connection(&self) {
        self.live.close_epoch.fetch_add(1, Ordering::AcqRel);
        self.live.signal.notify_waiters();
    }

    /// Whether a client is attached to this stream right now.
    pub fn is_attached(&self) -> bool {
        self.live.attached.load(Ordering::Acquire) > 0
    }

    /// The stream's id (the part before `-` in its SSE event ids).
    pub fn stream_id(&self) -> StreamId {
        self.stream
    }
}

#[derive(Default)]
struct LocalSession {
    live: FastHashMap<StreamId, Weak<LiveStream>>,
    /// The standalone stream's state outlives its readers: where the next fresh `GET`
    /// starts depends on what earlier ones delivered.
    standalone: Option<Arc<LiveStream>>,
    pumps: JoinSet<()>,
}

/// The streams this instance serves, by session.
pub(crate) struct Streams {
    sessions: FastDashMap<SessionId, Mutex<LocalSession>>,
    /// Where pumps and readers are counted, and whether this instance is draining.
    drain: Arc<Drain>,
}

impl Streams {
    pub(crate) fn new(drain: Arc<Drain>) -> Self {
        Self {
            sessions: FastDashMap::default(),
            drain,
        }
    }

    /// The layer's drain state, for readers to be counted in and to watch.
    pub(crate) fn drain(&self) -> &Arc<Drain> {
        &self.drain
    }

    /// The live state of `key`, made on first use.
    pub(crate) fn live(&self, key: &StreamKey) -> Arc<LiveStream> {
        let entry = self.sessions.entry(key.session().clone()).or_default();
        let mut local = entry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = local.live.get(&key.stream()).and_then(Weak::upgrade) {
            return live;
        }
        local.live.retain(|_, w| w.strong_count() > 0);
        let live = Arc::new(LiveStream::default());
        local.live.insert(key.stream(), Arc::downgrade(&live));
        if key.stream() == standalone_stream(key.session()) {
            local.standalone = Some(live.clone());
        }
        live
    }

    /// Register an already made live state (the one handed to the inner service).
    pub(crate) fn adopt(&self, key: &StreamKey, live: &Arc<LiveStream>) {
        let entry = self.sessions.entry(key.session().clone()).or_default();
        let mut local = entry.lock().unwrap_or_else(|e| e.into_inner());
        local.live.retain(|_, w| w.strong_count() > 0);
        local.live.insert(key.stream(), Arc::downgrade(live));
    }

    /// Run a pump for `session`; it is aborted if the session ends first.
    ///
    /// The pump comes boxed, where it is made: tokio moves a task's whole stage (future
    /// or output) when it spawns, completes and is reaped, and every move of the pump's
    /// large state on the way here would be one more copy.
    pub(crate) fn spawn_pump(&self, session: &SessionId, pump: BoxFuture<'static, ()>) {
        let entry = self.sessions.entry(session.clone()).or_default();
        let mut local = entry.lock().unwrap_or_else(|e| e.into_inner());
        // Reap finished pumps so the set only holds running ones.
        while local.pumps.try_join_next().is_some() {}
        // Counted until the pump ends or is aborted: a drain waits for it.
        let work = self.drain.track(Kind::Pump);
        local.pumps.spawn(async move {
            pump.await;
            drop(work);
        });
    }

    /// The session ended: stop its pumps and forget its streams.
    pub(crate) fn remove_session(&self, session: &SessionId) {
        // Dropping the JoinSet aborts every pump still running.
        self.sessions.remove(session);
    }

    /// Sessions whose local state holds nothing running: no pump, no attached reader.
    /// Their entries can go once the store no longer knows them.
    pub(crate) fn idle_sessions(&self) -> Vec<SessionId> {
        self.sessions
            .iter()
            .filter(|entry| {
                let mut local = entry.value().lock().unwrap_or_else(|e| e.into_inner());
                while local.pumps.try_join_next().is_some() {}
                local.pumps.is_empty()
                    && local
                        .live
                        .values()
                        .filter_map(Weak::upgrade)
                        .all(|l| l.attached.load(Ordering::Acquire) == 0)
            })
            .map(|entry| entry.key().clone())
            .collect()
    }

    /// Readers attached on this instance to streams of `session`.
    pub(crate) fn attached_readers(&self, session: &SessionId) -> usize {
        let Some(entry) = self.sessions.get(session) else {
            return 0;
        };
        let local = entry.lock().unwrap_or_else(|e| e.into_inner());
        local
            .live
            .values()
            .filter_map(Weak::upgrade)
            .map(|l| l.attached.load(Ordering::Acquire))
            .sum()
    }

    /// How many sessions have local stream state (for tests and metrics).
    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_ids_differ_per_session_and_are_stable() {
        let a = SessionId::parse("a").unwrap();
        let b = SessionId::parse("b").unwrap();
        assert_ne!(standalone_stream(&a), standalone_stream(&b));
        assert_eq!(standalone_stream(&a), standalone_stream(&a));
    }

    #[test]
    fn attach_takes_over() {
        let live = Arc::new(LiveStream::default());
        let first = live.attach();
        assert!(!first.taken_over());
        let second = live.attach();
        assert!(first.taken_over());
        assert!(!second.taken_over());
        assert_eq!(live.attached.load(Ordering::Acquire), 2);
        drop(first);
        assert_eq!(live.attached.load(Ordering::Acquire), 1);
    }
}
