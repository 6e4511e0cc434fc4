//! The reader: tails one stream of the event log from a cursor and turns what it finds
//! into SSE bytes for one client connection.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::{Instant, sleep_until, timeout};

use super::outbox::Outbox;
use super::{Attachment, SseConfig};
use crate::drain::{Drain, Kind, Work};
use serde_json::value::RawValue;

use crate::event_log::{EventLog, ProducerState, ReadOutcome, StreamKey, lease};
use crate::lifecycle::sessions::BusyGuard;
use crate::rejection::producer_lost_answer;
use crate::sse::EventId;
use crate::sse::{encode_comment, encode_priming, encode_retry};

/// A client connection reading one stream.
pub(crate) struct Reader {
    log: Arc<dyn EventLog>,
    key: StreamKey,
    cfg: Arc<SseConfig>,
    attachment: Attachment,
    /// The close request this reader has already seen.
    close_epoch: u64,
    /// The last sequence number sent.
    cursor: u64,
    /// What is left to send: first the priming and `retry`, then the events read,
    /// encoded a frame at a time and sharing the log's payloads.
    outbox: Outbox,
    /// Whether `next_chunk` has run: the first call lets the priming and the first
    /// events leave as one frame.
    started: bool,
    /// Whether this reader has been level with the producer at least once: only then is
    /// falling behind a sign of a stalled client rather than of a replay in progress.
    caught_up: bool,
    /// Whether the outbox already carries a `retry` field (sent once per connection).
    prefix_has_retry: bool,
    /// Whether server-initiated connection closes apply (2025-11-25 and later clients).
    polling: bool,
    claim: Option<u64>,
    poll_deadline: Option<Instant>,
    done: bool,
    /// Whether a drain of this instance ends this connection (see [`Start`]).
    ends_on_drain: bool,
    /// When to look next at the stream's producer lease, while idle (see [`Start`]).
    producer_check: Option<Instant>,
    /// Counts this connection as in flight for a drain.
    work: Work,
    _busy: Arc<BusyGuard>,
    /// Something that must live exactly as long as this connection (see [`Reader::tie`]).
    _tied: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// Where and how a reader starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start {
    /// The last sequence number the client already has.
    pub(crate) cursor: u64,
    /// The close request this reader counts as already handled (a POST stream's first
    /// reader passes 0, so a close requested before it existed applies).
    pub(crate) close_epoch: u64,
    /// Send the priming event (an id with empty data) and `retry` first.
    pub(crate) priming: bool,
    /// Honour close requests and `poll_after`. Only clients of 2025-11-25 and later poll;
    /// closing on older clients before the response would lose it, so for them the
    /// connection stays open.
    pub(crate) polling: bool,
    /// For the standalone stream: this reader's claim in the shared log. Before sending
    /// it checks the claim is still the newest, so a newer `GET` on another instance
    /// takes over; it also records what it delivered there.
    pub(crate) claim: Option<u64>,
    /// End the connection (with a `retry` field) when this instance drains, so the
    /// client resumes on another one. True for `GET` readers and for POST streams of
    /// clients that were primed with an event id; an older client's POST stream without
    /// any id could not be resumed, so it stays until its stream ends.
    pub(crate) ends_on_drain: bool,
    /// For a request's stream: how long after starting the reader first looks at the
    /// producer's lease when it has nothing to send (then every half lease). A lapsed
    /// lease means the instance running the request is gone: the reader ends the
    /// stream with an error answer to the request ([`lease::end_if_abandoned`]). `None`
    /// for the standalone stream, which has no single producer.
    pub(crate) producer_check: Option<std::time::Duration>,
}

impl Reader {
    /// A reader of `key` sending what follows `start.cursor`.
    pub(crate) fn new(
        log: Arc<dyn EventLog>,
        key: StreamKey,
        cfg: Arc<SseConfig>,
        attachment: Attachment,
        start: Start,
        busy: Arc<BusyGuard>,
        drain: &Arc<Drain>,
    ) -> Self {
        let mut outbox = Outbox::new(key.stream());
        if start.priming {
            encode_priming(outbox.small(), EventId::new(key.stream(), start.cursor));
            encode_retry(outbox.small(), millis(cfg.retry));
        }
        let poll_deadline = cfg.poll_after.filter(|_| start.polling).map(|d| Instant::now() + d);
        Self {
            log,
            key,
            cfg,
            attachment,
            close_epoch: start.close_epoch,
            cursor: start.cursor,
            prefix_has_retry: start.priming,
            outbox,
            started: false,
            caught_up: false,
            polling: start.polling,
            claim: start.claim,
            poll_deadline,
            done: false,
            ends_on_drain: start.ends_on_drain,
            producer_check: start.producer_check.map(|d| Instant::now() + d),
            work: drain.track(Kind::Reader),
            _busy: busy,
            _tied: None,
        }
    }

    /// Keep `guard` until this connection ends, whatever ends it (the client, a
    /// take-over by a newer reader, the session's end, a drain).
    pub(crate) fn tie(mut self, guard: impl Send + Sync + 'static) -> Self {
        self._tied = Some(Box::new(guard));
        self
    }

