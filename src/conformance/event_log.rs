//! The checks behind [`event_log`] and [`event_log_with`]: opening, numbering, reads and
//! cursors, finishing, retention and keys; the runner; helpers shared with
//! [`event_log_readers`](super::event_log_readers).

use std::collections::HashSet;
use std::fmt::{Debug, Display};
use std::sync::Arc;

use bytes::Bytes;

use super::event_log_readers;
use super::fresh_id;
use crate::event_log::{EventLog, EventLogError, ReadOutcome, StoredEvent, StreamId, StreamKey};

// The same two macros as the store suite's, shadowed here so that a failure names the
// trait whose promise broke.
macro_rules! ensure {
    ($cond:expr, $promise:expr, $($detail:tt)+) => {
        if !$cond {
            $crate::conformance::event_log::broken($promise, format_args!($($detail)+))
        }
    };
}

macro_rules! broken {
    ($promise:expr, $($detail:tt)+) => {
        $crate::conformance::event_log::broken($promise, format_args!($($detail)+))
    };
}

/// The per-stream retention bounds the suite asks of each fresh log.
///
/// The factory given to [`event_log`] is called with one of these per group of checks
/// and must make a log that honours them: a stream keeps at most
/// `max_events_per_stream` events and at most `max_bytes_per_stream` payload bytes,
/// and to stay within them drops its oldest events and only those (the newest event is
/// kept even when it alone is larger than the byte bound). Every other bound of the log
/// must leave the suite room: at least 16 streams per session, at least 1 MiB per
/// session, and time bounds (idle streams, finished streams, TTLs) of a minute or more.
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
}

