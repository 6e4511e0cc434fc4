//! The entry points [`event_log`] and [`event_log_with`], the runner that starts every
//! group of checks at once, each on a log of its own, and the helpers the checks share
//! (in [`event_log_streams`](super::event_log_streams),
//! [`event_log_readers`](super::event_log_readers) and
//! [`event_log_leases`](super::event_log_leases)).

use std::fmt::{Debug, Display};
use std::sync::Arc;

use bytes::Bytes;

use super::fresh_id;
use super::{
    event_log_leases as leases, event_log_readers as readers, event_log_sessions as sessions,
    event_log_streams as streams,
};
use crate::event_log::{EventLog, EventLogError, ReadOutcome, StoredEvent, StreamId, StreamKey};

/// The per-stream retention bounds the suite asks of each fresh log.
///
/// The factory given to [`event_log`] is called with one of these per group of checks
/// and must make a log that honours them: a stream keeps at most
/// `max_events_per_stream` events and at most `max_bytes_per_stream` payload bytes,
/// and to stay within them drops its oldest events and only those (the newest event is
/// kept even when it alone is larger than the byte bound). All streams of one session
/// hold at most `max_bytes_per_session` payload bytes together (past it, the oldest
/// events go from finished streams first, longest finished first, then from the stream
/// appended to, then from the session's other unfinished streams, largest first; an
/// unfinished stream keeps its newest event), and a session holds at most
/// `max_streams_per_session` streams (opening one more drops the longest-finished one,
/// or fails with `TooManyStreams`). Every other bound of the log must leave the suite
/// room: time bounds (idle streams, finished streams, TTLs) of a minute or more, and a
/// whole-log budget of at least 64 MiB.
///
/// The suite makes these values itself (small ones for the retention checks, roomy ones
/// elsewhere); a factory only reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogLimits {
    /// The most events one stream holds.
    pub max_events_per_stream: usize,
    /// The most payload bytes one stream holds (bar a single newest event larger than this).
    pub max_bytes_per_stream: usize,
    /// The most payload bytes all streams of one session hold together.
    pub max_bytes_per_session: usize,
    /// The most streams one session holds.
    pub max_streams_per_session: usize,
}

/// Bounds that no check other than the retention ones comes near.
pub(super) const ROOMY: LogLimits = LogLimits {
    max_events_per_stream: 1000,
    max_bytes_per_stream: 1 << 20,
    max_bytes_per_session: 16 << 20,
    max_streams_per_session: 64,
};

/// Run every check of the [`EventLog`] contract, each group on a fresh log from
/// `fresh`; the two handles of the cross-instance checks are the same log value.
///
/// `fresh(limits)` must make an empty log that shares nothing with the ones it made
/// before and honours `limits` (see [`LogLimits`]). Panics on the first broken promise
/// (see the [module documentation](super)).
///
/// ```no_run
/// use tower_mcp_session::event_log::MemoryEventLog;
///
/// # async fn run() {
/// tower_mcp_session::conformance::event_log(|limits| async move {
///     MemoryEventLog::builder()
///         .max_events_per_stream(limits.max_events_per_stream)
///         .max_bytes_per_stream(limits.max_bytes_per_stream)
///         .max_bytes_per_session(limits.max_bytes_per_session)
///         .max_streams_per_session(limits.max_streams_per_session)
///         .build()
/// })
/// .await;
/// # }
/// ```
pub async fn event_log<L, F, Fut>(fresh: F)
where
    L: EventLog,
    F: Fn(LogLimits) -> Fut,
    Fut: Future<Output = L>,
{
    run(|limits| {
        let made = fresh(limits);
        async move {
            let log: Log = Arc::new(made.await);
            LogHandles {
                a: Arc::clone(&log),
                b: log,
            }
        }
    })
    .await;
}

