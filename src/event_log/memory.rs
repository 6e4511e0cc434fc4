//! The in-process event log.

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::util::{FastDashMap, FastHashMap};
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{EventLog, EventLogError, ReadOutcome, StoredEvent, StreamId, StreamKey};
use crate::session::SessionId;
use crate::store::BoxFuture;

/// An [`EventLog`] kept in this process's memory, bounded in events, bytes, streams and
/// time.
///
/// Cloning is cheap and clones share the log. Streams are keyed by (session, stream),
/// so a stream id from one session reads nothing in another.
///
/// # Retention
///
/// Every bound is enforced when it is crossed, never by returning partial data: a read
/// whose cursor is older than what the stream still holds gets
/// [`ReadOutcome::Evicted`].
///
/// | bound | default | when crossed |
/// |---|---|---|
/// | events per stream | 1024 | the stream's oldest events are dropped |
/// | bytes per stream | 1 MiB | the stream's oldest events are dropped |
/// | bytes per session | 4 MiB | oldest events dropped: finished streams first, then the appending stream, then the session's other streams |
/// | streams per session | 64 | `open` drops the session's longest-finished stream, or fails if none has finished |
/// | finished stream retention | 5 min | the stream is dropped (reads say `UnknownStream`) |
/// | idle unfinished stream | 30 min without an append | the stream is dropped |
///
/// Bytes are payload bytes. The newest event of an unfinished stream is never dropped
/// by the byte or count bounds, so a reader attached to a live stream does not lose the
/// event it is about to read; a single event larger than the bounds is therefore kept
/// until the next one arrives, and a session can exceed its byte bound by at most one
/// event per unfinished stream.
///
/// When `open` would exceed the stream bound and no stream of the session has finished,
/// it fails with [`EventLogError::TooManyStreams`].
///
/// # Cursors
///
/// `read_after(key, after, _)` returns events `after + 1 ..` while `after + 1` is still
/// held. A cursor behind the oldest retained event, or ahead of the newest event the
/// stream has ever had, reads as [`ReadOutcome::Evicted`]: the first means events were
/// dropped, the second that the id was not issued by this stream (a forged id, or one
/// from before a restart), and in both cases the gap cannot be filled. `wait_after`
/// returns at once for such cursors, so a reader never hangs on them.
///
/// # Expiry
///
/// Expired streams are dropped when next touched, and by
/// [`purge_expired`](EventLog::purge_expired), which the layer calls every sweep
/// interval; the log starts no task of its own. Time is [`tokio::time::Instant`], so
/// paused test clocks apply.
///
/// # Readers
///
/// Delivery marks and reader claims are kept per stream, beside its events, and go with
/// it.
///
/// ```
/// use bytes::Bytes;
/// use tower_mcp_session::SessionId;
/// use tower_mcp_session::event_log::{EventLog, MemoryEventLog, ReadOutcome, StreamId, StreamKey};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let log = MemoryEventLog::new();
/// let key = StreamKey::new(SessionId::parse("s1").unwrap(), StreamId::random());
/// log.open(&key).await.unwrap();
/// assert_eq!(log.append(&key, Bytes::from_static(b"{}")).await.unwrap(), 1);
/// log.finish(&key).await.unwrap();
///
/// match log.read_after(&key, 0, 100).await.unwrap() {
///     ReadOutcome::Events { events, last_seq, finished } => {
///         assert_eq!((events.len(), last_seq, finished), (1, 1, true));
///     }
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
pub struct MemoryEventLog {
    inner: Arc<Inner>,
}

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
    limits: Limits,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    stream_events: usize,
    stream_bytes: usize,
    session_bytes: usize,
    session_streams: usize,
    finished_retention: Duration,
    idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            stream_events: 1024,
            stream_bytes: 1 << 20,
            session_bytes: 4 << 20,
            session_streams: 64,
            finished_retention: Duration::from_secs(5 * 60),
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

struct Inner {
    limits: Limits,
    sessions: FastDashMap<SessionId, Arc<SessionStreams>>,
}

/// One session's streams. Lock order, everywhere: the `sessions` map shard, then
/// `streams`, then a stream's `state`; never the other way round.
struct SessionStreams {
    streams: RwLock<FastHashMap<StreamId, Arc<Stream>>>,
    /// Streams in the order they finished, so making room at the stream cap takes the
    /// longest-finished one without scanning (and locking) every stream. Entries of
    /// streams already gone are skipped when met.
    finished: Mutex<VecDeque<StreamId>>,
    /// Payload bytes held by all streams of the session; changed only while holding the
    /// state lock of the stream whose bytes change, so removals subtract exactly what
    /// was added.
    bytes: AtomicUsize,
}

