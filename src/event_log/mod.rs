//! The event log behind resumable SSE streams.
//!
//! Every event the layer sends on a legacy SSE stream is appended here first and read
//! back by whoever is attached to the stream, so a client that drops and comes back with
//! `Last-Event-ID` reads the same log from its cursor. Keys are (session, stream): a
//! stream of one session can never be read through another.

pub(crate) mod lease;
mod memory;

pub use lease::{ProducerLease, ProducerState};
pub use memory::{MemoryEventLog, MemoryEventLogBuilder};

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::session::SessionId;
use crate::store::BoxFuture;

/// A stream's identity within its session: a random 64-bit number, so a stream cannot be
/// guessed from another session's ids.
///
/// ```
/// use tower_mcp_session::event_log::StreamId;
///
/// assert_eq!(StreamId::from_raw(255).to_string(), "00000000000000ff");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u64);

impl StreamId {
    /// A fresh stream id: unique within this process and, with overwhelming
    /// probability, across processes sharing a log.
    ///
    /// Made on every legacy request, so it costs no system call: a counter starting at a
    /// random point, scrambled by a bijective mixer (distinct inputs give distinct ids).
    /// Unpredictability is not what protects a stream — log keys include the session,
    /// whose id is the secret — but the ids do not reveal a request count either.
    ///
    /// ```
    /// use tower_mcp_session::event_log::StreamId;
    ///
    /// assert_ne!(StreamId::random(), StreamId::random());
    /// ```
    pub fn random() -> Self {
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEED: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let seed = *SEED.get_or_init(|| {
            let mut b = [0u8; 8];
            crate::session::fill_random(&mut b);
            u64::from_le_bytes(b)
        });
        Self(mix(seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))))
    }

    /// A stream id from its numeric value.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The numeric value.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// SplitMix64's finalizer: a bijection on u64 that spreads every input bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({self})")
    }
}

/// The id of a session's standalone (GET) stream.
///
/// Derived from the session id, so every instance sharing a log finds the same stream
/// without storing anything. It cannot be used across sessions: log keys include the
/// session, and another session's standalone stream has another id.
pub(crate) fn standalone_stream(session: &SessionId) -> StreamId {
    derived_stream(b"", session.as_str())
}

/// A stream id every instance derives alike from `tag` and `text`, without storing
/// anything: FNV-1a, stable across processes and versions, unlike std's RandomState.
pub(crate) fn derived_stream(tag: &[u8], text: &str) -> StreamId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.iter().chain(text.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    StreamId::from_raw(h)
}

/// Which stream of which session.
///
/// ```
/// use tower_mcp_session::SessionId;
/// use tower_mcp_session::event_log::{StreamId, StreamKey};
///
/// let key = StreamKey::new(SessionId::parse("s1").unwrap(), StreamId::from_raw(7));
/// assert_eq!(key.stream().raw(), 7);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    session: SessionId,
    stream: StreamId,
}

impl StreamKey {
    /// The key of `stream` in `session`.
    pub fn new(session: SessionId, stream: StreamId) -> Self {
        Self { session, stream }
    }

    /// The session.
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// The stream.
    pub fn stream(&self) -> StreamId {
        self.stream
    }
}

/// One event as stored: its sequence number within the stream (from 1) and the SSE
/// `data` payload (one JSON-RPC message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the stream, starting at 1 and increasing by one per event.
    pub seq: u64,
    /// The message, exactly as it will be sent in the SSE `data` field.
    pub data: Bytes,
}

/// What a read of a stream found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The events after the cursor, in order (possibly none yet).
    Events {
        /// The events, consecutive from the cursor + 1.
        events: Vec<StoredEvent>,
        /// The sequence number of the newest event the stream holds.
        last_seq: u64,
        /// Whether the stream has ended and `events` reaches its end.
        finished: bool,
    },
    /// Events after the cursor were dropped by retention (or the cursor is ahead of the
    /// stream): the gap cannot be filled. The bounds say what the stream holds now, so a
    /// reader that does not need continuity (a fresh `GET`) can start from there.
    Evicted {
        /// The oldest sequence number still held (`last_seq + 1` when none is).
        first_retained: u64,
        /// The newest sequence number the stream has had.
        last_seq: u64,
    },
    /// No such stream in this session (never existed, expired or removed).
    UnknownStream,
}

