//! The Redis backends (crate `tower-mcp-session-redis`) against a `redis-server` this
//! benchmark starts itself (no persistence, loopback). Needs `redis-server` and
//! `redis-cli` on PATH.
//!
//! `cargo bench --features redis --bench redis`

use mcp_test_support::redis_server;

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Map;
use tokio::runtime::Runtime;
use tower_mcp_session::event_log::{EventLog, StreamId, StreamKey};
use tower_mcp_session::store::{Expiry, SessionStore};
use tower_mcp_session::{MakeSessionId, ProtocolVersion, RandomSessionId, SessionId, SessionRecord};
use tower_mcp_session_redis::{RedisEventLog, RedisSessionStore};

use redis_server::RedisServer;

fn runtime() -> Runtime {
    mcp_test_support::runtime::two_workers()
}

/// The layer's defaults.
const EXPIRY: Expiry = Expiry {
    idle: Duration::from_secs(30 * 60),
    lifetime: Duration::from_secs(24 * 3600),
};

/// A session created as the layer creates one under a cap: a slot, then the record.
async fn create(store: &RedisSessionStore, id: &SessionId) {
    let slot = store.reserve(1_000_000, Duration::from_secs(60)).await.unwrap();
    store
        .create(
            &SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18),
            &Map::new(),
            EXPIRY,
            Some(slot),
        )
        .await
        .unwrap();
}

/// Commands the server ran per refreshing `load` (what every request of an established
/// session costs), from `INFO commandstats` deltas: only `evalsha` arrives over the
/// network; the rest run inside the script.
fn report_round_trips(rt: &Runtime, server: &RedisServer, store: &RedisSessionStore) {
    let id = RandomSessionId.make_session_id();
    rt.block_on(async {
        create(store, &id).await;
        store.load(&id, Some(EXPIRY.idle)).await.unwrap();
    });
    server.cli(&["CONFIG", "RESETSTAT"]);
    const N: u64 = 1000;
    rt.block_on(async {
        for _ in 0..N {
            store.load(&id, Some(EXPIRY.idle)).await.unwrap().unwrap();
        }
    });
    let calls = server.command_calls();
    let evalsha = calls.get("evalsha").copied().unwrap_or(0);
    // Every request arrives as `evalsha` (or `eval`); the other counted commands ran
    // inside the script, plus this probe's own `config` / `info`.
    let network = evalsha + calls.get("eval").copied().unwrap_or(0);
    let usec = server.command_usec_per_call();
    println!(
        "redis round trips per refreshing load: {:.2} (evalsha {evalsha} for {N} loads; server time per load \
         script {:.1} µs; all commands seen: {calls:?})",
        network as f64 / N as f64,
        usec.get("evalsha").copied().unwrap_or(0.0),
    );
}

fn bench(c: &mut Criterion) {
    let server = RedisServer::start();
    let rt = runtime();
    let conn = rt.block_on(server.connect());
    let store = RedisSessionStore::new(conn.clone());
    let log = RedisEventLog::builder(conn).max_events(2000).build();

    report_round_trips(&rt, &server, &store);

    let id = RandomSessionId.make_session_id();
    rt.block_on(create(&store, &id));

    let mut g = c.benchmark_group("redis");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(30);

    g.throughput(Throughput::Elements(1));
    g.bench_function("load_refresh", |b| {
        b.iter(|| rt.block_on(async { store.load(&id, Some(EXPIRY.idle)).await.unwrap().unwrap() }));
    });
    g.bench_function("load_then_touch", |b| {
        b.iter(|| {
            rt.block_on(async {
                store.load(&id, Some(EXPIRY.idle)).await.unwrap().unwrap();
                assert!(store.touch(&id, EXPIRY.idle).await.unwrap());
            })
        });
    });
    g.bench_function("create_session", |b| {
        b.iter(|| rt.block_on(create(&store, &RandomSessionId.make_session_id())));
    });
    // Nothing due: the common case of a sweep, one script on the index's node.
    g.bench_function("take_expired_nothing_due", |b| {
        b.iter(|| rt.block_on(async { assert!(store.take_expired(512).await.unwrap().sessions.is_empty()) }));
    });

    let payload = Bytes::from(vec![b'x'; 200]);
    let key = StreamKey::new(id.clone(), StreamId::random());
    rt.block_on(log.open(&key)).unwrap();
    g.bench_function("append_200B", |b| {
        b.iter(|| rt.block_on(log.append(&key, payload.clone())).unwrap());
    });

    // 64 producers on 64 streams at once: appends to different streams are pipelined
    // over the shared connection, not serialised behind each other's round trips.
    let keys: Vec<StreamKey> = (0..64)
        .map(|_| StreamKey::new(RandomSessionId.make_session_id(), StreamId::random()))
        .collect();
    rt.block_on(async {
        for k in &keys {
            log.open(k).await.unwrap();
        }
    });
    g.bench_function("append_200B_64_streams_concurrent", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                let per = iters.div_ceil(64);
                for k in &keys {
                    let (log, k, payload) = (log.clone(), k.clone(), payload.clone());
                    tasks.spawn(async move {
                        for _ in 0..per {
                            log.append(&k, payload.clone()).await.unwrap();
                        }
                    });
                }
                while tasks.join_next().await.is_some() {}
                start.elapsed().mul_f64(iters as f64 / (per * 64) as f64)
            })
        });
    });

    let replay = StreamKey::new(id.clone(), StreamId::random());
    rt.block_on(async {
        log.open(&replay).await.unwrap();
        for _ in 0..1000 {
            log.append(&replay, payload.clone()).await.unwrap();
        }
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("replay_1k_events_200B", |b| {
        b.iter(|| {
            let read = rt.block_on(log.read_after(&replay, 0, 1000)).unwrap();
            assert!(matches!(read, tower_mcp_session::event_log::ReadOutcome::Events { ref events, .. } if events.len() == 1000));
        });
    });
    g.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
