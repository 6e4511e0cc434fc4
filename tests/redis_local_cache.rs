//! The Redis store's local cache (`RedisSessionStoreBuilder::local_cache`) against a
//! private `redis-server`: an established session's loads and touches cost no round
//! trip, a deletion on another instance reaches every cache through pub/sub, and a
//! lost subscription empties the cache until it is back. Round trips are counted by
//! the server (`INFO commandstats`), never timed.
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

use mcp_test_support::redis_server::RedisServer;
use redis::aio::ConnectionManager;
use serde_json::Map;
use tower_mcp_session::store::{Expiry, SessionStore};
use tower_mcp_session::{ProtocolVersion, SessionId, SessionRecord};
use tower_mcp_session_redis::{RedisConnection, RedisSessionStore};

const IDLE: Duration = Duration::from_secs(1800);
const EXPIRY: Expiry = Expiry {
    idle: IDLE,
    lifetime: Duration::from_secs(24 * 3600),
};

/// One instance's store, cache on.
async fn cached_store(server: &RedisServer) -> RedisSessionStore {
    let client = redis::Client::open(server.url()).unwrap();
    let conn: RedisConnection = ConnectionManager::new(client.clone()).await.unwrap().into();
    RedisSessionStore::builder(conn).local_cache(client).build()
}

/// Scripts the server ran: every store operation on a session is one.
fn scripts(server: &RedisServer) -> u64 {
    let calls = server.command_calls();
    calls.get("evalsha").copied().unwrap_or(0) + calls.get("eval").copied().unwrap_or(0)
}

async fn new_session(store: &RedisSessionStore, name: &str) -> SessionId {
    let id = SessionId::parse(&format!("{name}{:016x}", rand_u64())).unwrap();
    let record = SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18);
    store.create(&record, &Map::new(), EXPIRY, None).await.unwrap();
    id
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

/// Load `id` until a load costs no script: the cache's subscription is confirmed and
/// the session cached. Fails after 10 s.
async fn until_cached(server: &RedisServer, store: &RedisSessionStore, id: &SessionId) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = scripts(server);
        assert!(store.load(id, Some(IDLE)).await.unwrap().is_some());
        if scripts(server) == before {
            return;
        }
        assert!(Instant::now() < deadline, "the session never got cached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Load `id` until it reads as gone; how long that took. Fails after 5 s.
async fn until_gone(store: &RedisSessionStore, id: &SessionId) -> Duration {
    let start = Instant::now();
    while store.load(id, Some(IDLE)).await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a deleted session is still served"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_established_session_costs_no_round_trip() {
    let server = RedisServer::start();
    let store = cached_store(&server).await;
    let id = new_session(&store, "a").await;
    until_cached(&server, &store, &id).await;
    let before = scripts(&server);
    for _ in 0..100 {
        let record = store.load(&id, Some(IDLE)).await.unwrap().expect("live");
        assert_eq!(record.id(), &id);
        assert!(store.touch(&id, IDLE).await.unwrap());
    }
    assert_eq!(scripts(&server) - before, 0, "100 loads and touches, no script");
    // A session this instance never saw is still asked of Redis.
    let unknown = SessionId::parse("never-created-0123456789").unwrap();
    assert!(store.load(&unknown, Some(IDLE)).await.unwrap().is_none());
    assert!(scripts(&server) > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_another_instance_reaches_the_cache() {
    let server = RedisServer::start();
    let (a, b) = (cached_store(&server).await, cached_store(&server).await);
    for round in 0..20 {
        let id = new_session(&a, &format!("d{round}-")).await;
        until_cached(&server, &b, &id).await;
        assert!(a.delete(&id).await.unwrap());
        // Seen through pub/sub, long before the entry's trust (30 s here) would run out.
        until_gone(&b, &id).await;
        assert!(!b.touch(&id, IDLE).await.unwrap(), "a touch does not revive it");
    }
    // A delete on the caching instance itself is seen at once there.
    let id = new_session(&b, "own-").await;
    until_cached(&server, &b, &id).await;
    assert!(b.delete(&id).await.unwrap());
    assert!(b.load(&id, Some(IDLE)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_empties_the_cache_until_it_is_back() {
    let server = RedisServer::start();
    let (a, b) = (cached_store(&server).await, cached_store(&server).await);
    let id = new_session(&a, "l").await;
    until_cached(&server, &b, &id).await;

    // Cut every pub/sub connection: deletions published now reach no cache.
    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    // The cache stops answering (every load goes to Redis) once b notices.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = scripts(&server);
        assert!(b.load(&id, Some(IDLE)).await.unwrap().is_some());
        if scripts(&server) > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache kept answering without its subscription"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(a.delete(&id).await.unwrap());
    // Whether b heard of it (subscribed again already) or not (its cache then empty),
    // it is gone for b well within the entry's trust.
    until_gone(&b, &id).await;

    // Subscribed again (the subscriber retries by itself), the cache works again.
    let other = new_session(&a, "back").await;
    until_cached(&server, &b, &other).await;
    assert!(a.delete(&other).await.unwrap());
    until_gone(&b, &other).await;
}
