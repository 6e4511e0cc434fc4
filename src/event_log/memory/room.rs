//! Making room at the byte bounds: a session's (its own streams pay, finished first)
//! and the whole log's (every session's streams, finished first, then those no reader
//! waits on). Cold paths, apart from the hot-path check at the top of `make_room`.
//! Also the sweep of expired streams.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::MemoryEventLog;
use super::state::{SessionStreams, lock, read, write};
use crate::event_log::StreamId;
use crate::session::SessionId;
use tokio::time::Instant;

impl MemoryEventLog {
    /// Bring a session back under its byte bound: oldest events of finished streams
    /// first (longest finished first; they have no live reader), then of the stream
    /// being appended to, then of the other unfinished streams, largest first.
    #[cold]
    pub(super) fn enforce_session_bytes(&self, session: &SessionStreams, appending: StreamId) {
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

    /// Whether `need` more bytes fit the log's budget. When they do not, room is made
    /// down to a margin below the budget (a sixteenth of it), so a log at its budget
    /// scans its streams once per margin's worth of appends, not once per append:
    /// first the events of finished streams go (longest finished first, across
    /// sessions; they have no live reader), then the oldest events of unfinished streams
    /// (those no reader waits on first, largest first), each keeping its newest event.
    /// Streams themselves stay, so their cursors read as evicted (410), never unknown.
    /// Called with no lock held.
    pub(super) fn make_room(&self, need: usize) -> bool {
        let budget = self.inner.limits.total_bytes;
        let used = || self.inner.total.load(Ordering::Relaxed).saturating_add(need);
        if used() <= budget {
            return true;
        }
        let target = budget - budget / 16;
        let roomy = || used() <= target;
        if !self.drop_finished(roomy) {
            self.trim_unfinished(roomy);
        }
        used() <= budget
    }

    /// Drop events of finished streams, longest finished first, until `enough`.
    #[cold]
    fn drop_finished(&self, enough: impl Fn() -> bool) -> bool {
        let mut finished = Vec::new();
        for entry in self.inner.sessions.iter() {
            for stream in read(&entry.value().streams).values() {
                let state = lock(&stream.state);
                if let Some(at) = state.finished_at.filter(|_| state.bytes > 0) {
                    finished.push((at, Arc::clone(entry.value()), Arc::clone(stream)));
                }
            }
        }
        finished.sort_by_key(|(at, _, _)| *at);
        for (_, session, stream) in finished {
            if enough() {
                return true;
            }
            let mut state = lock(&stream.state);
            while !state.events.is_empty() && !enough() {
                state.pop_oldest(&session);
            }
        }
        enough()
    }

    /// Drop the oldest events of unfinished streams until `enough`, keeping each
    /// stream's newest event: streams no reader is waiting on go first (a standalone
    /// stream nobody listens to, filled by pushes and broadcasts), largest first. A
    /// reader whose next event goes reads `Evicted`, and its resume gets 410: an
    /// honest gap, never a silent one.
    #[cold]
    fn trim_unfinished(&self, enough: impl Fn() -> bool) {
        let mut open = Vec::new();
        for entry in self.inner.sessions.iter() {
            for stream in read(&entry.value().streams).values() {
                let state = lock(&stream.state);
                if state.finished_at.is_none() && state.events.len() > 1 {
                    let order = (state.waiters > 0, std::cmp::Reverse(state.bytes));
                    open.push((order, Arc::clone(entry.value()), Arc::clone(stream)));
                }
            }
        }
        open.sort_by_key(|(order, _, _)| *order);
        for (_, session, stream) in open {
            if enough() {
                return;
            }
            let mut state = lock(&stream.state);
            while state.finished_at.is_none() && state.events.len() > 1 && !enough() {
                state.pop_oldest(&session);
            }
        }
    }

    /// Drop every expired stream now, and sessions left without streams.
    pub(super) fn purge_now(&self) {
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
                streams.retain(|id, stream| {
                    let mut state = lock(&stream.state);
                    // Checked again under the write lock: an append may have just revived it.
                    if state.expired(now, limits) {
                        session.retire(*id, &state);
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
                .remove_if(&id, |_, s| Arc::ptr_eq(s, &session) && s.is_empty());
        }
    }
}