struct Stream {
    state: Mutex<StreamState>,
    changed: Notify,
}

struct StreamState {
    events: VecDeque<Bytes>,
    /// Sequence number of `events[0]`; `last_seq + 1` when nothing is held.
    first_seq: u64,
    last_seq: u64,
    bytes: usize,
    finished_at: Option<Instant>,
    last_append: Instant,
    /// Removed or expired. The `Arc` can outlive its map entry in a concurrent call, and
    /// that call must see the stream as unknown.
    gone: bool,
    /// Tasks inside `wait_after`; appends skip the notification when there are none.
    waiters: usize,
    /// The highest sequence number a reader delivered (`mark_delivered`).
    delivered: u64,
    /// The newest reader claim (`claim_reader`).
    claim: u64,
}

impl StreamState {
    fn new(now: Instant) -> Self {
        Self {
            events: VecDeque::new(),
            first_seq: 1,
            last_seq: 0,
            bytes: 0,
            finished_at: None,
            last_append: now,
            gone: false,
            waiters: 0,
            delivered: 0,
            claim: 0,
        }
    }

    fn expired(&self, now: Instant, limits: &Limits) -> bool {
        match self.finished_at {
            Some(at) => now.saturating_duration_since(at) >= limits.finished_retention,
            None => now.saturating_duration_since(self.last_append) >= limits.idle_timeout,
        }
    }

    /// Drop the oldest event, keeping the session total in step.
    fn pop_oldest(&mut self, session: &SessionStreams) {
        if let Some(data) = self.events.pop_front() {
            self.first_seq += 1;
            self.bytes -= data.len();
            session.bytes.fetch_sub(data.len(), Ordering::Relaxed);
        }
    }

    /// Free everything and mark the stream gone.
    fn clear(&mut self, session: &SessionStreams) {
        session.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
        // A fresh deque, so the old buffer's capacity is returned too.
        self.events = VecDeque::new();
        self.first_seq = self.last_seq + 1;
        self.gone = true;
    }
}

impl MemoryEventLog {
    /// A log with the default bounds.
    ///
    /// ```
    /// use tower_mcp_session::event_log::MemoryEventLog;
    ///
    /// let log = MemoryEventLog::new();
    /// assert_eq!(log.stream_count(), 0);
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Start configuring a log.
    ///
    /// ```
    /// use tower_mcp_session::event_log::MemoryEventLog;
    ///
    /// let log = MemoryEventLog::builder().max_bytes_per_stream(64 << 10).build();
    /// # drop(log);
    /// ```
    pub fn builder() -> MemoryEventLogBuilder {
        MemoryEventLogBuilder {
            limits: Limits::default(),
        }
    }

    /// Payload bytes held across all sessions.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tower_mcp_session::SessionId;
    /// use tower_mcp_session::event_log::{EventLog, MemoryEventLog, StreamId, StreamKey};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let log = MemoryEventLog::new();
    /// let session = SessionId::parse("s").unwrap();
    /// let key = StreamKey::new(session.clone(), StreamId::random());
    /// log.open(&key).await.unwrap();
    /// log.append(&key, Bytes::from_static(b"12345")).await.unwrap();
    /// assert_eq!(log.retained_bytes(), 5);
    /// log.remove_session(&session).await.unwrap();
    /// assert_eq!(log.retained_bytes(), 0);
    /// # }
    /// ```
    pub fn retained_bytes(&self) -> usize {
        self.inner
            .sessions
            .iter()
            .map(|s| s.value().bytes.load(Ordering::Relaxed))
            .sum()
    }

    /// Streams held across all sessions, including expired ones not yet swept.
    ///
    /// ```
    /// use tower_mcp_session::SessionId;
    /// use tower_mcp_session::event_log::{EventLog, MemoryEventLog, StreamId, StreamKey};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let log = MemoryEventLog::new();
    /// let key = StreamKey::new(SessionId::parse("s").unwrap(), StreamId::random());
    /// log.open(&key).await.unwrap();
    /// assert_eq!(log.stream_count(), 1);
    /// # }
    /// ```
    pub fn stream_count(&self) -> usize {
        self.inner.sessions.iter().map(|s| read(&s.value().streams).len()).sum()
    }

