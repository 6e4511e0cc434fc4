//! The Redis session store and event log against real `redis-server` processes (one
//! server, and a 3-node Cluster), through the `SessionStore` and `EventLog` contracts
//! alone. Needs `redis-server` and `redis-cli` on PATH: without them every test fails
//! with a message saying so. What the layer does on top (busy keep-alive, close
//! listeners, cap policy) is tested through the layer in `redis_layer.rs`.
#![cfg(feature = "redis")]

use mcp_test_support::redis_server;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tower_mcp_session::event_log::{EventLog, EventLogError, ReadOutcome, StreamId, StreamKey};
use tower_mcp_session::store::{Attributes, Expiry, Replaced, SessionStore, StoreError};
use tower_mcp_session::{CloseReason, Principal, ProtocolVersion, SessionId, SessionRecord};
use tower_mcp_session_redis::{RedisConnection, RedisEventLog, RedisSessionStore};

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

fn expiry(idle_ms: u64, lifetime_ms: u64) -> Expiry {
    Expiry {
        idle: Duration::from_millis(idle_ms),
        lifetime: Duration::from_millis(lifetime_ms),
    }
}

/// The layer's defaults: 30 minutes idle, 24 hours of life.
const LONG: Expiry = Expiry {
    idle: Duration::from_secs(30 * 60),
    lifetime: Duration::from_secs(24 * 3600),
};

async fn create(store: &RedisSessionStore, id: &SessionId, expiry: Expiry) {
    store.create(&record(id), &Map::new(), expiry, None).await.unwrap();
}

