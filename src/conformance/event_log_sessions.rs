//! The checks behind [`event_log`](super::event_log) about what one session may hold:
//! its byte bound across all its streams, and its stream bound.

use bytes::Bytes;

use super::event_log::{LogHandles, LogLimits, ROOMY, append, done, events, expect_evicted, open, read, seqs};
use super::fresh_id;
use crate::event_log::{EventLogError, ReadOutcome, StreamId, StreamKey};

/// The bounds of [`session_bytes`]: 300 bytes per session, streams roomy.
pub(super) const SESSION_300_BYTES: LogLimits = LogLimits {
    max_bytes_per_session: 300,
    ..ROOMY
};

/// The bounds of [`session_streams`]: two streams per session.
pub(super) const TWO_STREAMS: LogLimits = LogLimits {
    max_streams_per_session: 2,
    ..ROOMY
};

const ORDER: &str = "past max_bytes_per_session, the oldest events go from finished streams first (longest \
                     finished first), then from the stream appended to, then from the session's other \
                     unfinished streams, largest first; an unfinished stream keeps its newest event";

/// A 100-byte payload, distinct per `n`.
fn hundred(n: u64) -> Bytes {
    let mut data = format!("{{\"n\":{n}}}").into_bytes();
    data.resize(100, b' ');
    Bytes::from(data)
}

/// The sequence numbers a stream still holds.
async fn held(h: &LogHandles, key: &StreamKey, promise: &str) -> Vec<u64> {
    match read(&h.a, key, 0, 100).await {
        ReadOutcome::Events { events, .. } => seqs(&events),
        ReadOutcome::Evicted { first_retained, .. } => {
            let (got, _, _) = events(
                read(&h.a, key, first_retained - 1, 100).await,
                promise,
                "a read from just before the oldest retained event",
            );
            seqs(&got)
        }
        other => log_broken!(promise, "{key:?} answered {other:?}"),
    }
}

/// The byte bound (300 here) holds across a session's streams, in the memory log's order.
pub(super) async fn session_bytes(h: LogHandles) {
    let session = fresh_id("session-bytes");
    let key = |n| StreamKey::new(session.clone(), StreamId::from_raw(n));
    let (finished, a, b) = (key(1), key(2), key(3));
    // Another session is never touched by this one's bound.
    let other = StreamKey::new(fresh_id("session-bytes-other"), StreamId::from_raw(1));
    open(&h.a, &other).await;
    for n in 1..=3 {
        append(h.by(n as usize), &other, hundred(n)).await;
    }

    open(&h.a, &finished).await;
    append(&h.a, &finished, hundred(1)).await;
    done("append_last", h.b.append_last(&finished, hundred(2)).await);
    open(&h.b, &a).await;
    append(&h.a, &a, hundred(1)).await;
    // 300 bytes held: at the bound, nothing goes.
    log_ensure!(
        held(&h, &finished, ORDER).await == [1, 2],
        ORDER,
        "at the bound, a stream lost events"
    );
    append(&h.b, &a, hundred(2)).await;
    expect_evicted(&h.a, &finished, 0, 2, 2, ORDER).await;
    append(&h.a, &a, hundred(3)).await;
    let got = held(&h, &finished, ORDER).await;
    log_ensure!(
        got.is_empty(),
        ORDER,
        "the finished stream still holds {got:?} over the bound"
    );
    log_ensure!(
        held(&h, &a, ORDER).await == [1, 2, 3],
        ORDER,
        "events of an unfinished stream went while a finished one held some"
    );

    // The finished stream is empty: the appending stream's oldest go first if it has
    // more than one; a stream with one event keeps it, and the largest other goes.
    open(&h.b, &b).await;
    append(&h.a, &b, hundred(1)).await;
    log_ensure!(
        held(&h, &b, ORDER).await == [1] && held(&h, &a, ORDER).await == [2, 3],
        ORDER,
        "appending to a stream with one event: b holds {:?}, a holds {:?}",
        held(&h, &b, ORDER).await,
        held(&h, &a, ORDER).await
    );
    append(&h.b, &b, hundred(2)).await;
    log_ensure!(
        held(&h, &b, ORDER).await == [2] && held(&h, &a, ORDER).await == [2, 3],
        ORDER,
        "appending to a stream with events to spare: b holds {:?}, a holds {:?}",
        held(&h, &b, ORDER).await,
        held(&h, &a, ORDER).await
    );
    expect_evicted(&h.a, &b, 0, 2, 2, ORDER).await;
    log_ensure!(
        held(&h, &other, ORDER).await == [1, 2, 3],
        "a session's byte bound drops only that session's events",
        "the other session holds {:?}",
        held(&h, &other, ORDER).await
    );
}

/// The stream bound (2 here): the longest-finished stream makes room, an unfinished
/// one never does.
pub(super) async fn session_streams(h: LogHandles) {
    let session = fresh_id("session-streams");
    let key = |n| StreamKey::new(session.clone(), StreamId::from_raw(n));
    let refused = "open at max_streams_per_session fails with TooManyStreams when no stream of the \
                   session has finished, and drops none";
    open(&h.a, &key(1)).await;
    open(&h.b, &key(2)).await;
    append(&h.a, &key(1), hundred(1)).await;
    append(&h.b, &key(2), hundred(1)).await;
    let got = h.a.open(&key(3)).await;
    log_ensure!(
        matches!(got, Err(EventLogError::TooManyStreams { limit: 2 })),
        refused,
        "a third open answered {got:?}"
    );
    for n in [1, 2] {
        log_ensure!(
            held(&h, &key(n), refused).await == [1],
            refused,
            "stream {n} lost its events"
        );
    }
    log_ensure!(
        read(&h.b, &key(3), 0, 1).await == ReadOutcome::UnknownStream,
        refused,
        "the refused stream exists"
    );
    done("finish", h.b.finish(&key(2)).await);
    let room = "open at max_streams_per_session drops the session's longest-finished stream";
    let got = h.b.open(&key(3)).await;
    log_ensure!(
        got.is_ok(),
        room,
        "an open with a finished stream to drop answered {got:?}"
    );
    log_ensure!(
        read(&h.a, &key(2), 0, 1).await == ReadOutcome::UnknownStream,
        room,
        "the finished stream is still held"
    );
    log_ensure!(
        held(&h, &key(1), room).await == [1],
        room,
        "the unfinished stream lost its events"
    );
    // Reopening a held stream is no new stream.
    done("open", h.a.open(&key(1)).await);
}
