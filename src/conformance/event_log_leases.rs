//! The checks behind [`event_log`](super::event_log) about producer leases: a renewed
//! lease keeps a stream from being abandoned, a lapsed one lets exactly one of many
//! concurrent callers end it, and a finished stream or one opened without a lease is
//! never abandoned.
//!
//! A log that keeps no leases (the trait's defaults: every stream reads as
//! [`ProducerState::Unleased`]) passes by never abandoning anything; it is only held to
//! the checks that say so.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, sleep};

use super::event_log::{Log, LogHandles, append, done, events, new_key, open, payload, read, seqs};
use crate::event_log::{ProducerLease, ProducerState, StreamKey};

/// The note every check leaves with its lease.
const NOTE: &[u8] = b"\"req-7\"";

fn final_event() -> Bytes {
    Bytes::from_static(br#"{"jsonrpc":"2.0","id":"req-7","error":{"code":-32603,"message":"gone"}}"#)
}

async fn open_leased(log: &Log, key: &StreamKey, lease: Duration) {
    let lease = ProducerLease::new(lease, Bytes::from_static(NOTE));
    done("open_leased", log.open_leased(key, &lease).await);
}

async fn producer(log: &Log, key: &StreamKey) -> ProducerState {
    done("producer", log.producer(key).await)
}

async fn end_abandoned(log: &Log, key: &StreamKey) -> Option<u64> {
    done("end_abandoned", log.end_abandoned(key, final_event()).await)
}

/// Whether the log keeps leases at all: a fresh leased stream reads as live.
async fn keeps_leases(log: &Log) -> bool {
    let key = new_key("lease-probe");
    open_leased(log, &key, Duration::from_secs(60)).await;
    match producer(log, &key).await {
        ProducerState::Live => true,
        ProducerState::Unleased => false,
        other => log_broken!(
            "a lease of a minute is live right after open_leased",
            "producer() said {other:?}"
        ),
    }
}

/// The stream holds `n` events and is `finished` (or not).
async fn expect_events(log: &Log, key: &StreamKey, n: usize, finished: bool, promise: &str) {
    let (got, _, fin) = events(read(log, key, 0, 100).await, promise, "a read of the whole stream");
    log_ensure!(
        got.len() == n && fin == finished,
        promise,
        "events {:?}, finished {fin}; expected {n} events, finished {finished}",
        seqs(&got)
    );
}

/// A renewed lease stays live past its first term, and the stream is not abandoned.
pub(super) async fn renewed(h: LogHandles) {
    if !keeps_leases(&h.a).await {
        return;
    }
    let promise = "a stream whose lease is renewed in time is not abandoned";
    let lease = Duration::from_millis(900);
    let key = new_key("lease-renewed");
    open_leased(&h.a, &key, lease).await;
    append(&h.a, &key, payload(1)).await;
    // Four renewals 300 ms apart outlast the first term more than once over.
    for round in 0..4 {
        sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        let renewed = done("renew_lease", h.by(round).renew_lease(&key, lease).await);
        log_ensure!(
            renewed,
            promise,
            "renew_lease of a live leased stream returned false (round {round})"
        );
        let state = producer(h.by(round + 1), &key).await;
        let abandoned = end_abandoned(h.by(round), &key).await;
        if sent.elapsed() >= lease {
            // Too slow to prove anything: the lease may really have run out meanwhile.
            continue;
        }
        log_ensure!(
            state == ProducerState::Live,
            promise,
            "producer() right after a renewal said {state:?}"
        );
        log_ensure!(abandoned.is_none(), promise, "end_abandoned wrote event {abandoned:?}");
    }
    expect_events(&h.b, &key, 1, false, promise).await;
}

/// A lapsed lease: concurrent callers on both handles end the stream exactly once.
pub(super) async fn lapsed(h: LogHandles) {
    if !keeps_leases(&h.a).await {
        return;
    }
    let promise = "end_abandoned appends and finishes exactly once when the lease lapsed";
    let key = new_key("lease-lapsed");
    open_leased(&h.a, &key, Duration::from_millis(150)).await;
    append(&h.b, &key, payload(1)).await;
    sleep(Duration::from_millis(400)).await;
    let state = producer(&h.b, &key).await;
    log_ensure!(
        state
            == ProducerState::Lapsed {
                note: Bytes::from_static(NOTE)
            },
        "a lease not renewed for its duration reads as lapsed, with its note",
        "producer() said {state:?}"
    );
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let (log, key) = (h.by(i).clone(), key.clone());
            tokio::spawn(async move { log.end_abandoned(&key, final_event()).await })
        })
        .collect();
    let mut ended = Vec::new();
    for call in calls {
        let result = call.await.expect("an end_abandoned task panicked");
        if let Some(seq) = done("end_abandoned", result) {
            ended.push(seq);
        }
    }
    log_ensure!(ended == [2], promise, "eight concurrent callers got {ended:?}");
    let (got, last, fin) = events(read(&h.a, &key, 0, 100).await, promise, "a read after the end");
    log_ensure!(
        got.len() == 2 && last == 2 && fin && got[1].data == final_event(),
        promise,
        "events {:?}, finished {fin}",
        seqs(&got)
    );
    let after = "an abandoned stream is finished: no lease, no renewal, no second end";
    log_ensure!(
        producer(&h.b, &key).await == ProducerState::Unleased,
        after,
        "producer() still reports a lease"
    );
    let renewed = done("renew_lease", h.a.renew_lease(&key, Duration::from_secs(1)).await);
    log_ensure!(!renewed, after, "renew_lease returned true");
}

/// Finished streams (both ways of finishing) and streams without a lease are never
/// abandoned, however long ago their lease would have lapsed.
pub(super) async fn never_abandoned(h: LogHandles) {
    let lease = Duration::from_millis(100);
    let finished = new_key("lease-finished");
    open_leased(&h.a, &finished, lease).await;
    append(&h.a, &finished, payload(1)).await;
    done("finish", h.a.finish(&finished).await);
    let last = new_key("lease-append-last");
    open_leased(&h.b, &last, lease).await;
    done("append_last", h.b.append_last(&last, payload(1)).await);
    let plain = new_key("lease-none");
    open(&h.a, &plain).await;
    append(&h.b, &plain, payload(1)).await;
    sleep(Duration::from_millis(300)).await;
    for (key, finished, what) in [
        (&finished, true, "a finished stream is never abandoned"),
        (&last, true, "a stream finished by append_last is never abandoned"),
        (&plain, false, "a stream opened without a lease is never abandoned"),
    ] {
        let state = producer(&h.b, key).await;
        log_ensure!(state == ProducerState::Unleased, what, "producer() said {state:?}");
        let ended = end_abandoned(&h.a, key).await;
        log_ensure!(ended.is_none(), what, "end_abandoned wrote event {ended:?}");
        expect_events(&h.b, key, 1, finished, what).await;
    }
    // A log without leases: a leased open makes a plain stream that nobody ends.
    let unkept = new_key("lease-unkept");
    open_leased(&h.a, &unkept, lease).await;
    sleep(Duration::from_millis(200)).await;
    if producer(&h.a, &unkept).await == ProducerState::Unleased {
        let what = "a log that keeps no leases never abandons a stream";
        let ended = end_abandoned(&h.b, &unkept).await;
        log_ensure!(ended.is_none(), what, "end_abandoned wrote event {ended:?}");
        expect_events(&h.a, &unkept, 0, false, what).await;
    }
}