fn attrs(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// Sweep until a call reports nothing and says there is no more; every report, in order.
async fn drain(store: &RedisSessionStore, max: usize) -> Vec<(SessionId, CloseReason)> {
    let mut out = Vec::new();
    loop {
        let batch = store.take_expired(max).await.unwrap();
        assert!(batch.sessions.len() <= max);
        let done = batch.sessions.is_empty() && !batch.more;
        out.extend(batch.sessions.into_iter().map(|e| (e.id, e.reason)));
        if done {
            return out;
        }
    }
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.cli(&["PTTL", key]).trim().parse().unwrap()
}

// ---------------------------------------------------------------------------------
// Scenarios shared by the single-server and the Cluster tests.
// ---------------------------------------------------------------------------------

async fn store_lifecycle(conn: RedisConnection, prefix: &str) {
    let store = RedisSessionStore::builder(conn).key_prefix(prefix).build();

    // Ids with braces and percent signs must still keep all keys in one slot.
    for id in [random_sid(), sid("a}b{c%d"), sid("}x"), sid("{")] {
        assert!(
            store.load(&id, None).await.unwrap().is_none(),
            "{id:?} exists before create"
        );
        assert!(!store.touch(&id, LONG.idle).await.unwrap());
        store.create(&record(&id), &Map::new(), LONG, None).await.unwrap();
        assert!(
            matches!(
                store.create(&record(&id), &Map::new(), LONG, None).await,
                Err(StoreError::Exists)
            ),
            "a live id is refused"
        );

        for refresh in [Some(LONG.idle), None] {
            let got = store.load(&id, refresh).await.unwrap().expect("created session");
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
        }
        assert!(store.touch(&id, LONG.idle).await.unwrap());

        // Attributes: version 0 and empty at first, then compare-and-set.
        assert_eq!(store.attributes(&id).await.unwrap(), Some(Attributes::default()));
        let first = attrs(json!({"logLevel": "debug", "subs": ["file:///a", "file:///b"]}));
        assert_eq!(store.replace_attributes(&id, 0, &first).await.unwrap(), Replaced::Done);
        let read = store.attributes(&id).await.unwrap().unwrap();
        assert_eq!((read.map.clone(), read.version), (first.clone(), 1));
        assert_eq!(
            store.replace_attributes(&id, 0, &Map::new()).await.unwrap(),
            Replaced::Conflict,
            "a stale version writes nothing"
        );
        assert_eq!(store.attributes(&id).await.unwrap().unwrap().map, first);
        assert_eq!(
            store.replace_attributes(&id, 1, &Map::new()).await.unwrap(),
            Replaced::Done
        );
        assert_eq!(
            store.attributes(&id).await.unwrap(),
            Some(Attributes {
                map: Map::new(),
                version: 2
            })
        );
        store.replace_attributes(&id, 2, &first).await.unwrap();

        assert!(store.delete(&id).await.unwrap());
        assert!(!store.delete(&id).await.unwrap());
        assert!(store.load(&id, Some(LONG.idle)).await.unwrap().is_none());
        assert!(!store.touch(&id, LONG.idle).await.unwrap());
        assert_eq!(
            store.attributes(&id).await.unwrap(),
            None,
            "attributes die with the session"
        );
        assert_eq!(
            store.replace_attributes(&id, 3, &first).await.unwrap(),
            Replaced::Missing
        );
        // A deleted id can be created again.
        store.create(&record(&id), &first, LONG, None).await.unwrap();
        assert_eq!(
            store.attributes(&id).await.unwrap(),
            Some(Attributes { map: first, version: 0 })
        );
        assert!(store.delete(&id).await.unwrap());
    }

    // Attributes of an unknown session are neither written nor create the session.
    let ghost = random_sid();
    assert_eq!(
        store
            .replace_attributes(&ghost, 0, &attrs(json!({"k": 1})))
            .await
            .unwrap(),
        Replaced::Missing
    );
    assert_eq!(store.attributes(&ghost).await.unwrap(), None);
    assert!(store.load(&ghost, Some(LONG.idle)).await.unwrap().is_none());
    assert!(matches!(
        store.idle_sessions(Duration::ZERO, 10).await,
        Err(StoreError::Unsupported)
    ));

    // Deleted sessions are never reported as expired.
    assert_eq!(drain(&store, 16).await, vec![]);
}

/// 200 concurrent reserves from two instances against a cap of 20.
async fn cap_exact(a: RedisConnection, b: RedisConnection, prefix: &str) {
    // Exactness is the point here, not latency: 200 scripts at once on a loaded 2-core
    // machine (a 3-node Cluster in the same box) can take longer than the default 1 s.
    let build = |conn| {
        RedisSessionStore::builder(conn)
            .key_prefix(prefix)
            .op_timeout(Duration::from_secs(10))
            .build()
    };
    let stores = [build(a), build(b)];
    let hold = Duration::from_secs(60);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = stores[i % 2].clone();
        tasks.spawn(async move { store.reserve(20, hold).await });
    }
    let mut held = Vec::new();
    let mut refused = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(slot) => held.push(slot),
            Err(StoreError::Full) => refused += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(held.len(), 20, "exactly the cap is granted");
    assert_eq!(refused, 180);
    assert_eq!(held.iter().collect::<HashSet<_>>().len(), 20, "distinct slots");

    // Cancelled slots are given back at once, from either instance.
    for (i, slot) in held.drain(..).enumerate() {
        stores[(i + 1) % 2].cancel(slot).await.unwrap();
    }
    for i in 0..20 {
        held.push(stores[i % 2].reserve(20, hold).await.expect("a cancelled slot is free"));
    }
    assert!(matches!(stores[0].reserve(20, hold).await, Err(StoreError::Full)));

    // Consumed slots stay counted as sessions; deleting a session frees its place.
    let mut ids = Vec::new();
    let consumed = held[0];
    for (i, slot) in held.into_iter().enumerate() {
        let id = random_sid();
        stores[i % 2]
            .create(&record(&id), &Map::new(), LONG, Some(slot))
            .await
            .unwrap();
        ids.push(id);
    }
    assert!(matches!(stores[0].reserve(20, hold).await, Err(StoreError::Full)));
    // Cancelling a consumed slot changes nothing.
    stores[1].cancel(consumed).await.unwrap();
    assert!(matches!(stores[1].reserve(20, hold).await, Err(StoreError::Full)));
    assert!(stores[1].delete(&ids[0]).await.unwrap());
    let slot = stores[0].reserve(20, hold).await.expect("a place is free after delete");
    assert!(matches!(stores[1].reserve(20, hold).await, Err(StoreError::Full)));
    stores[1].cancel(slot).await.unwrap();
    for id in &ids[1..] {
        assert!(stores[0].delete(id).await.unwrap());
    }
    assert_eq!(drain(&stores[0], 64).await, vec![]);
}

