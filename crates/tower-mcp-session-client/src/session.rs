//! What one client session shares between its services, its bodies and its handle:
//! the session id and negotiated version, the live streams, counters and hooks.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
use std::time::Duration;

use http::HeaderValue;
use serde_json::Value;
use tokio::sync::Notify;
use tower_mcp_session::{ProtocolVersion, SessionId};

use super::backoff::Backoff;

/// Something that happened to a client session, reported to the hook set with
/// [`McpClientLayerBuilder::on_event`](super::McpClientLayerBuilder::on_event).
///
/// ```
/// use tower_mcp_session::SessionId;
/// use tower_mcp_session_client::SessionEvent;
///
/// let e = SessionEvent::Expired { session_id: SessionId::parse("abc").unwrap() };
/// assert!(matches!(e, SessionEvent::Expired { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// An `initialize` succeeded (the caller's own, or [`McpClient::initialize`](super::McpClient::initialize)).
    Initialized {
        /// The id the server assigned; `None` when it runs without sessions.
        session_id: Option<SessionId>,
        /// The protocol version the server chose; `None` when it named none, or a
        /// version that is not a `YYYY-MM-DD` revision (the client still echoes it).
        protocol_version: Option<ProtocolVersion>,
    },
    /// The server answered 404 for the session.
    Expired {
        /// The id it no longer knows.
        session_id: SessionId,
    },
    /// The expired session was replaced by a new one, initialized with the original
    /// parameters.
    Reinitialized {
        /// The expired id.
        old: SessionId,
        /// The new id.
        new: Option<SessionId>,
    },
    /// Re-initializing failed; the client has no session until the next `initialize`.
    ReinitializeFailed {
        /// The expired id.
        old: SessionId,
        /// Why it failed.
        reason: String,
    },
    /// A broken SSE stream was reconnected with `Last-Event-ID`.
    Resumed {
        /// The id the stream resumed after.
        last_event_id: String,
        /// Reconnection attempts it took (1 when the first one worked).
        attempt: u32,
    },
    /// The session was ended by [`McpClient::close`](super::McpClient::close).
    Closed {
        /// The id that was closed.
        session_id: Option<SessionId>,
    },
}

/// Counters of one client session, from [`McpClient::stats`](super::McpClient::stats).
///
/// ```
/// use tower_mcp_session_client::ClientStats;
///
/// let s = ClientStats::default();
/// assert_eq!(s.reinitializations, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Successful `initialize` exchanges, re-initializations included.
    pub initializations: u64,
    /// 404 answers for the session.
    pub expirations: u64,
    /// Successful re-initializations after a 404.
    pub reinitializations: u64,
    /// Requests sent again after a re-initialization.
    pub retried_requests: u64,
    /// Successful stream reconnections with `Last-Event-ID`.
    pub resumptions: u64,
    /// Streams that broke for good (not resumable, or attempts exhausted).
    pub resume_failures: u64,
    /// Duplicate SSE events dropped after a reconnection.
    pub duplicates_dropped: u64,
    /// SSE streams open right now.
    pub open_streams: u64,
}

/// What to do when the server answers 404 for the session.
///
/// ```
/// use tower_mcp_session_client::{Reinitialize, ReinitDecision};
///
/// let transparent = Reinitialize::Transparent;
/// let ask = Reinitialize::ask(|expired| {
///     println!("session {} expired", expired.session_id);
///     ReinitDecision::Replay
/// });
/// # let _ = (transparent, ask);
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Reinitialize {
    /// Re-initialize with the original parameters and send the request again, once.
    #[default]
    Transparent,
    /// Never: the caller gets the 404 and the client forgets the session.
    Never,
    /// Ask a callback each time.
    Ask(Arc<dyn Fn(&Expired) -> ReinitDecision + Send + Sync>),
}

