//! Fan-out cost at 10,000 live sessions: one `SessionManager::broadcast` (every
//! session) and one `notify_subscribers` (every session's attributes read, 1 % of them
//! subscribed), memory and Redis.
//!
//! Run with `cargo bench --features redis --bench fanout`. Sessions are created through
//! the layer in process (oneshot); nobody listens, so each message is one append to a
//! session's standalone stream. With nobody reading, the messages accumulate: at
//! 10,000 sessions the memory log's whole budget (256 MiB) is reached after a few
//! hundred broadcasts, and then pushes fail (`SendError::Unavailable`), so the run is
//! kept short.

use mcp_test_support::http as support;
use mcp_test_support::redis_server::RedisServer;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tokio::runtime::Runtime;
use tower_mcp_session::{McpSessionLayer, SessionManager};
use tower_mcp_session_redis::{RedisEventLog, RedisSessionStore};

const SESSIONS: usize = 10_000;
/// One session in this many subscribes to the notified URI.
const SUBSCRIBER_EVERY: usize = 100;

fn runtime() -> Runtime {
    mcp_test_support::runtime::two_workers()
}

async fn populate(layer: &McpSessionLayer) -> SessionManager {
    let app = support::app(layer);
    for n in 0..SESSIONS {
        let session = support::initialize(&app, "2025-11-25").await;
        if n % SUBSCRIBER_EVERY == 0 {
            let subscribe = support::request(1, "resources/subscribe", json!({"uri": "file:///hot"}));
            support::send(&app, Some(&session), &subscribe).await;
        }
    }
    layer.manager()
}

fn bench(c: &mut Criterion) {
    let server = RedisServer::start();
    let rt = runtime();
    let conn = rt.block_on(server.connect());
    let memory = McpSessionLayer::builder().max_sessions(Some(SESSIONS + 10)).build();
    let redis = McpSessionLayer::builder()
        .max_sessions(Some(SESSIONS + 10))
        .store(RedisSessionStore::new(conn.clone()))
        .event_log(RedisEventLog::new(conn))
        .build();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});

    let mut g = c.benchmark_group("fanout_10k_sessions");
    // Few iterations: nobody reads, so every broadcast stays in the log (10,000 events
    // each), and the memory log's whole budget must not be what is measured.
    g.sample_size(10);
    g.sampling_mode(criterion::SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(200));
    g.measurement_time(Duration::from_secs(1));
    for (name, layer) in [("memory", &memory), ("redis", &redis)] {
        let manager = rt.block_on(populate(layer));
        g.bench_function(format!("{name}/broadcast"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        assert_eq!(manager.broadcast(&note).await, Ok(SESSIONS));
                    }
                    start.elapsed()
                })
            });
        });
        g.bench_function(format!("{name}/notify_subscribers"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let reached = manager.notify_subscribers("file:///hot").await;
                        assert_eq!(reached, Ok(SESSIONS / SUBSCRIBER_EVERY));
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
