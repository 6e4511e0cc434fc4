//! The checks behind [`event_log`](super::event_log) about readers and endings:
//! `wait_after`, reader claims, delivery marks, `remove_session` and `purge_expired`.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use super::event_log::{
    Log, LogHandles, append, broken, done, events, expect_batch, expect_unknown, new_key, open, payload, read,
};
use crate::event_log::{EventLogError, ReadOutcome, StreamId, StreamKey};

/// How long a wait may take to notice what it waits for. Generous: a shared log may
/// notice another instance's append only by polling.
const WAKE: Duration = Duration::from_secs(5);

/// Long enough for a waiter to be waiting before the event it waits for is written.
const SETTLE: Duration = Duration::from_millis(100);

/// `wait_after(key, after)` as a task of its own.
fn waiter(log: &Log, key: &StreamKey, after: u64) -> JoinHandle<()> {
    let (log, key) = (Arc::clone(log), key.clone());
    tokio::spawn(async move { log.wait_after(&key, after).await })
}

/// A reader's loop: read after `after` and wait until a batch has events or says the
/// stream finished. Early wakes cost another round, which is what the contract allows.
fn reader(log: &Log, key: &StreamKey, after: u64) -> JoinHandle<ReadOutcome> {
    let (log, key) = (Arc::clone(log), key.clone());
    tokio::spawn(async move {
        loop {
            let got = read(&log, &key, after, 100).await;
            match &got {
                ReadOutcome::Events { events, finished, .. } if events.is_empty() && !finished => {}
                _ => return got,
            }
            log.wait_after(&key, after).await;
        }
    })
}

/// What `task` ended with, or a broken `promise` when it takes longer than `within`.
async fn within<T>(task: JoinHandle<T>, within: Duration, promise: &str, what: &str) -> T {
    match timeout(within, task).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("EventLog conformance: a waiting task did not finish: {e}"),
        },
        Err(_) => broken(promise, format_args!("{what} was still waiting after {within:?}")),
    }
}

/// `wait_after` resolves for new events (from either handle), for a finish, for a
/// cursor beyond the stream, and for a stream that is gone.
pub(super) async fn waits(h: LogHandles) {
    let key = new_key("wait");
    open(&h.a, &key).await;
    append(&h.a, &key, payload(1)).await;

    let beyond = "wait_after does not wait when the cursor is beyond the stream's newest event";
    within(waiter(&h.a, &key, 5), WAKE, beyond, "wait_after(5) with one event").await;
    within(waiter(&h.b, &key, 2), WAKE, beyond, "wait_after(2) with one event").await;
    let empty = new_key("wait");
    open(&h.b, &empty).await;
    within(
        waiter(&h.a, &empty, 1),
        WAKE,
        beyond,
        "wait_after(1) on an empty stream",
    )
    .await;

    let held = "wait_after resolves when the stream holds events after the cursor";
    within(waiter(&h.b, &key, 0), WAKE, held, "wait_after(0) with one event").await;

    let arrives = "wait_after resolves when an event after the cursor is appended, also through another instance";
    for (n, (waiting, writing)) in [(&h.a, &h.b), (&h.b, &h.a), (&h.a, &h.a)].into_iter().enumerate() {
        let cursor = n as u64 + 1;
        let task = reader(waiting, &key, cursor);
        sleep(SETTLE).await;
        append(writing, &key, payload(cursor + 1)).await;
        let got = within(task, WAKE, arrives, &format!("a reader after {cursor}")).await;
        let (got, _, _) = events(got, arrives, format_args!("the reader's read after {cursor}"));
        log_ensure!(
            got.first().map(|e| e.seq) == Some(cursor + 1),
            arrives,
            "the reader after {cursor} woke to events {:?}",
            got.iter().map(|e| e.seq).collect::<Vec<_>>()
        );
    }

    let finishes = "wait_after resolves when the stream finishes, also through another instance";
    let task = waiter(&h.a, &key, 4);
    sleep(SETTLE).await;
    done("finish", h.b.finish(&key).await);
    within(
        task,
        WAKE,
        finishes,
        "wait_after(4) at the end of a stream finished meanwhile",
    )
    .await;
    within(
        waiter(&h.b, &key, 4),
        WAKE,
        finishes,
        "wait_after(4) at the end of a finished stream",
    )
    .await;
    expect_batch(&h.a, &key, 4, 100, 4, true).await;

    let gone = "wait_after resolves for a stream that is gone";
    let unknown = new_key("wait");
    within(
        waiter(&h.a, &unknown, 0),
        WAKE,
        gone,
        "wait_after(0) on a stream never opened",
    )
    .await;
}

