//! Producer leases in the memory log: kept in the stream's state (set by `open_now`,
//! cleared by finishing, checked by `append_inner`), on tokio's clock.

use std::time::Duration;

use tokio::time::Instant;

use super::MemoryEventLog;
use super::state::lock;
use crate::event_log::{ProducerState, StreamKey};

impl MemoryEventLog {
    pub(super) fn renew_now(&self, key: &StreamKey, duration: Duration) -> bool {
        let Some((_, stream)) = self.lookup(key) else {
            return false;
        };
        let mut state = lock(&stream.state);
        if state.gone || state.finished_at.is_some() {
            return false;
        }
        match state.lease.as_mut() {
            Some(lease) => {
                lease.until = Instant::now() + duration;
                true
            }
            None => false,
        }
    }

    pub(super) fn producer_now(&self, key: &StreamKey) -> ProducerState {
        let Some((_, stream)) = self.lookup(key) else {
            return ProducerState::Unleased;
        };
        let state = lock(&stream.state);
        match &state.lease {
            _ if state.gone || state.finished_at.is_some() => ProducerState::Unleased,
            None => ProducerState::Unleased,
            Some(lease) if Instant::now() >= lease.until => ProducerState::Lapsed {
                note: lease.note.clone(),
            },
            Some(_) => ProducerState::Live,
        }
    }
}
