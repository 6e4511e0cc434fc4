//! `ServerPool` against real servers on 127.0.0.1: limits and bookkeeping, health
//! states, least-loaded selection, failover over and back within the detection time,
//! reconnection through a factory after a restart, circuit breaker and retry.

mod client_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use client_support::*;
use serde_json::json;
use tokio::sync::broadcast;
use tower_mcp_session_client::{
    Backoff, CircuitBreakerConfig, CircuitState, Error, HealthConfig, HealthState, PoolError, PoolEvent, RetryPolicy,
    ServerPool,
};

fn fast_health() -> HealthConfig {
    HealthConfig::new(Duration::from_millis(50), Duration::from_millis(150))
        .unhealthy_after(2)
        .healthy_after(1)
}

fn echo(message: &str) -> serde_json::Value {
    json!({"name": "echo", "arguments": {"message": message}})
}

/// Drain events seen so far.
fn drain(rx: &mut broadcast::Receiver<PoolEvent>) -> Vec<PoolEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

/// Capacity, duplicates, info, stats and removal.
#[tokio::test]
async fn pool_bookkeeping_and_limits() {
    let a = TestServer::start(test_layer()).await;
    let b = TestServer::start(test_layer()).await;
    let pool = ServerPool::builder().max_servers(2).build();
    assert_eq!(
        pool.add_server("a", client(&a.url())).await.unwrap(),
        HealthState::Healthy
    );
    assert!(matches!(
        pool.add_server("a", client(&b.url())).await,
        Err(PoolError::DuplicateServer(id)) if id == "a"
    ));
    assert_eq!(
        pool.add_server("b", client(&b.url())).await.unwrap(),
        HealthState::Healthy
    );
    assert!(matches!(
        pool.add_server("c", client(&b.url())).await,
        Err(PoolError::TooManyServers { max: 2 })
    ));
    assert_eq!(pool.session_count(), 2);
    let stats = pool.session_stats();
    assert_eq!((stats.total, stats.healthy, stats.unhealthy), (2, 2, 0));
    let info = pool.get_session_info("a").unwrap();
    assert!(info.session_id.is_some());
    assert_eq!(
        info.protocol_version,
        Some(tower_mcp_session::ProtocolVersion::V2025_11_25)
    );
    assert_eq!(info.circuit, CircuitState::Closed);
    assert_eq!(
        pool.list_sessions()
            .iter()
            .map(|s| s.server.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );

    let answer = pool.request("b", "tools/call", echo("via b")).await.unwrap();
    assert_eq!(answer["content"][0]["text"], "via b");
    assert_eq!(pool.get_session_info("b").unwrap().requests, 1);

    pool.remove_server("a").await.unwrap();
    assert_eq!(pool.session_count(), 1);
    assert!(matches!(
        pool.remove_server("a").await,
        Err(PoolError::UnknownServer(_))
    ));
    // The removed server's session was closed (DELETE).
    wait_until(Duration::from_secs(2), "session deleted", || {
        a.layer.manager().metrics().active_sessions == Some(0)
    })
    .await;
    // Room again.
    pool.add_server("c", client(&a.url())).await.unwrap();
}

/// The healthy server with the fewest requests in flight is picked.
#[tokio::test]
async fn healthy_connection_is_the_least_loaded() {
    let a = TestServer::start(test_layer()).await;
    let b = TestServer::start(test_layer()).await;
    let pool = ServerPool::new();
    pool.add_server("a", client(&a.url())).await.unwrap();
    pool.add_server("b", client(&b.url())).await.unwrap();
    // Keep a slow call (progress 0/50/100, ~100 ms) in flight on whichever comes first.
    let first = pool.get_healthy_connection().unwrap();
    let busy = first.id().to_owned();
    let slow = {
        let first = first.clone();
        tokio::spawn(async move {
            first
                .request(
                    "tools/call",
                    json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 1}}),
                )
                .await
        })
    };
    wait_until(Duration::from_secs(2), "call in flight", || {
        pool.get_session_info(&busy).unwrap().in_flight == 1
    })
    .await;
    let picked = pool.get_healthy_connection().unwrap();
    assert_ne!(picked.id(), busy, "the idle server is picked");
    picked.request("ping", json!({})).await.unwrap();
    slow.await.unwrap().unwrap();
    assert_eq!(pool.get_session_info(&busy).unwrap().in_flight, 0);
}