impl Reinitialize {
    /// Ask `decide` on every expiry.
    pub fn ask(decide: impl Fn(&Expired) -> ReinitDecision + Send + Sync + 'static) -> Self {
        Self::Ask(Arc::new(decide))
    }
}

impl fmt::Debug for Reinitialize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transparent => f.write_str("Transparent"),
            Self::Never => f.write_str("Never"),
            Self::Ask(_) => f.write_str("Ask(..)"),
        }
    }
}

/// The session that expired, as shown to a [`Reinitialize::Ask`] callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Expired {
    /// The id the server no longer knows.
    pub session_id: SessionId,
    /// The `params` of the `initialize` that created it.
    pub initialize_params: Option<Value>,
}

/// A [`Reinitialize::Ask`] callback's answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ReinitDecision {
    /// Re-initialize with the original parameters and retry the request once.
    Replay,
    /// Re-initialize with these `params` instead and retry the request once.
    ReplayWith(Value),
    /// Do not: the caller gets the 404.
    GiveUp,
}

/// The session id in a `Mcp-Session-Id` header. A value the core would refuse (empty,
/// over 256 bytes, outside visible ASCII) is not adopted: the client then runs without
/// a session rather than echoing bytes every revision forbids.
pub(crate) fn session_id_of(value: &HeaderValue) -> Option<SessionId> {
    value.to_str().ok().and_then(SessionId::parse)
}

/// How SSE bodies resume.
#[derive(Debug, Clone)]
pub(crate) struct ResumeConfig {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_event_bytes: usize,
    pub(crate) dedupe_window: usize,
    pub(crate) resume_standalone: bool,
}

pub(crate) type EventHook = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

pub(crate) struct Config {
    pub(crate) endpoint: Option<http::Uri>,
    pub(crate) initialize_params: Option<Value>,
    pub(crate) reinitialize: Reinitialize,
    pub(crate) resume: ResumeConfig,
    pub(crate) on_event: Option<EventHook>,
    pub(crate) max_json_bytes: usize,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) default_headers: http::HeaderMap,
}

/// The session as requests see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionSnapshot {
    pub(crate) id: Option<SessionId>,
    /// As the server wrote it: a version [`ProtocolVersion`] cannot hold is still echoed.
    pub(crate) version: Option<String>,
    pub(crate) generation: u64,
}

/// The session id a snapshot holds, if any.
pub(crate) fn snapshot_id(s: &SessionSnapshot) -> Option<SessionId> {
    s.id.clone()
}