/// Claims grow on every handle and per stream; `current_reader` is the newest.
pub(super) async fn claims(h: LogHandles) {
    let key = new_key("claims");
    let none = "current_reader is 0 before any claim";
    open(&h.a, &key).await;
    for log in [&h.a, &h.b] {
        let current = done("current_reader", log.current_reader(&key).await);
        log_ensure!(current == 0, none, "{current} on a new stream");
    }
    let unknown = new_key("claims");
    let current = h.b.current_reader(&unknown).await;
    log_ensure!(matches!(current, Ok(0)), none, "{current:?} on a stream never opened");

    let grows = "claim_reader returns a number greater than every earlier claim on the stream, across instances";
    let newest = "current_reader is the number of the newest claim";
    let mut last = 0;
    for i in 0..6 {
        let claim = done("claim_reader", h.by(i).claim_reader(&key).await);
        log_ensure!(claim > last, grows, "claim {claim} after claim {last}");
        let current = done("current_reader", h.by(i + 1).current_reader(&key).await);
        log_ensure!(current == claim, newest, "{current} right after claim {claim}");
        last = claim;
    }

    const CLAIMERS: usize = 16;
    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|i| {
            let (log, key) = (Arc::clone(h.by(i)), key.clone());
            tokio::spawn(async move { done("claim_reader", log.claim_reader(&key).await) })
        })
        .collect();
    let mut claims = Vec::new();
    for task in tasks {
        claims.push(within(task, WAKE, grows, "a concurrent claim").await);
    }
    claims.sort_unstable();
    claims.dedup();
    log_ensure!(
        claims.len() == CLAIMERS && claims[0] > last,
        grows,
        "{CLAIMERS} concurrent claims after claim {last} gave the distinct numbers {claims:?}"
    );
    let top = claims[CLAIMERS - 1];
    for log in [&h.a, &h.b] {
        let current = done("current_reader", log.current_reader(&key).await);
        log_ensure!(current == top, newest, "{current} after concurrent claims up to {top}");
    }

    let per_stream = "claims are per stream";
    let sibling = StreamKey::new(key.session().clone(), StreamId::random());
    open(&h.b, &sibling).await;
    let current = done("current_reader", h.a.current_reader(&sibling).await);
    log_ensure!(
        current == 0,
        per_stream,
        "a new stream of the session has current_reader {current}"
    );
    let claim = done("claim_reader", h.a.claim_reader(&sibling).await);
    log_ensure!(claim > 0, grows, "the first claim on a stream is {claim}");
    let current = done("current_reader", h.b.current_reader(&key).await);
    log_ensure!(
        current == top,
        per_stream,
        "a claim on another stream moved current_reader from {top} to {current}"
    );
}

/// Delivery marks only grow, on every handle, per stream; unknown streams read 0.
pub(super) async fn delivery(h: LogHandles) {
    let key = new_key("delivery");
    open(&h.a, &key).await;
    for n in 1..=10 {
        append(h.by(n as usize), &key, payload(n)).await;
    }
    let zero = "delivered is 0 before any mark";
    let seen = done("delivered", h.b.delivered(&key).await);
    log_ensure!(seen == 0, zero, "{seen} on a stream never marked");

    let grows = "the delivery mark is the highest sequence number marked, on every instance: it only grows";
    for (i, (mark, want)) in [(3, 3), (2, 3), (7, 7), (7, 7), (5, 7)].into_iter().enumerate() {
        done("mark_delivered", h.by(i).mark_delivered(&key, mark).await);
        let seen = done("delivered", h.by(i + 1).delivered(&key).await);
        log_ensure!(
            seen == want,
            grows,
            "{seen} after marking {mark} (highest so far {want})"
        );
    }
    let tasks: Vec<_> = (1..=10)
        .rev()
        .map(|mark: u64| {
            let (log, key) = (Arc::clone(h.by(mark as usize)), key.clone());
            tokio::spawn(async move { done("mark_delivered", log.mark_delivered(&key, mark).await) })
        })
        .collect();
    for task in tasks {
        within(task, WAKE, grows, "a concurrent mark").await;
    }
    for log in [&h.a, &h.b] {
        let seen = done("delivered", log.delivered(&key).await);
        log_ensure!(seen == 10, grows, "{seen} after concurrent marks of 1 to 10");
    }
    done("finish", h.a.finish(&key).await);
    let seen = done("delivered", h.b.delivered(&key).await);
    log_ensure!(seen == 10, grows, "{seen} once the stream finished, after a mark of 10");

    let per_stream = "delivery marks are per stream";
    let sibling = StreamKey::new(key.session().clone(), StreamId::random());
    open(&h.b, &sibling).await;
    let seen = done("delivered", h.a.delivered(&sibling).await);
    log_ensure!(
        seen == 0,
        per_stream,
        "a new stream of the session has delivered {seen}"
    );

    let unknown = new_key("delivery");
    let nothing = "marking an unknown stream does nothing, and its delivered is 0";
    let got = h.a.mark_delivered(&unknown, 4).await;
    log_ensure!(got.is_ok(), nothing, "mark_delivered answered {got:?}");
    let seen = h.b.delivered(&unknown).await;
    log_ensure!(
        matches!(seen, Ok(0)),
        nothing,
        "delivered of the unknown stream answered {seen:?} after a mark of 4"
    );
    expect_unknown(&h.a, &unknown, nothing).await;
}

