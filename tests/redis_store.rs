//! The Redis session store and event log against real `redis-server` processes (one
//! server, and a 3-node Cluster). Needs `redis-server` and `redis-cli` on PATH: without
//! them every test fails with a message saying so.
#![cfg(feature = "redis")]

use mcp_test_support::redis_server;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::json;
use serde_json::value::RawValue;
use tower_mcp_session::event_log::{EventLog, EventLogError, ReadOutcome, RedisEventLog, StreamId, StreamKey};
use tower_mcp_session::store::{RedisConnection, RedisSessionStore, SessionStore, StoreError};
use tower_mcp_session::{CloseReason, Principal, ProtocolVersion, SessionId, SessionRecord};

use redis_server::{Persistence, RedisCluster, RedisServer};

async fn single(server: &RedisServer) -> RedisConnection {
    let client = redis::Client::open(server.url()).unwrap();
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_with_config(client, cfg).await.unwrap().into()
}

async fn cluster(cluster: &RedisCluster) -> RedisConnection {
    let client = redis::cluster::ClusterClient::builder(cluster.urls())
        .connection_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client.get_async_connection().await.unwrap().into()
}

fn sid(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

fn random_sid() -> SessionId {
    use tower_mcp_session::MakeSessionId;
    tower_mcp_session::RandomSessionId.make_session_id()
}

fn record(id: &SessionId) -> SessionRecord {
    let info = RawValue::from_string(r#"{"name":"test-client","version":"1.0"}"#.to_owned()).unwrap();
    let caps = RawValue::from_string(r#"{"roots":{"listChanged":true}}"#.to_owned()).unwrap();
    SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18)
        .with_created_at(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        .with_client(Some(info), Some(caps))
        .with_principal(Some(Principal::new("user-42")))
}

async fn create(store: &RedisSessionStore, id: &SessionId) {
    let reservation = store.reserve().await.unwrap();
    store.insert(reservation, record(id)).await.unwrap();
}

// ---------------------------------------------------------------------------------
// Scenarios shared by the single-server and the Cluster tests.
// ---------------------------------------------------------------------------------

async fn store_lifecycle(conn: RedisConnection, prefix: &str) {
    let store = RedisSessionStore::builder(conn).key_prefix(prefix).build();
    let closed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let c = closed.clone();
    store.add_close_listener(Arc::new(move |id: &SessionId, reason| {
        c.lock().unwrap().push((id.clone(), reason));
    }));

    // Ids with braces and percent signs must still keep all keys in one slot.
    for id in [random_sid(), sid("a}b{c%d"), sid("}x"), sid("{")] {
        assert!(
            store.acquire(&id).await.unwrap().is_none(),
            "{id:?} exists before insert"
        );
        create(&store, &id).await;

        let got = store.acquire(&id).await.unwrap().expect("inserted session");
        assert_eq!(got.id(), &id);
        assert_eq!(got.protocol_version(), ProtocolVersion::V2025_06_18);
        assert_eq!(got.created_at(), UNIX_EPOCH + Duration::from_millis(1_700_000_000_123));
        assert_eq!(
            got.client_info().unwrap().get(),
            r#"{"name":"test-client","version":"1.0"}"#
        );
        assert_eq!(
            got.client_capabilities().unwrap().get(),
            r#"{"roots":{"listChanged":true}}"#
        );
        assert_eq!(got.principal().unwrap().as_str(), "user-42");
        store.release(&id);

        store.set_attribute(&id, "logLevel", json!("debug")).await.unwrap();
        store
            .set_attribute(&id, "subs", json!(["file:///a", "file:///b"]))
            .await
            .unwrap();
        assert_eq!(store.attribute(&id, "logLevel").await.unwrap(), Some(json!("debug")));
        assert_eq!(store.attribute(&id, "missing").await.unwrap(), None);
        let all = store.attributes(&id).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["subs"], json!(["file:///a", "file:///b"]));
        store
            .set_attribute(&id, "logLevel", serde_json::Value::Null)
            .await
            .unwrap();
        assert_eq!(store.attribute(&id, "logLevel").await.unwrap(), None);

        assert!(store.remove(&id, CloseReason::Deleted).await.unwrap());
        assert!(!store.remove(&id, CloseReason::Deleted).await.unwrap());
        assert!(store.acquire(&id).await.unwrap().is_none());
        assert!(store.attributes(&id).await.unwrap().is_empty());
    }
    {
        let closed = closed.lock().unwrap();
        assert_eq!(closed.len(), 4, "one close per session: {closed:?}");
        assert!(closed.iter().all(|(_, r)| *r == CloseReason::Deleted));
    }

    // Attributes of an unknown session are neither written nor create the session.
    let ghost = random_sid();
    store.set_attribute(&ghost, "k", json!(1)).await.unwrap();
    assert_eq!(store.attribute(&ghost, "k").await.unwrap(), None);
    assert!(store.acquire(&ghost).await.unwrap().is_none());
}

/// 200 concurrent reserves from two instances against a cap of 20.
async fn cap_exact(a: RedisConnection, b: RedisConnection, prefix: &str) {
    let build = |conn| {
        RedisSessionStore::builder(conn)
            .key_prefix(prefix)
            .max_sessions(20)
            .retry_after(Duration::from_secs(7))
            .build()
    };
    let stores = [build(a), build(b)];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = stores[i % 2].clone();
        tasks.spawn(async move { store.reserve().await });
    }
    let mut held = Vec::new();
    let mut refused = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(r) => held.push(r),
            Err(StoreError::AtCapacity { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(7));
                refused += 1;
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(held.len(), 20, "exactly the cap is granted");
    assert_eq!(refused, 180);

    // Dropped reservations give their slots back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut held = Vec::new();
    while held.len() < 20 {
        match stores[held.len() % 2].reserve().await {
            Ok(r) => held.push(r),
            Err(StoreError::AtCapacity { .. }) => {
                assert!(Instant::now() < deadline, "slots were not given back");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }

    // Committed reservations stay counted; removing a session frees its slot.
    let mut ids = Vec::new();
    for (i, r) in held.into_iter().enumerate() {
        let id = random_sid();
        stores[i % 2].insert(r, record(&id)).await.unwrap();
        ids.push(id);
    }
    assert!(matches!(stores[0].reserve().await, Err(StoreError::AtCapacity { .. })));
    assert!(stores[1].remove(&ids[0], CloseReason::Deleted).await.unwrap());
    let r = stores[0].reserve().await.expect("a slot is free after remove");
    assert!(matches!(stores[1].reserve().await, Err(StoreError::AtCapacity { .. })));
    drop(r);
    for id in &ids[1..] {
        stores[0].remove(id, CloseReason::Closed).await.unwrap();
    }
}

fn key(session: &SessionId, stream: u64) -> StreamKey {
    StreamKey::new(session.clone(), StreamId::from_raw(stream))
}

fn events(outcome: ReadOutcome) -> (Vec<(u64, Bytes)>, u64, bool) {
    match outcome {
        ReadOutcome::Events {
            events,
            last_seq,
            finished,
        } => (
            events.into_iter().map(|e| (e.seq, e.data)).collect(),
            last_seq,
            finished,
        ),
        other => panic!("expected events, got {other:?}"),
    }
}

async fn log_core(conn: RedisConnection, other: RedisConnection, prefix: &str) {
    let log = RedisEventLog::builder(conn.clone())
        .key_prefix(prefix)
        .max_events(10)
        .max_bytes(1000)
        .poll_interval(Duration::from_millis(5), Duration::from_millis(50))
        .build();
    let remote = RedisEventLog::builder(other.clone())
        .key_prefix(prefix)
        .max_events(10)
        .max_bytes(1000)
        .build();
    let s1 = random_sid();
    let s2 = random_sid();
    let k = key(&s1, 0xabc);

    // Unknown streams.
    assert_eq!(log.read_after(&k, 0, 10).await.unwrap(), ReadOutcome::UnknownStream);
    assert!(matches!(
        log.append(&k, Bytes::from_static(b"x")).await,
        Err(EventLogError::UnknownStream)
    ));
    assert!(matches!(log.finish(&k).await, Err(EventLogError::UnknownStream)));

    // Append and read back exactly.
    log.open(&k).await.unwrap();
    assert_eq!(events(log.read_after(&k, 0, 10).await.unwrap()), (vec![], 0, false));
    for i in 1..=5u64 {
        let seq = log.append(&k, Bytes::from(format!("{{\"n\":{i}}}"))).await.unwrap();
        assert_eq!(seq, i);
    }
    log.open(&k).await.unwrap(); // a no-op on an existing stream
    let (got, last, fin) = events(log.read_after(&k, 0, 100).await.unwrap());
    assert_eq!((last, fin), (5, false));
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(got[2].1, Bytes::from_static(b"{\"n\":3}"));
    let (got, last, _) = events(remote.read_after(&k, 2, 2).await.unwrap());
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(last, 5);
    assert_eq!(events(log.read_after(&k, 5, 10).await.unwrap()).0, vec![]);
    assert_eq!(
        log.read_after(&k, 6, 10).await.unwrap(),
        ReadOutcome::Evicted {
            first_retained: 1,
            last_seq: 5
        },
        "cursor beyond the log"
    );

    // Eviction by count (max 10): 25 events keep 16..=25.
    for _ in 6..=25 {
        log.append(&k, Bytes::from_static(b"{}")).await.unwrap();
    }
    let evicted = ReadOutcome::Evicted {
        first_retained: 16,
        last_seq: 25,
    };
    assert_eq!(log.read_after(&k, 0, 10).await.unwrap(), evicted);
    assert_eq!(log.read_after(&k, 14, 10).await.unwrap(), evicted);
    let (got, last, _) = events(log.read_after(&k, 15, 100).await.unwrap());
    assert_eq!(got.first().map(|e| e.0), Some(16));
    assert_eq!((got.len(), last), (10, 25));

    // Finish: readers that reach the end see it; appends are refused.
    log.finish(&k).await.unwrap();
    log.finish(&k).await.unwrap();
    assert!(events(log.read_after(&k, 20, 100).await.unwrap()).2);
    assert!(
        !events(log.read_after(&k, 20, 2).await.unwrap()).2,
        "not at the end yet"
    );
    assert!(matches!(
        log.append(&k, Bytes::from_static(b"x")).await,
        Err(EventLogError::Finished)
    ));

    // Eviction by bytes (max 1000): 300-byte events keep 3 of them; an oversized one is
    // kept alone.
    let kb = key(&s1, 0xb);
    log.open(&kb).await.unwrap();
    for _ in 0..5 {
        log.append(&kb, Bytes::from(vec![b'a'; 300])).await.unwrap();
    }
    let (got, last, _) = events(log.read_after(&kb, 2, 100).await.unwrap());
    assert_eq!((got.len(), last), (3, 5));
    assert!(matches!(
        log.read_after(&kb, 1, 100).await.unwrap(),
        ReadOutcome::Evicted { .. }
    ));
    log.append(&kb, Bytes::from(vec![b'b'; 5000])).await.unwrap();
    assert_eq!(events(log.read_after(&kb, 5, 100).await.unwrap()).0.len(), 1);
    assert!(matches!(
        log.read_after(&kb, 4, 100).await.unwrap(),
        ReadOutcome::Evicted { .. }
    ));

    // Concurrent producers on two instances get distinct, gap-free, ordered numbers.
    let big = RedisEventLog::builder(conn.clone())
        .key_prefix(prefix)
        .max_events(1000)
        .build();
    let big_remote = RedisEventLog::builder(other.clone())
        .key_prefix(prefix)
        .max_events(1000)
        .build();
    let kc = key(&s1, 0xc);
    big.open(&kc).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..8 {
        let log = if p % 2 == 0 { big.clone() } else { big_remote.clone() };
        let kc = kc.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            for i in 0..50 {
                let data = format!("{p}:{i}");
                let seq = log.append(&kc, Bytes::from(data.clone())).await.unwrap();
                mine.push((seq, data));
            }
            mine
        });
    }
    let mut by_seq = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let mine = done.unwrap();
        // One producer's own appends are ordered.
        assert!(mine.windows(2).all(|w| w[0].0 < w[1].0));
        for (seq, data) in mine {
            assert!(by_seq.insert(seq, data).is_none(), "seq {seq} assigned twice");
        }
    }
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=400).collect::<Vec<_>>()
    );
    let (got, _, _) = events(big.read_after(&kc, 0, 1000).await.unwrap());
    for (seq, data) in got {
        assert_eq!(data, Bytes::from(by_seq[&seq].clone()));
    }

    // Isolation: the same stream id in another session is another stream.
    let other = key(&s2, 0xabc);
    assert_eq!(log.read_after(&other, 0, 10).await.unwrap(), ReadOutcome::UnknownStream);
    log.open(&other).await.unwrap();
    assert_eq!(events(log.read_after(&other, 0, 10).await.unwrap()), (vec![], 0, false));

    // wait_after: woken at once by an append in this process, by polling for another
    // instance's, and returns for finished and unknown streams.
    let waiter = {
        let log = log.clone();
        let other = other.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            log.wait_after(&other, 0).await;
            t.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t = Instant::now();
    log.append(&other, Bytes::from_static(b"1")).await.unwrap();
    let waited = waiter.await.unwrap();
    assert!(
        waited >= Duration::from_millis(140),
        "returned before the append: {waited:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "local wake took {:?}",
        t.elapsed()
    );

    let waiter = {
        let log = log.clone();
        let other = other.clone();
        tokio::spawn(async move { log.wait_after(&other, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiter.is_finished(), "wait_after returned with nothing new");
    let t = Instant::now();
    remote.append(&other, Bytes::from_static(b"2")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "remote wake took {:?}",
        t.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(2), log.wait_after(&k, 25))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), log.wait_after(&key(&s2, 0x404), 0))
        .await
        .unwrap();

    // remove_session drops every stream of that session only.
    log.remove_session(&s1).await.unwrap();
    for k in [&k, &kb, &kc] {
        assert_eq!(log.read_after(k, 0, 10).await.unwrap(), ReadOutcome::UnknownStream);
    }
    assert_eq!(events(log.read_after(&other, 0, 10).await.unwrap()).1, 2);
    log.remove_session(&s2).await.unwrap();
    assert_eq!(log.read_after(&other, 0, 10).await.unwrap(), ReadOutcome::UnknownStream);

    // At most `max_streams` per session: finished streams go first, then the oldest.
    let capped = RedisEventLog::builder(conn.clone())
        .key_prefix(prefix)
        .max_streams(3)
        .build();
    let s3 = random_sid();
    for n in 1..=3 {
        capped.open(&key(&s3, n)).await.unwrap();
    }
    capped.finish(&key(&s3, 2)).await.unwrap();
    capped.open(&key(&s3, 4)).await.unwrap();
    let alive = |n| {
        let capped = capped.clone();
        let s3 = s3.clone();
        async move { capped.read_after(&key(&s3, n), 0, 1).await.unwrap() != ReadOutcome::UnknownStream }
    };
    assert!(alive(1).await && !alive(2).await && alive(3).await && alive(4).await);
    capped.open(&key(&s3, 5)).await.unwrap();
    assert!(!alive(1).await && alive(3).await && alive(4).await && alive(5).await);
    capped.remove_session(&s3).await.unwrap();
}

// ---------------------------------------------------------------------------------
// One server.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_store_lifecycle() {
    let server = RedisServer::start();
    store_lifecycle(single(&server).await, "t:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_cap_is_exact_across_instances() {
    let server = RedisServer::start();
    cap_exact(single(&server).await, single(&server).await, "t:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_event_log() {
    let server = RedisServer::start();
    log_core(single(&server).await, single(&server).await, "t:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_and_requests_refresh_them() {
    let server = RedisServer::start();
    let store = RedisSessionStore::builder(single(&server).await)
        .idle_timeout(Duration::from_millis(1000))
        .build();
    let id = random_sid();
    create(&store, &id).await;
    let meta = format!("mcp:{{{id}}}:meta");
    let ttl: i64 = server.cli(&["PTTL", &meta]).trim().parse().unwrap();
    assert!((900..=1000).contains(&ttl), "idle TTL after insert: {ttl}");

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(store.acquire(&id).await.unwrap().is_some());
    store.release(&id);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // 1.2 s after creation, alive thanks to the request at 0.6 s.
    assert!(store.acquire(&id).await.unwrap().is_some());
    store.release(&id);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(store.acquire(&id).await.unwrap().is_none(), "idle session still there");
    assert_eq!(server.cli(&["EXISTS", &meta]).trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_sessions_do_not_idle_out() {
    let server = RedisServer::start();
    let store = RedisSessionStore::builder(single(&server).await)
        .idle_timeout(Duration::from_millis(600))
        .build();
    let id = random_sid();
    create(&store, &id).await;
    let meta = format!("mcp:{{{id}}}:meta");
    assert!(store.acquire(&id).await.unwrap().is_some());
    // A long request or an attached stream: three idle timeouts pass while busy.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(server.cli(&["EXISTS", &meta]).trim(), "1", "busy session expired");
    store.release(&id);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.cli(&["EXISTS", &meta]).trim(), "1");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        server.cli(&["EXISTS", &meta]).trim(),
        "0",
        "idle after release, still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_ends_sessions_even_when_active() {
    let server = RedisServer::start();
    let store = RedisSessionStore::builder(single(&server).await)
        .idle_timeout(Duration::from_secs(60))
        .max_lifetime(Duration::from_millis(800))
        .build();
    let id = random_sid();
    create(&store, &id).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(store.acquire(&id).await.unwrap().is_some());
        store.release(&id);
    }
    let ttl: i64 = server
        .cli(&["PTTL", &format!("mcp:{{{id}}}:meta")])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl <= 250, "TTL must never pass the lifetime deadline: {ttl}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.acquire(&id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_sweeps_sessions_that_expired_by_ttl() {
    let server = RedisServer::start();
    let store = RedisSessionStore::builder(single(&server).await)
        .idle_timeout(Duration::from_millis(500))
        .max_sessions(3)
        .build();
    for _ in 0..3 {
        create(&store, &random_sid()).await;
    }
    assert!(matches!(store.reserve().await, Err(StoreError::AtCapacity { .. })));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = store.reserve().await.expect("expired sessions must not hold the cap");
    let r2 = store.reserve().await.unwrap();
    let r3 = store.reserve().await.unwrap();
    assert!(matches!(store.reserve().await, Err(StoreError::AtCapacity { .. })));
    drop((r, r2, r3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_reservations_lapse() {
    let server = RedisServer::start();
    let store = RedisSessionStore::builder(single(&server).await)
        .max_sessions(1)
        .reservation_timeout(Duration::from_millis(300))
        .build();
    // A holder that vanishes without dropping (a crashed instance).
    std::mem::forget(store.reserve().await.unwrap());
    assert!(matches!(store.reserve().await, Err(StoreError::AtCapacity { .. })));
    tokio::time::sleep(Duration::from_millis(400)).await;
    store.reserve().await.expect("the abandoned reservation lapsed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_is_one_round_trip() {
    let server = RedisServer::start();
    let store = RedisSessionStore::new(single(&server).await);
    let id = random_sid();
    create(&store, &id).await;
    store.acquire(&id).await.unwrap(); // loads the script
    server.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..100 {
        store.acquire(&id).await.unwrap().unwrap();
    }
    let calls = server.command_calls();
    assert_eq!(calls.get("evalsha"), Some(&100), "{calls:?}");
    // Everything else ran inside the script (or is this probe's own INFO / CONFIG).
    let inside: HashSet<&str> = ["hget", "time", "pexpire", "hgetall", "info", "config|resetstat"].into();
    for name in calls.keys() {
        assert!(
            name == "evalsha" || inside.contains(name.as_str()),
            "extra command {name}: {calls:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_expires() {
    let server = RedisServer::start();
    let conn = single(&server).await;
    let store = RedisSessionStore::builder(conn.clone()).max_sessions(100).build();
    let log = RedisEventLog::new(conn);
    for n in 0..5 {
        let id = random_sid();
        create(&store, &id).await;
        store.set_attribute(&id, "a", json!(n)).await.unwrap();
        store.acquire(&id).await.unwrap();
        store.release(&id);
        let k = key(&id, n);
        log.open(&k).await.unwrap();
        log.append(&k, Bytes::from_static(b"{}")).await.unwrap();
        log.finish(&k).await.unwrap();
    }
    let _r = store.reserve().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let keys = server.cli(&["--scan"]);
    let keys: Vec<&str> = keys.lines().collect();
    // Per session: record, attributes, stream index, stream hash, stream list; plus the cap.
    assert_eq!(keys.len(), 5 * 5 + 1, "{keys:?}");
    for k in keys {
        let ttl: i64 = server.cli(&["PTTL", k]).trim().parse().unwrap();
        assert!(ttl > 0, "key {k} has no TTL ({ttl})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_expire_by_ttl() {
    let server = RedisServer::start();
    let log = RedisEventLog::builder(single(&server).await)
        .stream_ttl(Duration::from_millis(500))
        .build();
    let k = key(&random_sid(), 1);
    log.open(&k).await.unwrap();
    log.append(&k, Bytes::from_static(b"1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    log.append(&k, Bytes::from_static(b"2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        events(log.read_after(&k, 0, 10).await.unwrap()).1,
        2,
        "the append refreshed the TTL"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(log.read_after(&k, 0, 10).await.unwrap(), ReadOutcome::UnknownStream);
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0");
}

/// Stop the server: every operation fails with `Unavailable` within the bound instead
/// of hanging. Start it again: the same handles work again, and with
/// `appendfsync always` nothing acknowledged was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_and_recovers() {
    let mut server = RedisServer::start_with(Persistence::AofAlways, &[]);
    let bound = Duration::from_millis(300);
    let conn = single(&server).await;
    let store = RedisSessionStore::builder(conn.clone())
        .op_timeout(bound)
        .max_sessions(10)
        .build();
    let log = RedisEventLog::builder(conn).op_timeout(bound).build();
    let id = random_sid();
    create(&store, &id).await;
    let k = key(&id, 9);
    log.open(&k).await.unwrap();
    for _ in 0..3 {
        log.append(&k, Bytes::from_static(b"{}")).await.unwrap();
    }

    server.stop();
    let limit = bound + Duration::from_millis(200);
    for _ in 0..3 {
        let t = Instant::now();
        let r = store.acquire(&id).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(t.elapsed() < limit, "acquire took {:?}", t.elapsed());

        let t = Instant::now();
        assert!(matches!(store.reserve().await, Err(StoreError::Unavailable(_))));
        assert!(matches!(
            store.attribute(&id, "a").await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            log.append(&k, Bytes::from_static(b"x")).await,
            Err(EventLogError::Unavailable(_))
        ));
        assert!(matches!(
            log.read_after(&k, 0, 10).await,
            Err(EventLogError::Unavailable(_))
        ));
        assert!(t.elapsed() < limit * 4, "four operations took {:?}", t.elapsed());

        let t = Instant::now();
        log.wait_after(&k, 3).await;
        assert!(
            t.elapsed() < limit + Duration::from_millis(100),
            "wait_after hung: {:?}",
            t.elapsed()
        );
    }

    let down_for = Instant::now();
    tokio::task::block_in_place(|| server.restart());
    let deadline = Instant::now() + Duration::from_secs(15);
    let record = loop {
        match store.acquire(&id).await {
            Ok(found) => break found,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no recovery 15 s after restart: {e:?}"),
        }
    };
    eprintln!("recovered {:?} after the restart began", down_for.elapsed());
    assert!(record.is_some(), "the session survived with appendfsync always");
    store.release(&id);
    let (got, last, _) = events(log.read_after(&k, 0, 10).await.unwrap());
    assert_eq!((got.len(), last), (3, 3));
    assert_eq!(log.append(&k, Bytes::from_static(b"{}")).await.unwrap(), 4);
}

// ---------------------------------------------------------------------------------
// A 3-node Cluster: the same scenarios, started once (creating a cluster takes
// seconds).
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_core() {
    let nodes = RedisCluster::start(3);
    let conn = cluster(&nodes).await;
    assert!(conn.is_cluster());
    store_lifecycle(conn.clone(), "c:").await;
    cap_exact(conn.clone(), cluster(&nodes).await, "c:").await;
    log_core(conn.clone(), cluster(&nodes).await, "c:").await;

    // Sessions spread over the nodes, and each session's keys share a slot (otherwise
    // the scripts above would have failed with CROSSSLOT).
    let store = RedisSessionStore::new(conn.clone());
    let log = RedisEventLog::new(conn);
    for n in 0..30 {
        let id = random_sid();
        create(&store, &id).await;
        store.set_attribute(&id, "n", json!(n)).await.unwrap();
        log.open(&key(&id, 1)).await.unwrap();
        log.append(&key(&id, 1), Bytes::from_static(b"{}")).await.unwrap();
    }
    let per_node = nodes.keys_per_node();
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "keys all on one node: {per_node:?}"
    );
}