    /// Drop every expired stream now, and sessions left without streams.
    fn purge_now(&self) {
        let now = Instant::now();
        let limits = &self.inner.limits;
        // Snapshot first: no map shard stays locked while streams are examined.
        let sessions: Vec<(SessionId, Arc<SessionStreams>)> = self
            .inner
            .sessions
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect();
        for (id, session) in sessions {
            let any_expired = read(&session.streams)
                .values()
                .any(|s| lock(&s.state).expired(now, limits));
            if any_expired {
                let mut dropped = Vec::new();
                let mut streams = write(&session.streams);
                streams.retain(|_, stream| {
                    let mut state = lock(&stream.state);
                    // Checked again under the write lock: an append may have just revived it.
                    if state.expired(now, limits) {
                        state.clear(&session);
                        dropped.push(Arc::clone(stream));
                        false
                    } else {
                        true
                    }
                });
                drop(streams);
                for stream in dropped {
                    stream.changed.notify_waiters();
                }
            }
            self.inner
                .sessions
                .remove_if(&id, |_, s| Arc::ptr_eq(s, &session) && read(&s.streams).is_empty());
        }
    }

    fn lookup(&self, key: &StreamKey) -> Option<(Arc<SessionStreams>, Arc<Stream>)> {
        let session = Arc::clone(self.inner.sessions.get(key.session())?.value());
        let stream = Arc::clone(read(&session.streams).get(&key.stream())?);
        Some((session, stream))
    }

    /// Drop one stream found expired on access.
    fn expire(&self, key: &StreamKey, session: &Arc<SessionStreams>, stream: &Arc<Stream>) {
        {
            let mut streams = write(&session.streams);
            if streams.get(&key.stream()).is_some_and(|s| Arc::ptr_eq(s, stream)) {
                streams.remove(&key.stream());
            }
            let mut state = lock(&stream.state);
            if !state.gone {
                state.clear(session);
            }
        }
        stream.changed.notify_waiters();
        self.inner.sessions.remove_if(key.session(), |_, s| {
            Arc::ptr_eq(s, session) && read(&s.streams).is_empty()
        });
    }

    fn open_now(&self, key: &StreamKey) -> Result<(), EventLogError> {
        let now = Instant::now();
        let limits = &self.inner.limits;
        // The map entry stays locked until the stream is in: a concurrent sweep cannot
        // drop the (possibly new, still empty) session in between.
        let entry = self.inner.sessions.entry(key.session().clone()).or_insert_with(|| {
            Arc::new(SessionStreams {
                streams: RwLock::new(FastHashMap::default()),
                finished: Mutex::new(VecDeque::new()),
                bytes: AtomicUsize::new(0),
            })
        });
        let session = entry.value();
        let mut streams = write(&session.streams);
        let mut dropped = Vec::new();
        if let Some(existing) = streams.get(&key.stream()) {
            let mut state = lock(&existing.state);
            if !state.expired(now, limits) {
                return Ok(());
            }
            state.clear(session);
            drop(state);
            dropped.extend(streams.remove(&key.stream()));
        }
        {
            // Ids of streams that expired or were dropped otherwise stay queued until met;
            // keep the queue within a small multiple of the cap.
            let mut order = lock(&session.finished);
            if order.len() > 2 * limits.session_streams {
                order.retain(|id| streams.contains_key(id));
            }
        }
        if streams.len() >= limits.session_streams {
            // Candidates are taken off the queue one at a time with no stream lock held
            // (`finish` takes a stream's lock, then the queue's).
            let oldest_finished = loop {
                let Some(id) = lock(&session.finished).pop_front() else {
                    break None;
                };
                if streams.get(&id).is_some_and(|s| lock(&s.state).finished_at.is_some()) {
                    break Some(id);
                }
            };
            let Some(victim) = oldest_finished else {
                drop(streams);
                drop(entry);
                for stream in dropped {
                    stream.changed.notify_waiters();
                }
                return Err(EventLogError::TooManyStreams {
                    limit: limits.session_streams,
                });
            };
            if let Some(stream) = streams.remove(&victim) {
                lock(&stream.state).clear(session);
                dropped.push(stream);
            }
        }
        streams.insert(
            key.stream(),
            Arc::new(Stream {
                state: Mutex::new(StreamState::new(now)),
                changed: Notify::new(),
            }),
        );
        drop(streams);
        drop(entry);
        for stream in dropped {
            stream.changed.notify_waiters();
        }
        Ok(())
    }

