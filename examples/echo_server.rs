//! The echo MCP server behind `McpSessionLayer`, on axum.
//!
//! ```text
//! cargo run --example echo_server -- --addr 127.0.0.1:8080 --max-sessions 1000
//! ```
//!
//! `--sse-all` answers every JSON reply (including `initialize`) as a one-event SSE
//! stream instead, and `--strict-modern` makes the layer validate 2026-07-28 request
//! headers and `_meta` itself; `tests/interop/run.sh` uses both.
//!
//! `--redis URL` keeps sessions and resumable streams in Redis (`RedisSessionStore`
//! and `RedisEventLog`) instead of memory, so several instances can share them (see
//! `examples/redis_cluster.rs`). It needs the `redis` feature:
//!
//! ```text
//! cargo run --features redis --example echo_server -- --addr 127.0.0.1:8080 --redis redis://127.0.0.1:6379
//! ```
//!
//! With `--redis`, `--max-sessions` caps the sessions of every instance sharing that
//! Redis together, and applies only when given.
//!
//! On SIGTERM the server drains (`SessionManager::drain`) for at most `--drain-seconds`
//! (default 30): it refuses new sessions, sends its SSE clients to reconnect elsewhere
//! and lets running streams finish into the log; then it stops accepting connections,
//! gives open ones up to 5 s to finish, and exits 0. It prints `draining` when the
//! signal arrives and the drain's report when it ends. `tests/rolling_restart.rs`
//! restarts two instances sharing Redis this way under traffic.
//!
//! `--producer-lease-ms N` sets the lease an instance holds on the streams it produces
//! (`sse_producer_lease`, default 10 s): when the instance dies mid-stream, a client
//! resuming on another one gets an error answer to its request about that long after.
//! `tests/chaos.rs` kills an instance with a short lease.
//!
//! `--translate` puts the layer in translation mode in front of the echo handler made
//! 2026-07-28-only (any other request is refused and logged before it reaches it).
//!
//! `--stateless` serves the echo handler with no layer at all: a stateless upstream
//! for `examples/proxy.rs` (the interop suite runs the clients through the proxy).
//! With `--translate` too, that upstream is the 2026-07-28-only handler, for `proxy
//! --translate`.
//!
//! `--metrics` serves the layer's metrics on `GET /metrics` in the Prometheus text
//! format (`metrics-exporter-prometheus`, outside the MCP layer). It needs the
//! `metrics` feature:
//!
//! ```text
//! cargo run --features metrics --example echo_server -- --metrics
//! curl http://127.0.0.1:8080/metrics
//! ```

use mcp_test_support::echo as common;

use std::net::SocketAddr;

use std::num::NonZeroU32;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use axum::routing::any_service;
use tower_mcp_session::McpSessionLayer;
use tower_mcp_session::rate_limit::{CreationLimit, PeerIp, Quota};

/// `--redis URL`: sessions and streams in Redis (shared with `examples/load.rs`).
#[cfg(feature = "redis")]
use common::with_redis;

struct Args {
    addr: SocketAddr,
    max_sessions: Option<usize>,
    redis: Option<String>,
    sse_tool_calls: bool,
    create_burst: Option<NonZeroU32>,
    create_per_second: Option<NonZeroU32>,
    sse_all: bool,
    strict_modern: bool,
    metrics: bool,
    drain_seconds: u64,
    stateless: bool,
    translate: bool,
    producer_lease_ms: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".parse().expect("valid"),
        max_sessions: None,
        redis: None,
        sse_tool_calls: false,
        create_burst: None,
        create_per_second: None,
        sse_all: false,
        strict_modern: false,
        metrics: false,
        drain_seconds: 30,
        stateless: false,
        translate: false,
        producer_lease_ms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--max-sessions" => args.max_sessions = Some(value()?.parse().map_err(|e| format!("--max-sessions: {e}"))?),
            "--redis" => args.redis = Some(value()?),
            "--sse" => args.sse_tool_calls = true,
            "--sse-all" => args.sse_all = true,
            "--strict-modern" => args.strict_modern = true,
            "--metrics" => args.metrics = true,
            "--drain-seconds" => args.drain_seconds = value()?.parse().map_err(|e| format!("--drain-seconds: {e}"))?,
            "--stateless" => args.stateless = true,
            "--translate" => args.translate = true,
            "--producer-lease-ms" => {
                args.producer_lease_ms = Some(value()?.parse().map_err(|e| format!("--producer-lease-ms: {e}"))?)
            }
            "--create-burst" => args.create_burst = Some(value()?.parse().map_err(|e| format!("--create-burst: {e}"))?),
            "--create-per-second" => {
                args.create_per_second = Some(value()?.parse().map_err(|e| format!("--create-per-second: {e}"))?)
            }
            "-h" | "--help" => {
                println!(
                    "usage: echo_server [--addr IP:PORT] [--max-sessions N] [--redis URL] [--sse] [--sse-all] [--strict-modern] [--stateless] [--translate] [--metrics] [--create-burst N] [--create-per-second R] [--drain-seconds S] [--producer-lease-ms N]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("echo_server: {e}");
        std::process::exit(2);
    });
    // Installed first: the recorder must be in place before the layer registers anything.
    let metrics = args.metrics.then(|| {
        prometheus().unwrap_or_else(|e| {
            eprintln!("echo_server: {e}");
            std::process::exit(2);
        })
    });
    let mut builder = McpSessionLayer::builder();
    builder = match &args.redis {
        None => builder.max_sessions(Some(args.max_sessions.unwrap_or(10_000))),
        Some(url) => with_redis(builder, url, args.max_sessions).await.unwrap_or_else(|e| {
            eprintln!("echo_server: {e}");
            std::process::exit(2);
        }),
    };
    if let Some(ms) = args.producer_lease_ms {
        builder = builder.sse_producer_lease(Duration::from_millis(ms));
    }
    if args.create_burst.is_some() || args.create_per_second.is_some() {
        // New sessions per client IP, as axum's ConnectInfo reports it.
        let per_second = args.create_per_second.unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(args.create_burst.unwrap_or(per_second));
        let key = PeerIp::new().peer_addr_with(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
        builder = builder.rate_limit(CreationLimit::new().per_key(quota, key));
    }
    if args.strict_modern {
        builder = builder.strict_modern_headers(true);
    }
    if args.translate {
        builder = builder.translate_to_modern(true);
    }
    let layer = builder.build();
    let options = common::EchoOptions {
        sse_tool_calls: args.sse_tool_calls,
        manager: Some(layer.manager()),
    };
    let mut app = Router::new().route_service("/mcp", any_service(common::echo_service(options)));
    if args.sse_all {
        app = app.layer(axum::middleware::map_response(json_as_sse));
    }
    if args.translate {
        app = app.layer(axum::middleware::from_fn(modern_only));
    }
    let manager = layer.manager();
    if !args.stateless {
        app = app.layer(layer);
    }
    if let Some(handle) = metrics {
        // Added after the MCP layer, so the scrape does not go through it.
        app = app.route(
            "/metrics",
            axum::routing::get(move || std::future::ready(handle.render())),
        );
    }
    let listener = tokio::net::TcpListener::bind(args.addr).await.unwrap_or_else(|e| {
        eprintln!("echo_server: cannot bind {}: {e}", args.addr);
        std::process::exit(1);
    });
    println!(
        "echo MCP server listening on http://{}/mcp{}",
        listener.local_addr().expect("bound"),
        args.redis
            .as_deref()
            .map(|url| format!(" (sessions in {url})"))
            .unwrap_or_default(),
    );
    let drain_for = Duration::from_secs(args.drain_seconds);
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        terminated().await;
        // Draining from this call on: only then say so (a test waits for the line).
        let drained = manager.drain(drain_for);
        println!("draining (at most {} s)", drain_for.as_secs());
        let report = drained.await;
        println!("{report}");
        let _ = drained_tx.send(());
    };
    let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .into_future();
    // After the drain, connections still open (a client that stopped reading) get a
    // few seconds, not forever.
    let linger = async {
        if drained_rx.await.is_ok() {
            tokio::time::sleep(Duration::from_secs(5)).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serve => served.expect("server error"),
        () = linger => {}
    }
}

/// Resolves on SIGTERM (what orchestrators send before stopping a process).
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                eprintln!("echo_server: cannot listen for SIGTERM ({e}); no graceful drain");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
}