/// Sessions expire while two instances sweep concurrently: each expiry is reported
/// exactly once, deleted and live sessions never.
async fn reported_once(a: RedisConnection, b: RedisConnection, prefix: &str) {
    let build = |conn| RedisSessionStore::builder(conn).key_prefix(prefix).build();
    let stores = [build(a), build(b)];
    let short = expiry(300, 60_000);
    let mut expiring = HashSet::new();
    let mut deleted = Vec::new();
    let mut live = Vec::new();
    for i in 0..60 {
        let id = random_sid();
        let store = &stores[i % 2];
        match i % 6 {
            0 => {
                create(store, &id, short).await;
                deleted.push(id);
            }
            1 => {
                create(store, &id, LONG).await;
                live.push(id);
            }
            _ => {
                create(store, &id, short).await;
                expiring.insert(id);
            }
        }
    }
    for (i, id) in deleted.iter().enumerate() {
        assert!(stores[(i + 1) % 2].delete(id).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let sweeps = stores.iter().cloned().map(|store| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            // Small batches, so the two sweeps interleave.
            for _ in 0..100 {
                let batch = store.take_expired(3).await.unwrap();
                mine.extend(batch.sessions);
                if !batch.more {
                    tokio::task::yield_now().await;
                }
            }
            mine
        })
    });
    let mut seen: HashMap<SessionId, usize> = HashMap::new();
    for sweep in sweeps {
        for expired in sweep.await.unwrap() {
            assert_eq!(expired.reason, CloseReason::Idle);
            *seen.entry(expired.id).or_default() += 1;
        }
    }
    assert!(seen.values().all(|n| *n == 1), "reported twice: {seen:?}");
    let seen: HashSet<SessionId> = seen.into_keys().collect();
    assert_eq!(seen, expiring, "every expiry reported, nothing else");
    for id in &live {
        assert!(stores[0].load(id, None).await.unwrap().is_some());
        assert!(stores[1].delete(id).await.unwrap());
    }
    assert_eq!(drain(&stores[0], 64).await, vec![]);
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

    // At most `max_streams` per session: finished streams make room; an unfinished one
    // never does, so the open is refused.
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
    assert!(matches!(
        capped.open(&key(&s3, 5)).await,
        Err(tower_mcp_session::event_log::EventLogError::TooManyStreams { limit: 3 })
    ));
    assert!(alive(1).await && alive(3).await && alive(4).await && !alive(5).await);
    capped.remove_session(&s3).await.unwrap();
}