    fn append_now(&self, key: &StreamKey, data: Bytes) -> Result<u64, EventLogError> {
        let (session, stream) = self.lookup(key).ok_or(EventLogError::UnknownStream)?;
        let now = Instant::now();
        let limits = &self.inner.limits;
        let len = data.len();
        let mut state = lock(&stream.state);
        if state.gone {
            return Err(EventLogError::UnknownStream);
        }
        if state.expired(now, limits) {
            drop(state);
            self.expire(key, &session, &stream);
            return Err(EventLogError::UnknownStream);
        }
        if state.finished_at.is_some() {
            return Err(EventLogError::Finished);
        }
        state.last_seq += 1;
        state.last_append = now;
        state.events.push_back(data);
        state.bytes += len;
        let total = session.bytes.fetch_add(len, Ordering::Relaxed) + len;
        while state.events.len() > 1 && (state.events.len() > limits.stream_events || state.bytes > limits.stream_bytes)
        {
            state.pop_oldest(&session);
        }
        let seq = state.last_seq;
        let wake = state.waiters > 0;
        drop(state);
        if wake {
            stream.changed.notify_waiters();
        }
        if total > limits.session_bytes && session.bytes.load(Ordering::Relaxed) > limits.session_bytes {
            self.enforce_session_bytes(&session, key.stream());
        }
        Ok(seq)
    }

    /// Bring a session back under its byte bound: oldest events of finished streams
    /// first (longest finished first; they have no live reader), then of the stream
    /// being appended to, then of the other unfinished streams, largest first.
    #[cold]
    fn enforce_session_bytes(&self, session: &SessionStreams, appending: StreamId) {
        let limit = self.inner.limits.session_bytes;
        let over = || session.bytes.load(Ordering::Relaxed) > limit;
        // Sort keys are read without holding the stream locks together, so they may be
        // slightly stale; that only affects the order of eviction, not the bound.
        let mut finished = Vec::new();
        let mut open = Vec::new();
        let mut own = None;
        for (id, stream) in read(&session.streams).iter() {
            let state = lock(&stream.state);
            match state.finished_at {
                Some(at) => finished.push((at, Arc::clone(stream))),
                None if *id == appending => own = Some(Arc::clone(stream)),
                None => open.push((state.bytes, Arc::clone(stream))),
            }
        }
        finished.sort_by_key(|(at, _)| *at);
        open.sort_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
        let order = finished
            .into_iter()
            .map(|(_, s)| s)
            .chain(own)
            .chain(open.into_iter().map(|(_, s)| s));
        for stream in order {
            if !over() {
                return;
            }
            let mut state = lock(&stream.state);
            let keep = usize::from(state.finished_at.is_none());
            while state.events.len() > keep && over() {
                state.pop_oldest(session);
            }
        }
    }

    fn finish_now(&self, key: &StreamKey) -> Result<(), EventLogError> {
        let (session, stream) = self.lookup(key).ok_or(EventLogError::UnknownStream)?;
        let now = Instant::now();
        let mut state = lock(&stream.state);
        if state.gone {
            return Err(EventLogError::UnknownStream);
        }
        if state.expired(now, &self.inner.limits) {
            drop(state);
            self.expire(key, &session, &stream);
            return Err(EventLogError::UnknownStream);
        }
        if state.finished_at.is_none() {
            state.finished_at = Some(now);
            lock(&session.finished).push_back(key.stream());
        }
        drop(state);
        stream.changed.notify_waiters();
        Ok(())
    }

    fn read_now(&self, key: &StreamKey, after: u64, max: usize) -> ReadOutcome {
        let Some((session, stream)) = self.lookup(key) else {
            return ReadOutcome::UnknownStream;
        };
        let state = lock(&stream.state);
        if state.gone {
            return ReadOutcome::UnknownStream;
        }
        if state.expired(Instant::now(), &self.inner.limits) {
            drop(state);
            self.expire(key, &session, &stream);
            return ReadOutcome::UnknownStream;
        }
        let last_seq = state.last_seq;
        // `after > last_seq` first: it also keeps `after + 1` from overflowing.
        if after > last_seq || after + 1 < state.first_seq {
            return ReadOutcome::Evicted {
                first_retained: state.first_seq,
                last_seq,
            };
        }
        // Both differences are bounded by the deque length, so they fit in usize.
        let start = (after + 1 - state.first_seq) as usize;
        let count = usize::try_from(last_seq - after).unwrap_or(usize::MAX).min(max);
        let events = state
            .events
            .range(start..start + count)
            .zip(after + 1..)
            .map(|(data, seq)| StoredEvent {
                seq,
                data: data.clone(),
            })
            .collect();
        ReadOutcome::Events {
            events,
            last_seq,
            finished: state.finished_at.is_some() && after + count as u64 == last_seq,
        }
    }

