//! Behaviour of `MemoryEventLog` through the `EventLog` trait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tower_mcp_session::SessionId;
use tower_mcp_session::event_log::{
    EventLog, EventLogError, MemoryEventLog, ReadOutcome, StoredEvent, StreamId, StreamKey,
};

fn sid(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

fn key(session: &str, stream: u64) -> StreamKey {
    StreamKey::new(sid(session), StreamId::from_raw(stream))
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn events(log: &impl EventLog, key: &StreamKey, after: u64) -> (Vec<StoredEvent>, u64, bool) {
    match log.read_after(key, after, usize::MAX).await.unwrap() {
        ReadOutcome::Events {
            events,
            last_seq,
            finished,
        } => (events, last_seq, finished),
        other => panic!("expected events after {after}, got {other:?}"),
    }
}

async fn outcome(log: &impl EventLog, key: &StreamKey, after: u64) -> ReadOutcome {
    log.read_after(key, after, usize::MAX).await.unwrap()
}

/// A payload whose buffer reports when it is freed.
fn tracked(len: usize) -> (Bytes, Arc<AtomicBool>) {
    struct Owner(Vec<u8>, Arc<AtomicBool>);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Owner {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }
    let freed = Arc::new(AtomicBool::new(false));
    (Bytes::from_owner(Owner(vec![b'x'; len], freed.clone())), freed)
}

#[tokio::test]
async fn sequence_numbers_start_at_one_and_reads_are_strictly_after() {
    let log = MemoryEventLog::new();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    let (ev, last, fin) = events(&log, &k, 0).await;
    assert_eq!((ev.len(), last, fin), (0, 0, false));
    for i in 1..=5u64 {
        assert_eq!(log.append(&k, b(&format!("m{i}"))).await.unwrap(), i);
    }
    for after in 0..=5u64 {
        let (ev, last, _) = events(&log, &k, after).await;
        assert_eq!(last, 5);
        let seqs: Vec<u64> = ev.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, ((after + 1)..=5).collect::<Vec<_>>());
        for e in &ev {
            assert_eq!(e.data, b(&format!("m{}", e.seq)));
        }
    }
    // `max` limits the batch and `finished` stays false until the end is reached.
    log.finish(&k).await.unwrap();
    match log.read_after(&k, 1, 2).await.unwrap() {
        ReadOutcome::Events {
            events,
            last_seq,
            finished,
        } => {
            assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
            assert_eq!((last_seq, finished), (5, false));
        }
        other => panic!("{other:?}"),
    }
    let (ev, _, fin) = events(&log, &k, 3).await;
    assert_eq!((ev.len(), fin), (2, true));
}

#[tokio::test]
async fn appends_store_the_given_bytes_without_copying() {
    let log = MemoryEventLog::new();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    let data = Bytes::from(vec![7u8; 100]);
    log.append(&k, data.clone()).await.unwrap();
    let (ev, _, _) = events(&log, &k, 0).await;
    assert_eq!(ev[0].data.as_ptr(), data.as_ptr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_get_distinct_consecutive_numbers() {
    let log = MemoryEventLog::builder().max_events_per_stream(100_000).build();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (log, k) = (log.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..500 {
                let seq = log.append(&k, b(&format!("{t}:{i}"))).await.unwrap();
                seqs.push((seq, format!("{t}:{i}")));
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        // One producer's events keep their order.
        assert!(seqs.windows(2).all(|w| w[0].0 < w[1].0));
        all.extend(seqs);
    }
    all.sort();
    assert_eq!(
        all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=4000).collect::<Vec<_>>()
    );
    let (ev, last, _) = events(&log, &k, 0).await;
    assert_eq!(last, 4000);
    for (e, (seq, text)) in ev.iter().zip(&all) {
        assert_eq!((e.seq, &e.data), (*seq, &b(text)));
    }
}

#[tokio::test]
async fn eviction_by_count_reports_evicted_never_a_gap() {
    let log = MemoryEventLog::builder().max_events_per_stream(3).build();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    for i in 1..=5 {
        log.append(&k, b(&i.to_string())).await.unwrap();
    }
    // Held: 3, 4, 5. Cursor 2 still continues without a gap; 1 and 0 do not.
    let (ev, _, _) = events(&log, &k, 2).await;
    assert_eq!(ev.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert!(matches!(outcome(&log, &k, 1).await, ReadOutcome::Evicted { .. }));
    assert!(matches!(outcome(&log, &k, 0).await, ReadOutcome::Evicted { .. }));
}

#[tokio::test]
async fn eviction_by_bytes_keeps_the_newest_event() {
    let log = MemoryEventLog::builder().max_bytes_per_stream(10).build();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    log.append(&k, b("aaaa")).await.unwrap();
    log.append(&k, b("bbbb")).await.unwrap();
    assert_eq!(log.retained_bytes(), 8);
    log.append(&k, b("cccc")).await.unwrap();
    assert_eq!(log.retained_bytes(), 8);
    assert!(matches!(outcome(&log, &k, 0).await, ReadOutcome::Evicted { .. }));
    let (ev, _, _) = events(&log, &k, 1).await;
    assert_eq!(ev.len(), 2);
    // One event larger than the bound is kept on its own.
    log.append(&k, Bytes::from(vec![0; 50])).await.unwrap();
    assert_eq!(log.retained_bytes(), 50);
    let (ev, last, _) = events(&log, &k, 3).await;
    assert_eq!((ev.len(), last), (1, 4));
}

#[tokio::test]
async fn session_byte_bound_takes_from_finished_streams_first() {
    let log = MemoryEventLog::builder().max_bytes_per_session(30).build();
    let (done, live, other) = (key("s", 1), key("s", 2), key("s", 3));
    for k in [&done, &live, &other] {
        log.open(k).await.unwrap();
    }
    log.append(&done, Bytes::from(vec![0; 10])).await.unwrap();
    log.finish(&done).await.unwrap();
    log.append(&other, Bytes::from(vec![0; 10])).await.unwrap();
    log.append(&live, Bytes::from(vec![0; 10])).await.unwrap();
    assert_eq!(log.retained_bytes(), 30);
    // Over by 10: the finished stream pays.
    log.append(&live, Bytes::from(vec![0; 10])).await.unwrap();
    assert_eq!(log.retained_bytes(), 30);
    assert!(matches!(outcome(&log, &done, 0).await, ReadOutcome::Evicted { .. }));
    let (_, last, fin) = events(&log, &done, 1).await;
    assert_eq!((last, fin), (1, true), "a reader that had everything still completes");
    // Over again: the appending stream pays next, keeping its newest event.
    log.append(&live, Bytes::from(vec![0; 10])).await.unwrap();
    assert_eq!(log.retained_bytes(), 30);
    assert!(matches!(outcome(&log, &live, 0).await, ReadOutcome::Evicted { .. }));
    assert_eq!(events(&log, &live, 1).await.0.len(), 2);
    assert_eq!(events(&log, &other, 0).await.0.len(), 1);
    // A different session is not touched by this one's bound.
    let k2 = key("t", 2);
    log.open(&k2).await.unwrap();
    log.append(&k2, Bytes::from(vec![0; 25])).await.unwrap();
    assert_eq!(events(&log, &k2, 0).await.0.len(), 1);
}

#[tokio::test]
async fn cursor_ahead_of_the_stream_is_evicted_and_does_not_hang() {
    let log = MemoryEventLog::new();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    log.append(&k, b("a")).await.unwrap();
    assert!(matches!(outcome(&log, &k, 2).await, ReadOutcome::Evicted { .. }));
    assert!(matches!(outcome(&log, &k, u64::MAX).await, ReadOutcome::Evicted { .. }));
    tokio::time::timeout(Duration::from_secs(1), log.wait_after(&k, 7))
        .await
        .expect("wait_after must return for a cursor ahead of the stream");
}

#[tokio::test]
async fn streams_are_isolated_per_session() {
    let log = MemoryEventLog::new();
    let (a, b_) = (key("alice", 42), key("bob", 42));
    log.open(&a).await.unwrap();
    log.append(&a, b("secret")).await.unwrap();
    assert_eq!(outcome(&log, &b_, 0).await, ReadOutcome::UnknownStream);
    assert!(matches!(
        log.append(&b_, b("x")).await,
        Err(EventLogError::UnknownStream)
    ));
    log.open(&b_).await.unwrap();
    assert_eq!(log.append(&b_, b("mine")).await.unwrap(), 1);
    assert_eq!(events(&log, &b_, 0).await.0[0].data, b("mine"));
    assert_eq!(events(&log, &a, 0).await.0[0].data, b("secret"));
    log.remove_session(&sid("bob")).await.unwrap();
    assert_eq!(events(&log, &a, 0).await.0.len(), 1);
    assert_eq!(outcome(&log, &key("alice", 43), 0).await, ReadOutcome::UnknownStream);
}

#[tokio::test]
async fn open_is_idempotent_and_finish_ends_appends() {
    let log = MemoryEventLog::new();
    let k = key("s", 1);
    assert!(matches!(log.finish(&k).await, Err(EventLogError::UnknownStream)));
    log.open(&k).await.unwrap();
    log.append(&k, b("a")).await.unwrap();
    log.open(&k).await.unwrap();
    assert_eq!(events(&log, &k, 0).await.0.len(), 1, "reopening keeps the events");
    log.finish(&k).await.unwrap();
    log.finish(&k).await.unwrap();
    assert!(matches!(log.append(&k, b("b")).await, Err(EventLogError::Finished)));
    let (ev, last, fin) = events(&log, &k, 0).await;
    assert_eq!((ev.len(), last, fin), (1, 1, true));
    let (ev, _, fin) = events(&log, &k, 1).await;
    assert_eq!((ev.len(), fin), (0, true));
}

#[tokio::test]
async fn stream_bound_drops_the_longest_finished_stream_else_refuses() {
    let log = MemoryEventLog::builder().max_streams_per_session(2).build();
    log.open(&key("s", 1)).await.unwrap();
    log.open(&key("s", 2)).await.unwrap();
    let err = log.open(&key("s", 3)).await.unwrap_err();
    match err {
        EventLogError::TooManyStreams { limit } => assert_eq!(limit, 2),
        other => panic!("{other:?}"),
    }
    // Other sessions are unaffected.
    log.open(&key("t", 3)).await.unwrap();
    log.finish(&key("s", 2)).await.unwrap();
    log.finish(&key("s", 1)).await.unwrap();
    log.open(&key("s", 3)).await.unwrap();
    assert_eq!(outcome(&log, &key("s", 2), 0).await, ReadOutcome::UnknownStream);
    assert!(matches!(
        outcome(&log, &key("s", 1), 0).await,
        ReadOutcome::Events { .. }
    ));
}

#[tokio::test]
async fn wait_after_wakes_on_append_finish_and_removal() {
    let log = MemoryEventLog::new();
    let k = key("s", 1);
    log.open(&k).await.unwrap();

    let waiter = tokio::spawn({
        let (log, k) = (log.clone(), k.clone());
        async move { log.wait_after(&k, 0).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished(), "nothing new yet");
    log.append(&k, b("a")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();

    // Already past the cursor: returns at once.
    tokio::time::timeout(Duration::from_secs(1), log.wait_after(&k, 0))
        .await
        .unwrap();

    let waiter = tokio::spawn({
        let (log, k) = (log.clone(), k.clone());
        async move { log.wait_after(&k, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    log.finish(&k).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(1), log.wait_after(&k, 1))
        .await
        .unwrap();

    let k2 = key("s", 2);
    log.open(&k2).await.unwrap();
    let waiter = tokio::spawn({
        let (log, k2) = (log.clone(), k2.clone());
        async move { log.wait_after(&k2, 0).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    log.remove_session(&sid("s")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    // Unknown streams do not block either.
    tokio::time::timeout(Duration::from_secs(1), log.wait_after(&k2, 0))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_wake_up_when_append_races_the_wait() {
    let log = MemoryEventLog::builder().max_events_per_stream(1 << 20).build();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    let reader = tokio::spawn({
        let (log, k) = (log.clone(), k.clone());
        async move {
            let mut cursor = 0;
            while cursor < 20_000 {
                tokio::time::timeout(Duration::from_secs(5), log.wait_after(&k, cursor))
                    .await
                    .expect("lost wake-up");
                let (ev, _, _) = events(&log, &k, cursor).await;
                if let Some(e) = ev.last() {
                    cursor = e.seq;
                }
            }
        }
    });
    for i in 0..20_000u32 {
        log.append(&k, Bytes::from(i.to_le_bytes().to_vec())).await.unwrap();
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    reader.await.unwrap();
}

#[tokio::test]
async fn dropped_waiter_leaves_the_log_consistent() {
    let log = MemoryEventLog::new();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(10), log.wait_after(&k, 0))
            .await
            .is_err()
    );
    log.append(&k, b("a")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), log.wait_after(&k, 0))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn idle_and_finished_streams_expire_on_access() {
    let log = MemoryEventLog::builder()
        .idle_timeout(Duration::from_secs(60))
        .finished_retention(Duration::from_secs(10))
        .build();
    let (idle, done) = (key("s", 1), key("s", 2));
    log.open(&idle).await.unwrap();
    log.open(&done).await.unwrap();
    log.append(&done, b("x")).await.unwrap();
    log.finish(&done).await.unwrap();

    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(matches!(outcome(&log, &done, 0).await, ReadOutcome::Events { .. }));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(outcome(&log, &done, 0).await, ReadOutcome::UnknownStream);

    // Appends keep a stream alive; reads do not.
    tokio::time::advance(Duration::from_secs(40)).await;
    log.append(&idle, b("a")).await.unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(matches!(outcome(&log, &idle, 0).await, ReadOutcome::Events { .. }));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(
        log.append(&idle, b("b")).await,
        Err(EventLogError::UnknownStream)
    ));
    assert_eq!(log.stream_count(), 0);
    assert_eq!(log.retained_bytes(), 0);
}

#[tokio::test(start_paused = true)]
async fn purge_drops_expired_streams_and_wakes_waiters() {
    let log = MemoryEventLog::builder()
        .idle_timeout(Duration::from_secs(30 * 60))
        .build();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    log.append(&k, b("a")).await.unwrap();
    let waiter = tokio::spawn({
        let (log, k) = (log.clone(), k.clone());
        async move { log.wait_after(&k, 1).await }
    });
    tokio::time::sleep(Duration::from_secs(29 * 60)).await;
    log.purge_expired().await.unwrap();
    assert_eq!(log.stream_count(), 1);
    assert!(!waiter.is_finished());
    // Nobody touches the stream; the purge (the layer's sweep calls it) drops it.
    tokio::time::sleep(Duration::from_secs(61)).await;
    log.purge_expired().await.unwrap();
    assert_eq!(log.stream_count(), 0);
    assert_eq!(log.retained_bytes(), 0);
    waiter.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_log_runs_no_task_and_frees_everything_when_dropped() {
    let log = MemoryEventLog::new();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    let (data, freed) = tracked(64);
    log.append(&k, data).await.unwrap();
    assert_eq!(
        tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        0,
        "cleanup is the layer's sweep, not a task of the log's"
    );
    drop(log);
    assert!(freed.load(Ordering::SeqCst), "dropping the last clone frees the events");
}

#[tokio::test]
async fn reader_claims_grow_and_delivery_marks_only_grow() {
    let log = MemoryEventLog::new();
    let k = key("s", 1);
    assert_eq!(log.current_reader(&k).await.unwrap(), 0);
    assert!(matches!(log.claim_reader(&k).await, Err(EventLogError::UnknownStream)));
    log.open(&k).await.unwrap();
    let first = log.claim_reader(&k).await.unwrap();
    let second = log.claim_reader(&k).await.unwrap();
    assert!(second > first);
    assert_eq!(log.current_reader(&k).await.unwrap(), second);
    assert_eq!(log.delivered(&k).await.unwrap(), 0);
    log.mark_delivered(&k, 5).await.unwrap();
    log.mark_delivered(&k, 3).await.unwrap();
    assert_eq!(log.delivered(&k).await.unwrap(), 5);
    // Another session's stream of the same id shares nothing.
    let other = key("t", 1);
    log.open(&other).await.unwrap();
    assert_eq!(log.delivered(&other).await.unwrap(), 0);
    assert_eq!(log.current_reader(&other).await.unwrap(), 0);
}

#[tokio::test]
async fn remove_session_frees_the_payloads_and_wakes_waiters() {
    let log = MemoryEventLog::new();
    let mut flags = Vec::new();
    let mut waiters = Vec::new();
    for stream in 1..=3 {
        let k = key("s", stream);
        log.open(&k).await.unwrap();
        for _ in 0..4 {
            let (data, freed) = tracked(1000);
            log.append(&k, data).await.unwrap();
            flags.push(freed);
        }
        waiters.push(tokio::spawn({
            let (log, k) = (log.clone(), k.clone());
            async move { log.wait_after(&k, 4).await }
        }));
    }
    let other = key("t", 1);
    log.open(&other).await.unwrap();
    log.append(&other, b("keep")).await.unwrap();
    assert_eq!(log.retained_bytes(), 12_004);

    log.remove_session(&sid("s")).await.unwrap();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(5), w).await.unwrap().unwrap();
    }
    assert!(
        flags.iter().all(|f| f.load(Ordering::SeqCst)),
        "every payload buffer is freed"
    );
    assert_eq!(log.retained_bytes(), 4);
    assert_eq!(log.stream_count(), 1);
    assert_eq!(outcome(&log, &key("s", 1), 0).await, ReadOutcome::UnknownStream);
    assert!(matches!(
        log.append(&key("s", 1), b("x")).await,
        Err(EventLogError::UnknownStream)
    ));
    // Removing again, or an unknown session, is fine.
    log.remove_session(&sid("s")).await.unwrap();
    log.remove_session(&sid("nobody")).await.unwrap();
}

#[tokio::test]
async fn evicted_payloads_are_freed() {
    let log = MemoryEventLog::builder().max_events_per_stream(1).build();
    let k = key("s", 1);
    log.open(&k).await.unwrap();
    let (first, freed) = tracked(10);
    log.append(&k, first).await.unwrap();
    assert!(!freed.load(Ordering::SeqCst));
    log.append(&k, b("second")).await.unwrap();
    assert!(freed.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_to_many_streams_in_parallel_stay_exact() {
    let log = MemoryEventLog::new();
    let mut tasks = Vec::new();
    for s in 0..16u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let k = key(&format!("sess{}", s % 4), s);
            log.open(&k).await.unwrap();
            for i in 1..=200u64 {
                assert_eq!(log.append(&k, b("x")).await.unwrap(), i);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.stream_count(), 16);
    assert_eq!(log.retained_bytes(), 16 * 200);
}

/// A stream that expired unfinished (the standalone stream of a session whose GET
/// stream went quiet) and is opened again goes on after its last number: an old cursor
/// reads as evicted (410), never as the new stream's events under reused ids.
#[tokio::test(start_paused = true)]
async fn a_stream_opened_again_after_expiring_never_reuses_its_ids() {
    let log = MemoryEventLog::builder().idle_timeout(Duration::from_secs(60)).build();
    let standalone = key("s", 7);
    log.open(&standalone).await.unwrap();
    for n in 1..=3 {
        assert_eq!(log.append(&standalone, b(&format!("old {n}"))).await.unwrap(), n);
    }
    tokio::time::advance(Duration::from_secs(61)).await;
    log.purge_expired().await.unwrap();
    assert_eq!(outcome(&log, &standalone, 0).await, ReadOutcome::UnknownStream);

    log.open(&standalone).await.unwrap();
    for n in 4..=8 {
        assert_eq!(log.append(&standalone, b(&format!("new {n}"))).await.unwrap(), n);
    }
    // A client that had event 1 missed 2 and 3: the gap is reported, not skipped.
    assert_eq!(
        outcome(&log, &standalone, 1).await,
        ReadOutcome::Evicted {
            first_retained: 4,
            last_seq: 8
        }
    );
    // One that had everything of the old stream gets exactly the new events.
    let (got, _, _) = events(&log, &standalone, 3).await;
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5, 6, 7, 8]);
    assert_eq!(got[0].data, b("new 4"));

    // Expired on access (not by the sweep) is the same.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(matches!(
        log.append(&standalone, b("x")).await,
        Err(EventLogError::UnknownStream)
    ));
    log.open(&standalone).await.unwrap();
    assert_eq!(log.append(&standalone, b("again")).await.unwrap(), 9);

    // Finished streams are never opened again and leave nothing behind; a removed
    // session leaves nothing either.
    log.remove_session(&sid("s")).await.unwrap();
    log.open(&standalone).await.unwrap();
    assert_eq!(log.append(&standalone, b("fresh")).await.unwrap(), 1);
}

/// The whole-log budget: finished streams' events go first, longest finished first,
/// across sessions; past that, appends and new streams are refused with `Full` and the
/// log never holds more than its budget.
#[tokio::test]
async fn the_total_budget_drops_finished_streams_then_old_unfinished_events_then_refuses() {
    // Each event costs its payload and 64 bytes, each stream 256 bytes: room for three
    // streams of one 300-byte event, plus one 100-byte event.
    let budget = 3 * 256 + 3 * (300 + 64) + (100 + 64);
    let log = MemoryEventLog::builder()
        .max_total_bytes(budget)
        .max_bytes_per_stream(1000)
        .build();
    let kb = |c: u8| Bytes::from(vec![c; 300]);
    let (old, newer) = (key("a", 1), key("b", 1));
    for k in [&old, &newer] {
        log.open(k).await.unwrap();
        log.append(k, kb(b'x')).await.unwrap();
        log.finish(k).await.unwrap();
    }
    let live = key("c", 1);
    log.open(&live).await.unwrap();
    log.append(&live, kb(b'y')).await.unwrap();
    assert_eq!(log.retained_bytes(), 900);
    // 300 more do not fit: the longest-finished stream's event goes, and only that.
    log.append(&live, kb(b'z')).await.unwrap();
    assert_eq!(log.retained_bytes(), 900);
    assert_eq!(
        outcome(&log, &old, 0).await,
        ReadOutcome::Evicted {
            first_retained: 2,
            last_seq: 1
        }
    );
    assert_eq!(events(&log, &newer, 0).await.0.len(), 1);
    log.append(&live, kb(b'w')).await.unwrap();
    assert_eq!(events(&log, &newer, 1).await.0.len(), 0);
    assert_eq!(log.retained_bytes(), 900);
    // Only unfinished streams are left: their oldest events go, the newest stays.
    log.append(&live, kb(b'v')).await.unwrap();
    assert_eq!(log.retained_bytes(), 900);
    assert_eq!(
        outcome(&log, &live, 0).await,
        ReadOutcome::Evicted {
            first_retained: 2,
            last_seq: 4
        }
    );
    let other = key("d", 1);
    log.open(&other).await.unwrap();
    log.append(&other, kb(b'u')).await.unwrap();
    let data = |events: Vec<StoredEvent>| events.into_iter().map(|e| e.data).collect::<Vec<_>>();
    let (kept, ..) = events(&log, &live, 3).await;
    assert_eq!(data(kept), vec![kb(b'v')], "the live stream keeps its newest event");
    assert_eq!(data(events(&log, &other, 0).await.0), vec![kb(b'u')]);
    // Now the streams' own costs and newest events fill the budget: nothing can go, so
    // the append is refused and nothing is dropped.
    assert!(matches!(log.append(&other, kb(b't')).await, Err(EventLogError::Full)));
    assert_eq!(data(events(&log, &other, 0).await.0), vec![kb(b'u')]);
    assert_eq!(data(events(&log, &live, 3).await.0), vec![kb(b'v')]);
    assert_eq!(log.retained_bytes(), 600);
    // Opening a stream that exists is no new stream, full or not; a session's end
    // gives its room back.
    log.open(&live).await.unwrap();
    log.remove_session(&sid("c")).await.unwrap();
    log.append(&other, kb(b't')).await.unwrap();
}

#[tokio::test]
async fn at_the_total_budget_streams_nobody_waits_on_lose_first() {
    let budget = 2 * 256 + 6 * (300 + 64);
    let log = MemoryEventLog::builder()
        .max_total_bytes(budget)
        .max_bytes_per_stream(10_000)
        .max_bytes_per_session(10_000)
        .build();
    let kb = |c: u8| Bytes::from(vec![c; 300]);
    let (watched, unwatched) = (key("a", 1), key("b", 1));
    for k in [&watched, &unwatched] {
        log.open(k).await.unwrap();
        for c in [b'1', b'2', b'3'] {
            log.append(k, kb(c)).await.unwrap();
        }
    }
    // A reader waits for the watched stream's fourth event.
    let waiting = {
        let log = log.clone();
        let watched = watched.clone();
        tokio::spawn(async move { log.wait_after(&watched, 3).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    // Both streams are as large; the one a reader waits on keeps its events, the other
    // pays for the room.
    log.append(&watched, kb(b'4')).await.unwrap();
    waiting.await.unwrap();
    assert_eq!(events(&log, &watched, 0).await.0.len(), 4);
    assert!(matches!(
        outcome(&log, &unwatched, 0).await,
        ReadOutcome::Evicted { .. }
    ));
    assert!(log.retained_bytes() <= budget);
}