/// `remove_session` drops every stream of the session and nothing else, and wakes
/// whoever waits on them.
pub(super) async fn remove_session(h: LogHandles) {
    let doomed = new_key("remove");
    let session = doomed.session().clone();
    let finished = StreamKey::new(session.clone(), StreamId::random());
    let empty = StreamKey::new(session.clone(), StreamId::random());
    let kept = StreamKey::new(super::fresh_id("remove"), doomed.stream());
    for key in [&doomed, &finished, &empty, &kept] {
        open(&h.a, key).await;
    }
    for n in 1..=3 {
        append(&h.a, &doomed, payload(n)).await;
        append(&h.b, &kept, payload(n)).await;
    }
    done("append_last", h.b.append_last(&finished, payload(1)).await);
    done("mark_delivered", h.a.mark_delivered(&doomed, 2).await);
    done("mark_delivered", h.a.mark_delivered(&kept, 2).await);
    done("claim_reader", h.a.claim_reader(&doomed).await);
    let kept_claim = done("claim_reader", h.a.claim_reader(&kept).await);

    let wakes = "wait_after resolves when its stream's session is removed, also through another instance";
    let task = waiter(&h.a, &doomed, 3);
    sleep(SETTLE).await;
    done("remove_session", h.b.remove_session(&session).await);
    within(task, WAKE, wakes, "wait_after(3) on a stream of the removed session").await;

    let dropped = "remove_session drops every stream of the session: reads say UnknownStream, writes fail";
    for key in [&doomed, &finished, &empty] {
        for log in [&h.a, &h.b] {
            expect_unknown(log, key, dropped).await;
        }
        let got = h.a.append(key, payload(9)).await;
        log_ensure!(
            matches!(got, Err(EventLogError::UnknownStream)),
            dropped,
            "append to {key:?} answered {got:?}"
        );
        // Unknown now, so both read 0 (not an error).
        let marks = (h.a.delivered(key).await.ok(), h.b.current_reader(key).await.ok());
        log_ensure!(
            marks == (Some(0), Some(0)),
            dropped,
            "{key:?} still has (delivered, current_reader) {marks:?}"
        );
    }

    let others = "remove_session drops only that session's streams";
    expect_batch(&h.a, &kept, 0, 100, 3, false).await;
    let marks = (
        done("delivered", h.b.delivered(&kept).await),
        done("current_reader", h.b.current_reader(&kept).await),
    );
    log_ensure!(
        marks == (2, kept_claim),
        others,
        "the other session's stream has (delivered, current_reader) {marks:?}"
    );

    let again = "remove_session of a session without streams answers Ok";
    let got = h.a.remove_session(&session).await;
    log_ensure!(got.is_ok(), again, "a second remove answered {got:?}");
    let got = h.b.remove_session(&super::fresh_id("remove")).await;
    log_ensure!(got.is_ok(), again, "removing a session never seen answered {got:?}");

    let fresh = "open after remove_session creates an empty stream, numbered from 1";
    open(&h.b, &doomed).await;
    expect_batch(&h.a, &doomed, 0, 100, 0, false).await;
    let seq = append(&h.a, &doomed, payload(1)).await;
    log_ensure!(seq == 1, fresh, "the first append returned {seq}");
}

/// `purge_expired` answers Ok and drops nothing retention keeps (every time bound is a
/// minute or more, see `LogLimits`).
pub(super) async fn purge(h: LogHandles) {
    let live = new_key("purge");
    let finished = StreamKey::new(live.session().clone(), StreamId::random());
    let empty = new_key("purge");
    for key in [&live, &finished, &empty] {
        open(&h.a, key).await;
    }
    for n in 1..=3 {
        append(&h.b, &live, payload(n)).await;
        append(&h.a, &finished, payload(n)).await;
    }
    done("finish", h.b.finish(&finished).await);
    let promise = "purge_expired answers Ok";
    for log in [&h.a, &h.b] {
        let got = log.purge_expired().await;
        log_ensure!(got.is_ok(), promise, "{got:?}");
    }
    let kept = "purge_expired drops only what retention says must go";
    let got = read(&h.a, &empty, 0, 100).await;
    log_ensure!(
        matches!(got, ReadOutcome::Events { ref events, last_seq: 0, finished: false } if events.is_empty()),
        kept,
        "a new empty stream read {got:?} after a purge"
    );
    expect_batch(&h.b, &live, 0, 100, 3, false).await;
    expect_batch(&h.a, &finished, 0, 100, 3, true).await;
}
