//! The in-process event log.

mod builder;
mod lease;
mod room;
mod state;

pub use builder::MemoryEventLogBuilder;

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::util::{FastDashMap, FastHashMap};
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{EventLog, EventLogError, ProducerLease, ProducerState, ReadOutcome, StoredEvent, StreamKey};
use crate::session::SessionId;
use crate::store::BoxFuture;
use builder::Limits;
use state::{EVENT_COST, Lease, STREAM_COST, SessionStreams, Stream, StreamState, WaiterCount, lock, read, write};

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
/// | bytes in the whole log | 256 MiB | room is made down to 1/16 below the budget: events of finished streams dropped (longest finished first, across sessions), then the oldest events of unfinished streams (those no reader waits on first, largest first; each keeps its newest event); only when that cannot make room (the streams' own costs and newest events fill the budget) does the append (or `open`) fail with [`EventLogError::Full`] |
/// | streams per session | 64 | `open` drops the session's longest-finished stream, or fails if none has finished |
/// | finished stream retention | 5 min | the stream is dropped (reads say `UnknownStream`) |
/// | idle unfinished stream | 30 min without an append | the stream is dropped |
///
/// The whole-log budget counts what the log allocates, not only payloads: each event
/// costs its payload plus 64 bytes, each stream 256 bytes, so many tiny events or empty
/// streams cannot exceed it either.
///
/// Bytes are payload bytes. The newest event of an unfinished stream is never dropped
/// by the byte or count bounds, so a reader attached to a live stream does not lose the
/// event it is about to read; a single event larger than the bounds is therefore kept
/// until the next one arrives, and a session can exceed its byte bound by at most one
/// event per unfinished stream.
///
/// When `open` would exceed the stream bound and no stream of the session has finished,
/// it fails with [`EventLogError::TooManyStreams`]: an unfinished stream (the session's
/// standalone stream, an answer still being produced) is never dropped to make room.
///
/// Sequence numbers are never issued twice for one stream of a session: a stream that
/// expired unfinished and is opened again goes on after its last number, so a cursor
/// from before reads as [`ReadOutcome::Evicted`] (410 for a resume), never as events
/// of the new stream.
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

struct Inner {
    limits: Limits,
    sessions: FastDashMap<SessionId, Arc<SessionStreams>>,
    /// Payload bytes held by every stream of every session.
    total: Arc<AtomicUsize>,
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
                session.retire(key.stream(), &state);
                state.clear(session);
            }
        }
        stream.changed.notify_waiters();
        self.inner
            .sessions
            .remove_if(key.session(), |_, s| Arc::ptr_eq(s, session) && s.is_empty());
    }

    fn open_now(&self, key: &StreamKey, lease: Option<&ProducerLease>) -> Result<(), EventLogError> {
        let now = Instant::now();
        let limits = &self.inner.limits;
        // A full log takes no new stream it could not append to. Checked before the
        // session's entry is locked: making room visits every session.
        if self.lookup(key).is_none() && !self.make_room(STREAM_COST) {
            return Err(EventLogError::Full);
        }
        // The map entry stays locked until the stream is in: a concurrent sweep cannot
        // drop the (possibly new, still empty) session in between.
        let entry = self.inner.sessions.entry(key.session().clone()).or_insert_with(|| {
            Arc::new(SessionStreams {
                streams: RwLock::new(FastHashMap::default()),
                finished: Mutex::new(VecDeque::new()),
                bytes: AtomicUsize::new(0),
                total: Arc::clone(&self.inner.total),
                retired: Mutex::default(),
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
            session.retire(key.stream(), &state);
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
        let mut state = StreamState::new(now);
        state.lease = lease.map(|l| Lease {
            until: now + l.duration(),
            note: l.note().clone(),
        });
        if let Some(last) = lock(&session.retired).remove(&key.stream()) {
            state.last_seq = last;
            state.first_seq = last + 1;
        }
        session.total.fetch_add(STREAM_COST, Ordering::Relaxed);
        streams.insert(
            key.stream(),
            Arc::new(Stream {
                state: Mutex::new(state),
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
        self.append_inner(key, data, false).map(|seq| seq.unwrap_or_default())
    }

    /// Append `data`; with `abandon`, only to an unfinished stream whose lease lapsed,
    /// finishing it in the same step (`None` when it is not abandoned).
    fn append_inner(&self, key: &StreamKey, data: Bytes, abandon: bool) -> Result<Option<u64>, EventLogError> {
        let (session, stream) = self.lookup(key).ok_or(EventLogError::UnknownStream)?;
        let now = Instant::now();
        let limits = &self.inner.limits;
        let len = data.len();
        if !self.make_room(len + EVENT_COST) {
            return Err(EventLogError::Full);
        }
        let mut state = lock(&stream.state);
        if state.gone {
            return Err(EventLogError::UnknownStream);
        }
        if state.expired(now, limits) {
            drop(state);
            self.expire(key, &session, &stream);
            return Err(EventLogError::UnknownStream);
        }
        if abandon && !state.abandoned(now) {
            return Ok(None);
        }
        if state.finished_at.is_some() {
            return Err(EventLogError::Finished);
        }
        state.last_seq += 1;
        state.last_append = now;
        state.events.push_back(data);
        state.bytes += len;
        let total = session.add(len);
        while state.events.len() > 1 && (state.events.len() > limits.stream_events || state.bytes > limits.stream_bytes)
        {
            state.pop_oldest(&session);
        }
        let seq = state.last_seq;
        if abandon {
            state.mark_finished(now, &session, key.stream());
        }
        let wake = abandon || state.waiters > 0;
        drop(state);
        if wake {
            stream.changed.notify_waiters();
        }
        if total > limits.session_bytes && session.bytes.load(Ordering::Relaxed) > limits.session_bytes {
            self.enforce_session_bytes(&session, key.stream());
        }
        Ok(Some(seq))
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
        state.mark_finished(now, &session, key.stream());
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
        Box::pin(async move { self.open_now(key, None) })
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

    fn open_leased<'a>(
        &'a self,
        key: &'a StreamKey,
        lease: &'a ProducerLease,
    ) -> BoxFuture<'a, Result<(), EventLogError>> {
        Box::pin(async move { self.open_now(key, Some(lease)) })
    }

    fn renew_lease<'a>(&'a self, key: &'a StreamKey, duration: Duration) -> BoxFuture<'a, Result<bool, EventLogError>> {
        Box::pin(async move { Ok(self.renew_now(key, duration)) })
    }

    fn producer<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<ProducerState, EventLogError>> {
        Box::pin(async move { Ok(self.producer_now(key)) })
    }

    fn end_abandoned<'a>(
        &'a self,
        key: &'a StreamKey,
        final_event: Bytes,
    ) -> BoxFuture<'a, Result<Option<u64>, EventLogError>> {
        Box::pin(async move { self.append_inner(key, final_event, true) })
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