/// A killed server goes degraded after one failed check, unhealthy after the
/// threshold; restarted on the same port it is healthy again (the client re-initializes
/// on the new server's 404 by itself).
#[tokio::test]
async fn health_states_follow_the_server() {
    let mut server = TestServer::start(test_layer()).await;
    let port = server.port();
    let pool = ServerPool::builder()
        .health(
            HealthConfig::new(Duration::from_millis(40), Duration::from_millis(150))
                .unhealthy_after(3)
                .healthy_after(2),
        )
        .build();
    let mut events = pool.subscribe();
    pool.add_server("s", client(&server.url())).await.unwrap();
    pool.start_health_monitoring();
    assert!(pool.is_monitoring());
    let old_session = pool.get_session_info("s").unwrap().session_id;

    server.kill().await;
    wait_until(Duration::from_secs(3), "unhealthy", || {
        pool.get_session_info("s").unwrap().state == HealthState::Unhealthy
    })
    .await;
    let seen: Vec<_> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            PoolEvent::StateChanged { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    assert!(
        seen.contains(&(HealthState::Healthy, HealthState::Degraded)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(HealthState::Degraded, HealthState::Unhealthy)),
        "{seen:?}"
    );
    assert_eq!(pool.session_stats().unhealthy, 1);
    assert!(pool.get_healthy_connection().is_none());

    let _server = TestServer::start_on(port, test_layer()).await;
    wait_until(Duration::from_secs(3), "healthy again", || {
        pool.get_session_info("s").unwrap().state == HealthState::Healthy
    })
    .await;
    let info = pool.get_session_info("s").unwrap();
    assert_ne!(info.session_id, old_session, "a new session on the restarted server");
    assert!(info.last_rtt.is_some());
    pool.stop_health_monitoring();
    assert!(!pool.is_monitoring());
}

/// Killing the primary of a failover group moves traffic to the backup within the
/// detection time; restarting it on the same port moves traffic back.
#[tokio::test]
async fn failover_to_backup_and_back() {
    let mut primary = TestServer::start(test_layer()).await;
    let backup = TestServer::start(test_layer()).await;
    let port = primary.port();
    let health = fast_health();
    let pool = ServerPool::builder().health(health).retry(RetryPolicy::never()).build();
    let mut events = pool.subscribe();
    pool.add_server("primary", client(&primary.url())).await.unwrap();
    pool.add_server("backup", client(&backup.url())).await.unwrap();
    pool.add_failover_group("g", "primary", ["backup"]).unwrap();
    assert!(matches!(
        pool.add_failover_group("bad", "primary", ["nope"]),
        Err(PoolError::InvalidGroup(_))
    ));
    pool.start_health_monitoring();
    assert_eq!(pool.active_server("g").as_deref(), Some("primary"));
    pool.request_group("g", "tools/call", echo("1")).await.unwrap();
    assert_eq!(pool.get_session_info("primary").unwrap().requests, 1);

    primary.kill().await;
    let took = wait_until(health.detection_time() * 2, "failover", || {
        pool.active_server("g").as_deref() == Some("backup")
    })
    .await;
    assert!(took <= health.detection_time(), "failover took {took:?}");
    let answer = pool.request_group("g", "tools/call", echo("2")).await.unwrap();
    assert_eq!(answer["content"][0]["text"], "2");
    assert_eq!(pool.get_session_info("backup").unwrap().requests, 1);
    assert!(drain(&mut events).iter().any(|e| matches!(e,
        PoolEvent::FailedOver(f) if f.from == "primary" && f.to == "backup")));

    let _primary = TestServer::start_on(port, test_layer()).await;
    let took = wait_until(health.detection_time() * 2, "failback", || {
        pool.active_server("g").as_deref() == Some("primary")
    })
    .await;
    assert!(took <= health.detection_time(), "failback took {took:?}");
    pool.request_group("g", "tools/call", echo("3")).await.unwrap();
    assert_eq!(pool.get_session_info("primary").unwrap().requests, 2);
    assert!(drain(&mut events).iter().any(|e| matches!(e,
        PoolEvent::FailedOver(f) if f.from == "backup" && f.to == "primary")));
}

/// A server added with a factory is reconnected through it, with backoff, after its
/// process restarts: a fresh client and a fresh session.
#[tokio::test]
async fn reconnect_through_factory_after_restart() {
    let mut server = TestServer::start(test_layer()).await;
    let port = server.port();
    let url = server.url();
    let made = Arc::new(AtomicUsize::new(0));
    let pool = ServerPool::builder()
        .health(fast_health())
        .reconnect_backoff(Backoff::new(Duration::from_millis(20), Duration::from_millis(100)))
        .connect_timeout(Duration::from_millis(500))
        .build();
    let mut events = pool.subscribe();
    let factory = {
        let made = made.clone();
        move || {
            made.fetch_add(1, Ordering::SeqCst);
            let url = url.clone();
            async move { Ok::<_, Error>(client(&url)) }
        }
    };
    assert_eq!(
        pool.add_server_with_reconnect("r", factory).await.unwrap(),
        HealthState::Healthy
    );
    assert_eq!(made.load(Ordering::SeqCst), 1);
    let first_session = pool.get_session_info("r").unwrap().session_id;
    assert!(pool.get_session_info("r").unwrap().reconnectable);
    pool.start_health_monitoring();

    server.kill().await;
    wait_until(Duration::from_secs(3), "reconnecting", || {
        matches!(
            pool.get_session_info("r").unwrap().state,
            HealthState::Connecting | HealthState::Disconnected
        )
    })
    .await;
    // Attempts keep failing while the server is down.
    wait_until(Duration::from_secs(3), "several attempts", || {
        made.load(Ordering::SeqCst) >= 3
    })
    .await;
    let stats = pool.session_stats();
    assert_eq!(stats.connecting + stats.disconnected, 1, "{stats:?}");

    let _server = TestServer::start_on(port, test_layer()).await;
    wait_until(Duration::from_secs(3), "reconnected", || {
        pool.get_session_info("r").unwrap().state == HealthState::Healthy
    })
    .await;
    let info = pool.get_session_info("r").unwrap();
    assert_eq!(info.reconnects, 1);
    assert_ne!(info.session_id, first_session);
    assert!(
        drain(&mut events)
            .iter()
            .any(|e| matches!(e, PoolEvent::Reconnected { server, .. } if server == "r"))
    );
    let answer = pool.request("r", "tools/call", echo("back")).await.unwrap();
    assert_eq!(answer["content"][0]["text"], "back");
}

/// A factory whose first attempt fails: the server is added disconnected and joins as
/// soon as it answers.
#[tokio::test]
async fn factory_server_that_is_down_at_first_joins_later() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let url = format!("http://127.0.0.1:{port}/mcp");
    let pool = ServerPool::builder()
        .reconnect_backoff(Backoff::new(Duration::from_millis(20), Duration::from_millis(50)))
        .connect_timeout(Duration::from_millis(300))
        .build();
    let state = pool
        .add_server_with_reconnect("late", move || {
            let url = url.clone();
            async move { Ok::<_, Error>(client(&url)) }
        })
        .await
        .unwrap();
    assert!(!state.is_usable(), "{state:?}");
    let _server = TestServer::start_on(port, test_layer()).await;
    wait_until(Duration::from_secs(3), "joined", || {
        pool.get_session_info("late").unwrap().state == HealthState::Healthy
    })
    .await;
}

