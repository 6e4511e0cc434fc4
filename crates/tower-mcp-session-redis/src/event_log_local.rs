//! What [`RedisEventLog`](crate::RedisEventLog) remembers of the streams this process
//! produced and finished itself, so that their reader here (the client's own POST
//! response, a moment later) reads them without a round trip.
//!
//! A stream is served from here only when this process saw its whole life: it opened
//! it, every event of it was appended here and Redis numbered them 1, 2, … with no gap
//! (an event appended by another instance would have taken a number in between), and
//! its last append here also finished it (so nothing can follow). Only streams within
//! the per-stream bounds are kept, only for [`KEEP`], and only for one read to the
//! end (the live reader's); streams this process drops to make room are forgotten at
//! once. Everything else reads from Redis as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tower_mcp_session::SessionId;
use tower_mcp_session::event_log::{ReadOutcome, StoredEvent, StreamKey};

/// How long a finished stream is remembered: long enough for its live reader.
const KEEP: Duration = Duration::from_secs(1);
/// How many streams, and how many bytes of events, are remembered at most.
const MAX_STREAMS: usize = 4096;
const MAX_BYTES: usize = 16 << 20;

/// One stream's story as seen here.
struct Seen {
    events: Vec<Bytes>,
    bytes: usize,
    /// Finished by this process's own last append: complete.
    finished: bool,
    /// When it was opened (unfinished) or finished.
    at: Instant,
}

/// The streams this process opened, while their whole story is known here.
#[derive(Default)]
pub(crate) struct LocalStreams {
    streams: Mutex<HashMap<StreamKey, Seen>>,
    bytes: Mutex<usize>,
    /// When the map was last swept of what is too old (at most every [`SWEEP_EVERY`]).
    swept: Mutex<Option<Instant>>,
}

/// How often the map is swept: each sweep walks every entry, so not per request.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

impl LocalStreams {
    /// This process opened `key`.
    pub(crate) fn opened(&self, key: &StreamKey) {
        let mut streams = self.lock();
        self.prune(&mut streams);
        if streams.len() < MAX_STREAMS {
            streams.entry(key.clone()).or_insert_with(|| Seen {
                events: Vec::new(),
                bytes: 0,
                finished: false,
                at: Instant::now(),
            });
        }
    }

    /// This process appended `data` as event `seq` of `key`, finishing the stream when
    /// `last`; or the append failed (`seq` is `None`).
    pub(crate) fn appended(&self, key: &StreamKey, data: &Bytes, seq: Option<u64>, last: bool, limits: (u64, u64)) {
        let mut streams = self.lock();
        let Some(seen) = streams.get_mut(key) else {
            return;
        };
        let (max_events, max_bytes) = limits;
        let next = seen.events.len() as u64 + 1;
        let fits = (next <= max_events) && ((seen.bytes + data.len()) as u64 <= max_bytes);
        let mut total = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        if seq != Some(next) || seen.finished || !fits || *total + data.len() > MAX_BYTES {
            // Someone else's event, a failure, or too much to keep: no longer known.
            *total -= seen.bytes;
            streams.remove(key);
            return;
        }
        seen.events.push(data.clone());
        seen.bytes += data.len();
        *total += data.len();
        if last {
            seen.finished = true;
            seen.at = Instant::now();
        }
    }

    /// The stream was finished (by `finish`) or changed in a way not followed here.
    pub(crate) fn forget(&self, key: &StreamKey) {
        let mut streams = self.lock();
        if let Some(seen) = streams.remove(key) {
            *self.bytes.lock().unwrap_or_else(|e| e.into_inner()) -= seen.bytes;
        }
    }