/// Why the event log could not do what was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum EventLogError {
    /// The stream is unknown (expired, removed, or never opened).
    UnknownStream,
    /// The stream has ended; nothing more can be appended.
    Finished,
    /// [`EventLog::open`]: the session holds its maximum number of streams and none of
    /// them may be dropped to make room.
    TooManyStreams {
        /// The per-session stream bound that was reached.
        limit: usize,
    },
    /// [`EventLog::open`] or an append: the log holds its whole memory budget (across
    /// all sessions) and dropping what its policy allows did not make room. A backend
    /// without such a budget never answers this.
    Full,
    /// The backend could not be reached or failed.
    Unavailable(crate::store::BoxError),
}

impl fmt::Display for EventLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownStream => f.write_str("unknown event stream"),
            Self::Finished => f.write_str("event stream already finished"),
            Self::TooManyStreams { limit } => write!(f, "the session already has {limit} unfinished event streams"),
            Self::Full => f.write_str("the event log holds its whole memory budget"),
            Self::Unavailable(_) => f.write_str("the event log is unavailable"),
        }
    }
}

impl std::error::Error for EventLogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(e) => Some(&**e),
            _ => None,
        }
    }
}

/// Storage for resumable streams: object safe, so the layer holds an `Arc<dyn EventLog>`.
///
/// A stream is opened once, appended to by its producer(s), finished once, and read by
/// at most one attached client at a time (from any instance, with a shared log).
/// Retention is bounded per stream and per session (count, bytes, time); a read whose
/// cursor fell out of retention gets [`ReadOutcome::Evicted`], never a silent gap.
pub trait EventLog: Send + Sync + 'static {
    /// Create an empty stream. Opening an existing stream is a no-op.
    fn open<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>>;

    /// Append one event; returns its sequence number. Sequence numbers are assigned by
    /// the log, so concurrent producers of one stream get distinct, ordered numbers.
    fn append<'a>(&'a self, key: &'a StreamKey, data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>>;

    /// Mark the stream ended: readers that reach its end stop.
    fn finish<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>>;

    /// Append the stream's last event and finish the stream. The default is
    /// [`append`](Self::append) then [`finish`](Self::finish); a log that can do both in
    /// one step (one round trip to a shared store) overrides it. The pump uses it when
    /// the inner body says it has ended with this event, which is the common case of a
    /// single-answer stream.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use bytes::Bytes;
    /// use tower_mcp_session::event_log::{EventLog, MemoryEventLog, ReadOutcome, StreamId, StreamKey};
    /// use tower_mcp_session::SessionId;
    ///
    /// let log = MemoryEventLog::new();
    /// let key = StreamKey::new(SessionId::parse("0123456789abcdef0123456789abcdef").unwrap(), StreamId::random());
    /// log.open(&key).await?;
    /// assert_eq!(log.append_last(&key, Bytes::from_static(b"{}")).await?, 1);
    /// match log.read_after(&key, 0, 10).await? {
    ///     ReadOutcome::Events { events, finished, .. } => assert!(events.len() == 1 && finished),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), tower_mcp_session::event_log::EventLogError>(())
    /// # }).unwrap();
    /// ```
    fn append_last<'a>(&'a self, key: &'a StreamKey, data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>> {
        Box::pin(async move {
            let seq = self.append(key, data).await?;
            self.finish(key).await?;
            Ok(seq)
        })
    }

    /// Create an empty stream held by a producer's `lease`: the lease lives for its
    /// duration after this call and after each [`renew_lease`](Self::renew_lease), and
    /// finishing the stream clears it. Opening an existing stream is a no-op (its lease,
    /// or the lack of one, stays).
    ///
    /// The default opens the stream without a lease ([`open`](Self::open)), so a backend
    /// that keeps no leases never reports a producer lost, which is the behaviour before
    /// leases existed: a reader of a stream whose producer died waits until the session
    /// ends or the stream expires.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use tower_mcp_session::event_log::{EventLog, MemoryEventLog, ProducerLease, ProducerState, StreamId, StreamKey};
    /// use tower_mcp_session::SessionId;
    ///
    /// let log = MemoryEventLog::new();
    /// let key = StreamKey::new(SessionId::parse("s1").unwrap(), StreamId::random());
    /// log.open_leased(&key, &ProducerLease::new(Duration::from_secs(10), Bytes::from_static(b"1"))).await?;
    /// assert_eq!(log.producer(&key).await?, ProducerState::Live);
    /// # Ok::<(), tower_mcp_session::event_log::EventLogError>(())
    /// # }).unwrap();
    /// ```
    fn open_leased<'a>(
        &'a self,
        key: &'a StreamKey,
        lease: &'a ProducerLease,
    ) -> BoxFuture<'a, Result<(), EventLogError>> {
        let _ = lease;
        self.open(key)
    }

    /// Extend the producer's lease on `key` to `duration` from now. Returns whether
    /// there was a lease to renew: false for a stream opened without one, finished
    /// (including ended by [`end_abandoned`](Self::end_abandoned)), or unknown. A lease
    /// that lapsed but whose stream nobody ended yet is renewed: its producer is alive.
    /// The default keeps no leases and answers false.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use tower_mcp_session::event_log::{EventLog, MemoryEventLog, ProducerLease, StreamId, StreamKey};
    /// use tower_mcp_session::SessionId;
    ///
    /// let log = MemoryEventLog::new();
    /// let key = StreamKey::new(SessionId::parse("s1").unwrap(), StreamId::random());
    /// log.open_leased(&key, &ProducerLease::new(Duration::from_secs(1), Bytes::new())).await?;
    /// assert!(log.renew_lease(&key, Duration::from_secs(1)).await?);
    /// log.finish(&key).await?;
    /// assert!(!log.renew_lease(&key, Duration::from_secs(1)).await?);
    /// # Ok::<(), tower_mcp_session::event_log::EventLogError>(())
    /// # }).unwrap();
    /// ```
    fn renew_lease<'a>(&'a self, key: &'a StreamKey, duration: Duration) -> BoxFuture<'a, Result<bool, EventLogError>> {
        let _ = (key, duration);
        Box::pin(async { Ok(false) })
    }

    /// Whether the producer of `key` holds a live lease, let it lapse, or holds none
    /// (see [`ProducerState`]). The default keeps no leases: always
    /// [`ProducerState::Unleased`].
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use tower_mcp_session::event_log::{EventLog, MemoryEventLog, ProducerState, StreamId, StreamKey};
    /// use tower_mcp_session::SessionId;
    ///
    /// let log = MemoryEventLog::new();
    /// let key = StreamKey::new(SessionId::parse("s1").unwrap(), StreamId::random());
    /// log.open(&key).await?;
    /// assert_eq!(log.producer(&key).await?, ProducerState::Unleased);
    /// # Ok::<(), tower_mcp_session::event_log::EventLogError>(())
    /// # }).unwrap();
    /// ```
    fn producer<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<ProducerState, EventLogError>> {
        let _ = key;
        Box::pin(async { Ok(ProducerState::Unleased) })
    }

    /// End a stream whose producer is gone: if `key` is unfinished and its lease has
    /// lapsed, append `final_event` and finish the stream, in one atomic step, and
    /// return the event's sequence number. Otherwise (lease live or renewed meanwhile,
    /// no lease, already finished) change nothing and return `None`; an unknown stream
    /// is [`EventLogError::UnknownStream`]. Of any number of concurrent callers, on any
    /// number of instances, at most one gets `Some`. The default keeps no leases and
    /// never ends a stream.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use tower_mcp_session::event_log::{EventLog, MemoryEventLog, ProducerLease, StreamId, StreamKey};
    /// use tower_mcp_session::SessionId;
    ///
    /// let log = MemoryEventLog::new();
    /// let key = StreamKey::new(SessionId::parse("s1").unwrap(), StreamId::random());
    /// log.open_leased(&key, &ProducerLease::new(Duration::from_millis(1), Bytes::new())).await?;
    /// tokio::time::sleep(Duration::from_millis(5)).await;
    /// assert_eq!(log.end_abandoned(&key, Bytes::from_static(b"{}")).await?, Some(1));
    /// assert_eq!(log.end_abandoned(&key, Bytes::from_static(b"{}")).await?, None);
    /// # Ok::<(), tower_mcp_session::event_log::EventLogError>(())
    /// # }).unwrap();
    /// ```
    fn end_abandoned<'a>(
        &'a self,
        key: &'a StreamKey,
        final_event: Bytes,
    ) -> BoxFuture<'a, Result<Option<u64>, EventLogError>> {
        let _ = (key, final_event);
        Box::pin(async { Ok(None) })
    }

    /// Read up to `max` events strictly after sequence number `after`.
    ///
    /// `after` is the sequence number of the last event the reader has (0 for none:
    /// the priming event). When event `after + 1` is no longer held, or `after` is
    /// beyond the newest event the stream has had, the answer is
    /// [`ReadOutcome::Evicted`]: never a batch that silently skips events.
    fn read_after<'a>(
        &'a self,
        key: &'a StreamKey,
        after: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<ReadOutcome, EventLogError>>;

    /// Resolve when the stream may hold events after `after`, or has finished, or is
    /// gone. Waking early is allowed (callers read again); a log that cannot notify may
    /// poll. It must not wait when `after` is beyond the stream's newest event: such a
    /// cursor reads as [`ReadOutcome::Evicted`] now, and waiting would hang the reader.
    fn wait_after<'a>(&'a self, key: &'a StreamKey, after: u64) -> BoxFuture<'a, ()>;

    /// Remember that events of `key` up to `seq` reached a client, so that a fresh `GET`
    /// on any instance starts after them. The mark only grows; marking an unknown stream
    /// does nothing.
    fn mark_delivered<'a>(&'a self, key: &'a StreamKey, seq: u64) -> BoxFuture<'a, Result<(), EventLogError>>;

    /// The highest sequence number recorded by [`mark_delivered`](Self::mark_delivered)
    /// (0 when none, or for an unknown stream).
    fn delivered<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>>;

    /// Claim `key` for a new reader and return the claim's number, greater than every
    /// earlier claim on the stream: readers holding an older claim stop sending (one
    /// message, one stream, even across instances).
    fn claim_reader<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>>;

    /// The number of the newest claim on `key` (0 when none).
    fn current_reader<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>>;

    /// Drop every stream of `session` (the session ended).
    fn remove_session<'a>(&'a self, session: &'a SessionId) -> BoxFuture<'a, Result<(), EventLogError>>;

    /// Drop what retention says must go (finished streams past their retention, idle
    /// unfinished ones). The layer calls it every sweep interval; a log whose backend
    /// expires data by itself (TTLs) has nothing to do and answers at once.
    fn purge_expired(&self) -> BoxFuture<'_, Result<(), EventLogError>>;
}

