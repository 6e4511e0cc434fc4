//! Behaviour of `MemoryStore` under concurrency and (paused) time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Barrier;
use tower_mcp_session::store::{AtCapacity, MemoryStore, MemoryStoreBuilder, SessionStore, StoreError};
use tower_mcp_session::{CloseReason, MakeSessionId, ProtocolVersion, RandomSessionId, SessionId, SessionRecord};

type Events = Arc<Mutex<HashMap<SessionId, Vec<CloseReason>>>>;

/// A builder whose close events are recorded per session.
fn recording(builder: MemoryStoreBuilder) -> (MemoryStoreBuilder, Events) {
    let events: Events = Arc::default();
    let sink = events.clone();
    let builder = builder.on_close(move |id, reason| {
        sink.lock().unwrap().entry(id.clone()).or_default().push(reason);
    });
    (builder, events)
}

fn record(id: &SessionId) -> SessionRecord {
    SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18)
}

async fn create(store: &MemoryStore) -> Result<SessionId, StoreError> {
    let id = RandomSessionId.make_session_id();
    let slot = store.reserve().await?;
    store.insert(slot, record(&id)).await?;
    Ok(id)
}

fn assert_each_closed_once(events: &Events) {
    for (id, reasons) in events.lock().unwrap().iter() {
        assert_eq!(reasons.len(), 1, "session {id} closed {reasons:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cap_is_exact_under_concurrent_creation() {
    let store = MemoryStore::builder().max_sessions(100).build();
    let start = Arc::new(Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                create(&store).await
            })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::AtCapacity { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(5));
                refused += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!((created, refused), (100, 900));
    assert_eq!(store.len_hint(), Some(100));
}

#[tokio::test]
async fn dropped_reservation_gives_its_slot_back() {
    let store = MemoryStore::builder().max_sessions(1).build();
    let slot = store.reserve().await.unwrap();
    assert!(matches!(store.reserve().await, Err(StoreError::AtCapacity { .. })));
    drop(slot);
    let id = create(&store).await.unwrap();
    assert!(store.remove(&id, CloseReason::Deleted).await.unwrap());
    create(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evict_idle_keeps_the_cap_and_spares_busy_sessions() {
    const CAP: usize = 50;
    let (builder, events) = recording(
        MemoryStore::builder()
            .max_sessions(CAP)
            .at_capacity(AtCapacity::EvictIdle {
                min_idle: Duration::ZERO,
                retry_after: Duration::from_secs(1),
            }),
    );
    let store = builder.build();
    let mut busy = Vec::new();
    for i in 0..CAP {
        let id = create(&store).await.unwrap();
        if i % 3 == 0 {
            store.acquire(&id).await.unwrap().expect("live");
            busy.push(id);
        }
    }

    // Sample the live count while creators race to evict.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (store, done, peak) = (store.clone(), done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(store.len_hint().unwrap(), Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let creators: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut created = Vec::new();
                for _ in 0..250 {
                    match create(&store).await {
                        Ok(id) => {
                            // Some newcomers do a request, so busy periods come and go.
                            if let Some(_record) = store.acquire(&id).await.unwrap() {
                                tokio::task::yield_now().await;
                                store.release(&id);
                            }
                            created.push(id);
                        }
                        Err(StoreError::AtCapacity { .. }) => {}
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                created
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in creators {
        created.extend(task.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();

    assert!(
        peak.load(Ordering::Relaxed) <= CAP,
        "peak {}",
        peak.load(Ordering::Relaxed)
    );
    assert_eq!(store.len_hint(), Some(CAP));
    eprintln!("created {} of {} beyond the cap", created.len(), 8 * 250);
    assert!(!created.is_empty());
    for id in &busy {
        assert!(store.acquire(id).await.unwrap().is_some());
    }
    let events = events.lock().unwrap();
    for id in &busy {
        assert!(!events.contains_key(id), "busy session {id} was evicted");
    }
    for (id, reasons) in events.iter() {
        assert_eq!(reasons, &[CloseReason::Evicted], "session {id}");
    }
    // Every session created beyond the cap pushed exactly one other out.
    assert_eq!(events.len(), created.len());
}

#[tokio::test(start_paused = true)]
async fn evict_idle_takes_the_least_recently_active_eligible_session() {
    let (builder, events) = recording(
        MemoryStore::builder()
            .max_sessions(3)
            .at_capacity(AtCapacity::EvictIdle {
                min_idle: Duration::from_secs(60),
                retry_after: Duration::from_secs(7),
            }),
    );
    let store = builder.build();
    let a = create(&store).await.unwrap();
    let b = create(&store).await.unwrap();
    let c = create(&store).await.unwrap();

    // Nobody has been idle for a minute yet.
    tokio::time::advance(Duration::from_secs(30)).await;
    match create(&store).await {
        Err(StoreError::AtCapacity { retry_after }) => assert_eq!(retry_after, Duration::from_secs(7)),
        other => panic!("expected AtCapacity, got {other:?}"),
    }

    // `a` is used (so `b` becomes the oldest), `c` is held busy.
    store.acquire(&a).await.unwrap().unwrap();
    store.release(&a);
    store.acquire(&c).await.unwrap().unwrap();
    tokio::time::advance(Duration::from_secs(100)).await;

    create(&store).await.unwrap();
    assert_eq!(events.lock().unwrap().get(&b), Some(&vec![CloseReason::Evicted]));
    create(&store).await.unwrap();
    assert_eq!(events.lock().unwrap().get(&a), Some(&vec![CloseReason::Evicted]));
    // Only the busy `c` and the two newcomers remain; `c` is never a candidate.
    assert!(matches!(create(&store).await, Err(StoreError::AtCapacity { .. })));
    assert!(!events.lock().unwrap().contains_key(&c));
    assert!(store.acquire(&c).await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn idle_time_counts_from_the_end_of_the_last_busy_period() {
    let (builder, events) = recording(
        MemoryStore::builder()
            .idle_timeout(Duration::from_secs(60))
            .sweep_interval(Duration::from_secs(3600)),
    );
    let store = builder.build();
    let id = create(&store).await.unwrap();

    // Two overlapping busy periods; the session stays while either is open, however long.
    store.acquire(&id).await.unwrap().unwrap();
    tokio::time::advance(Duration::from_secs(50)).await;
    store.acquire(&id).await.unwrap().unwrap();
    tokio::time::advance(Duration::from_secs(500)).await;
    store.release(&id);
    tokio::time::advance(Duration::from_secs(500)).await;
    assert_eq!(store.sweep().await, 0);
    store.release(&id);

    // The clock starts at the last release.
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(store.sweep().await, 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(store.acquire(&id).await.unwrap().is_none(), "expired on lookup");
    assert_eq!(events.lock().unwrap().get(&id), Some(&vec![CloseReason::Idle]));
    assert_eq!(store.len_hint(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn lifetime_ends_even_a_busy_session() {
    let (builder, events) = recording(
        MemoryStore::builder()
            .idle_timeout(Duration::from_secs(60))
            .max_lifetime(Some(Duration::from_secs(100)))
            .sweep_interval(Duration::from_secs(3600)),
    );
    let store = builder.build();
    let id = create(&store).await.unwrap();
    store.acquire(&id).await.unwrap().unwrap();
    tokio::time::advance(Duration::from_secs(99)).await;
    assert_eq!(store.sweep().await, 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(store.sweep().await, 1);
    assert_eq!(events.lock().unwrap().get(&id), Some(&vec![CloseReason::Lifetime]));
    // The in-flight request finishing later is harmless.
    store.release(&id);
    assert!(store.acquire(&id).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn sweeper_frees_abandoned_sessions_and_stops_with_the_store() {
    let (builder, events) = recording(
        MemoryStore::builder()
            .idle_timeout(Duration::from_secs(60))
            .sweep_interval(Duration::from_secs(10)),
    );
    let store = builder.build();
    let held = create(&store).await.unwrap();
    store.acquire(&held).await.unwrap().unwrap();
    for _ in 0..99 {
        create(&store).await.unwrap();
    }
    assert_eq!(store.len_hint(), Some(100));
    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_alive_tasks(), 1, "one sweeper");

    // Nobody touches the store; the sweeper alone frees the abandoned sessions.
    tokio::time::sleep(Duration::from_secs(71)).await;
    assert_eq!(store.len_hint(), Some(1));
    assert_eq!(events.lock().unwrap().len(), 99);
    assert!(events.lock().unwrap().values().all(|r| r == &[CloseReason::Idle]));

    // Dropping the last handle ends the held session and the sweeper.
    drop(store);
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert_eq!(events.lock().unwrap().get(&held), Some(&vec![CloseReason::Shutdown]));
    assert_eq!(metrics.num_alive_tasks(), 0, "sweeper stopped");
    assert_each_closed_once(&events);
}

#[tokio::test(start_paused = true)]
async fn refusal_at_the_cap_first_clears_expired_sessions() {
    let (builder, events) = recording(
        MemoryStore::builder()
            .max_sessions(2)
            .idle_timeout(Duration::from_secs(60))
            .sweep_interval(Duration::from_secs(3600)),
    );
    let store = builder.build();
    let old = create(&store).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    create(&store).await.unwrap();
    assert!(matches!(create(&store).await, Err(StoreError::AtCapacity { .. })));
    tokio::time::advance(Duration::from_secs(30)).await;
    // `old` has expired but no sweep ran: it must not hold a slot.
    create(&store).await.unwrap();
    assert_eq!(events.lock().unwrap().get(&old), Some(&vec![CloseReason::Idle]));
}

#[tokio::test(start_paused = true)]
async fn remove_reports_existence_and_expired_sessions_close_as_expired() {
    let (builder, events) = recording(MemoryStore::builder().idle_timeout(Duration::from_secs(60)));
    let store = builder.build();
    let a = create(&store).await.unwrap();
    let b = create(&store).await.unwrap();
    assert!(store.remove(&a, CloseReason::Deleted).await.unwrap());
    assert!(!store.remove(&a, CloseReason::Deleted).await.unwrap());
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(!store.remove(&b, CloseReason::Deleted).await.unwrap());
    let events = events.lock().unwrap();
    assert_eq!(events.get(&a), Some(&vec![CloseReason::Deleted]));
    assert_eq!(events.get(&b), Some(&vec![CloseReason::Idle]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_listeners_fire_exactly_once_under_racing_removals() {
    const N: usize = 2000;
    let (builder, events) = recording(
        MemoryStore::builder()
            .idle_timeout(Duration::from_millis(30))
            .sweep_interval(Duration::from_millis(10)),
    );
    let store = builder.build();
    let second = Arc::new(AtomicUsize::new(0));
    {
        let second = second.clone();
        store.add_close_listener(Arc::new(move |_, _| {
            second.fetch_add(1, Ordering::Relaxed);
        }));
    }
    let mut ids = Vec::with_capacity(N);
    for _ in 0..N {
        ids.push(create(&store).await.unwrap());
    }
    let ids = Arc::new(ids);

    // Deleters, lookups (which expire on access), manual sweeps and the background
    // sweeper all race for the same sessions while they cross the idle timeout.
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let (store, ids) = (store.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..4 {
                for (i, id) in ids.iter().enumerate() {
                    match (worker + i + round) % 3 {
                        // Only even sessions are deleted; odd ones must end by expiry.
                        0 if i % 2 == 0 => {
                            store.remove(id, CloseReason::Deleted).await.unwrap();
                        }
                        1 => {
                            if store.acquire(id).await.unwrap().is_some() {
                                store.release(id);
                            }
                        }
                        _ => {
                            if i % 200 == 0 {
                                store.sweep().await;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(store.len_hint(), Some(0));
    assert_each_closed_once(&events);
    let events = events.lock().unwrap();
    assert_eq!(events.len(), N);
    assert_eq!(second.load(Ordering::Relaxed), N);
    let reasons: HashSet<_> = events.values().map(|r| r[0]).collect();
    assert!(reasons.contains(&CloseReason::Idle), "{reasons:?}");
}

#[tokio::test]
async fn a_panicking_listener_does_not_silence_the_others() {
    let (builder, events) = recording(MemoryStore::builder().on_close(|_, _| panic!("listener bug")));
    let store = builder.build();
    let id = create(&store).await.unwrap();
    assert!(store.remove(&id, CloseReason::Closed).await.unwrap());
    assert_eq!(events.lock().unwrap().get(&id), Some(&vec![CloseReason::Closed]));
}

#[tokio::test]
async fn attributes_round_trip_and_null_removes() {
    let store = MemoryStore::new();
    let id = create(&store).await.unwrap();
    assert_eq!(store.attribute(&id, "logLevel").await.unwrap(), None);
    assert!(store.attributes(&id).await.unwrap().is_empty());

    store.set_attribute(&id, "logLevel", json!("debug")).await.unwrap();
    store
        .set_attribute(&id, "subs", json!(["file:///a", "file:///b"]))
        .await
        .unwrap();
    assert_eq!(store.attribute(&id, "logLevel").await.unwrap(), Some(json!("debug")));
    let all = store.attributes(&id).await.unwrap();
    assert_eq!(
        Value::Object(all),
        json!({"logLevel": "debug", "subs": ["file:///a", "file:///b"]})
    );

    store.set_attribute(&id, "logLevel", Value::Null).await.unwrap();
    assert_eq!(store.attribute(&id, "logLevel").await.unwrap(), None);
    store.set_attribute(&id, "missing", Value::Null).await.unwrap();
    assert_eq!(store.attributes(&id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn attributes_of_an_unknown_session_read_empty_and_writes_do_nothing() {
    let store = MemoryStore::new();
    let ghost = SessionId::parse("ghost").unwrap();
    store.set_attribute(&ghost, "k", json!(1)).await.unwrap();
    assert_eq!(store.attribute(&ghost, "k").await.unwrap(), None);
    assert!(store.attributes(&ghost).await.unwrap().is_empty());
}

#[tokio::test]
async fn attribute_bounds_are_enforced() {
    let store = MemoryStore::new();
    let id = create(&store).await.unwrap();
    for i in 0..64 {
        store.set_attribute(&id, &format!("k{i}"), json!(i)).await.unwrap();
    }
    let err = store.set_attribute(&id, "one-too-many", json!(0)).await.unwrap_err();
    assert!(matches!(err, StoreError::AttributeLimit));
    assert_eq!(
        err.to_string(),
        "the session's attributes would exceed the store's limit"
    );
    // Overwriting an existing key does not add one; removing one makes room.
    store.set_attribute(&id, "k0", json!("again")).await.unwrap();
    store.set_attribute(&id, "k1", Value::Null).await.unwrap();
    store.set_attribute(&id, "one-more", json!(0)).await.unwrap();

    // Size: 64 KiB of serialized attributes in total.
    let other = create(&store).await.unwrap();
    let big = "x".repeat(60 * 1024);
    store.set_attribute(&other, "big", json!(big)).await.unwrap();
    let err = store.set_attribute(&other, "more", json!("y".repeat(8 * 1024))).await;
    assert!(matches!(err, Err(StoreError::AttributeLimit)));
    // Replacing the big value with a smaller one frees its bytes.
    store.set_attribute(&other, "big", json!("small")).await.unwrap();
    store
        .set_attribute(&other, "more", json!("y".repeat(8 * 1024)))
        .await
        .unwrap();
    let exact = 64 * 1024
        - serde_json::to_string(&store.attributes(&other).await.unwrap())
            .unwrap()
            .len();
    // `,"fill":""` costs 10 bytes before the string's content.
    store
        .set_attribute(&other, "fill", json!("z".repeat(exact - 10)))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_string(&store.attributes(&other).await.unwrap())
            .unwrap()
            .len(),
        64 * 1024
    );
    assert!(matches!(
        store.set_attribute(&other, "fill", json!("z".repeat(exact - 9))).await,
        Err(StoreError::AttributeLimit)
    ));
}