/// A stream whose keys expired unfinished (the standalone stream of a session whose GET
/// stream went quiet) and is opened again goes on after its last number: an old cursor
/// reads as evicted, never as the new stream's events under reused ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_again_after_its_keys_expired_never_reuses_ids() {
    let server = RedisServer::start();
    let log = RedisEventLog::builder(single(&server).await)
        .stream_ttl(Duration::from_millis(300))
        .build();
    let k = key(&random_sid(), 7);
    log.open(&k).await.unwrap();
    for n in 1..=3 {
        assert_eq!(log.append(&k, Bytes::from(format!("old {n}"))).await.unwrap(), n);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(log.read_after(&k, 0, 10).await.unwrap(), ReadOutcome::UnknownStream);
    log.open(&k).await.unwrap();
    for n in 4..=8 {
        assert_eq!(log.append(&k, Bytes::from(format!("new {n}"))).await.unwrap(), n);
    }
    assert_eq!(
        log.read_after(&k, 1, 10).await.unwrap(),
        ReadOutcome::Evicted {
            first_retained: 4,
            last_seq: 8
        }
    );
    let (got, last, _) = events(log.read_after(&k, 3, 10).await.unwrap());
    assert_eq!((got.len(), last), (5, 8));
    // A finished stream leaves no numbering behind; nor does a removed session.
    log.remove_session(k.session()).await.unwrap();
    log.open(&k).await.unwrap();
    assert_eq!(log.append(&k, Bytes::from_static(b"fresh")).await.unwrap(), 1);
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
async fn single_expiry_is_reported_once_across_instances() {
    let server = RedisServer::start();
    reported_once(single(&server).await, single(&server).await, "t:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_event_log() {
    let server = RedisServer::start();
    log_core(single(&server).await, single(&server).await, "t:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_and_refreshing_loads_keep_them() {
    let server = RedisServer::start();
    let store = RedisSessionStore::new(single(&server).await);
    let idle = expiry(1000, 60_000);
    let id = random_sid();
    create(&store, &id, idle).await;
    let meta = format!("mcp:{{{id}}}:meta");
    let ttl = pttl(&server, &meta);
    assert!((900..=1000).contains(&ttl), "idle TTL after create: {ttl}");

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(store.load(&id, Some(idle.idle)).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    // 1.2 s after creation, alive thanks to the refresh at 0.6 s; a load without
    // refresh reads it and changes nothing.
    let before = pttl(&server, &meta);
    assert!(store.load(&id, None).await.unwrap().is_some());
    assert!(pttl(&server, &meta) <= before, "a plain load refreshed the TTL");
    assert!(store.touch(&id, idle.idle).await.unwrap());
    assert!(pttl(&server, &meta) > 900, "touch pushes the idle expiry");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        store.load(&id, Some(idle.idle)).await.unwrap().is_none(),
        "idle session still there"
    );
    assert!(!store.touch(&id, idle.idle).await.unwrap(), "touch does not resurrect");
    assert_eq!(server.cli(&["EXISTS", &meta]).trim(), "0");
    assert_eq!(drain(&store, 8).await, vec![(id, CloseReason::Idle)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_ends_sessions_even_when_active() {
    let server = RedisServer::start();
    let store = RedisSessionStore::new(single(&server).await);
    let id = random_sid();
    let time = |server: &RedisServer| -> i64 {
        let out = server.cli(&["TIME"]);
        let mut it = out.lines().map(|l| l.trim().parse::<i64>().unwrap());
        it.next().unwrap() * 1000 + it.next().unwrap() / 1000
    };
    let before = time(&server);
    create(&store, &id, expiry(60_000, 800)).await;
    let after = time(&server);
    // The deadline is stored with the record, in Redis server time.
    let dl: i64 = server
        .cli(&["HGET", &format!("mcp:{{{id}}}:meta"), "dl"])
        .trim()
        .parse()
        .unwrap();
    assert!((before + 800..=after + 800).contains(&dl), "dl {dl} not in server time");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(store.load(&id, Some(Duration::from_secs(60))).await.unwrap().is_some());
        assert!(store.touch(&id, Duration::from_secs(60)).await.unwrap());
    }
    let ttl = pttl(&server, &format!("mcp:{{{id}}}:meta"));
    assert!(ttl <= 250, "TTL must never pass the lifetime deadline: {ttl}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.load(&id, Some(Duration::from_secs(60))).await.unwrap().is_none());
    assert_eq!(drain(&store, 8).await, vec![(id, CloseReason::Lifetime)]);
}

/// Expired sessions hold their place until `take_expired` confirms them (the layer
/// sweeps when `reserve` says full); then the places are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_frees_sessions_that_expired_by_ttl_once_taken() {
    let server = RedisServer::start();
    let store = RedisSessionStore::new(single(&server).await);
    let hold = Duration::from_secs(5);
    for _ in 0..3 {
        let slot = store.reserve(3, hold).await.unwrap();
        store
            .create(&record(&random_sid()), &Map::new(), expiry(500, 60_000), Some(slot))
            .await
            .unwrap();
    }
    assert!(matches!(store.reserve(3, hold).await, Err(StoreError::Full)));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let taken = store.take_expired(16).await.unwrap();
    assert_eq!(taken.sessions.len(), 3);
    assert!(!taken.more);
    for _ in 0..3 {
        store
            .reserve(3, hold)
            .await
            .expect("expired sessions must not hold the cap");
    }
    assert!(matches!(store.reserve(3, hold).await, Err(StoreError::Full)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_slots_lapse_unreported() {
    let server = RedisServer::start();
    let store = RedisSessionStore::new(single(&server).await);
    // A holder that vanishes without cancelling (a crashed instance).
    let _lost = store.reserve(1, Duration::from_millis(300)).await.unwrap();
    assert!(matches!(
        store.reserve(1, Duration::from_secs(5)).await,
        Err(StoreError::Full)
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(drain(&store, 8).await, vec![], "a lapsed slot is no session");
    let slot = store
        .reserve(1, Duration::from_secs(5))
        .await
        .expect("the abandoned slot lapsed");
    // A session created on a slot that lapsed meanwhile still counts.
    let id = random_sid();
    store.create(&record(&id), &Map::new(), LONG, Some(slot)).await.unwrap();
    assert!(matches!(
        store.reserve(1, Duration::from_secs(5)).await,
        Err(StoreError::Full)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_expired_is_bounded_and_says_when_there_is_more() {
    let server = RedisServer::start();
    let store = RedisSessionStore::new(single(&server).await);
    for _ in 0..20 {
        create(&store, &random_sid(), expiry(100, 60_000)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = store.take_expired(5).await.unwrap();
    assert_eq!(first.sessions.len(), 5);
    assert!(first.more);
    let rest = drain(&store, 5).await;
    assert_eq!(rest.len(), 15);
    assert_eq!(store.take_expired(0).await.unwrap(), Default::default());
}

/// A session refreshed since its last check is checked, found live, and looked at
/// again only when its new expiry has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_sessions_are_not_reported() {
    let server = RedisServer::start();
    let store = RedisSessionStore::new(single(&server).await);
    let id = random_sid();
    create(&store, &id, expiry(400, 60_000)).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(store.touch(&id, Duration::from_millis(400)).await.unwrap());
        assert_eq!(drain(&store, 8).await, vec![]);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(drain(&store, 8).await, vec![(id, CloseReason::Idle)]);
}

/// A session deleted (even after being read by a sweep) is never reported; one that
/// expired cannot be deleted, and is reported instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_sessions_are_never_reported() {
    let server = RedisServer::start();
    let conn = single(&server).await;
    let store = RedisSessionStore::new(conn.clone());
    let deleted = random_sid();
    create(&store, &deleted, expiry(200, 60_000)).await;
    assert!(store.delete(&deleted).await.unwrap());
    // The deleter's removal of the index member lost (an instance gone mid-delete):
    // the tombstone keeps the sweep from reporting it.
    let orphan = random_sid();
    create(&store, &orphan, expiry(200, 60_000)).await;
    let dl = server.cli(&["HGET", &format!("mcp:{{{orphan}}}:meta"), "dl"]);
    assert!(store.delete(&orphan).await.unwrap());
    server.cli(&["ZADD", "mcp:{%index}:sessions", "0", &format!("{}:{orphan}", dl.trim())]);
    let expired = random_sid();
    create(&store, &expired, expiry(200, 60_000)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!store.delete(&expired).await.unwrap(), "an expired session is not live");
    assert_eq!(drain(&store, 8).await, vec![(expired, CloseReason::Idle)]);
    assert_eq!(server.cli(&["ZCARD", "mcp:{%index}:sessions"]).trim(), "0");
}

/// Two instances add keys to one session's attributes at the same time: with the
/// compare-and-set retried on conflict, no write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_compare_and_set_across_instances() {
    let server = RedisServer::start();
    let stores = [
        RedisSessionStore::new(single(&server).await),
        RedisSessionStore::new(single(&server).await),
    ];
    let id = random_sid();
    create(&stores[0], &id, LONG).await;
    let mut tasks = tokio::task::JoinSet::new();
    let conflicts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for w in 0..4 {
        let store = stores[w % 2].clone();
        let id = id.clone();
        let conflicts = conflicts.clone();
        tasks.spawn(async move {
            for n in 0..10 {
                loop {
                    let mut current = store.attributes(&id).await.unwrap().unwrap();
                    current.map.insert(format!("w{w}n{n}"), json!(n));
                    match store
                        .replace_attributes(&id, current.version, &current.map)
                        .await
                        .unwrap()
                    {
                        Replaced::Done => break,
                        Replaced::Conflict => {
                            conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Replaced::Missing => panic!("session vanished"),
                    }
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let end = stores[1].attributes(&id).await.unwrap().unwrap();
    assert_eq!((end.map.len(), end.version), (40, 40));
    eprintln!("{} conflicts", conflicts.load(std::sync::atomic::Ordering::Relaxed));
    // Attribute writes do not change the session's expiry.
    let ttl = pttl(&server, &format!("mcp:{{{id}}}:meta"));
    assert!(ttl > 0 && ttl <= 30 * 60 * 1000);
}

/// Two instances create the same id at once: one wins, the other is told `Exists`
/// and wrote nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_id_one_wins() {
    let server = RedisServer::start();
    let stores = [
        RedisSessionStore::new(single(&server).await),
        RedisSessionStore::new(single(&server).await),
    ];
    for _ in 0..20 {
        let id = random_sid();
        let (rec, by_a, by_b) = (record(&id), attrs(json!({"by": "a"})), attrs(json!({"by": "b"})));
        let (a, b) = tokio::join!(
            stores[0].create(&rec, &by_a, LONG, None),
            stores[1].create(&rec, &by_b, LONG, None),
        );
        let winner = match (a, b) {
            (Ok(()), Err(StoreError::Exists)) => "a",
            (Err(StoreError::Exists), Ok(())) => "b",
            other => panic!("{other:?}"),
        };
        let read = stores[0].attributes(&id).await.unwrap().unwrap();
        assert_eq!(read.map["by"], winner);
    }
    assert_eq!(server.cli(&["ZCARD", "mcp:{%index}:sessions"]).trim(), "20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_refresh_is_one_round_trip() {
    let server = RedisServer::start();
    let store = RedisSessionStore::new(single(&server).await);
    let id = random_sid();
    create(&store, &id, LONG).await;
    store.load(&id, Some(LONG.idle)).await.unwrap(); // loads the script
    server.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..100 {
        store.load(&id, Some(LONG.idle)).await.unwrap().unwrap();
    }
    let calls = server.command_calls();
    assert_eq!(calls.get("evalsha"), Some(&100), "{calls:?}");
    // Everything else ran inside the script (or is this probe's own INFO / CONFIG).
    // `hset` writes the last activity `la`, inside the same script.
    let inside: HashSet<&str> = [
        "hget",
        "time",
        "pexpire",
        "pttl",
        "hmget",
        "hset",
        "info",
        "config|resetstat",
    ]
    .into();
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
    let store = RedisSessionStore::new(conn.clone());
    let log = RedisEventLog::new(conn);
    for n in 0..5 {
        let id = random_sid();
        let slot = store.reserve(100, Duration::from_secs(60)).await.unwrap();
        store.create(&record(&id), &Map::new(), LONG, Some(slot)).await.unwrap();
        store.replace_attributes(&id, 0, &attrs(json!({"a": n}))).await.unwrap();
        store.load(&id, Some(LONG.idle)).await.unwrap();
        let k = key(&id, n);
        log.open(&k).await.unwrap();
        log.append(&k, Bytes::from_static(b"{}")).await.unwrap();
        log.finish(&k).await.unwrap();
    }
    let gone = random_sid();
    create(&store, &gone, LONG).await;
    assert!(store.delete(&gone).await.unwrap());
    let _slot = store.reserve(100, Duration::from_secs(60)).await.unwrap();
    let keys = server.cli(&["--scan"]);
    let keys: Vec<&str> = keys.lines().collect();
    // Per session: record (attributes inside), stream index, stream hash, stream list,
    // the numbering hash (it keeps the session's byte count) and the finished set; the
    // deleted session's tombstone; the sessions index, the ids index and the slots.
    assert_eq!(keys.len(), 5 * 6 + 1 + 3, "{keys:?}");
    for k in keys {
        let ttl = pttl(&server, k);
        assert!(ttl > 0, "key {k} has no TTL ({ttl})");
    }
}

/// Attributes end with their session: one key holds both, so an idle expiry takes
/// them and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_die_with_the_session() {
    let server = RedisServer::start();
    let store = RedisSessionStore::new(single(&server).await);
    let id = random_sid();
    store
        .create(&record(&id), &attrs(json!({"a": 1})), expiry(300, 60_000), None)
        .await
        .unwrap();
    store
        .replace_attributes(&id, 0, &attrs(json!({"a": 2, "b": [1, 2]})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.attributes(&id).await.unwrap(), None);
    assert_eq!(drain(&store, 8).await.len(), 1);
    // The index went with its last member; nothing of the session is left.
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0");
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
    // Only the session's stream numbering is left (a stream opened again goes on after
    // its last number): one small hash, with a TTL of its own, gone with the session.
    let left = server.cli(&["--scan"]);
    let left: Vec<&str> = left.lines().collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with(":evl"), "{left:?}");
    assert!(pttl(&server, left[0]) > 0);
    log.remove_session(k.session()).await.unwrap();
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0");
}

/// Stop the server: every operation fails with `Backend` within the bound instead of
/// hanging. Start it again: the same handles work again, and with `appendfsync always`
/// nothing acknowledged was lost (sessions, their index, attributes, streams).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_and_recovers() {
    let mut server = RedisServer::start_with(Persistence::AofAlways, &[]);
    let bound = Duration::from_millis(300);
    let conn = single(&server).await;
    let store = RedisSessionStore::builder(conn.clone()).op_timeout(bound).build();
    let log = RedisEventLog::builder(conn).op_timeout(bound).build();
    let id = random_sid();
    let slot = store.reserve(10, Duration::from_secs(60)).await.unwrap();
    store
        .create(&record(&id), &attrs(json!({"a": 1})), LONG, Some(slot))
        .await
        .unwrap();
    let short = random_sid();
    create(&store, &short, expiry(1500, 60_000)).await;
    let k = key(&id, 9);
    log.open(&k).await.unwrap();
    for _ in 0..3 {
        log.append(&k, Bytes::from_static(b"{}")).await.unwrap();
    }

    server.stop();
    let limit = bound + Duration::from_millis(200);
    for _ in 0..3 {
        let t = Instant::now();
        let r = store.load(&id, Some(LONG.idle)).await;
        assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
        assert!(t.elapsed() < limit, "load took {:?}", t.elapsed());

        let t = Instant::now();
        assert!(matches!(
            store.reserve(10, Duration::from_secs(60)).await,
            Err(StoreError::Backend(_))
        ));
        assert!(matches!(store.attributes(&id).await, Err(StoreError::Backend(_))));
        assert!(matches!(store.take_expired(8).await, Err(StoreError::Backend(_))));
        assert!(matches!(
            log.append(&k, Bytes::from_static(b"x")).await,
            Err(EventLogError::Unavailable(_))
        ));
        assert!(matches!(
            log.read_after(&k, 0, 10).await,
            Err(EventLogError::Unavailable(_))
        ));
        assert!(t.elapsed() < limit * 5, "five operations took {:?}", t.elapsed());

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
        match store.load(&id, Some(LONG.idle)).await {
            Ok(found) => break found,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no recovery 15 s after restart: {e:?}"),
        }
    };
    eprintln!("recovered {:?} after the restart began", down_for.elapsed());
    assert!(record.is_some(), "the session survived with appendfsync always");
    assert_eq!(
        store.attributes(&id).await.unwrap().unwrap().map,
        attrs(json!({"a": 1}))
    );
    let (got, last, _) = events(log.read_after(&k, 0, 10).await.unwrap());
    assert_eq!((got.len(), last), (3, 3));
    assert_eq!(log.append(&k, Bytes::from_static(b"{}")).await.unwrap(), 4);
    // The index survived too: the session that expired during the outage is reported,
    // and the long one still holds its place toward the cap.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(drain(&store, 8).await, vec![(short, CloseReason::Idle)]);
    assert_eq!(server.cli(&["ZCARD", "mcp:{%index}:sessions"]).trim(), "1");
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
    reported_once(conn.clone(), cluster(&nodes).await, "c:").await;
    log_core(conn.clone(), cluster(&nodes).await, "c:").await;

    // Sessions spread over the nodes, and each session's keys share a slot (otherwise
    // the scripts above would have failed with CROSSSLOT).
    let store = RedisSessionStore::new(conn.clone());
    let log = RedisEventLog::new(conn);
    for n in 0..30 {
        let id = random_sid();
        create(&store, &id, LONG).await;
        store.replace_attributes(&id, 0, &attrs(json!({"n": n}))).await.unwrap();
        log.open(&key(&id, 1)).await.unwrap();
        log.append(&key(&id, 1), Bytes::from_static(b"{}")).await.unwrap();
    }
    let per_node = nodes.keys_per_node();
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "keys all on one node: {per_node:?}"
    );
}

/// The shared conformance suite against Redis: each fresh backend is its own key prefix
/// on one private server; the second handle is another store, on its own connection, with
/// the same prefix (another instance of the application).
#[cfg(feature = "conformance")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = Arc::new(RedisServer::start());
    let next = Arc::new(AtomicUsize::new(0));
    let url = server.url();
    let fresh = {
        let server = server.clone();
        move || {
            let (server, prefix) = (server.clone(), format!("conf{}:", next.fetch_add(1, Ordering::SeqCst)));
            async move {
                let conn = single(&server).await;
                RedisSessionStore::builder(conn).key_prefix(prefix).build()
            }
        }
    };
    let second = move |store: &RedisSessionStore| {
        let prefix = store.key_prefix().to_owned();
        let url = url.clone();
        async move {
            let client = redis::Client::open(url).unwrap();
            let conn: RedisConnection = ConnectionManager::new(client).await.unwrap().into();
            RedisSessionStore::builder(conn).key_prefix(prefix).build()
        }
    };
    tower_mcp_session::conformance::session_store_with(fresh, second).await;
}

/// The conformance suite again, every handle with its local cache on (each its own
/// pub/sub subscription): what the cache answers must be what Redis would.
#[cfg(feature = "conformance")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_with_local_cache_conforms() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = Arc::new(RedisServer::start());
    let next = Arc::new(AtomicUsize::new(0));
    let url = server.url();
    let cached = |url: String, prefix: String| async move {
        let client = redis::Client::open(url).unwrap();
        let conn: RedisConnection = ConnectionManager::new(client.clone()).await.unwrap().into();
        RedisSessionStore::builder(conn)
            .key_prefix(prefix)
            .local_cache(client)
            .build()
    };
    let fresh = {
        let url = url.clone();
        move || cached(url.clone(), format!("cached{}:", next.fetch_add(1, Ordering::SeqCst)))
    };
    let second = move |store: &RedisSessionStore| cached(url.clone(), store.key_prefix().to_owned());
    tower_mcp_session::conformance::session_store_with(fresh, second).await;
}

/// The event log conformance suite against Redis, set up as `redis_store_conforms`: a
/// key prefix per fresh log on one private server; the second handle is another log with
/// the same prefix and bounds on its own connection.
#[cfg(feature = "conformance")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_event_log_conforms() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower_mcp_session::conformance::LogLimits;
    let server = Arc::new(RedisServer::start());
    let next = Arc::new(AtomicUsize::new(0));
    let url = server.url();
    let bounded = |conn: RedisConnection, prefix: String, limits: LogLimits| {
        RedisEventLog::builder(conn)
            .key_prefix(prefix)
            .max_events(limits.max_events_per_stream as u64)
            .max_bytes(limits.max_bytes_per_stream as u64)
            .max_session_bytes(limits.max_bytes_per_session as u64)
            .max_streams(limits.max_streams_per_session as u64)
            .build()
    };
    let fresh = {
        let server = server.clone();
        move |limits: LogLimits| {
            let (server, prefix) = (
                server.clone(),
                format!("logconf{}:", next.fetch_add(1, Ordering::SeqCst)),
            );
            async move { bounded(single(&server).await, prefix, limits) }
        }
    };
    let second = move |log: &RedisEventLog, limits: LogLimits| {
        let prefix = log.key_prefix().to_owned();
        let url = url.clone();
        async move {
            let client = redis::Client::open(url).unwrap();
            let conn: RedisConnection = ConnectionManager::new(client).await.unwrap().into();
            bounded(conn, prefix, limits)
        }
    };
    tower_mcp_session::conformance::event_log_with(fresh, second).await;
}

/// An append within the session's byte bound, and an open at the session's stream bound,
/// look at no other stream of the session: counted by the server, with 16 streams held
/// (the bound) before each of 8 more single-answer streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_and_opens_at_the_bound_read_no_other_stream() {
    let server = RedisServer::start();
    let log = RedisEventLog::builder(single(&server).await).max_streams(16).build();
    let session = random_sid();
    for n in 0..16 {
        let k = key(&session, n);
        log.open(&k).await.unwrap();
        log.append_last(&k, Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}"))
            .await
            .unwrap();
    }
    server.cli(&["CONFIG", "RESETSTAT"]);
    for n in 16..24 {
        let k = key(&session, n);
        log.open(&k).await.unwrap();
        log.append_last(&k, Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}"))
            .await
            .unwrap();
    }
    let calls = server.command_calls();
    // Per stream: the append's read of its own stream, and the open's look at the
    // newest index member and at the longest-finished stream; nothing per other stream.
    assert_eq!(calls.get("hmget").copied().unwrap_or(0), 8, "{calls:?}");
    assert!(calls.get("zrange").copied().unwrap_or(0) <= 16, "{calls:?}");
    // The bound held: 16 streams, the 8 longest-finished ones dropped.
    for n in 0..8 {
        assert_eq!(
            log.read_after(&key(&session, n), 0, 1).await.unwrap(),
            ReadOutcome::UnknownStream
        );
    }
    for n in 8..24 {
        let ReadOutcome::Events { events, .. } = log.read_after(&key(&session, n), 0, 1).await.unwrap() else {
            panic!("stream {n} is held");
        };
        assert_eq!(events.len(), 1);
    }
}
