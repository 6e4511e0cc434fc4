//! Sessions, resumable streams and creation limits for an MCP server written in any
//! language: this proxy puts `McpSessionLayer` in front of an upstream Streamable HTTP
//! server (run it stateless) and forwards to it over a pooled connection, streaming
//! answers through.
//!
//! ```text
//! cargo run --example proxy -- --addr 127.0.0.1:8080 --upstream http://127.0.0.1:3000/mcp
//! cargo run --example proxy -- --upstream http://127.0.0.1:3000/mcp --redis redis://127.0.0.1:6379
//! ```
//!
//! Clients talk to `http://ADDR/PATH`, where PATH is the upstream's path (`/mcp`
//! above). `--redis URL` keeps sessions and streams in Redis, so several proxies share
//! them; `--max-sessions N` caps live sessions (default 10,000); `--allow-host NAME`
//! (repeatable) admits a public host name besides the loopback ones; `--response-timeout
//! SECONDS` bounds the wait for the upstream's answer head (default 30; then 504);
//! `--strict-modern` has the layer check 2026-07-28 headers and `_meta` itself, for an
//! upstream that does not. `--translate` puts the layer in translation mode, for an
//! upstream that speaks 2026-07-28 only: every 2025-era client is then served by it
//! (`initialize` from its `server/discover`, sessions, server requests through
//! `InputRequiredResult` rounds, resumable streams), and it never sees a legacy
//! message.
//! Upstream failures reach the client as 502/504 with a JSON-RPC error answer. The
//! proxy stops on Ctrl-C or SIGTERM, finishing the requests in flight.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::routing::any_service;
use tower::ServiceBuilder;
use tower_mcp_session::McpSessionLayer;
use tower_mcp_session::rate_limit::PeerAddr;
use tower_mcp_session_proxy::Upstream;

struct Args {
    addr: SocketAddr,
    upstream: String,
    redis: Option<String>,
    max_sessions: usize,
    allow_hosts: Vec<String>,
    response_timeout: Duration,
    strict_modern: bool,
    translate: bool,
}

const USAGE: &str = "usage: proxy --upstream URL [--addr IP:PORT] [--redis URL] [--max-sessions N] \
                     [--allow-host NAME]... [--response-timeout SECONDS] [--strict-modern] [--translate]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".parse().expect("valid"),
        upstream: String::new(),
        redis: None,
        max_sessions: 10_000,
        allow_hosts: Vec::new(),
        response_timeout: Duration::from_secs(30),
        strict_modern: false,
        translate: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--upstream" => args.upstream = value()?,
            "--redis" => args.redis = Some(value()?),
            "--max-sessions" => args.max_sessions = value()?.parse().map_err(|e| format!("--max-sessions: {e}"))?,
            "--allow-host" => args.allow_hosts.push(value()?),
            "--strict-modern" => args.strict_modern = true,
            "--translate" => args.translate = true,
            "--response-timeout" => {
                let secs: f64 = value()?.parse().map_err(|e| format!("--response-timeout: {e}"))?;
                args.response_timeout =
                    Duration::try_from_secs_f64(secs).map_err(|e| format!("--response-timeout: {e}"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.upstream.is_empty() {
        return Err(format!("--upstream is required\n{USAGE}"));
    }
    Ok(args)
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("proxy: {message}");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| fail(e));
    let upstream = Upstream::builder(&args.upstream)
        .and_then(|b| b.response_timeout(args.response_timeout).build())
        .unwrap_or_else(|e| fail(e));
    let path = args
        .upstream
        .parse::<http::Uri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| "/".to_owned());

    let mut builder = McpSessionLayer::builder()
        .max_sessions(Some(args.max_sessions))
        .strict_modern_headers(args.strict_modern)
        .translate_to_modern(args.translate);
    for host in &args.allow_hosts {
        builder = builder.allow_host(host.clone());
    }
    if let Some(url) = &args.redis {
        let redis = tower_mcp_session_redis::connect(url)
            .await
            .unwrap_or_else(|e| fail(format!("cannot connect to Redis at {url}: {e}")));
        builder = builder.store(redis.store).event_log(redis.event_log);
    }
    let layer = builder.build();

    let service = ServiceBuilder::new()
        // The peer address, for the layer's per-IP limits and the upstream's
        // X-Forwarded-For.
        .map_request(|mut req: Request| {
            if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
                req.extensions_mut().insert(PeerAddr(peer));
            }
            req
        })
        .layer(layer)
        .service(upstream);
    let app = Router::new().route_service(&path, any_service(service));

    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .unwrap_or_else(|e| fail(format!("cannot bind {}: {e}", args.addr)));
    println!(
        "MCP proxy listening on http://{}{path} → {}{}",
        listener.local_addr().expect("bound"),
        args.upstream,
        args.redis
            .as_deref()
            .map(|url| format!(" (sessions in {url})"))
            .unwrap_or_default(),
    );
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown())
        .await
        .unwrap_or_else(|e| fail(format!("server error: {e}")));
}

/// Ctrl-C, or SIGTERM where there is one.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
