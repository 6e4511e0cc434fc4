//! The memory log's state: one session's streams, one stream, and the locks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::builder::Limits;
use crate::event_log::StreamId;
use crate::util::FastHashMap;

/// One session's streams. Lock order, everywhere: the `sessions` map shard, then
/// `streams`, then a stream's `state`; never the other way round.
pub(super) struct SessionStreams {
    pub(super) streams: RwLock<FastHashMap<StreamId, Arc<Stream>>>,
    /// Streams in the order they finished, so making room at the stream cap takes the
    /// longest-finished one without scanning (and locking) every stream. Entries of
    /// streams already gone are skipped when met.
    pub(super) finished: Mutex<VecDeque<StreamId>>,
    /// Payload bytes held by all streams of the session; changed only while holding the
    /// state lock of the stream whose bytes change, so removals subtract exactly what
    /// was added.
    pub(super) bytes: AtomicUsize,
    /// The whole log's count, changed with `bytes`.
    pub(super) total: Arc<AtomicUsize>,
    /// The newest sequence number of each stream that expired unfinished (the
    /// standalone stream, mostly): opened again, it goes on from there, so an event id
    /// is never issued twice and an old cursor reads as evicted. Finished streams are
    /// never opened again and leave nothing; the session's removal drops it all.
    pub(super) retired: Mutex<FastHashMap<StreamId, u64>>,
}

/// What one event costs the whole-log budget beyond its payload: its slot in the
/// stream's queue and the allocation holding its bytes.
pub(super) const EVENT_COST: usize = 64;

/// What one stream costs the whole-log budget: its state, notifier and map entry.
pub(super) const STREAM_COST: usize = 256;

impl SessionStreams {
    /// One event of `n` payload bytes arrived; returns the session's payload bytes.
    pub(super) fn add(&self, n: usize) -> usize {
        self.total.fetch_add(n + EVENT_COST, Ordering::Relaxed);
        self.bytes.fetch_add(n, Ordering::Relaxed) + n
    }

    /// One event of `n` payload bytes left.
    pub(super) fn sub(&self, n: usize) {
        self.total.fetch_sub(n + EVENT_COST, Ordering::Relaxed);
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// Remember where an expiring stream's numbering stopped (see `retired`).
    pub(super) fn retire(&self, id: StreamId, state: &StreamState) {
        if state.finished_at.is_none() && state.last_seq > 0 {
            lock(&self.retired).insert(id, state.last_seq);
        }
    }

    /// Whether the session holds nothing: no stream, no retired numbering.
    pub(super) fn is_empty(&self) -> bool {
        read(&self.streams).is_empty() && lock(&self.retired).is_empty()
    }
}

pub(super) struct Stream {
    pub(super) state: Mutex<StreamState>,
    pub(super) changed: Notify,
}

pub(super) struct StreamState {
    pub(super) events: VecDeque<Bytes>,
    /// Sequence number of `events[0]`; `last_seq + 1` when nothing is held.
    pub(super) first_seq: u64,
    pub(super) last_seq: u64,
    pub(super) bytes: usize,
    pub(super) finished_at: Option<Instant>,
    pub(super) last_append: Instant,
    /// Removed or expired. The `Arc` can outlive its map entry in a concurrent call, and
    /// that call must see the stream as unknown.
    pub(super) gone: bool,
    /// Tasks inside `wait_after`; appends skip the notification when there are none.
    pub(super) waiters: usize,
    /// The highest sequence number a reader delivered (`mark_delivered`).
    pub(super) delivered: u64,
    /// The newest reader claim (`claim_reader`).
    pub(super) claim: u64,
    /// The producer's lease (`open_leased`), cleared when the stream finishes.
    pub(super) lease: Option<Lease>,
}

/// A producer's lease as the memory log keeps it.
pub(super) struct Lease {
    pub(super) until: Instant,
    pub(super) note: Bytes,
}

impl StreamState {
    pub(super) fn new(now: Instant) -> Self {
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
            lease: None,
        }
    }

    pub(super) fn expired(&self, now: Instant, limits: &Limits) -> bool {
        match self.finished_at {
            Some(at) => now.saturating_duration_since(at) >= limits.finished_retention,
            None => now.saturating_duration_since(self.last_append) >= limits.idle_timeout,
        }
    }

    /// Whether the stream is unfinished and its producer's lease ran out.
    pub(super) fn abandoned(&self, now: Instant) -> bool {
        self.finished_at.is_none() && self.lease.as_ref().is_some_and(|l| now >= l.until)
    }

    /// Mark the stream finished (once), which clears its lease.
    pub(super) fn mark_finished(&mut self, now: Instant, session: &SessionStreams, id: StreamId) {
        self.lease = None;
        if self.finished_at.is_none() {
            self.finished_at = Some(now);
            lock(&session.finished).push_back(id);
        }
    }

    /// Drop the oldest event, keeping the session total in step.
    pub(super) fn pop_oldest(&mut self, session: &SessionStreams) {
        if let Some(data) = self.events.pop_front() {
            self.first_seq += 1;
            self.bytes -= data.len();
            session.sub(data.len());
            #[cfg(feature = "metrics")]
            crate::metrics::facade::event_evicted();
        }
    }

    /// Free everything and mark the stream gone.
    pub(super) fn clear(&mut self, session: &SessionStreams) {
        let cost = self.bytes + self.events.len() * EVENT_COST + STREAM_COST;
        session.total.fetch_sub(cost, Ordering::Relaxed);
        session.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
        // A fresh deque, so the old buffer's capacity is returned too.
        self.events = VecDeque::new();
        self.first_seq = self.last_seq + 1;
        self.gone = true;
    }
}

/// Keeps `StreamState::waiters` right even when a waiting future is dropped.
pub(super) struct WaiterCount<'a>(pub(super) &'a Stream);

impl Drop for WaiterCount<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).waiters -= 1;
    }
}

// No code panics while holding these locks; recovering from poison keeps one panicking
// caller elsewhere from wedging the log for everyone.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