    /// Produce the next chunk of SSE bytes, or `None` when this connection should end.
    pub(crate) async fn next_chunk(mut self) -> (Self, Option<Bytes>) {
        let chunk = self.produce().await;
        (self, chunk)
    }

    /// What [`next_chunk`](Self::next_chunk) would produce without waiting, when that
    /// is known: the rest of a read batch, or the end of a finished stream.
    pub(crate) fn buffered(&mut self) -> Option<Option<Bytes>> {
        if !self.started {
            return None;
        }
        if !self.outbox.is_empty() {
            return Some(self.outbox.next_frame());
        }
        self.done.then_some(None)
    }

    /// How long this connection may hold unwritten frames without progress.
    pub(crate) fn write_timeout(&self) -> std::time::Duration {
        self.cfg.write_timeout
    }

    async fn produce(&mut self) -> Option<Bytes> {
        // What was read is sent before anything more is read: a connection holds at
        // most one read batch, and shares its payloads with the log.
        if std::mem::replace(&mut self.started, true) && !self.outbox.is_empty() {
            return self.outbox.next_frame();
        }
        if self.done {
            return None;
        }
        let has_retry = std::mem::take(&mut self.prefix_has_retry);
        let live = self.attachment.live.clone();
        let drain_state = self.work.drain().clone();
        loop {
            // Arm the wake-ups before looking at the state they report, so no signal is lost.
            let signal = live.signal.notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            let drain = drain_state.begun();
            tokio::pin!(drain);
            drain.as_mut().enable();

            if self.attachment.taken_over() {
                return self.end();
            }
            let poll_due = self.poll_deadline.is_some_and(|d| Instant::now() >= d);
            let drained = self.ends_on_drain && drain_state.is_draining();
            if drained || (self.polling && (live.close_epoch() != self.close_epoch || poll_due)) {
                // Close the connection, not the stream: tell the client when to come back.
                if !has_retry {
                    encode_retry(self.outbox.small(), millis(self.cfg.retry));
                }
                return self.end();
            }
            let read = timeout(
                self.cfg.log_timeout,
                self.log.read_after(&self.key, self.cursor, self.cfg.read_batch),
            )
            .await;
            let (events, last_seq, finished) = match read {
                Ok(Ok(ReadOutcome::Events {
                    events,
                    last_seq,
                    finished,
                })) => (events, last_seq, finished),
                // The stream is gone, our cursor fell out of retention, or the log failed:
                // end this connection; a resume gets the precise answer.
                _ => return self.end(),
            };
            if let Some(last) = events.last() {
                if self.caught_up && last_seq.saturating_sub(self.cursor) > self.cfg.max_reader_lag {
                    return self.end();
                }
                let last = last.seq;
                if let Some(claim) = self.claim {
                    // Another instance's newer GET owns the stream now: send nothing.
                    let current = timeout(self.cfg.log_timeout, self.log.current_reader(&self.key)).await;
                    if !matches!(current, Ok(Ok(c)) if c == claim) {
                        return self.end();
                    }
                    let _ = timeout(self.cfg.log_timeout, self.log.mark_delivered(&self.key, last)).await;
                }
                for event in events {
                    self.outbox.push_event(event);
                }
                self.cursor = last;
                live.mark_delivered(last);
                if finished && self.cursor >= last_seq {
                    self.done = true;
                }
                return self.outbox.next_frame();
            }
            if finished {
                return self.end();
            }
            self.caught_up = true;
            if !self.outbox.is_empty() {
                return self.outbox.next_frame();
            }
            let keep_alive = self.cfg.keep_alive.map(|d| Instant::now() + d);
            let far = Instant::now() + std::time::Duration::from_secs(86_400);
            let mut check_producer = false;
            tokio::select! {
                _ = self.log.wait_after(&self.key, self.cursor) => {}
                _ = &mut signal => {}
                _ = &mut drain => {}
                _ = sleep_until(keep_alive.unwrap_or(far)) => {
                    encode_comment(self.outbox.small(), "");
                    return self.outbox.next_frame();
                }
                _ = sleep_until(self.poll_deadline.unwrap_or(far)) => {}
                _ = sleep_until(self.producer_check.unwrap_or(far)) => check_producer = true,
            }
            if check_producer {
                self.check_producer().await;
            }
        }
    }

    /// Look at the producer's lease; if it lapsed, end the stream with the error answer
    /// to its request (the next read finds it). A stream without a lease never gains
    /// one, so the reader stops looking.
    async fn check_producer(&mut self) {
        let state = lease::end_if_abandoned(&*self.log, &self.key, self.cfg.log_timeout, |note| {
            let id = serde_json::from_slice::<&RawValue>(note).ok();
            producer_lost_answer(id)
        })
        .await;
        self.producer_check = match state {
            ProducerState::Unleased => None,
            _ => Some(Instant::now() + self.cfg.producer_lease / 2),
        };
    }

    fn end(&mut self) -> Option<Bytes> {
        self.done = true;
        self.outbox.next_frame()
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
