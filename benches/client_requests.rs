//! Round trip of a server → client request through the layer, memory and Redis, against
//! a baseline measured in the same run: one plain client → server `tools/call echo`.
//!
//! Run with `cargo bench --features redis --bench client_requests`. One iteration:
//! `SessionManager::request(&id, "roots/list", ..)` is started; the test client reads
//! the request off its open `GET` stream, POSTs the answer (202), and the request's
//! future resolves with it. In process (`oneshot`, no sockets), so the figures are the
//! layer's and the backend's cost, not the network's.

use mcp_test_support::http as support;
use mcp_test_support::redis_server::RedisServer;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use tower_mcp_session::{McpBody, McpSessionLayer, SessionId, SessionManager};
use tower_mcp_session_redis::{RedisEventLog, RedisSessionStore};

use support::{App, EchoBody, SseReader};

fn runtime() -> Runtime {
    mcp_test_support::runtime::two_workers()
}

/// One session with `roots` declared and its `GET` stream open.
struct Target {
    app: App,
    manager: SessionManager,
    session: String,
    listening: SseReader<McpBody<EchoBody>>,
}

impl Target {
    async fn new(layer: McpSessionLayer) -> Self {
        let app = support::app(&layer);
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {"roots": {}},
            "clientInfo": {"name": "bench", "version": "1"}}});
        let (_, headers, _) = support::send(&app, None, &init).await;
        let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
        let get = support::empty(support::get().header("mcp-session-id", &session));
        let response = app.clone().oneshot(get).await.unwrap();
        assert_eq!(response.status(), 200);
        Self {
            app,
            manager: layer.manager(),
            session,
            listening: SseReader::new(response.into_body()),
        }
    }

    async fn ask_once(&mut self) {
        let id = SessionId::parse(&self.session).unwrap();
        let manager = self.manager.clone();
        let asking = tokio::spawn(async move { manager.request(&id, "roots/list", Value::Null).await });
        let (_, request) = self.listening.next_message().await.expect("the request");
        let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"roots": []}});
        let post = support::with_body(support::post().header("mcp-session-id", &self.session), &answer);
        let response = self.app.clone().oneshot(post).await.unwrap();
        assert_eq!(response.status(), 202);
        asking.await.unwrap().expect("answered");
    }

    async fn echo_once(&self, n: u64) {
        let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "hello"}}});
        let req = support::with_body(support::post().header("mcp-session-id", &self.session), &body);
        let resp = self.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let server = RedisServer::start();
    let rt = runtime();
    let conn = rt.block_on(server.connect());
    let redis_layer = McpSessionLayer::builder()
        .store(RedisSessionStore::new(conn.clone()))
        .event_log(RedisEventLog::new(conn))
        .build();
    let mut memory = rt.block_on(Target::new(McpSessionLayer::new()));
    let mut redis = rt.block_on(Target::new(redis_layer));

    let mut g = c.benchmark_group("client_request_round_trip");
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    for (name, target) in [("memory", &mut memory), ("redis", &mut redis)] {
        g.bench_function(format!("{name}/baseline_echo_call"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for n in 0..iters {
                        target.echo_once(n).await;
                    }
                    start.elapsed()
                })
            });
        });
        g.bench_function(format!("{name}/roots_list_round_trip"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        target.ask_once().await;
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