/// Run every check of the [`EventLog`] contract, each group on a fresh log from
/// `fresh`, with the cross-instance checks split over that log and a second handle onto
/// the same data made by `second_handle`.
///
/// `fresh(limits)` must make an empty log that shares nothing with the ones it made
/// before and honours `limits` (see [`LogLimits`]); `second_handle(&log, limits)` must
/// make another log value that sees the same data as `log`, with the same bounds (for a
/// networked backend: over its own connection, as a second server instance would). The
/// future it returns may not borrow `log`.
///
/// ```no_run
/// use tower_mcp_session::conformance::LogLimits;
/// use tower_mcp_session::event_log::MemoryEventLog;
///
/// # async fn run() {
/// // A clone of a `MemoryEventLog` is the same log; a networked one would connect anew.
/// tower_mcp_session::conformance::event_log_with(
///     |limits: LogLimits| async move {
///         MemoryEventLog::builder()
///             .max_events_per_stream(limits.max_events_per_stream)
///             .max_bytes_per_stream(limits.max_bytes_per_stream)
///             .max_bytes_per_session(limits.max_bytes_per_session)
///             .max_streams_per_session(limits.max_streams_per_session)
///             .build()
///     },
///     |log: &MemoryEventLog, _limits| {
///         let same = log.clone();
///         async move { same }
///     },
/// )
/// .await;
/// # }
/// ```
pub async fn event_log_with<L, F, Fut, H, HFut>(fresh: F, second_handle: H)
where
    L: EventLog,
    F: Fn(LogLimits) -> Fut,
    Fut: Future<Output = L>,
    H: Fn(&L, LogLimits) -> HFut,
    HFut: Future<Output = L>,
{
    let second_handle = &second_handle;
    run(|limits| {
        let made = fresh(limits);
        async move {
            let first = made.await;
            let second = second_handle(&first, limits).await;
            LogHandles {
                a: Arc::new(first),
                b: Arc::new(second),
            }
        }
    })
    .await;
}

/// Log handles as the checks pass them around.
pub(super) type Log = Arc<dyn EventLog>;

/// Two handles onto one log (possibly the same value twice).
#[derive(Clone)]
pub(super) struct LogHandles {
    pub(super) a: Log,
    pub(super) b: Log,
}

impl LogHandles {
    /// Alternates between the handles, so callers are spread over both.
    pub(super) fn by(&self, i: usize) -> &Log {
        if i.is_multiple_of(2) { &self.a } else { &self.b }
    }
}

async fn run<M, MF>(make: M)
where
    M: Fn(LogLimits) -> MF,
    MF: Future<Output = LogHandles>,
{
    tokio::join!(
        async { streams::numbering_and_reads(make(ROOMY).await).await },
        async { streams::finishing(make(ROOMY).await).await },
        async { streams::unknown_streams(make(ROOMY).await).await },
        async { streams::concurrent_appends(make(ROOMY).await).await },
        async { streams::count_retention(make(streams::FOUR_EVENTS).await).await },
        async { streams::byte_retention(make(streams::HUNDRED_BYTES).await).await },
        async { streams::keys(make(ROOMY).await).await },
        async { readers::waits(make(ROOMY).await).await },
        async { readers::claims(make(ROOMY).await).await },
        async { readers::delivery(make(ROOMY).await).await },
        async { readers::remove_session(make(ROOMY).await).await },
        async { readers::purge(make(ROOMY).await).await },
        async { sessions::session_bytes(make(sessions::SESSION_300_BYTES).await).await },
        async { sessions::session_streams(make(sessions::TWO_STREAMS).await).await },
        async { leases::renewed(make(ROOMY).await).await },
        async { leases::lapsed(make(ROOMY).await).await },
        async { leases::never_abandoned(make(ROOMY).await).await },
    );
}

#[track_caller]
pub(super) fn broken(promise: &str, detail: impl Display) -> ! {
    panic!("EventLog conformance: broken promise: {promise}\n  seen: {detail}")
}