/// Bounds that no check other than the retention ones comes near.
const ROOMY: LogLimits = LogLimits {
    max_events_per_stream: 1000,
    max_bytes_per_stream: 1 << 20,
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
        async { numbering_and_reads(make(ROOMY).await).await },
        async { finishing(make(ROOMY).await).await },
        async { unknown_streams(make(ROOMY).await).await },
        async { concurrent_appends(make(ROOMY).await).await },
        async {
            count_retention(
                make(LogLimits {
                    max_events_per_stream: 4,
                    ..ROOMY
                })
                .await,
            )
            .await
        },
        async {
            byte_retention(
                make(LogLimits {
                    max_bytes_per_stream: 100,
                    ..ROOMY
                })
                .await,
            )
            .await
        },
        async { keys(make(ROOMY).await).await },
        async { event_log_readers::waits(make(ROOMY).await).await },
        async { event_log_readers::claims(make(ROOMY).await).await },
        async { event_log_readers::delivery(make(ROOMY).await).await },
        async { event_log_readers::remove_session(make(ROOMY).await).await },
        async { event_log_readers::purge(make(ROOMY).await).await },
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
        other => broken!(promise, "{what} answered {other:?}"),
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
    let (got, last_seq, finished) = events(read(log, key, after, max).await, promise, &what);
    let end = last.min(after + max as u64);
    let want: Vec<u64> = (after + 1..=end).collect();
    ensure!(seqs(&got) == want, promise, "{what} gave events {:?}", seqs(&got));
    ensure!(last_seq == last, promise, "{what} gave last_seq {last_seq}");
    let reaches_end = fin && end == last;
    ensure!(finished == reaches_end, promise, "{what} gave finished {finished}");
    for event in &got {
        ensure!(
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
    ensure!(
        got == want,
        promise,
        "read_after({after}) answered {got:?}, not {want:?}"
    );
}

/// `read_after` says the stream is unknown.
pub(super) async fn expect_unknown(log: &Log, key: &StreamKey, promise: &str) {
    let got = read(log, key, 0, 100).await;
    ensure!(
        got == ReadOutcome::UnknownStream,
        promise,
        "read_after(0) of {key:?} answered {got:?}"
    );
}

const BEYOND: &str = "a cursor beyond the newest event the stream has had reads as Evicted, \
                      never as an empty batch";

/// Open is idempotent; numbering from 1; what each cursor and `max` read.
async fn numbering_and_reads(h: LogHandles) {
    let key = new_key("reads");
    open(&h.a, &key).await;
    open(&h.b, &key).await;
    expect_batch(&h.a, &key, 0, 10, 0, false).await;
    expect_evicted(&h.b, &key, 1, 1, 0, BEYOND).await;

    let numbering = "append returns the event's sequence number: 1, 2, 3… in the order of the appends";
    for n in 1..=10 {
        let seq = append(h.by(n as usize), &key, payload(n)).await;
        ensure!(seq == n, numbering, "append number {n} returned {seq}");
        if n == 3 {
            open(&h.b, &key).await;
            expect_batch(&h.a, &key, 0, 10, 3, false).await;
        }
    }
    for (after, max) in [(0, 100), (0, 3), (3, 100), (8, 1), (8, 2), (9, 5), (10, 5), (4, 0)] {
        expect_batch(h.by(after as usize), &key, after, max, 10, false).await;
    }
    expect_evicted(&h.a, &key, 11, 1, 10, BEYOND).await;
    expect_evicted(&h.b, &key, u64::MAX, 1, 10, BEYOND).await;

    // Opening an existing stream does nothing: the events stay, the numbering goes on.
    let noop = "opening an existing stream is a no-op";
    open(&h.a, &key).await;
    let (got, last, _) = events(read(&h.b, &key, 0, 100).await, noop, "a read after a second open");
    ensure!(
        got.len() == 10 && last == 10,
        noop,
        "read {:?}, last_seq {last}",
        seqs(&got)
    );
    let seq = append(&h.b, &key, payload(11)).await;
    ensure!(seq == 11, noop, "the append after a second open returned {seq}");

    // An event far larger than the others, and an empty one, come back whole.
    let exact = "an event is read back exactly as appended";
    let big = Bytes::from(vec![b'x'; 64 << 10]);
    let seq = append(&h.a, &key, big.clone()).await;
    let seq_empty = append(&h.b, &key, Bytes::new()).await;
    let (got, _, _) = events(read(&h.b, &key, 11, 10).await, exact, "read_after(11)");
    ensure!(
        seqs(&got) == [seq, seq_empty] && got[0].data == big && got[1].data.is_empty(),
        exact,
        "events {:?} of lengths {:?}",
        seqs(&got),
        got.iter().map(|e| e.data.len()).collect::<Vec<_>>()
    );
}

/// `finish` and `append_last` end a stream: reads say so at the end, appends fail.
async fn finishing(h: LogHandles) {
    let key = new_key("finish");
    open(&h.a, &key).await;
    for n in 1..=3 {
        append(h.by(n as usize), &key, payload(n)).await;
    }
    done("finish", h.b.finish(&key).await);
    for (after, max) in [(0, 100), (0, 2), (2, 1), (3, 10)] {
        expect_batch(&h.a, &key, after, max, 3, true).await;
    }
    expect_evicted(&h.a, &key, 4, 1, 3, BEYOND).await;
    let refused = "append to a finished stream fails with Finished and writes nothing";
    expect_finished(&h.a, &key, refused).await;
    open(&h.b, &key).await;
    expect_finished(
        &h.b,
        &key,
        "opening an existing stream is a no-op: a finished one stays finished",
    )
    .await;
    expect_batch(&h.b, &key, 0, 100, 3, true).await;

    let last = "append_last stores the event and finishes the stream in one step";
    let key = new_key("finish");
    open(&h.b, &key).await;
    append(&h.b, &key, payload(1)).await;
    append(&h.a, &key, payload(2)).await;
    let seq = done("append_last", h.b.append_last(&key, payload(3)).await);
    ensure!(seq == 3, last, "append_last after two appends returned {seq}");
    expect_batch(&h.a, &key, 0, 100, 3, true).await;
    expect_batch(&h.a, &key, 2, 100, 3, true).await;
    expect_finished(&h.a, &key, last).await;

    let key = new_key("finish");
    open(&h.a, &key).await;
    let seq = done("append_last", h.a.append_last(&key, payload(1)).await);
    ensure!(seq == 1, last, "append_last on an empty stream returned {seq}");
    expect_batch(&h.b, &key, 0, 100, 1, true).await;
    expect_finished(&h.b, &key, last).await;
}

/// Both append and append_last answer `Finished`, and the stream still reads the same.
async fn expect_finished(log: &Log, key: &StreamKey, promise: &str) {
    let before = read(log, key, 0, 1000).await;
    let got = log.append(key, payload(0)).await;
    ensure!(
        matches!(got, Err(EventLogError::Finished)),
        promise,
        "append answered {got:?}"
    );
    let got = log.append_last(key, payload(0)).await;
    ensure!(
        matches!(got, Err(EventLogError::Finished)),
        promise,
        "append_last answered {got:?}"
    );
    let after = read(log, key, 0, 1000).await;
    ensure!(after == before, promise, "the stream read {before:?}, then {after:?}");
}

/// Streams never opened: writes fail with `UnknownStream` and create nothing.
async fn unknown_streams(h: LogHandles) {
    let key = new_key("unknown");
    let promise = "a stream that was never opened is unknown: reads say UnknownStream, writes fail with \
                   UnknownStream and create nothing";
    expect_unknown(&h.a, &key, promise).await;
    let got = h.a.append(&key, payload(1)).await;
    ensure!(
        matches!(got, Err(EventLogError::UnknownStream)),
        promise,
        "append answered {got:?}"
    );
    let got = h.b.append_last(&key, payload(1)).await;
    ensure!(
        matches!(got, Err(EventLogError::UnknownStream)),
        promise,
        "append_last answered {got:?}"
    );
    let got = h.a.finish(&key).await;
    ensure!(
        matches!(got, Err(EventLogError::UnknownStream)),
        promise,
        "finish answered {got:?}"
    );
    expect_unknown(&h.b, &key, promise).await;
    let got = read(&h.a, &key, 5, 1).await;
    ensure!(
        got == ReadOutcome::UnknownStream,
        promise,
        "read_after(5) answered {got:?}"
    );

    // Opening another stream of the session leaves this one unknown.
    let sibling = StreamKey::new(key.session().clone(), StreamId::random());
    open(&h.a, &sibling).await;
    expect_unknown(&h.b, &key, promise).await;
    // Now opened: an empty stream that numbers from 1, whatever was tried before.
    open(&h.b, &key).await;
    expect_batch(&h.a, &key, 0, 10, 0, false).await;
    let seq = append(&h.a, &key, payload(1)).await;
    ensure!(
        seq == 1,
        "open creates an empty stream: its first event is number 1",
        "first append returned {seq}"
    );
}

/// Concurrent producers on both handles get distinct, gap-free numbers, each its own in
/// increasing order, and the stream holds every event under the number it was given.
async fn concurrent_appends(h: LogHandles) {
    const PRODUCERS: usize = 8;
    const EACH: u64 = 25;
    let key = new_key("concurrent");
    open(&h.a, &key).await;
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|i| {
            let (log, key) = (Arc::clone(h.by(i)), key.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for n in 0..EACH {
                    let data = Bytes::from(format!("{{\"producer\":{i},\"n\":{n}}}"));
                    let seq = append(&log, &key, data.clone()).await;
                    mine.push((seq, data));
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let mine = match task.await {
            Ok(mine) => mine,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("EventLog conformance: a concurrent append did not finish: {e}"),
            },
        };
        let ordered = "one producer's successive appends get increasing sequence numbers";
        ensure!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            ordered,
            "producer {i} got {:?}",
            mine.iter().map(|(s, _)| *s).collect::<Vec<_>>()
        );
        all.extend(mine);
    }
    let total = PRODUCERS as u64 * EACH;
    let numbers: HashSet<u64> = all.iter().map(|(s, _)| *s).collect();
    let want: HashSet<u64> = (1..=total).collect();
    ensure!(
        numbers.len() == all.len() && numbers == want,
        "concurrent producers of one stream get distinct sequence numbers, 1 to n without gaps (across instances)",
        "{} appends got {} distinct numbers, missing {:?}",
        all.len(),
        numbers.len(),
        want.difference(&numbers).collect::<Vec<_>>()
    );
    all.sort_by_key(|(s, _)| *s);
    let stored = "the event read under a sequence number is the one whose append returned that number";
    let (got, last, _) = events(read(&h.b, &key, 0, 1000).await, stored, "read_after(0)");
    ensure!(last == total, stored, "last_seq {last} after {total} appends");
    ensure!(got.len() == all.len(), stored, "read {} of {total} events", got.len());
    for (event, (seq, data)) in got.iter().zip(&all) {
        ensure!(
            event.seq == *seq && event.data == data,
            stored,
            "event {} read {:?}, appended as {seq} {data:?}",
            event.seq,
            event.data
        );
    }
}

const RETAINED: &str = "a cursor whose next event retention dropped reads as Evicted with the oldest event \
                        held and the newest the stream has had, never as a batch that skips events";
const RESUMES: &str = "a read from just before the oldest retained event returns the retained events";

/// The count bound (4 events here) drops the oldest events; reads report what is left.
async fn count_retention(h: LogHandles) {
    let key = new_key("count");
    open(&h.a, &key).await;
    for n in 1..=4 {
        append(h.by(n as usize), &key, payload(n)).await;
    }
    expect_batch(&h.b, &key, 0, 100, 4, false).await;
    for n in 5..=10 {
        append(h.by(n as usize), &key, payload(n)).await;
    }
    let bound = "a stream keeps its newest max_events_per_stream events, dropping only older ones";
    match read(&h.a, &key, 0, 100).await {
        ReadOutcome::Evicted {
            first_retained: 7,
            last_seq: 10,
        } => {}
        other => broken!(
            bound,
            "with a bound of 4, after 10 appends read_after(0) answered {other:?}"
        ),
    }
    for after in [1, 5] {
        expect_evicted(h.by(after as usize), &key, after, 7, 10, RETAINED).await;
    }
    for (after, max) in [(6, 100), (6, 2), (8, 100), (10, 1)] {
        expect_batch(h.by(after as usize), &key, after, max, 10, false).await;
    }
    expect_evicted(&h.a, &key, 11, 7, 10, BEYOND).await;

    let seq = done("append_last", h.b.append_last(&key, payload(11)).await);
    ensure!(
        seq == 11,
        "append returns the next sequence number after retention dropped events",
        "{seq}"
    );
    expect_evicted(&h.a, &key, 6, 8, 11, RETAINED).await;
    expect_batch(&h.a, &key, 7, 100, 11, true).await;
    expect_batch(&h.b, &key, 9, 1, 11, true).await;
}

/// The byte bound (100 payload bytes here) drops the oldest events; a single event over
/// the bound is kept while it is the newest.
async fn byte_retention(h: LogHandles) {
    let key = new_key("bytes");
    let sized = |n: u64, len: usize| {
        let mut data = payload(n).to_vec();
        data.resize(len, b' ');
        Bytes::from(data)
    };
    open(&h.a, &key).await;
    // Events of 30 bytes: three fit in 100, a fourth pushes the first out.
    for n in 1..=3 {
        append(h.by(n as usize), &key, sized(n, 30)).await;
    }
    let bound = "a stream keeps its newest events that fit in max_bytes_per_stream, dropping only older ones";
    let (got, _, _) = events(read(&h.b, &key, 0, 100).await, bound, "3 events of 30 bytes, bound 100");
    ensure!(
        seqs(&got) == [1, 2, 3],
        bound,
        "3 events of 30 bytes, bound 100: read {:?}",
        seqs(&got)
    );
    append(&h.a, &key, sized(4, 30)).await;
    expect_evicted(&h.b, &key, 0, 2, 4, RETAINED).await;
    let (got, last, _) = events(read(&h.a, &key, 1, 100).await, RESUMES, "read_after(1)");
    ensure!(
        seqs(&got) == [2, 3, 4] && last == 4,
        RESUMES,
        "read_after(1) gave {:?}",
        seqs(&got)
    );
    ensure!(got[2].data == sized(4, 30), RESUMES, "event 4 read {:?}", got[2].data);

    let huge = "the newest event is kept even when it alone is larger than max_bytes_per_stream";
    append(&h.b, &key, sized(5, 250)).await;
    let got = read(&h.a, &key, 4, 100).await;
    let kept = matches!(&got, ReadOutcome::Events { events, last_seq: 5, .. }
        if events.len() == 1 && events[0].data.len() == 250);
    ensure!(
        kept,
        huge,
        "after a 250-byte event under a bound of 100, read_after(4) answered {got:?}"
    );
    expect_evicted(&h.b, &key, 3, 5, 5, RETAINED).await;

    append(&h.a, &key, sized(6, 10)).await;
    expect_evicted(&h.b, &key, 4, 6, 6, bound).await;
    let (got, _, _) = events(read(&h.a, &key, 5, 100).await, RESUMES, "read_after(5)");
    ensure!(seqs(&got) == [6], RESUMES, "read_after(5) gave {:?}", seqs(&got));
}

/// Keys are (session, stream): one stream id in two sessions is two streams.
async fn keys(h: LogHandles) {
    let promise = "streams are keyed by (session, stream): the same stream id in another session is another stream";
    let first = new_key("keys");
    let second = StreamKey::new(fresh_id("keys"), first.stream());
    open(&h.a, &first).await;
    expect_unknown(&h.b, &second, promise).await;
    let got = h.b.append(&second, payload(1)).await;
    ensure!(
        matches!(got, Err(EventLogError::UnknownStream)),
        promise,
        "append through the other session answered {got:?}"
    );
    open(&h.b, &second).await;
    for n in 1..=3 {
        append(h.by(n as usize), &first, payload(n)).await;
    }
    let seq = append(&h.b, &second, payload(1)).await;
    ensure!(seq == 1, promise, "the other session's first append returned {seq}");
    done("finish", h.a.finish(&first).await);
    expect_batch(&h.a, &second, 0, 100, 1, false).await;
    expect_batch(&h.b, &first, 0, 100, 3, true).await;
    let seq = append(&h.a, &second, payload(2)).await;
    ensure!(
        seq == 2,
        promise,
        "finishing one session's stream finished the other's: {seq}"
    );

    // Another stream of the same session is another stream too.
    let sibling = StreamKey::new(first.session().clone(), StreamId::random());
    open(&h.b, &sibling).await;
    expect_batch(&h.a, &sibling, 0, 100, 0, false).await;
    let seq = append(&h.a, &sibling, payload(1)).await;
    ensure!(
        seq == 1,
        "every stream numbers its events from 1",
        "a second stream's first append returned {seq}"
    );
}