    async fn wait_now(&self, key: &StreamKey, after: u64) {
        let Some((_, stream)) = self.lookup(key) else {
            return;
        };
        let mut notified = pin!(stream.changed.notified());
        // Registered before the state is checked, so an append between the check and the
        // await still wakes this task.
        notified.as_mut().enable();
        {
            let mut state = lock(&stream.state);
            let idle = after == state.last_seq && state.finished_at.is_none() && !state.gone;
            if !idle || state.expired(Instant::now(), &self.inner.limits) {
                return;
            }
            state.waiters += 1;
        }
        let _waiting = WaiterCount(&stream);
        notified.await;
    }

    fn remove_session_now(&self, session: &SessionId) {
        let Some((_, entry)) = self.inner.sessions.remove(session) else {
            return;
        };
        let streams = std::mem::take(&mut *write(&entry.streams));
        for stream in streams.values() {
            lock(&stream.state).clear(&entry);
            stream.changed.notify_waiters();
        }
    }
}

impl EventLog for MemoryEventLog {
    fn open<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
        Box::pin(async move { self.open_now(key) })
    }

    fn append<'a>(&'a self, key: &'a StreamKey, data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>> {
        Box::pin(async move { self.append_now(key, data) })
    }

    fn finish<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
        Box::pin(async move { self.finish_now(key) })
    }

    fn read_after<'a>(
        &'a self,
        key: &'a StreamKey,
        after: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<ReadOutcome, EventLogError>> {
        Box::pin(async move { Ok(self.read_now(key, after, max)) })
    }

    fn wait_after<'a>(&'a self, key: &'a StreamKey, after: u64) -> BoxFuture<'a, ()> {
        Box::pin(self.wait_now(key, after))
    }

    fn mark_delivered<'a>(&'a self, key: &'a StreamKey, seq: u64) -> BoxFuture<'a, Result<(), EventLogError>> {
        Box::pin(async move {
            if let Some((_, stream)) = self.lookup(key) {
                let mut state = lock(&stream.state);
                state.delivered = state.delivered.max(seq);
            }
            Ok(())
        })
    }

    fn delivered<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
        Box::pin(async move { Ok(self.lookup(key).map_or(0, |(_, stream)| lock(&stream.state).delivered)) })
    }

    fn claim_reader<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
        Box::pin(async move {
            let (_, stream) = self.lookup(key).ok_or(EventLogError::UnknownStream)?;
            let claim = {
                let mut state = lock(&stream.state);
                state.claim += 1;
                state.claim
            };
            // A reader holding an older claim may be waiting: it must look again.
            stream.changed.notify_waiters();
            Ok(claim)
        })
    }

    fn current_reader<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
        Box::pin(async move { Ok(self.lookup(key).map_or(0, |(_, stream)| lock(&stream.state).claim)) })
    }

    fn remove_session<'a>(&'a self, session: &'a SessionId) -> BoxFuture<'a, Result<(), EventLogError>> {
        Box::pin(async move {
            self.remove_session_now(session);
            Ok(())
        })
    }

    fn purge_expired(&self) -> BoxFuture<'_, Result<(), EventLogError>> {
        Box::pin(async move {
            self.purge_now();
            Ok(())
        })
    }
}

impl Clone for MemoryEventLog {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Default for MemoryEventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryEventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryEventLog")
            .field("limits", &self.inner.limits)
            .field("sessions", &self.inner.sessions.len())
            .finish_non_exhaustive()
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
    /// the longest-finished stream, or fails with [`EventLogError::TooManyStreams`](super::EventLogError::TooManyStreams) if none finished.
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
            }),
        }
    }
}

impl Default for MemoryEventLogBuilder {
    fn default() -> Self {
        MemoryEventLog::builder()
    }
}

/// Keeps `StreamState::waiters` right even when a waiting future is dropped.
struct WaiterCount<'a>(&'a Stream);

impl Drop for WaiterCount<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).waiters -= 1;
    }
}

// No code panics while holding these locks; recovering from poison keeps one panicking
// caller elsewhere from wedging the log for everyone.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