#[derive(Default)]
struct State {
    current: SessionSnapshot,
    /// The `initialize` request that created the session, for replay.
    init_message: Option<Value>,
    /// Where that `initialize` went and with which headers (credentials), for the
    /// re-initialization and the `DELETE`.
    init_template: Option<(http::Uri, http::HeaderMap)>,
    initialized: bool,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) initializations: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) reinitializations: AtomicU64,
    pub(crate) retried_requests: AtomicU64,
    pub(crate) resumptions: AtomicU64,
    pub(crate) resume_failures: AtomicU64,
    pub(crate) duplicates_dropped: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    state: Mutex<State>,
    /// Held while re-initializing, so concurrent 404s re-initialize once.
    pub(crate) reinit_lock: tokio::sync::Mutex<()>,
    /// Held by a convenience call that initializes a session nobody opened yet.
    pub(crate) init_lock: tokio::sync::Mutex<()>,
    pub(crate) streams: StreamRegistry,
    pub(crate) counters: Counters,
    next_request_id: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            state: Mutex::default(),
            reinit_lock: tokio::sync::Mutex::new(()),
            init_lock: tokio::sync::Mutex::new(()),
            streams: StreamRegistry::default(),
            counters: Counters::default(),
            next_request_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn snapshot(&self) -> SessionSnapshot {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .clone()
    }

    pub(crate) fn is_initialized(&self) -> bool {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).initialized
    }

    pub(crate) fn init_message(&self) -> Option<Value> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .init_message
            .clone()
    }

    pub(crate) fn set_init_message(&self, message: Value) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).init_message = Some(message);
    }

    pub(crate) fn init_template(&self) -> Option<(http::Uri, http::HeaderMap)> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .init_template
            .clone()
    }

    pub(crate) fn set_init_template(&self, uri: http::Uri, headers: http::HeaderMap) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).init_template = Some((uri, headers));
    }

    /// A new session is in force; returns its generation.
    pub(crate) fn establish(&self, id: Option<SessionId>, version: Option<String>) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = state.current.generation + 1;
        state.current = SessionSnapshot {
            id,
            version,
            generation,
        };
        state.initialized = true;
        generation
    }

    /// Forget the session (after a refused re-initialization or a close); `only_if`
    /// restricts it to that generation. Returns the id that was forgotten.
    pub(crate) fn forget(&self, only_if: Option<u64>) -> Option<SessionId> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if only_if.is_some_and(|g| g != state.current.generation) {
            return None;
        }
        let generation = state.current.generation + 1;
        let old = state.current.id.take();
        state.current = SessionSnapshot {
            id: None,
            version: None,
            generation,
        };
        state.initialized = false;
        old
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        #[cfg(feature = "tracing")]
        tracing::debug!(?event, "mcp client session event");
        if let Some(hook) = &self.config.on_event {
            hook(&event);
        }
    }

    pub(crate) fn stats(&self) -> ClientStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            initializations: get(&c.initializations),
            expirations: get(&c.expirations),
            reinitializations: get(&c.reinitializations),
            retried_requests: get(&c.retried_requests),
            resumptions: get(&c.resumptions),
            resume_failures: get(&c.resume_failures),
            duplicates_dropped: get(&c.duplicates_dropped),
            open_streams: self.streams.len() as u64,
        }
    }
}

/// The SSE streams of a session that are open right now. Every stream body registers
/// when it opens and unregisters when it ends or is dropped, so closing the session can
/// end exactly the streams that are still alive.
#[derive(Default)]
pub(crate) struct StreamRegistry {
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next: AtomicU64,
    /// Signalled whenever a stream ends or stops waiting for its response.
    pub(crate) changed: Notify,
}

#[derive(Default)]
pub(crate) struct Slot {
    closed: AtomicBool,
    /// The stream still waits for the response to its request (a POST stream).
    awaiting: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap_or_else(PoisonError::into_inner).take() {
            w.wake();
        }
    }
}

impl StreamRegistry {
    pub(crate) fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Streams still waiting for their response.
    pub(crate) fn awaiting(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|s| s.awaiting.load(Ordering::Acquire))
            .count()
    }

    /// End every open stream; returns how many there were.
    pub(crate) fn close_all(&self) -> usize {
        let slots: Vec<_> = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for (_, slot) in &slots {
            slot.close();
        }
        self.changed.notify_waiters();
        slots.len()
    }
}

/// A stream body's registration; dropping it unregisters the stream.
pub(crate) struct StreamGuard {
    shared: Arc<Shared>,
    key: u64,
    pub(crate) slot: Arc<Slot>,
    released: bool,
}

impl StreamGuard {
    pub(crate) fn register(shared: &Arc<Shared>, awaiting: bool) -> Self {
        let registry = &shared.streams;
        let key = registry.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::default());
        slot.awaiting.store(awaiting, Ordering::Release);
        registry
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, slot.clone());
        Self {
            shared: shared.clone(),
            key,
            slot,
            released: false,
        }
    }

    /// The stream ended: unregister now rather than when the body is dropped.
    pub(crate) fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        self.slot.awaiting.store(false, Ordering::Release);
        let registry = &self.shared.streams;
        registry
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        registry.changed.notify_waiters();
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The stream's response arrived.
    pub(crate) fn answered(&self) {
        if self.slot.awaiting.swap(false, Ordering::AcqRel) {
            self.shared.streams.changed.notify_waiters();
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.release();
    }
}