impl<T: EventLog + ?Sized> EventLog for std::sync::Arc<T> {
    fn open<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
        (**self).open(key)
    }
    fn append<'a>(&'a self, key: &'a StreamKey, data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>> {
        (**self).append(key, data)
    }
    fn finish<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
        (**self).finish(key)
    }
    fn append_last<'a>(&'a self, key: &'a StreamKey, data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>> {
        (**self).append_last(key, data)
    }
    fn read_after<'a>(
        &'a self,
        key: &'a StreamKey,
        after: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<ReadOutcome, EventLogError>> {
        (**self).read_after(key, after, max)
    }
    fn open_leased<'a>(
        &'a self,
        key: &'a StreamKey,
        lease: &'a ProducerLease,
    ) -> BoxFuture<'a, Result<(), EventLogError>> {
        (**self).open_leased(key, lease)
    }
    fn renew_lease<'a>(&'a self, key: &'a StreamKey, duration: Duration) -> BoxFuture<'a, Result<bool, EventLogError>> {
        (**self).renew_lease(key, duration)
    }
    fn producer<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<ProducerState, EventLogError>> {
        (**self).producer(key)
    }
    fn end_abandoned<'a>(
        &'a self,
        key: &'a StreamKey,
        final_event: Bytes,
    ) -> BoxFuture<'a, Result<Option<u64>, EventLogError>> {
        (**self).end_abandoned(key, final_event)
    }
    fn wait_after<'a>(&'a self, key: &'a StreamKey, after: u64) -> BoxFuture<'a, ()> {
        (**self).wait_after(key, after)
    }
    fn mark_delivered<'a>(&'a self, key: &'a StreamKey, seq: u64) -> BoxFuture<'a, Result<(), EventLogError>> {
        (**self).mark_delivered(key, seq)
    }
    fn delivered<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
        (**self).delivered(key)
    }
    fn claim_reader<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
        (**self).claim_reader(key)
    }
    fn current_reader<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
        (**self).current_reader(key)
    }
    fn remove_session<'a>(&'a self, session: &'a SessionId) -> BoxFuture<'a, Result<(), EventLogError>> {
        (**self).remove_session(session)
    }
    fn purge_expired(&self) -> BoxFuture<'_, Result<(), EventLogError>> {
        (**self).purge_expired()
    }
}
