//! The checks behind [`event_log`](super::event_log) about streams and their events:
//! opening, numbering (also under concurrency), reads and cursors, finishing, retention
//! and keys.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::event_log::{
    Log, LogHandles, LogLimits, ROOMY, append, done, events, expect_batch, expect_evicted, expect_unknown, new_key,
    open, payload, read, seqs,
};
use super::fresh_id;
use crate::event_log::{EventLogError, ReadOutcome, StreamId, StreamKey};

const BEYOND: &str = "a cursor beyond the newest event the stream has had reads as Evicted, \
                      never as an empty batch";

/// Open is idempotent; numbering from 1; what each cursor and `max` read.
pub(super) async fn numbering_and_reads(h: LogHandles) {
    let key = new_key("reads");
    open(&h.a, &key).await;
    open(&h.b, &key).await;
    expect_batch(&h.a, &key, 0, 10, 0, false).await;
    expect_evicted(&h.b, &key, 1, 1, 0, BEYOND).await;

    let numbering = "append returns the event's sequence number: 1, 2, 3… in the order of the appends";
    for n in 1..=10 {
        let seq = append(h.by(n as usize), &key, payload(n)).await;
        log_ensure!(seq == n, numbering, "append number {n} returned {seq}");
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
    log_ensure!(
        got.len() == 10 && last == 10,
        noop,
        "read {:?}, last_seq {last}",
        seqs(&got)
    );
    let seq = append(&h.b, &key, payload(11)).await;
    log_ensure!(seq == 11, noop, "the append after a second open returned {seq}");

    // An event far larger than the others, and an empty one, come back whole.
    let exact = "an event is read back exactly as appended";
    let big = Bytes::from(vec![b'x'; 64 << 10]);
    let seq = append(&h.a, &key, big.clone()).await;
    let seq_empty = append(&h.b, &key, Bytes::new()).await;
    let (got, _, _) = events(read(&h.b, &key, 11, 10).await, exact, "read_after(11)");
    log_ensure!(
        seqs(&got) == [seq, seq_empty] && got[0].data == big && got[1].data.is_empty(),
        exact,
        "events {:?} of lengths {:?}",
        seqs(&got),
        got.iter().map(|e| e.data.len()).collect::<Vec<_>>()
    );
}

/// `finish` and `append_last` end a stream: reads say so at the end, appends fail.
pub(super) async fn finishing(h: LogHandles) {
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
    log_ensure!(seq == 3, last, "append_last after two appends returned {seq}");
    expect_batch(&h.a, &key, 0, 100, 3, true).await;
    expect_batch(&h.a, &key, 2, 100, 3, true).await;
    expect_finished(&h.a, &key, last).await;

    let key = new_key("finish");
    open(&h.a, &key).await;
    let seq = done("append_last", h.a.append_last(&key, payload(1)).await);
    log_ensure!(seq == 1, last, "append_last on an empty stream returned {seq}");
    expect_batch(&h.b, &key, 0, 100, 1, true).await;
    expect_finished(&h.b, &key, last).await;
}

/// Both append and append_last answer `Finished`, and the stream still reads the same.
async fn expect_finished(log: &Log, key: &StreamKey, promise: &str) {
    let before = read(log, key, 0, 1000).await;
    let got = log.append(key, payload(0)).await;
    log_ensure!(
        matches!(got, Err(EventLogError::Finished)),
        promise,
        "append answered {got:?}"
    );
    let got = log.append_last(key, payload(0)).await;
    log_ensure!(
        matches!(got, Err(EventLogError::Finished)),
        promise,
        "append_last answered {got:?}"
    );
    let after = read(log, key, 0, 1000).await;
    log_ensure!(after == before, promise, "the stream read {before:?}, then {after:?}");
}

/// Streams never opened: writes fail with `UnknownStream` and create nothing.
pub(super) async fn unknown_streams(h: LogHandles) {
    let key = new_key("unknown");
    let promise = "a stream that was never opened is unknown: reads say UnknownStream, writes fail with \
                   UnknownStream and create nothing";
    expect_unknown(&h.a, &key, promise).await;
    let got = h.a.append(&key, payload(1)).await;
    log_ensure!(
        matches!(got, Err(EventLogError::UnknownStream)),
        promise,
        "append answered {got:?}"
    );
    let got = h.b.append_last(&key, payload(1)).await;
    log_ensure!(
        matches!(got, Err(EventLogError::UnknownStream)),
        promise,
        "append_last answered {got:?}"
    );
    let got = h.a.finish(&key).await;
    log_ensure!(
        matches!(got, Err(EventLogError::UnknownStream)),
        promise,
        "finish answered {got:?}"
    );
    expect_unknown(&h.b, &key, promise).await;
    let got = read(&h.a, &key, 5, 1).await;
    log_ensure!(
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
    log_ensure!(
        seq == 1,
        "open creates an empty stream: its first event is number 1",
        "first append returned {seq}"
    );
}

/// Concurrent producers on both handles get distinct, gap-free numbers, each its own in
/// increasing order, and the stream holds every event under the number it was given.
pub(super) async fn concurrent_appends(h: LogHandles) {
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
        log_ensure!(
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
    log_ensure!(
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
    log_ensure!(last == total, stored, "last_seq {last} after {total} appends");
    log_ensure!(got.len() == all.len(), stored, "read {} of {total} events", got.len());
    for (event, (seq, data)) in got.iter().zip(&all) {
        log_ensure!(
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

/// The bounds of [`count_retention`]; its expected numbers are worked out for them.
pub(super) const FOUR_EVENTS: LogLimits = LogLimits {
    max_events_per_stream: 4,
    ..ROOMY
};

/// The bounds of [`byte_retention`]; its expected numbers are worked out for them.
pub(super) const HUNDRED_BYTES: LogLimits = LogLimits {
    max_bytes_per_stream: 100,
    ..ROOMY
};

/// The count bound (4 events here) drops the oldest events; reads report what is left.
pub(super) async fn count_retention(h: LogHandles) {
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
        other => log_broken!(
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
    log_ensure!(
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
pub(super) async fn byte_retention(h: LogHandles) {
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
    log_ensure!(
        seqs(&got) == [1, 2, 3],
        bound,
        "3 events of 30 bytes, bound 100: read {:?}",
        seqs(&got)
    );
    append(&h.a, &key, sized(4, 30)).await;
    expect_evicted(&h.b, &key, 0, 2, 4, RETAINED).await;
    let (got, last, _) = events(read(&h.a, &key, 1, 100).await, RESUMES, "read_after(1)");
    log_ensure!(
        seqs(&got) == [2, 3, 4] && last == 4,
        RESUMES,
        "read_after(1) gave {:?}",
        seqs(&got)
    );
    log_ensure!(got[2].data == sized(4, 30), RESUMES, "event 4 read {:?}", got[2].data);

    let huge = "the newest event is kept even when it alone is larger than max_bytes_per_stream";
    append(&h.b, &key, sized(5, 250)).await;
    let got = read(&h.a, &key, 4, 100).await;
    let kept = matches!(&got, ReadOutcome::Events { events, last_seq: 5, .. }
        if events.len() == 1 && events[0].data.len() == 250);
    log_ensure!(
        kept,
        huge,
        "after a 250-byte event under a bound of 100, read_after(4) answered {got:?}"
    );
    expect_evicted(&h.b, &key, 3, 5, 5, RETAINED).await;

    append(&h.a, &key, sized(6, 10)).await;
    expect_evicted(&h.b, &key, 4, 6, 6, bound).await;
    let (got, _, _) = events(read(&h.a, &key, 5, 100).await, RESUMES, "read_after(5)");
    log_ensure!(seqs(&got) == [6], RESUMES, "read_after(5) gave {:?}", seqs(&got));
}

/// Keys are (session, stream): one stream id in two sessions is two streams.
pub(super) async fn keys(h: LogHandles) {
    let promise = "streams are keyed by (session, stream): the same stream id in another session is another stream";
    let first = new_key("keys");
    let second = StreamKey::new(fresh_id("keys"), first.stream());
    open(&h.a, &first).await;
    expect_unknown(&h.b, &second, promise).await;
    let got = h.b.append(&second, payload(1)).await;
    log_ensure!(
        matches!(got, Err(EventLogError::UnknownStream)),
        promise,
        "append through the other session answered {got:?}"
    );
    open(&h.b, &second).await;
    for n in 1..=3 {
        append(h.by(n as usize), &first, payload(n)).await;
    }
    let seq = append(&h.b, &second, payload(1)).await;
    log_ensure!(seq == 1, promise, "the other session's first append returned {seq}");
    done("finish", h.a.finish(&first).await);
    expect_batch(&h.a, &second, 0, 100, 1, false).await;
    expect_batch(&h.b, &first, 0, 100, 3, true).await;
    let seq = append(&h.a, &second, payload(2)).await;
    log_ensure!(
        seq == 2,
        promise,
        "finishing one session's stream finished the other's: {seq}"
    );

    // Another stream of the same session is another stream too.
    let sibling = StreamKey::new(first.session().clone(), StreamId::random());
    open(&h.b, &sibling).await;
    expect_batch(&h.a, &sibling, 0, 100, 0, false).await;
    let seq = append(&h.a, &sibling, payload(1)).await;
    log_ensure!(
        seq == 1,
        "every stream numbers its events from 1",
        "a second stream's first append returned {seq}"
    );
}