/// The value of a log step that must succeed.
#[track_caller]
pub(super) fn done<T>(step: &str, result: Result<T, EventLogError>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => failed(step, e),
    }
}

#[track_caller]
fn failed(step: &str, error: impl Display + Debug) -> ! {
    panic!("EventLog conformance: log call `{step}` failed: {error} ({error:?})")
}

/// A stream in a session of its own, with `tag` naming the check (for messages).
pub(super) fn new_key(tag: &str) -> StreamKey {
    StreamKey::new(fresh_id(tag), StreamId::random())
}

/// The payload of the `n`th event a check writes: distinct per event, with bytes a
/// careless encoding would mangle (quotes, a newline escape, non-ASCII).
pub(super) fn payload(n: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","method":"n/{n}","params":{{"s":"é\"\\n {n}"}}}}"#
    ))
}

pub(super) async fn open(log: &Log, key: &StreamKey) {
    done("open", log.open(key).await);
}

pub(super) async fn append(log: &Log, key: &StreamKey, data: Bytes) -> u64 {
    done("append", log.append(key, data).await)
}

pub(super) async fn read(log: &Log, key: &StreamKey, after: u64, max: usize) -> ReadOutcome {
    done("read_after", log.read_after(key, after, max).await)
}

/// A read's `Events`, or a broken `promise`.
#[track_caller]
pub(super) fn events(outcome: ReadOutcome, promise: &str, what: impl Display) -> (Vec<StoredEvent>, u64, bool) {
    match outcome {
        ReadOutcome::Events {
            events,
            last_seq,
            finished,
        } => (events, last_seq, finished),
        other => log_broken!(promise, "{what} answered {other:?}"),
    }
}

/// The sequence numbers of `events`.
pub(super) fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// `read_after(key, after, max)` on a stream holding events `first..=last` (written with
/// [`payload`]) answers exactly the held ones after the cursor, at most `max`, with the
/// stream's `last_seq` and `finished` only when the batch reaches the end.
pub(super) async fn expect_batch(log: &Log, key: &StreamKey, after: u64, max: usize, last: u64, fin: bool) {
    let promise = "read_after returns the events after the cursor, consecutive from cursor + 1, at most `max`, \
                   with the newest sequence number and whether the batch reaches the end of a finished stream";
    let what = format_args!("read_after({after}, max {max}) of a stream of {last} events (finished: {fin})");
    let (got, last_seq, finished) = events(read(log, key, after, max).await, promise, what);
    let end = last.min(after + max as u64);
    let want: Vec<u64> = (after + 1..=end).collect();
    log_ensure!(seqs(&got) == want, promise, "{what} gave events {:?}", seqs(&got));
    log_ensure!(last_seq == last, promise, "{what} gave last_seq {last_seq}");
    let reaches_end = fin && end == last;
    log_ensure!(finished == reaches_end, promise, "{what} gave finished {finished}");
    for event in &got {
        log_ensure!(
            event.data == payload(event.seq),
            "an event is read back exactly as appended",
            "event {} read {:?}",
            event.seq,
            event.data
        );
    }
}

/// `read_after(key, after, _)` answers `Evicted` with these bounds.
pub(super) async fn expect_evicted(log: &Log, key: &StreamKey, after: u64, first: u64, last: u64, promise: &str) {
    let got = read(log, key, after, 100).await;
    let want = ReadOutcome::Evicted {
        first_retained: first,
        last_seq: last,
    };
    log_ensure!(
        got == want,
        promise,
        "read_after({after}) answered {got:?}, not {want:?}"
    );
}

/// `read_after` says the stream is unknown.
pub(super) async fn expect_unknown(log: &Log, key: &StreamKey, promise: &str) {
    let got = read(log, key, 0, 100).await;
    log_ensure!(
        got == ReadOutcome::UnknownStream,
        promise,
        "read_after(0) of {key:?} answered {got:?}"
    );
}
