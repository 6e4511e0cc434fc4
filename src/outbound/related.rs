//! Where a server → client request made while serving a client request goes: on that
//! request's own SSE stream when it has one (2025-11-25 wants requests *related* to the
//! client request they serve), else on the session's standalone stream.
//!
//! The layer only knows whether the answer is a stream once the inner service returned
//! the response head, and the stream exists in the log only after the layer opened it,
//! so the cell says how far that has come and a request made before waits for it — a
//! little: a handler that asks *before* it returns its head would otherwise wait for
//! itself.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::event_log::StreamId;

/// How long a request made before the inner service returned its head waits to learn
/// whether the answer will be a stream. A handler that streams returns its head at once
/// (its work runs while the body is read), so this only delays handlers that ask first
/// and answer with JSON later; their requests go on the standalone stream.
const HEAD_WAIT: Duration = Duration::from_millis(100);

const PENDING: u8 = 0;
const OPENING: u8 = 1;
const OPEN: u8 = 2;
const ELSEWHERE: u8 = 3;

/// The state of one client request's answer stream, shared by the layer (which moves it
/// on) and the [`Session`](crate::Session) handle in that request's extensions.
#[derive(Debug)]
pub(crate) struct RelatedStream {
    stream: StreamId,
    state: AtomicU8,
    changed: Notify,
}

impl RelatedStream {
    pub(crate) fn new(stream: StreamId) -> Self {
        Self {
            stream,
            state: AtomicU8::new(PENDING),
            changed: Notify::new(),
        }
    }

    /// The inner service answered with a stream; the layer is opening it in the log.
    pub(crate) fn opening(&self) {
        self.set(OPENING);
    }

    /// The stream is in the log: requests may be appended to it.
    pub(crate) fn opened(&self) {
        self.set(OPEN);
    }

    /// The answer is not a resumable stream (JSON, an error, or the log failed).
    pub(crate) fn elsewhere(&self) {
        self.set(ELSEWHERE);
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// The answer stream to put a request on, once known; `None` when requests must go
    /// on the standalone stream. `opening_wait` bounds the wait for the log to open it.
    pub(crate) async fn stream(&self, opening_wait: Duration) -> Option<StreamId> {
        let deadline = tokio::time::Instant::now() + HEAD_WAIT;
        let mut opening_deadline = None;
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the state is read, so a change in between is not missed.
            changed.as_mut().enable();
            let until = match self.state.load(Ordering::Acquire) {
                OPEN => return Some(self.stream),
                ELSEWHERE => return None,
                OPENING => *opening_deadline.get_or_insert_with(|| tokio::time::Instant::now() + opening_wait),
                _ => deadline,
            };
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::RelatedStream;
    use crate::event_log::StreamId;

    #[tokio::test(start_paused = true)]
    async fn a_stream_opened_soon_is_used() {
        let cell = Arc::new(RelatedStream::new(StreamId::from_raw(9)));
        let waiter = tokio::spawn({
            let cell = cell.clone();
            async move { cell.stream(Duration::from_secs(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        cell.opening();
        tokio::time::sleep(Duration::from_millis(500)).await;
        cell.opened();
        assert_eq!(waiter.await.unwrap(), Some(StreamId::from_raw(9)));
    }

    #[tokio::test(start_paused = true)]
    async fn no_head_in_time_means_standalone() {
        let cell = RelatedStream::new(StreamId::from_raw(9));
        assert_eq!(cell.stream(Duration::from_secs(1)).await, None);
        let cell = RelatedStream::new(StreamId::from_raw(9));
        cell.opening();
        // The log took longer than allowed to open it.
        assert_eq!(cell.stream(Duration::from_millis(300)).await, None);
        cell.elsewhere();
        assert_eq!(cell.stream(Duration::from_secs(1)).await, None);
    }
}