    /// Every stream of `session` is gone.
    pub(crate) fn forget_session(&self, session: &SessionId) {
        let mut streams = self.lock();
        let mut total = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|key, seen| {
            let keep = key.session() != session;
            if !keep {
                *total -= seen.bytes;
            }
            keep
        });
    }

    /// `read_after` answered from here, for a complete stream; `None`: ask Redis. A
    /// read that reaches the end is the stream's reader done with it: the stream is
    /// forgotten here, and any later read (a resume) asks Redis.
    pub(crate) fn read_after(&self, key: &StreamKey, after: u64, max: usize) -> Option<ReadOutcome> {
        let outcome = self.peek(key, after, max)?;
        if matches!(outcome, ReadOutcome::Events { finished: true, .. }) {
            self.forget(key);
        }
        Some(outcome)
    }

    /// Whether `key` is known here, finished, with events after `after`, or ends there.
    pub(crate) fn has_after(&self, key: &StreamKey, after: u64) -> bool {
        self.peek(key, after, 1).is_some()
    }

    fn peek(&self, key: &StreamKey, after: u64, max: usize) -> Option<ReadOutcome> {
        let streams = self.lock();
        let seen = streams.get(key).filter(|s| s.finished && s.at.elapsed() < KEEP)?;
        let last_seq = seen.events.len() as u64;
        if after > last_seq {
            return None;
        }
        let start = usize::try_from(after).ok()?;
        let events: Vec<StoredEvent> = seen.events[start..]
            .iter()
            .take(max)
            .enumerate()
            .map(|(i, data)| StoredEvent {
                seq: after + 1 + i as u64,
                data: data.clone(),
            })
            .collect();
        let finished = after + events.len() as u64 == last_seq;
        Some(ReadOutcome::Events {
            events,
            last_seq,
            finished,
        })
    }

    /// Drop what is older than [`KEEP`] (finished) or stale (opened long ago and never
    /// finished here: its producer moved on without us knowing).
    fn prune(&self, streams: &mut HashMap<StreamKey, Seen>) {
        {
            let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
            let due = swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
            if !due && streams.len() < MAX_STREAMS {
                return;
            }
            *swept = Some(Instant::now());
        }
        let mut total = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|_, seen| {
            let keep = if seen.finished {
                seen.at.elapsed() < KEEP
            } else {
                seen.at.elapsed() < Duration::from_secs(60)
            };
            if !keep {
                *total -= seen.bytes;
            }
            keep
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Seen>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_mcp_session::event_log::StreamId;

    const LIMITS: (u64, u64) = (100, 1 << 20);

    fn key() -> StreamKey {
        StreamKey::new(SessionId::parse("s1").unwrap(), StreamId::random())
    }

    #[test]
    fn a_stream_seen_whole_is_read_from_here_once() {
        let local = LocalStreams::default();
        let key = key();
        local.opened(&key);
        local.appended(&key, &Bytes::from_static(b"a"), Some(1), false, LIMITS);
        assert!(local.read_after(&key, 0, 10).is_none(), "unfinished: ask Redis");
        local.appended(&key, &Bytes::from_static(b"b"), Some(2), true, LIMITS);
        assert!(local.has_after(&key, 0) && local.has_after(&key, 2));
        assert!(local.read_after(&key, 3, 10).is_none(), "beyond the end: Redis answers");
        let Some(ReadOutcome::Events {
            events,
            last_seq,
            finished,
        }) = local.read_after(&key, 0, 1)
        else {
            panic!("known");
        };
        assert_eq!((events.len(), last_seq, finished), (1, 2, false), "max is honoured");
        let Some(ReadOutcome::Events { events, finished, .. }) = local.read_after(&key, 1, 10) else {
            panic!("known");
        };
        assert_eq!((events[0].seq, finished), (2, true));
        assert!(
            local.read_after(&key, 0, 10).is_none(),
            "read to its end: later reads ask Redis"
        );
        assert_eq!(*local.bytes.lock().unwrap(), 0);
    }

    #[test]
    fn a_gap_a_failure_or_a_stream_not_opened_here_is_not_served() {
        let local = LocalStreams::default();
        let (gap, failed, foreign) = (key(), key(), key());
        local.opened(&gap);
        local.appended(&gap, &Bytes::from_static(b"a"), Some(2), true, LIMITS);
        assert!(local.read_after(&gap, 0, 10).is_none(), "event 1 was someone else's");
        local.opened(&failed);
        local.appended(&failed, &Bytes::from_static(b"a"), None, true, LIMITS);
        assert!(local.read_after(&failed, 0, 10).is_none());
        local.appended(&foreign, &Bytes::from_static(b"a"), Some(1), true, LIMITS);
        assert!(local.read_after(&foreign, 0, 10).is_none());
        let big = key();
        local.opened(&big);
        local.appended(&big, &Bytes::from(vec![0u8; 64]), Some(1), true, (100, 10));
        assert!(local.read_after(&big, 0, 10).is_none(), "over the stream's retention");
        assert_eq!(*local.bytes.lock().unwrap(), 0, "nothing is held for them");
    }
}