/// Retry (tower's `Retry` with the pool policy) repeats idempotent calls only; the
/// circuit breaker opens after the threshold and fails fast.
#[tokio::test]
async fn retry_policy_and_circuit_breaker() {
    let mut server = TestServer::start(test_layer()).await;
    let pool = ServerPool::builder()
        .retry(RetryPolicy::new(2).backoff(Backoff::new(Duration::from_millis(1), Duration::from_millis(5))))
        .circuit_breaker(CircuitBreakerConfig::new(4, Duration::from_secs(60)))
        .request_timeout(Some(Duration::from_millis(500)))
        .build();
    pool.add_server("s", client(&server.url())).await.unwrap();
    server.kill().await;

    // ping is idempotent: 1 attempt + 2 retries.
    let before = pool.get_session_info("s").unwrap().requests;
    let err = pool.request("s", "ping", json!({})).await.unwrap_err();
    assert!(
        matches!(err, PoolError::Client(ref e) if e.is_server_failure()),
        "{err}"
    );
    assert_eq!(pool.get_session_info("s").unwrap().requests - before, 3);
    // tools/call is not retried by default.
    let err = pool.request("s", "tools/call", echo("x")).await.unwrap_err();
    assert!(matches!(err, PoolError::Client(_)), "{err}");
    assert_eq!(pool.get_session_info("s").unwrap().requests - before, 4);
    // Four failures in a row: the circuit is open, the next call fails without trying.
    assert_eq!(pool.get_session_info("s").unwrap().circuit, CircuitState::Open);
    let err = pool.request("s", "tools/call", echo("y")).await.unwrap_err();
    assert!(matches!(err, PoolError::CircuitOpen(ref id) if id == "s"), "{err}");
    assert_eq!(pool.get_session_info("s").unwrap().requests - before, 4);
    // Passive health: the failed requests made it unhealthy without any check running.
    assert_eq!(pool.get_session_info("s").unwrap().state, HealthState::Unhealthy);
}
