//! The layer with the Redis store and event log against the same layer with the
//! memory store, on the same workload: legacy `tools/call echo` on established
//! sessions, answered with JSON, driven through `tower::ServiceExt::oneshot` (no
//! sockets). Also counts Redis round trips per request on that path from
//! `INFO commandstats` deltas. Starts its own `redis-server` (no persistence,
//! loopback); needs `redis-server` and `redis-cli` on PATH.
//!
//! `cargo bench --features redis --bench redis_layer`
//!
//! Besides criterion's figures it prints a summary: requests per second for both stores
//! one request at a time and with 64 in flight, the ratio, and the round trips.

use mcp_test_support::redis_server;

use mcp_test_support::http as support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::runtime::Runtime;
use tower::ServiceExt;
use tower_mcp_session::McpSessionLayer;
use tower_mcp_session_redis::{RedisEventLog, RedisSessionStore};

use redis_server::RedisServer;
use support::App;

/// Established sessions the workload spreads over.
const SESSIONS: usize = 64;
/// Requests in flight in the concurrent runs.
const IN_FLIGHT: u64 = 64;

fn runtime() -> Runtime {
    mcp_test_support::runtime::two_workers()
}

struct Target {
    app: App,
    sessions: Vec<String>,
}

impl Target {
    async fn new(layer: McpSessionLayer) -> Self {
        let app = support::app(&layer);
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
            sessions.push(support::initialize(&app, support::LEGACY).await);
        }
        Self { app, sessions }
    }

    /// One `tools/call echo` on session `n`, answer read to the end.
    async fn call(&self, n: u64) {
        let sid = &self.sessions[n as usize % self.sessions.len()];
        let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "hello"}}});
        let req = support::with_body(support::post().header("mcp-session-id", sid), &body);
        let resp = self.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        debug_assert!(bytes.starts_with(b"{"));
    }

    async fn sequential(&self, iters: u64) -> Duration {
        let start = Instant::now();
        for n in 0..iters {
            self.call(n).await;
        }
        start.elapsed()
    }

    /// `iters` calls by `IN_FLIGHT` tasks.
    async fn concurrent(self: &std::sync::Arc<Self>, iters: u64) -> Duration {
        let per = iters.div_ceil(IN_FLIGHT);
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..IN_FLIGHT {
            let target = self.clone();
            tasks.spawn(async move {
                for i in 0..per {
                    target.call(t * per + i).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        start.elapsed().mul_f64(iters as f64 / (per * IN_FLIGHT) as f64)
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Commands the store's scripts run inside Redis (counted by `INFO commandstats` too,
/// but not round trips), and this probe's own.
const NOT_ROUND_TRIPS: &[&str] = &["hget", "time", "pexpire", "hmget", "del", "info", "config|resetstat"];

fn round_trips(rt: &Runtime, server: &RedisServer, target: &Target) {
    const N: u64 = 2000;
    rt.block_on(target.sequential(100)); // scripts loaded, connection warm
    std::thread::sleep(Duration::from_millis(200));
    server.cli(&["CONFIG", "RESETSTAT"]);
    rt.block_on(target.sequential(N));
    // The layer may `touch` from a spawned task after an answer: let those land.
    std::thread::sleep(Duration::from_millis(300));
    let calls: HashMap<String, u64> = server.command_calls();
    let network: u64 = calls
        .iter()
        .filter(|(name, _)| !NOT_ROUND_TRIPS.contains(&name.as_str()))
        .map(|(_, n)| n)
        .sum();
    let usec = server.command_usec_per_call();
    println!(
        "redis round trips per established-session request: {:.2} \
         (evalsha {} for {N} requests: the refreshing `load` before the inner call, plus the `touch` \
         the layer spawns after an answer that took a twentieth of the idle timeout; {:.1} µs of server time per evalsha; all commands seen: {calls:?})",
        network as f64 / N as f64,
        calls.get("evalsha").copied().unwrap_or(0),
        usec.get("evalsha").copied().unwrap_or(0.0),
    );
}

/// requests per second over `iters` requests, best of three runs.
fn rate(iters: u64, run: impl Fn(u64) -> Duration) -> f64 {
    (0..3)
        .map(|_| run(iters))
        .map(|d| iters as f64 / d.as_secs_f64())
        .fold(0.0, f64::max)
}

fn summary(rt: &Runtime, memory: &std::sync::Arc<Target>, redis: &std::sync::Arc<Target>) {
    const N: u64 = 10_000;
    let seq_mem = rate(N, |n| rt.block_on(memory.sequential(n)));
    let seq_redis = rate(N, |n| rt.block_on(redis.sequential(n)));
    let con_mem = rate(N, |n| rt.block_on(memory.concurrent(n)));
    let con_redis = rate(N, |n| rt.block_on(redis.concurrent(n)));
    println!(
        "summary (best of 3 x {N} requests, 2 worker threads, load average {}):",
        load_average()
    );
    println!(
        "  one at a time: memory {seq_mem:.0} req/s, redis {seq_redis:.0} req/s, ratio {:.2}",
        seq_redis / seq_mem
    );
    println!(
        "  {IN_FLIGHT} in flight:   memory {con_mem:.0} req/s, redis {con_redis:.0} req/s, ratio {:.2}",
        con_redis / con_mem
    );
}

fn bench(c: &mut Criterion) {
    println!("load average at start: {}", load_average());
    let server = RedisServer::start();
    let rt = runtime();
    let conn = rt.block_on(server.connect());
    let redis_layer = McpSessionLayer::builder()
        .store(RedisSessionStore::new(conn.clone()))
        .event_log(RedisEventLog::new(conn))
        .build();
    let memory = std::sync::Arc::new(rt.block_on(Target::new(McpSessionLayer::new())));
    let redis = std::sync::Arc::new(rt.block_on(Target::new(redis_layer)));

    round_trips(&rt, &server, &redis);
    summary(&rt, &memory, &redis);

    let mut g = c.benchmark_group("layer_established_json");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    for (name, target) in [("memory", &memory), ("redis", &redis)] {
        g.bench_function(format!("{name}/one_at_a_time"), |b| {
            b.iter_custom(|iters| rt.block_on(target.sequential(iters)));
        });
        g.bench_function(format!("{name}/{IN_FLIGHT}_in_flight"), |b| {
            b.iter_custom(|iters| rt.block_on(target.concurrent(iters)));
        });
    }
    g.finish();
    println!("load average at end: {}", load_average());
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