/// `--metrics`: a Prometheus recorder for the layer's metrics. Durations are real
/// histograms (the buckets the OpenTelemetry conventions advise for MCP operations;
/// longer ones for sessions, shorter for store calls); names get the recommended unit
/// and `_total` suffixes, so `mcp.server.operation.duration` is scraped as
/// `mcp_server_operation_duration_seconds`.
fn prometheus() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    if !cfg!(feature = "metrics") {
        return Err("--metrics needs the `metrics` feature: \
                    cargo run --features metrics --example echo_server -- --metrics"
            .to_owned());
    }
    const OPERATION: &[f64] = &[
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ];
    const SESSION: &[f64] = &[
        1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 86_400.0,
    ];
    const STORE: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
    let handle = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets_for_metric(Matcher::Full("mcp.server.operation.duration".into()), OPERATION)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("mcp.server.session.duration".into()), SESSION))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("mcp.server.store.duration".into()), STORE))
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("--metrics: {e}"))?;
    // The exporter's histograms are drained into their buckets by its upkeep.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

#[cfg(not(feature = "redis"))]
async fn with_redis(
    _builder: tower_mcp_session::McpSessionLayerBuilder,
    _url: &str,
    _max_sessions: Option<usize>,
) -> Result<tower_mcp_session::McpSessionLayerBuilder, String> {
    Err("--redis needs the `redis` feature: \
         cargo run --features redis --example echo_server -- --redis redis://127.0.0.1:6379"
        .to_owned())
}

/// `--translate`: the echo handler as a 2026-07-28-only server. A request that is not
/// one (header and `_meta` both naming 2026-07-28) never reaches it: it is refused with
/// 400 and logged with the marker `LEGACY MESSAGE REACHED THE HANDLER`, which the
/// interop suite looks for.
async fn modern_only(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::body::Body;

    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let header = parts.headers.get("mcp-protocol-version").map(|v| v.as_bytes());
    let meta = serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|m| {
        m.pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
            .and_then(|v| v.as_str().map(str::to_owned))
    });
    if header != Some(b"2026-07-28") || meta.as_deref() != Some("2026-07-28") {
        eprintln!(
            "LEGACY MESSAGE REACHED THE HANDLER: {} {}",
            parts.method,
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        );
        return (http::StatusCode::BAD_REQUEST, "legacy message").into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `--sse-all`: turn a successful JSON reply carrying one JSON-RPC message into a
/// one-event SSE stream, as servers that always stream do.
async fn json_as_sse(response: axum::response::Response) -> axum::response::Response {
    use axum::body::Body;
    use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};

    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !response.status().is_success() || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return axum::response::Response::from_parts(parts, Body::empty());
    };
    if bytes.first() != Some(&b'{') {
        // A batch answer stays JSON.
        return axum::response::Response::from_parts(parts, Body::from(bytes));
    }
    let text = String::from_utf8_lossy(&bytes).replace('\n', "");
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
    parts
        .headers
        .insert(CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    axum::response::Response::from_parts(parts, Body::from(format!("event: message\ndata: {text}\n\n")))
}
